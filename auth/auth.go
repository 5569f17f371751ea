package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options configures the auth stage: Setup builds them from the auth: section and the shared
// services. Store, Seals, Mode, NonceLifetime, Algorithms and LockoutThreshold are required.
type Options struct {
	// Domains are the local domains. The realm for an AOR is its domain in lower case.
	Domains []string
	// Users is the credentials from the users file; may be nil. It is consulted before Store.
	Users *Users
	// Store holds the other credentials and the nonce-count records. Required.
	Store Store
	// Secret keys the nonce HMAC (at least 16 bytes when set); nodes that share it accept
	// each other's nonces. Empty: 32
	// random bytes (nonces then do not survive a restart: clients get a fresh challenge).
	Secret []byte
	// NonceLifetime is how long a nonce is fresh; after it a request gets stale=true.
	// Required.
	NonceLifetime time.Duration
	// Mode is ModeRequired (every request that claims a local identity proves it) or ModeOff
	// (claims are taken at their word: loopback test servers only). Required.
	Mode Mode
	// IsOurs reports whether a host (not a domain) is one of this server's addresses: a
	// request From such a host claims a local identity (of the first domain) too. May be nil.
	IsOurs func(host string) bool
	// TrustedPeer reports whether the request comes from a trusted peer (a configured address
	// or a TLS client certificate naming one). May be nil: no peer is trusted.
	TrustedPeer func(st *sipx.State) bool
	// Seals checks the dialog tokens of our Record-Routes and the proofs other nodes of this
	// deployment attach. Required.
	Seals *sipx.Seals
	// Algorithms offered, one challenge header each, in this order. At least one.
	Algorithms []Algorithm
	// RequireQOP refuses answers without qop (RFC 2069 style): they get a fresh challenge.
	// Without it such an answer is accepted once per nonce.
	RequireQOP bool
	// Lockout is how long a source address gets 403 for an AOR after LockoutThreshold failed
	// attempts (wrong response or unknown user) for that AOR from that address within a
	// minute, even with the right password. 0 disables lockouts.
	Lockout time.Duration
	// LockoutThreshold is the number of failures that starts a lockout, at least 1.
	LockoutThreshold int
	// Log is the stage logger, already named by the caller (log.Named("auth")), for
	// lifecycle messages; per-request messages go to the request logger of sipx.State, named
	// "auth". Default: no logs.
	Log *zap.Logger
	// Registerer receives the stage's metrics when not nil.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Failure reasons, the values of the reason label of simpled_auth_failures_total.
const (
	failMalformed        = "malformed"
	failAlgorithm        = "algorithm"
	failQOP              = "qop"
	failNonceInvalid     = "nonce_invalid"
	failNonceStale       = "nonce_stale"
	failIdentityMismatch = "identity_mismatch"
	failUnknownUser      = "unknown_user"
	failInvalidResponse  = "invalid_response"
	failReplay           = "replay"
	failNonceReused      = "nonce_reused" // a nonce answered without qop a second time
	failNonceEpoch       = "nonce_epoch"  // a nonce from before the store lost its state
	failURIMismatch      = "uri_mismatch"
	failLocked           = "locked"
)

var failReasons = []string{failMalformed, failAlgorithm, failQOP, failNonceInvalid,
	failNonceStale, failIdentityMismatch, failUnknownUser, failInvalidResponse, failReplay,
	failNonceReused, failNonceEpoch, failURIMismatch, failLocked}

// Auth is the identity stage: it decides, for every request, which rule of the trust model
// (docs/security.md) accepts it, and records the rule in sipx.State.Rule for the later stages;
// identity.go has the decision, this file the digest authentication behind rule (a). It is
// safe for concurrent use.
//
// Digest authentication (RFC 7616, RFC 8760) of a claimed local identity:
//
//   - The credentials for our realm are checked (authenticate): a source address locked out
//     of the AOR → 403 Locked Out; malformed → 400; unknown algorithm or qop, no qop with
//     RequireQOP, unknown nonce → fresh challenge; digest uri not the Request-URI → 400
//     Digest URI Mismatch; username not the AOR's user → 403 Identity Mismatch; unknown user
//     or wrong response → 403 Invalid Credentials (counted towards a lockout); right response
//     on an expired nonce → challenge with stale=true; nc not above the last one → 403 Nonce
//     Count Replayed; a nonce answered without qop a second time, or issued under another
//     store epoch → challenge with stale=true; store errors → sipx.RespondError.
//   - On success State.AuthUser is set (RuleUser) and, for a proxied request, our
//     Proxy-Authorization is removed (RFC 3261 §22.3: a proxy consumes the credentials for its
//     realm).
//
// The realm is the AOR's canonical domain in lower case. Challenges offer qop="auth"; an answer
// without qop (RFC 2069, as baresip sends to a server that offers none) is accepted once per
// nonce, recorded in the store as nonce count 0 (linphone re-sends its last Authorization on
// refreshes: it gets one more challenge). Nonces carry the store epoch (Store.NonceEpoch): a
// store that lost its nonce records has a new epoch and refuses older nonces, which would
// otherwise be replayable. The node learns the epoch from the store once, then from the
// replies of UseNonceCount, so success costs no extra round trip.
//
// Lockouts are per node, in a bounded in-process table (lockouts): no store round trip.
//
// Credentials come from the users file first, then the store; a user with none gets 403, and
// whether to authenticate never depends on what the store holds (Mode). Failures are counted in
// simpled_auth_failures_total{reason} and logged with the username only; challenges in
// simpled_auth_challenges_total{status}, lockouts started in simpled_auth_lockouts_total.
type Auth struct {
	domains       map[string]bool
	users         *Users
	store         Store
	nonces        *Nonces
	mode          Mode
	defaultDomain string
	isOurs        func(string) bool
	trustedPeer   func(*sipx.State) bool
	seals         *sipx.Seals
	algs          []Algorithm
	requireQOP    bool
	lockouts      *lockouts // nil: lockouts disabled
	log           *zap.Logger
	now           func() time.Time

	// epoch is the store's nonce epoch as last learned, 0 until then.
	epoch atomic.Uint64

	failures   *prometheus.CounterVec
	challenges *prometheus.CounterVec
	lockedOut  prometheus.Counter
}

// New builds the auth stage from opts.
func New(opts Options) (*Auth, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return newAuth(opts)
}

// check refuses what New cannot work with (the defaults come from config.Default).
func (opts *Options) check() error {
	if opts.Store == nil || opts.Seals == nil {
		return errors.New("auth: options: Store and Seals are required")
	}
	if opts.Mode != ModeRequired && opts.Mode != ModeOff {
		return fmt.Errorf("auth: options: mode %q: want required or off", opts.Mode)
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lockout < 0 || opts.LockoutThreshold < 1 {
		return fmt.Errorf("auth: options: lockout %v, threshold %d: want lockout 0 or more, threshold 1 or more", opts.Lockout, opts.LockoutThreshold)
	}
	if len(opts.Algorithms) == 0 {
		return errors.New("auth: options: no algorithm")
	}
	seen := map[Algorithm]bool{}
	for _, alg := range opts.Algorithms {
		if !alg.Valid() {
			return fmt.Errorf("auth: options: algorithm %v: unknown", alg)
		}
		if seen[alg] {
			return fmt.Errorf("auth: options: algorithm %v: listed twice", alg)
		}
		seen[alg] = true
	}
	return nil
}

// newAuth is New past the options check: the nonce secret, the Auth and its metrics.
func newAuth(opts Options) (*Auth, error) {
	secret := opts.Secret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("auth: nonce secret: %w", err)
		}
	}
	nonces, err := NewNonces(secret, opts.NonceLifetime)
	if err != nil {
		return nil, err
	}
	a := &Auth{
		domains:     make(map[string]bool, len(opts.Domains)),
		users:       opts.Users,
		store:       opts.Store,
		nonces:      nonces,
		mode:        opts.Mode,
		isOurs:      opts.IsOurs,
		trustedPeer: opts.TrustedPeer,
		seals:       opts.Seals,
		algs:        append([]Algorithm(nil), opts.Algorithms...),
		requireQOP:  opts.RequireQOP,
		log:         opts.Log,
		now:         opts.Now,
	}
	if opts.Lockout > 0 {
		a.lockouts = newLockouts(opts.LockoutThreshold, opts.Lockout)
	}
	for _, d := range opts.Domains {
		a.domains[strings.ToLower(d)] = true
	}
	if len(opts.Domains) > 0 {
		a.defaultDomain = strings.ToLower(opts.Domains[0])
	}
	for _, d := range opts.Users.Domains() {
		if !a.domains[d] {
			// logging has no domain key: the AOR pattern names the domain.
			a.log.Warn("users file has entries for a domain that is not served; they are never used",
				zap.String(logging.KeyAOR, "*@"+d))
		}
	}

	a.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_auth_failures_total",
		Help: "Digest authentication failures, by reason.",
	}, []string{"reason"})
	a.challenges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_auth_challenges_total",
		Help: "Digest challenges sent, by status (401, 407).",
	}, []string{"status"})
	for _, r := range failReasons {
		a.failures.WithLabelValues(r)
	}
	a.lockedOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "simpled_auth_lockouts_total",
		Help: "Lockouts started: a source address refused for an AOR after repeated failed digest attempts.",
	})
	a.challenges.WithLabelValues("401")
	a.challenges.WithLabelValues("407")
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{a.failures, a.challenges, a.lockedOut} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("auth: metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Plugin returns the stage for the chain.
func (a *Auth) Plugin() sipx.Plugin {
	return func(next sipx.Handler) sipx.Handler { return &handler{a: a, next: next} }
}

// handler is Auth bound to the next stage.
type handler struct {
	a    *Auth
	next sipx.Handler
}

// Name implements sipx.Handler.
func (h *handler) Name() string { return "auth" }

// ServeSIP implements sipx.Handler: see (*Auth).serve.
func (h *handler) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	return h.a.serve(ctx, h.next, tx, req)
}

// kind is what differs between registrar (401) and proxy (407) authentication.
type kind struct {
	code      int
	status    string // code as a metric label
	authz     string // credentials header
	challenge string // challenge header
}

var (
	registrarKind = kind{code: 401, status: "401", authz: "Authorization", challenge: "WWW-Authenticate"}
	proxyKind     = kind{code: 407, status: "407", authz: "Proxy-Authorization", challenge: "Proxy-Authenticate"}
)

// Reason phrases of the 403 answers.
const (
	reasonInvalidCredentials = "Invalid Credentials"
	reasonReplay             = "Nonce Count Replayed"
	reasonIdentityMismatch   = "Identity Mismatch"
	reasonLockedOut          = "Locked Out"
)

// authenticate checks the Digest credentials of req for the local identity addr claims (the
// To of a REGISTER, the From of anything else), whose canonical domain is domain, and passes
// req on under RuleUser when they hold; else it answers (challenge, 400 or 403).
func (a *Auth) authenticate(ctx context.Context, next sipx.Handler, tx sip.ServerTransaction, req *sip.Request, k kind, addr *sip.Uri, domain string) (int, error) {
	at := &attempt{tx: tx, req: req, k: k, realm: domain, aor: addr.User + "@" + domain}
	st := sipx.StateFrom(ctx)
	if a.lockouts != nil {
		at.lk = a.lockouts.key(at.aor, sourceIP(st.Source))
	}
	if a.lockouts != nil && a.lockouts.locked(at.lk, a.now()) {
		a.fail(ctx, zapcore.DebugLevel, failLocked, "", at.aor)
		return sipx.Respond(tx, req, 403, reasonLockedOut)
	}
	c, alg, code, err := a.readCredentials(ctx, at)
	if c == nil {
		return code, err
	}
	now := a.now()
	nonceEpoch, nerr := a.nonces.Check(c.Nonce, at.realm, now)
	if errors.Is(nerr, ErrNonceInvalid) {
		a.fail(ctx, zapcore.DebugLevel, failNonceInvalid, c.Username, at.aor)
		return a.challenge(ctx, tx, req, k, at.realm, false, a.algs)
	}
	if !sameURI(c.URI, &req.Recipient) && !a.bothUs(c.URI, &req.Recipient) {
		// RFC 2617 §3.2.2.5: credentials computed for another resource are a bad request.
		a.fail(ctx, zapcore.WarnLevel, failURIMismatch, c.Username, at.aor, zap.String("digest_uri", c.URI),
			zap.String("request_uri", req.Recipient.String()))
		return sipx.Respond(tx, req, 400, "Digest URI Mismatch")
	}
	if c.Username != addr.User {
		a.fail(ctx, zapcore.WarnLevel, failIdentityMismatch, c.Username, at.aor)
		return sipx.Respond(tx, req, 403, reasonIdentityMismatch)
	}
	if ok, code, err := a.verify(ctx, at, c, alg, now); !ok {
		return code, err
	}
	if errors.Is(nerr, ErrNonceStale) {
		// RFC 7616 §3.3: stale=true only when the response was right with the old nonce.
		a.fail(ctx, zapcore.DebugLevel, failNonceStale, c.Username, at.aor)
		return a.challenge(ctx, tx, req, k, at.realm, true, a.algs)
	}
	if ok, code, err := a.useNonce(ctx, at, c, nonceEpoch); !ok {
		return code, err
	}

	if a.lockouts != nil {
		a.lockouts.succeeded(at.lk)
	}
	st.AuthUser, st.Rule = at.aor, sipx.RuleUser
	if k == proxyKind {
		a.removeCredentials(req, k.authz)
	}
	return sipx.Next(ctx, next, tx, req)
}

// attempt is one request's authentication under way: what the steps of authenticate share.
type attempt struct {
	tx    sip.ServerTransaction
	req   *sip.Request
	k     kind
	realm string
	aor   string
	lk    lockKey // the lockout's key; zero without lockouts
}

// readCredentials picks the request's credentials for the realm and checks their form, the
// algorithm and the qop. It returns nil credentials when it has answered the request (a
// challenge or 400), with that answer's result.
func (a *Auth) readCredentials(ctx context.Context, at *attempt) (*Credentials, Algorithm, int, error) {
	tx, req, k, realm, aor := at.tx, at.req, at.k, at.realm, at.aor
	c, perr := pickCredentials(req, k.authz, realm)
	if c == nil && perr == nil {
		code, err := a.challenge(ctx, tx, req, k, realm, false, a.algs)
		return nil, 0, code, err
	}
	if c != nil {
		perr = c.Validate()
	}
	if perr != nil {
		problem := "syntax error"
		var pe *ParseError
		if errors.As(perr, &pe) {
			problem = pe.Problem()
		}
		a.fail(ctx, zapcore.WarnLevel, failMalformed, "", aor)
		code, err := sipx.Respond(tx, req, 400, "Malformed "+k.authz+": "+problem)
		return nil, 0, code, err
	}

	alg, ok := ParseAlgorithm(c.Algorithm)
	if !ok || !a.offers(alg) {
		a.fail(ctx, zapcore.DebugLevel, failAlgorithm, c.Username, aor)
		code, err := a.challenge(ctx, tx, req, k, realm, false, a.algs)
		return nil, 0, code, err
	}
	switch c.QOP {
	case "auth", "auth-int":
	case "":
		if a.requireQOP {
			a.fail(ctx, zapcore.DebugLevel, failQOP, c.Username, aor)
			code, err := a.challenge(ctx, tx, req, k, realm, false, a.algs)
			return nil, 0, code, err
		}
	default:
		a.fail(ctx, zapcore.DebugLevel, failQOP, c.Username, aor)
		code, err := a.challenge(ctx, tx, req, k, realm, false, a.algs)
		return nil, 0, code, err
	}
	return c, alg, 0, nil
}

// verify checks the digest response against the user's credential. It returns false when it
// has answered the request (403, a challenge for the algorithms the user has, or an error).
func (a *Auth) verify(ctx context.Context, at *attempt, c *Credentials, alg Algorithm, now time.Time) (bool, int, error) {
	tx, req, aor := at.tx, at.req, at.aor
	cred, found, err := a.credential(ctx, aor, at.realm)
	if err != nil {
		code, err := sipx.RespondError(tx, req, err)
		return false, code, err
	}
	if !found {
		a.fail(ctx, zapcore.WarnLevel, failUnknownUser, c.Username, aor)
		a.failedAttempt(ctx, at.lk, aor, now)
		code, err := sipx.Respond(tx, req, 403, reasonInvalidCredentials)
		return false, code, err
	}
	ha1 := cred.HA1MD5
	if alg.SHA256() {
		ha1 = cred.HA1SHA256
	}
	if ha1 == "" {
		// The user has only the other HA1 (a users-file HA1 is MD5 only): offer what can
		// verify for them.
		var usable []Algorithm
		for _, alg := range a.algs {
			if (alg.SHA256() && cred.HA1SHA256 != "") || (!alg.SHA256() && cred.HA1MD5 != "") {
				usable = append(usable, alg)
			}
		}
		a.fail(ctx, zapcore.DebugLevel, failAlgorithm, c.Username, aor)
		if len(usable) == 0 {
			code, err := sipx.Respond(tx, req, 403, reasonInvalidCredentials)
			return false, code, err
		}
		code, err := a.challenge(ctx, tx, req, at.k, at.realm, false, usable)
		return false, code, err
	}
	if !c.Verify(ha1, string(req.Method), req.Body()) {
		a.fail(ctx, zapcore.WarnLevel, failInvalidResponse, c.Username, aor)
		a.failedAttempt(ctx, at.lk, aor, now)
		code, err := sipx.Respond(tx, req, 403, reasonInvalidCredentials)
		return false, code, err
	}
	return true, 0, nil
}

// useNonce records this use of the nonce (its nonce count, nc) in the store
// and refuses a replay or a nonce of an earlier store epoch. It returns false when it has
// answered the request.
func (a *Auth) useNonce(ctx context.Context, at *attempt, c *Credentials, nonceEpoch uint64) (bool, int, error) {
	tx, req, k, realm := at.tx, at.req, at.k, at.realm
	// Without qop the nonce is usable once: its use is recorded as count 0, which no later
	// use without qop is above (and a qop answer counts from 1).
	var nc uint32
	if c.QOP != "" {
		nc, _ = c.NonceCount() // checked by Validate
	}
	fresh, cur, err := a.store.UseNonceCount(ctx, nonceEpoch, c.Nonce, nc, a.nonces.Lifetime())
	if err != nil {
		code, err := sipx.RespondError(tx, req, fmt.Errorf("auth: nonce count: %w", err))
		return false, code, err
	}
	if cur != 0 {
		a.epoch.Store(cur) // new nonces carry the store's current epoch
	}
	var code int
	switch {
	case nonceEpoch != cur:
		// Issued before the store lost its records (or before this node knew the epoch).
		a.fail(ctx, zapcore.DebugLevel, failNonceEpoch, c.Username, at.aor)
		code, err = a.challenge(ctx, tx, req, k, realm, true, a.algs)
	case !fresh && c.QOP == "":
		// linphone re-sends its last Authorization on refreshes: a new nonce, no alarm.
		a.fail(ctx, zapcore.DebugLevel, failNonceReused, c.Username, at.aor)
		code, err = a.challenge(ctx, tx, req, k, realm, true, a.algs)
	case !fresh:
		a.fail(ctx, zapcore.WarnLevel, failReplay, c.Username, at.aor)
		code, err = sipx.Respond(tx, req, 403, reasonReplay)
	default:
		return true, 0, nil
	}
	return false, code, err
}

// failedAttempt counts a wrong response or unknown user towards a lockout of lk (aor from
// the request's source).
func (a *Auth) failedAttempt(ctx context.Context, lk lockKey, aor string, now time.Time) {
	if a.lockouts == nil || !a.lockouts.failed(lk, now) {
		return
	}
	a.lockedOut.Inc()
	a.reqLog(ctx).Warn("digest authentication locked out", zap.String(logging.KeyAOR, aor),
		zap.Duration(logging.KeyDuration, a.lockouts.duration))
}

// sourceIP returns the host of a host:port or [host]:port source address (without brackets),
// or source itself. No allocation (net.SplitHostPort allocates its errors).
func sourceIP(source string) string {
	if rest, ok := strings.CutPrefix(source, "["); ok {
		if host, _, ok := strings.Cut(rest, "]"); ok {
			return host
		}
		return source
	}
	if host, _, ok := strings.Cut(source, ":"); ok && !strings.Contains(source[len(host)+1:], ":") {
		return host
	}
	return source
}

// missingOrMalformed returns the 400 reason for a From or To that sipgo could not parse.
func missingOrMalformed(req *sip.Request, name string) string {
	if r := sipx.Malformed(req, name); r != "" {
		return r
	}
	return "Missing " + name
}

// pickCredentials returns the first Digest credentials in the name headers of req whose realm
// is realm. Headers with another scheme or another realm are skipped. When none matches, the
// error is the first parse error met (the request then gets 400), else nil (a challenge).
func pickCredentials(req *sip.Request, name, realm string) (*Credentials, error) {
	var firstErr error
	for _, h := range sipx.Headers(req, name) {
		c, err := ParseCredentials(h.Value())
		if err != nil {
			if !errors.Is(err, ErrNotDigest) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		if c.Realm == "" && firstErr == nil {
			firstErr = &ParseError{Param: "realm", Err: ErrMissingParam}
		}
		if c.Realm == realm {
			return c, nil
		}
	}
	return nil, firstErr
}

// removeCredentials deletes the name headers of req that hold Digest credentials for one of
// our realms (RFC 3261 §22.3). sipgo's RemoveHeader matches the exact header name as received
// and removes the first such header only, so every name header is removed and the ones kept
// are appended again, in their order.
func (a *Auth) removeCredentials(req *sip.Request, name string) {
	hdrs := sipx.Headers(req, name) // a fresh slice
	if len(hdrs) == 0 {
		return
	}
	var keep []sip.Header
	for _, h := range hdrs {
		if c, err := ParseCredentials(h.Value()); err == nil && a.domains[c.Realm] {
			continue
		}
		keep = append(keep, h)
	}
	if len(keep) == len(hdrs) {
		return
	}
	for _, h := range hdrs {
		req.RemoveHeader(h.Name())
	}
	for _, h := range keep {
		req.AppendHeader(h)
	}
}

// challenge answers req with k.code and one challenge header per algorithm in algs, all with
// the same new nonce.
func (a *Auth) challenge(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, k kind, realm string, stale bool, algs []Algorithm) (int, error) {
	epoch := a.epoch.Load()
	if epoch == 0 {
		// Learned once per process; later from UseNonceCount's replies. Should the store be
		// down, the nonce carries 0 and its answer gets one more (stale) challenge.
		if e, err := a.store.NonceEpoch(ctx); err == nil {
			a.epoch.CompareAndSwap(0, e)
			epoch = a.epoch.Load()
		}
	}
	nonce, err := a.nonces.Issue(realm, epoch, a.now())
	if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	hdrs := make([]sip.Header, 0, len(algs))
	for _, alg := range algs {
		ch := Challenge{Realm: realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		hdrs = append(hdrs, sip.NewHeader(k.challenge, ch.String()))
	}
	a.challenges.WithLabelValues(k.status).Inc()
	if l := a.reqLog(ctx); l.Core().Enabled(zap.DebugLevel) {
		fields := []zap.Field{zap.Int(logging.KeyStatus, k.code)}
		if stale {
			fields = append(fields, zap.String(logging.KeyReason, failNonceStale))
		}
		l.Debug("digest challenge", fields...)
	}
	return sipx.Respond(tx, req, k.code, "", hdrs...)
}

// fail counts a failure and logs it with the reason, the username and the AOR it claimed, never
// a secret. Failures that point at a wrong password or an attack are logged at Warn; the ones a
// well-behaved client meets in normal operation (its nonce expired or came from before a
// restart, it tried an algorithm we do not offer) at Debug.
func (a *Auth) fail(ctx context.Context, lvl zapcore.Level, reason, user, aor string, extra ...zap.Field) {
	a.failures.WithLabelValues(reason).Inc()
	if l := a.reqLog(ctx); l.Core().Enabled(lvl) {
		l.Log(lvl, "digest authentication failed", append([]zap.Field{zap.String(logging.KeyReason, reason),
			zap.String(logging.KeyUser, user), zap.String(logging.KeyAOR, aor)}, extra...)...)
	}
}

// reqLog returns the request logger named for this stage, or the stage logger.
func (a *Auth) reqLog(ctx context.Context) *zap.Logger {
	if l := sipx.StateFrom(ctx).Logger(); l != nil {
		return l.Named("auth")
	}
	return a.log
}

func (a *Auth) offers(alg Algorithm) bool {
	for _, x := range a.algs {
		if x == alg {
			return true
		}
	}
	return false
}

// credential looks aor up in the users file, then in the store.
func (a *Auth) credential(ctx context.Context, aor, realm string) (storage.Credential, bool, error) {
	return lookupCredential(ctx, a.users, a.store, aor, realm)
}
