package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/sipx/sipxtest"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// memStore is a tiny map-based Store for the stage tests (the real backends have their own
// conformance suite).
type memStore struct {
	mu       sync.Mutex
	creds    map[string]storage.Credential // aor|realm
	counts   map[string]uint32
	epoch    uint64
	err      error // returned by every method when set
	hasCalls int
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{creds: map[string]storage.Credential{}, counts: map[string]uint32{}, epoch: 1}
}

// flush loses the nonce records, as a Redis FLUSHALL (credentials kept): a new epoch.
func (s *memStore) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[string]uint32{}
	s.epoch++
}

func (s *memStore) Credential(_ context.Context, aor, realm string) (storage.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return storage.Credential{}, s.err
	}
	c, ok := s.creds[aor+"|"+realm]
	if !ok {
		return storage.Credential{}, storage.ErrNotFound
	}
	return c, nil
}

func (s *memStore) SetCredential(_ context.Context, aor, realm string, c storage.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[aor+"|"+realm] = c
	return nil
}

func (s *memStore) HasCredentials(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hasCalls++
	if s.err != nil {
		return false, s.err
	}
	return len(s.creds) > 0, nil
}

func (s *memStore) NonceEpoch(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	return s.epoch, nil
}

func (s *memStore) UseNonceCount(_ context.Context, epoch uint64, nonce string, nc uint32, _ time.Duration) (bool, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, 0, s.err
	}
	if epoch != s.epoch {
		return false, s.epoch, nil
	}
	if last, ok := s.counts[nonce]; ok && nc <= last {
		return false, s.epoch, nil
	}
	s.counts[nonce] = nc
	return true, s.epoch, nil
}

func (s *memStore) setPassword(user, domain, password string) {
	_ = s.SetCredential(context.Background(), user+"@"+domain, domain, storage.Credential{
		HA1MD5:    HA1(MD5, user, domain, password),
		HA1SHA256: HA1(SHA256, user, domain, password),
	})
}

// env is one auth stage under test with its fakes.
type env struct {
	t     *testing.T
	a     *Auth
	store *memStore
	now   time.Time
	reg   *prometheus.Registry
	logs  *observer.ObservedLogs
	log   *zap.Logger
}

// The test settings the constructor requires: a five-minute nonce, SHA-256 offered before MD5,
// lockouts after ten failures.
const (
	testNonceLifetime    = 5 * time.Minute
	testLockoutThreshold = 10
)

// testOptions fills in o the settings New requires and the tests do not vary.
func testOptions(o Options) Options {
	o.NonceLifetime = testNonceLifetime
	o.Algorithms = []Algorithm{SHA256, MD5}
	o.LockoutThreshold = testLockoutThreshold
	return o
}

func newEnv(t *testing.T, mod func(o *Options)) *env {
	t.Helper()
	e := &env{t: t, store: newMemStore(), now: time.Unix(1_700_000_000, 0), reg: prometheus.NewRegistry()}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs, e.log = logs, zap.New(core)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		e.store.setPassword(u, "example.test", "secret-"+u)
	}
	opts := Options{
		Domains:    []string{"Example.Test"},
		Store:      e.store,
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
		Mode:       ModeRequired,
		Seals:      sipx.NewSeals([]byte("0123456789abcdef0123456789abcdef")),
		Log:        e.log,
		Registerer: e.reg,
		Now:        func() time.Time { return e.now },
	}
	opts = testOptions(opts)
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	return e
}

// counter returns the value of the counter name{label="value"} in the env's registry (label
// "": the counter without labels).
func (e *env) counter(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	e.t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// result is what one request through the stage gave.
type result struct {
	status   int
	err      error
	tx       *sipxtest.Recorder
	next     bool
	authUser string
	req      *sip.Request
}

func (e *env) serve(req *sip.Request) result {
	e.t.Helper()
	sr := sipxtest.Serve(context.Background(), e.a.Plugin(), req, e.log)
	sr.CheckContract(e.t)
	return result{status: sr.Status, err: sr.Err, tx: sr.Tx, next: sr.Next, authUser: sr.State.AuthUser, req: req}
}

// msg builds a request: from and to are AORs, extra are header lines.
func msg(t testing.TB, method, from, to string, extra ...string) *sip.Request {
	t.Helper()
	ruri := "sip:" + to
	if method == "REGISTER" {
		_, d, _ := strings.Cut(to, "@")
		ruri = "sip:" + d
	}
	toHdr := "<sip:" + to + ">"
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	b.WriteString("Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK1e669cef9d8f5331;rport\r\n")
	fmt.Fprintf(&b, "From: <sip:%s>;tag=9b4385f96171112b\r\n", from)
	for _, h := range extra {
		if strings.HasPrefix(h, "To:") {
			toHdr = ""
		}
		b.WriteString(h + "\r\n")
	}
	if toHdr != "" {
		fmt.Fprintf(&b, "To: %s\r\n", toHdr)
	}
	b.WriteString("Call-ID: fb3293e8d356eb88\r\n")
	fmt.Fprintf(&b, "CSeq: 8111 %s\r\n", method)
	b.WriteString("Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		t.Fatalf("parse request: %v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

// challenges returns the challenge headers of a response, parsed with the credentials parser
// (same auth-param syntax).
func challenges(t *testing.T, res *sip.Response, name string) []*Credentials {
	t.Helper()
	var out []*Credentials
	for _, h := range res.GetHeaders(name) {
		c, err := ParseCredentials(h.Value())
		if err != nil {
			t.Fatalf("challenge %q: %v", h.Value(), err)
		}
		out = append(out, c)
	}
	return out
}

func other(c *Credentials, name string) string {
	for _, p := range c.Other {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// client is a digest client answering a challenge.
type client struct {
	user, password, realm, uri string
	alg                        Algorithm
	qop                        string // "" for RFC 2069
	nc                         uint32
}

// answer builds the credentials header value for nonce.
func (c client) answer(t testing.TB, method, nonce string) string {
	t.Helper()
	realm := c.realm
	if realm == "" {
		realm = "example.test"
	}
	cr := &Credentials{Username: c.user, Realm: realm, Nonce: nonce, URI: c.uri, Algorithm: c.alg.String()}
	if cr.URI == "" {
		cr.URI = "sip:example.test"
	}
	if c.qop != "" {
		cr.QOP, cr.NC, cr.CNonce = c.qop, fmt.Sprintf("%08x", c.nc), "0a4f113b"
	}
	resp, err := cr.Compute(HA1(c.alg, c.user, realm, c.password), method, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr.Response = resp
	return cr.String()
}

// nonceFor gets a challenge for a REGISTER of aor and returns its nonce.
func (e *env) nonceFor(aor string) string {
	e.t.Helper()
	r := e.serve(msg(e.t, "REGISTER", aor, aor))
	if r.status != 401 {
		e.t.Fatalf("no challenge: %d", r.status)
	}
	return challenges(e.t, r.tx.Last(), "WWW-Authenticate")[0].Nonce
}

var alice = client{user: "alice", password: "secret-alice", alg: SHA256, qop: "auth", nc: 1}

// auth.mode required never asks the store whether to authenticate: an empty store (flushed,
// evicted, never filled) challenges, and a user without credentials gets 403, never 200.
func TestRequiredWithEmptyStoreFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.store.creds = map[string]storage.Credential{}
	r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test"))
	if r.status != 401 || r.next {
		t.Fatalf("REGISTER with an empty store: status %d next %v, want 401", r.status, r.next)
	}
	nonce := challenges(t, r.tx.Last(), "WWW-Authenticate")[0].Nonce
	r = e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+alice.answer(t, "REGISTER", nonce)))
	if r.status != 403 || r.next || r.authUser != "" {
		t.Fatalf("answered REGISTER with an empty store: status %d next %v, want 403", r.status, r.next)
	}
	if r := e.serve(msg(t, "MESSAGE", "alice@example.test", "bob@example.test")); r.status != 407 {
		t.Fatalf("MESSAGE with an empty store: %d, want 407", r.status)
	}
}

// auth.mode off takes claims at their word, under RuleOpen.
func TestModeOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Mode = ModeOff })
	for _, req := range []*sip.Request{
		msg(t, "REGISTER", "alice@example.test", "alice@example.test"),
		msg(t, "MESSAGE", "alice@example.test", "bob@example.test"),
	} {
		st := sipx.NewState(req, zap.NewNop())
		next := false
		_, _ = e.a.Plugin()(sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
			next = true
			return 0, nil
		}}).ServeSIP(sipx.WithState(context.Background(), st), sipxtest.NewRecorder(), req)
		if !next || st.Rule != sipx.RuleOpen || st.AuthUser != "" {
			t.Fatalf("%s: next %v rule %v", req.Method, next, st.Rule)
		}
	}
	if _, err := New(Options{Domains: []string{"example.test"}, Store: newMemStore(), Seals: sipx.NewSeals(nil)}); err == nil {
		t.Fatal("New without a Mode: no error")
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		name   string
		method string
		hdr    string
		code   int
	}{
		{name: "REGISTER", method: "REGISTER", hdr: "WWW-Authenticate", code: 401},
		{name: "MESSAGE", method: "MESSAGE", hdr: "Proxy-Authenticate", code: 407},
		{name: "SUBSCRIBE", method: "SUBSCRIBE", hdr: "Proxy-Authenticate", code: 407},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			to := "bob@example.test"
			if tt.method == "REGISTER" {
				to = "alice@example.test"
			}
			r := e.serve(msg(t, tt.method, "alice@example.test", to))
			if r.status != tt.code || r.next {
				t.Fatalf("status %d, want %d", r.status, tt.code)
			}
			chs := challenges(t, r.tx.Last(), tt.hdr)
			if len(chs) != 2 {
				t.Fatalf("%d %s headers, want 2", len(chs), tt.hdr)
			}
			for i, want := range []string{"SHA-256", "MD5"} {
				ch := chs[i]
				if ch.Algorithm != want || ch.Realm != "example.test" || ch.QOP != "auth" || ch.Nonce == "" || other(ch, "stale") != "" {
					t.Fatalf("challenge %d = %+v", i, ch)
				}
				if epoch, err := e.a.nonces.Check(ch.Nonce, "example.test", e.now); err != nil || epoch != e.store.epoch {
					t.Fatalf("challenge nonce does not check: epoch %d, %v", epoch, err)
				}
			}
			if chs[0].Nonce != chs[1].Nonce {
				t.Fatal("the two challenges carry different nonces")
			}
			if got := e.counter("simpled_auth_challenges_total", "status", fmt.Sprint(tt.code)); got != 1 {
				t.Fatalf("challenges{%d} = %v", tt.code, got)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	bobMD5 := client{user: "bob", password: "secret-bob", alg: MD5, nc: 1} // RFC 2069, like baresip
	tests := []struct {
		name     string
		method   string
		from, to string
		client   client
		status   int    // 0: passed on
		reason   string // expected reason phrase when status != 0
		failure  string // failure counter expected at 1
		authUser string
	}{
		{name: "REGISTER SHA-256 qop", method: "REGISTER", from: "alice@example.test", to: "alice@example.test",
			client: alice, authUser: "alice@example.test"},
		{name: "REGISTER MD5 no qop", method: "REGISTER", from: "bob@example.test", to: "bob@example.test",
			client: bobMD5, authUser: "bob@example.test"},
		{name: "MESSAGE MD5 qop", method: "MESSAGE", from: "carol@example.test", to: "alice@example.test",
			client: client{user: "carol", password: "secret-carol", alg: MD5, qop: "auth", nc: 1}, authUser: "carol@example.test"},
		{name: "wrong password", method: "REGISTER", from: "alice@example.test", to: "alice@example.test",
			client: client{user: "alice", password: "wrong", alg: SHA256, qop: "auth", nc: 1},
			status: 403, reason: "Invalid Credentials", failure: failInvalidResponse},
		{name: "unknown user", method: "REGISTER", from: "zed@example.test", to: "zed@example.test",
			client: client{user: "zed", password: "x", alg: SHA256, qop: "auth", nc: 1},
			status: 403, reason: "Invalid Credentials", failure: failUnknownUser},
		{name: "REGISTER identity mismatch", method: "REGISTER", from: "bob@example.test", to: "alice@example.test",
			client: client{user: "bob", password: "secret-bob", alg: SHA256, qop: "auth", nc: 1},
			status: 403, reason: "Identity Mismatch", failure: failIdentityMismatch},
		{name: "MESSAGE identity mismatch", method: "MESSAGE", from: "alice@example.test", to: "bob@example.test",
			client: client{user: "bob", password: "secret-bob", alg: SHA256, qop: "auth", nc: 1},
			status: 403, reason: "Identity Mismatch", failure: failIdentityMismatch},
		{name: "user part is case-sensitive", method: "REGISTER", from: "Alice@example.test", to: "Alice@example.test",
			client: alice, status: 403, reason: "Identity Mismatch", failure: failIdentityMismatch},
		{name: "domain is not", method: "REGISTER", from: "alice@EXAMPLE.test", to: "alice@EXAMPLE.test",
			client: alice, authUser: "alice@example.test"},
		{name: "auth-int", method: "MESSAGE", from: "alice@example.test", to: "bob@example.test",
			client: client{user: "alice", password: "secret-alice", alg: SHA256, qop: "auth-int", nc: 1}, authUser: "alice@example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			hdr := "Authorization"
			if tt.method != "REGISTER" {
				hdr = "Proxy-Authorization"
			}
			nonce := e.nonceFor("alice@example.test")
			c := tt.client
			if c.uri == "" && tt.method != "REGISTER" {
				c.uri = "sip:" + tt.to // the Request-URI
			}
			r := e.serve(msg(t, tt.method, tt.from, tt.to, hdr+": "+c.answer(t, tt.method, nonce)))
			if r.status != tt.status || r.next != (tt.status == 0) {
				t.Fatalf("status %d next %v, want %d (%v)", r.status, r.next, tt.status, r.tx.Responses())
			}
			if tt.status != 0 && r.tx.Last().Reason != tt.reason {
				t.Fatalf("reason %q, want %q", r.tx.Last().Reason, tt.reason)
			}
			if r.authUser != tt.authUser {
				t.Fatalf("AuthUser = %q, want %q", r.authUser, tt.authUser)
			}
			if tt.failure != "" {
				if got := e.counter("simpled_auth_failures_total", "reason", tt.failure); got != 1 {
					t.Fatalf("failures{%s} = %v", tt.failure, got)
				}
				warns := e.logs.FilterMessage("digest authentication failed").All()
				if len(warns) != 1 || warns[0].Level != zapcore.WarnLevel || warns[0].ContextMap()["user"] != tt.client.user {
					t.Fatalf("failure log: %+v", warns)
				}
			}
			if tt.method == "REGISTER" && tt.status == 0 && len(r.req.GetHeaders("Authorization")) != 1 {
				t.Fatal("Authorization removed from a REGISTER")
			}
			assertNoSecretsLogged(t, e, nonce, r.req)
		})
	}
}

// assertNoSecretsLogged checks that no log entry holds the nonce, a digest response or a
// password.
func assertNoSecretsLogged(t *testing.T, e *env, nonce string, req *sip.Request) {
	t.Helper()
	secrets := []string{nonce, "secret-", "0123456789abcdef"}
	for _, h := range append(req.GetHeaders("Authorization"), req.GetHeaders("Proxy-Authorization")...) {
		if c, err := ParseCredentials(h.Value()); err == nil && c.Response != "" {
			secrets = append(secrets, c.Response)
		}
	}
	for _, entry := range e.logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Fatalf("log %q holds a secret", text)
			}
		}
	}
}

func TestReplay(t *testing.T) {
	e := newEnv(t, nil)
	nonce := e.nonceFor("alice@example.test")
	register := func(nc uint32) result {
		c := alice
		c.nc = nc
		return e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+c.answer(t, "REGISTER", nonce)))
	}
	steps := []struct {
		name   string
		nc     uint32
		status int
		reason string
	}{
		{name: "first", nc: 1},
		{name: "same nc", nc: 1, status: 403, reason: "Nonce Count Replayed"},
		{name: "next nc", nc: 2},
		{name: "skip ahead", nc: 7},
		{name: "back", nc: 5, status: 403, reason: "Nonce Count Replayed"},
	}
	for _, s := range steps {
		r := register(s.nc)
		if r.status != s.status || (s.status != 0 && r.tx.Last().Reason != s.reason) {
			t.Fatalf("%s: status %d, want %d %s", s.name, r.status, s.status, s.reason)
		}
	}
	if got := e.counter("simpled_auth_failures_total", "reason", failReplay); got != 2 {
		t.Fatalf("replay failures = %v", got)
	}
}

func TestNoQOPNonceReuse(t *testing.T) {
	// An answer without qop has no nonce count, so it could be replayed from anywhere while
	// its nonce is fresh (issue 14). It is accepted once; the second use gets a stale=true
	// challenge with a fresh nonce. linphone re-sends its last Authorization on refreshes
	// (register-udp-auth-msilo.txt #13): it gets that one more challenge and answers it.
	e := newEnv(t, nil)
	nonce := e.nonceFor("bob@example.test")
	bob := client{user: "bob", password: "secret-bob", alg: MD5}
	authz := "Authorization: " + bob.answer(t, "REGISTER", nonce)
	if r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", authz)); !r.next {
		t.Fatalf("first use: %d", r.status)
	}
	e.now = e.now.Add(time.Minute)
	r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", authz))
	if r.next || r.status != 401 {
		t.Fatalf("replay: status %d next %v, want 401", r.status, r.next)
	}
	chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
	if len(chs) == 0 || other(chs[0], "stale") != "true" || chs[0].Nonce == nonce {
		t.Fatalf("replay challenge %+v: want stale=true and a new nonce", chs)
	}
	if got := e.counter("simpled_auth_failures_total", "reason", failNonceReused); got != 1 {
		t.Fatalf("nonce_reused failures = %v", got)
	}
	// The client answers the fresh challenge and gets in.
	if r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", "Authorization: "+bob.answer(t, "REGISTER", chs[0].Nonce))); !r.next {
		t.Fatalf("answer to the fresh challenge: %d", r.status)
	}
	// A qop answer on a nonce already used without qop counts from 1: still accepted once.
	n2 := e.nonceFor("bob@example.test")
	withQOP := client{user: "bob", password: "secret-bob", alg: MD5, qop: "auth", nc: 1}
	for i, want := range []int{0, 403} {
		r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", "Authorization: "+withQOP.answer(t, "REGISTER", n2)))
		if r.status != want {
			t.Fatalf("qop use %d: status %d, want %d", i, r.status, want)
		}
	}
}

func TestRequireQOP(t *testing.T) {
	for _, require := range []bool{false, true} {
		t.Run(fmt.Sprint(require), func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.RequireQOP = require })
			nonce := e.nonceFor("bob@example.test")
			bob := client{user: "bob", password: "secret-bob", alg: MD5}
			r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", "Authorization: "+bob.answer(t, "REGISTER", nonce)))
			if !require {
				if !r.next {
					t.Fatalf("no qop, not required: status %d", r.status)
				}
				return
			}
			if r.next || r.status != 401 {
				t.Fatalf("no qop, required: status %d next %v, want 401", r.status, r.next)
			}
			chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
			if len(chs) == 0 || chs[0].QOP != "auth" || other(chs[0], "stale") != "" {
				t.Fatalf("challenge %+v", chs)
			}
			if got := e.counter("simpled_auth_failures_total", "reason", failQOP); got != 1 {
				t.Fatalf("qop failures = %v", got)
			}
			// With qop the same user gets in.
			bob.qop, bob.nc = "auth", 1
			if r := e.serve(msg(t, "REGISTER", "bob@example.test", "bob@example.test", "Authorization: "+bob.answer(t, "REGISTER", chs[0].Nonce))); !r.next {
				t.Fatalf("with qop: %d", r.status)
			}
		})
	}
}

func TestDigestURIMismatch(t *testing.T) {
	tests := []struct {
		name   string
		method string
		to     string // AOR; the Request-URI is sip:<to> (REGISTER: sip:<domain>)
		uri    string // digest uri
		ok     bool
	}{
		{name: "same", method: "MESSAGE", to: "bob@example.test", uri: "sip:bob@example.test", ok: true},
		{name: "host case", method: "MESSAGE", to: "bob@example.test", uri: "SIP:bob@Example.TEST", ok: true},
		{name: "other user", method: "MESSAGE", to: "bob@example.test", uri: "sip:carol@example.test"},
		{name: "user case", method: "MESSAGE", to: "bob@example.test", uri: "sip:Bob@example.test"},
		{name: "other host", method: "MESSAGE", to: "bob@example.test", uri: "sip:bob@evil.test"},
		{name: "port added", method: "MESSAGE", to: "bob@example.test", uri: "sip:bob@example.test:5060"},
		{name: "transport added", method: "MESSAGE", to: "bob@example.test", uri: "sip:bob@example.test;transport=tcp"},
		{name: "sips", method: "MESSAGE", to: "bob@example.test", uri: "sips:bob@example.test"},
		{name: "garbage", method: "MESSAGE", to: "bob@example.test", uri: "not a uri"},
		{name: "REGISTER domain", method: "REGISTER", to: "alice@example.test", uri: "sip:example.test", ok: true},
		{name: "REGISTER other domain", method: "REGISTER", to: "alice@example.test", uri: "sip:other.test"},
		{name: "REGISTER with user", method: "REGISTER", to: "alice@example.test", uri: "sip:alice@example.test"},
		// sipp, and phones configured with the server's address, name the registrar by it.
		{name: "REGISTER our address", method: "REGISTER", to: "alice@example.test", uri: "sip:192.0.2.1:5060", ok: true},
		{name: "REGISTER another address", method: "REGISTER", to: "alice@example.test", uri: "sip:192.0.2.9:5060"},
		{name: "MESSAGE our address", method: "MESSAGE", to: "bob@example.test", uri: "sip:192.0.2.1:5060"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.IsOurs = func(h string) bool { return h == "192.0.2.1" } })
			hdr := "Authorization"
			if tt.method != "REGISTER" {
				hdr = "Proxy-Authorization"
			}
			nonce := e.nonceFor("alice@example.test")
			c := alice
			c.uri = tt.uri
			r := e.serve(msg(t, tt.method, "alice@example.test", tt.to, hdr+": "+c.answer(t, tt.method, nonce)))
			if tt.ok {
				if !r.next {
					t.Fatalf("status %d, want passed on", r.status)
				}
				return
			}
			if r.status != 400 || r.tx.Last().Reason != "Digest URI Mismatch" {
				t.Fatalf("status %d %q, want 400 Digest URI Mismatch", r.status, r.tx.Last().Reason)
			}
			if got := e.counter("simpled_auth_failures_total", "reason", failURIMismatch); got != 1 {
				t.Fatalf("uri_mismatch failures = %v", got)
			}
		})
	}
}

func TestStoreLostNonces(t *testing.T) {
	// A store that lost its nonce records (FLUSHALL) must not accept a recorded nonce again.
	e := newEnv(t, nil)
	nonce := e.nonceFor("alice@example.test")
	authz := "Authorization: " + alice.answer(t, "REGISTER", nonce)
	if r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", authz)); !r.next {
		t.Fatalf("first use: %d", r.status)
	}
	e.store.flush()
	r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", authz))
	if r.next || r.status != 401 {
		t.Fatalf("replay after the flush: status %d next %v, want 401", r.status, r.next)
	}
	chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
	if len(chs) == 0 || other(chs[0], "stale") != "true" {
		t.Fatalf("challenge %+v: want stale=true", chs)
	}
	if got := e.counter("simpled_auth_failures_total", "reason", failNonceEpoch); got != 1 {
		t.Fatalf("nonce_epoch failures = %v", got)
	}
	// The new nonce carries the new epoch (learned from the reply, no extra call) and works.
	if r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+alice.answer(t, "REGISTER", chs[0].Nonce))); !r.next {
		t.Fatalf("fresh nonce after the flush: %d", r.status)
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Lockout = 5 * time.Minute })
	register := func(source, password string) result {
		t.Helper()
		nonce := e.nonceFor("alice@example.test")
		c := alice
		c.password = password
		req := msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+c.answer(t, "REGISTER", nonce))
		r := result{tx: sipxtest.NewRecorder(), req: req}
		st := sipx.NewState(req, e.log)
		st.Source = source
		ctx := sipx.WithState(context.Background(), st)
		next := sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
			r.next = true
			return 0, nil
		}}
		r.status, r.err = e.a.Plugin()(next).ServeSIP(ctx, r.tx, req)
		return r
	}
	const attacker, other = "192.0.2.1:5060", "192.0.2.2:5060"
	// 999 guesses in a few seconds, the first ten wrong ones get 403 Invalid Credentials.
	for i := range 999 {
		r := register(attacker, fmt.Sprintf("guess-%d", i))
		want := "Invalid Credentials"
		if i >= testLockoutThreshold {
			want = "Locked Out"
		}
		if r.status != 403 || r.tx.Last().Reason != want {
			t.Fatalf("guess %d: %d %q, want 403 %s", i, r.status, r.tx.Last().Reason, want)
		}
		if i%100 == 0 {
			e.now = e.now.Add(time.Second / 2)
		}
	}
	// The right password from the attacker's address (another port): still locked out.
	if r := register("192.0.2.1:40000", "secret-alice"); r.status != 403 || r.tx.Last().Reason != "Locked Out" || r.next {
		t.Fatalf("right password while locked out: %d next %v", r.status, r.next)
	}
	if got := e.counter("simpled_auth_lockouts_total", "", ""); got != 1 {
		t.Fatalf("lockouts = %v", got)
	}
	if got := e.counter("simpled_auth_failures_total", "reason", failLocked); got != 999-testLockoutThreshold+1 {
		t.Fatalf("locked failures = %v", got)
	}
	// Another source is not locked out, nor is another AOR from the attacker.
	if r := register(other, "secret-alice"); !r.next {
		t.Fatalf("other source: %d", r.status)
	}
	bobNonce := e.nonceFor("bob@example.test")
	bobReq := msg(t, "REGISTER", "bob@example.test", "bob@example.test",
		"Authorization: "+client{user: "bob", password: "secret-bob", alg: MD5}.answer(t, "REGISTER", bobNonce))
	st := sipx.NewState(bobReq, e.log)
	st.Source = attacker
	passed := false
	next := sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
		passed = true
		return 0, nil
	}}
	if status, _ := e.a.Plugin()(next).ServeSIP(sipx.WithState(context.Background(), st), sipxtest.NewRecorder(), bobReq); !passed {
		t.Fatalf("another AOR from the locked-out source: %d", status)
	}
	// After the lockout the right password works again.
	e.now = e.now.Add(5*time.Minute + time.Second)
	if r := register(attacker, "secret-alice"); !r.next {
		t.Fatalf("after the lockout: %d %q", r.status, r.tx.Last().Reason)
	}
	// Spread-out failures (fewer than ten a minute) never lock out.
	for i := range 30 {
		if r := register(attacker, "wrong"); r.tx.Last().Reason != "Invalid Credentials" {
			t.Fatalf("slow guess %d: %d %q", i, r.status, r.tx.Last().Reason)
		}
		e.now = e.now.Add(10 * time.Second)
	}
}

func TestLockoutTableBounded(t *testing.T) {
	l := newLockouts(3, time.Minute)
	l.max = 100
	now := time.Unix(1_700_000_000, 0)
	locked := l.key("alice@example.test", "192.0.2.1")
	for range 3 {
		l.failed(locked, now)
	}
	for i := range 10_000 {
		// Long random AORs: the table's size must not depend on them.
		l.failed(l.key(fmt.Sprintf("u%d-%s@example.test", i, strings.Repeat("x", 1000)), "192.0.2.9"), now)
		if i%10 == 0 && !l.locked(locked, now) { // the attacker keeps trying: stays recent
			t.Fatalf("lockout evicted after %d other entries", i)
		}
	}
	if n := l.len(); n > 100 {
		t.Fatalf("table holds %d entries, cap 100", n)
	}
}

func TestStaleNonce(t *testing.T) {
	tests := []struct {
		name     string
		password string
		status   int
		stale    bool
	}{
		{name: "right password", password: "secret-alice", status: 401, stale: true},
		{name: "wrong password", password: "nope", status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			nonce := e.nonceFor("alice@example.test")
			e.now = e.now.Add(testNonceLifetime + time.Second)
			c := alice
			c.password = tt.password
			r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+c.answer(t, "REGISTER", nonce)))
			if r.status != tt.status {
				t.Fatalf("status %d, want %d", r.status, tt.status)
			}
			if !tt.stale {
				return
			}
			chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
			if len(chs) != 2 || other(chs[0], "stale") != "true" || other(chs[1], "stale") != "true" {
				t.Fatalf("challenges %+v", chs)
			}
			if _, err := e.a.nonces.Check(chs[0].Nonce, "example.test", e.now); chs[0].Nonce == nonce || err != nil {
				t.Fatal("stale challenge without a fresh nonce")
			}
			// The client retries with the new nonce and gets in.
			r = e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+alice.answer(t, "REGISTER", chs[0].Nonce)))
			if !r.next {
				t.Fatalf("retry: %d", r.status)
			}
		})
	}
}

func TestFreshChallenge(t *testing.T) {
	// Requests whose credentials cannot be checked get a new challenge (no stale flag).
	e := newEnv(t, nil)
	good := e.nonceFor("alice@example.test")
	otherSecret, _ := NewNonces([]byte("some other secret of 32 bytes..."), time.Minute)
	forged, _ := otherSecret.Issue("example.test", 1, e.now)
	otherRealm, _ := e.a.nonces.Issue("other.test", 1, e.now)
	tests := []struct {
		name    string
		authz   []string
		failure string
	}{
		{name: "forged nonce", authz: []string{alice.answer(t, "REGISTER", forged)}, failure: failNonceInvalid},
		{name: "nonce of another realm", authz: []string{alice.answer(t, "REGISTER", otherRealm)}, failure: failNonceInvalid},
		{name: "kamailio nonce", authz: []string{`Digest username="alice", realm="example.test", nonce="awLkQWsC4xUB4nvS3KXDWWYUvitWgHKo", uri="sip:example.test;transport=udp", response="6efc52b1eb5e3de319e5760f19f43c4c"`}, failure: failNonceInvalid},
		{name: "another realm only", authz: []string{client{user: "alice", password: "secret-alice", realm: "other.test", alg: MD5}.answer(t, "REGISTER", good)}},
		{name: "unknown algorithm", authz: []string{strings.Replace(alice.answer(t, "REGISTER", good), "algorithm=SHA-256", "algorithm=SHA-512-256", 1)}, failure: failAlgorithm},
		{name: "algorithm not offered", authz: []string{client{user: "alice", password: "secret-alice", alg: MD5Sess, qop: "auth", nc: 1}.answer(t, "REGISTER", good)}, failure: failAlgorithm},
		{name: "unknown qop", authz: []string{strings.Replace(alice.answer(t, "REGISTER", good), "qop=auth", "qop=auth-conf", 1)}, failure: failQOP},
		{name: "Basic only", authz: []string{"Basic YWxpY2U6c2VjcmV0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdrs []string
			for _, a := range tt.authz {
				hdrs = append(hdrs, "Authorization: "+a)
			}
			before := 0.0
			if tt.failure != "" {
				before = e.counter("simpled_auth_failures_total", "reason", tt.failure)
			}
			r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", hdrs...))
			if r.status != 401 {
				t.Fatalf("status %d, want 401", r.status)
			}
			chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
			if len(chs) != 2 || chs[0].Algorithm != "SHA-256" || chs[1].Algorithm != "MD5" || other(chs[0], "stale") != "" {
				t.Fatalf("challenges %+v", chs)
			}
			if tt.failure != "" {
				if got := e.counter("simpled_auth_failures_total", "reason", tt.failure); got != before+1 {
					t.Fatalf("failures{%s} = %v", tt.failure, got)
				}
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t, nil)
	nonce := e.nonceFor("alice@example.test")
	tests := []struct {
		name   string
		method string
		authz  string
		reason string
	}{
		{name: "missing nonce", method: "REGISTER", authz: `Digest username="alice", realm="example.test", uri="sip:example.test", response="00"`,
			reason: "Malformed Authorization: missing nonce"},
		{name: "missing response", method: "REGISTER", authz: `Digest username="alice", realm="example.test", nonce="` + nonce + `", uri="sip:example.test"`,
			reason: "Malformed Authorization: missing response"},
		{name: "missing realm", method: "REGISTER", authz: `Digest username="alice", nonce="` + nonce + `", uri="sip:example.test", response="00"`,
			reason: "Malformed Authorization: missing realm"},
		{name: "qop without nc", method: "REGISTER", authz: `Digest username="alice", realm="example.test", nonce="` + nonce + `", uri="sip:example.test", response="00", qop=auth, cnonce="x"`,
			reason: "Malformed Authorization: missing nc"},
		{name: "qop without cnonce", method: "MESSAGE", authz: `Digest username="alice", realm="example.test", nonce="` + nonce + `", uri="sip:bob@example.test", response="00", qop=auth, nc=00000001`,
			reason: "Malformed Proxy-Authorization: missing cnonce"},
		{name: "duplicate", method: "REGISTER", authz: `Digest username="alice", username="bob"`,
			reason: "Malformed Authorization: duplicate username"},
		{name: "garbage", method: "REGISTER", authz: `Digest ,,="`,
			reason: "Malformed Authorization: syntax error"},
		{name: "unterminated", method: "REGISTER", authz: `Digest username="alice`,
			reason: "Malformed Authorization: username syntax error"},
	}
	cases := make([]sipxtest.Case, 0, len(tests))
	for _, tt := range tests {
		cases = append(cases, sipxtest.Case{Name: tt.name, Status: 400, Reason: tt.reason,
			Request: func(t testing.TB) *sip.Request {
				hdr, to := "Authorization", "alice@example.test"
				if tt.method != "REGISTER" {
					hdr, to = "Proxy-Authorization", "bob@example.test"
				}
				return msg(t, tt.method, "alice@example.test", to, hdr+": "+tt.authz)
			}})
	}
	sipxtest.Run(t, e.a.Plugin(), cases)
}

func TestPassThrough(t *testing.T) {
	tests := []struct {
		name string
		req  func(t *testing.T) *sip.Request
		rule sipx.Rule
	}{
		{name: "foreign From to a local user", rule: sipx.RuleFederation, req: func(t *testing.T) *sip.Request {
			return msg(t, "MESSAGE", "mallory@foreign.test", "alice@example.test")
		}},
		{name: "foreign From to a foreign user", rule: sipx.RuleNone, req: func(t *testing.T) *sip.Request {
			return msg(t, "MESSAGE", "mallory@foreign.test", "carol@far.test")
		}},
		{name: "REGISTER for a foreign domain", rule: sipx.RuleNone, req: func(t *testing.T) *sip.Request {
			return msg(t, "REGISTER", "alice@foreign.test", "alice@foreign.test")
		}},
		{name: "CANCEL", rule: sipx.RuleNone, req: func(t *testing.T) *sip.Request {
			return msg(t, "CANCEL", "alice@example.test", "bob@example.test")
		}},
		{name: "in-dialog without a token", rule: sipx.RuleNone, req: func(t *testing.T) *sip.Request {
			return msg(t, "SUBSCRIBE", "alice@example.test", "bob@example.test", "To: <sip:bob@example.test>;tag=abc")
		}},
		{name: "in-dialog with a forged token", rule: sipx.RuleNone, req: func(t *testing.T) *sip.Request {
			return msg(t, "MESSAGE", "alice@example.test", "bob@example.test", "To: <sip:bob@example.test>;tag=abc",
				"Route: <sip:127.0.0.1;lr;sd=0123456789abcdef.0123456789abcdef.0123456789abcdef>")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			req := tt.req(t)
			st := sipx.NewState(req, zap.NewNop())
			next := false
			_, _ = e.a.Plugin()(sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
				next = true
				return 0, nil
			}}).ServeSIP(sipx.WithState(context.Background(), st), sipxtest.NewRecorder(), req)
			if !next || st.AuthUser != "" || st.Rule != tt.rule {
				t.Fatalf("next %v, rule %v (want %v)", next, st.Rule, tt.rule)
			}
		})
	}
}

// A From that looks like a local identity is one: a trailing dot, another case, or one of our
// addresses claims a user of the first domain and is challenged in its realm.
func TestLookAlikeLocalIdentityChallenged(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.IsOurs = func(h string) bool { return h == "127.0.0.1" } })
	for _, from := range []string{"alice@example.test.", "alice@EXAMPLE.test", "alice@127.0.0.1"} {
		r := e.serve(msg(t, "MESSAGE", from, "bob@example.test"))
		if r.status != 407 || r.next {
			t.Fatalf("From %s: status %d next %v, want 407", from, r.status, r.next)
		}
		if ch := challenges(t, r.tx.Last(), "Proxy-Authenticate")[0]; ch.Realm != "example.test" {
			t.Fatalf("From %s: realm %q", from, ch.Realm)
		}
	}
	// A REGISTER to a look-alike of the domain is challenged too.
	if r := e.serve(msg(t, "REGISTER", "alice@example.test.", "alice@example.test.")); r.status != 401 {
		t.Fatalf("REGISTER for example.test.: %d, want 401", r.status)
	}
}

// A token of one of our Record-Routes proves an in-dialog request (RuleDialog) in either
// direction; it does not prove another dialog (Call-ID, tags or AORs changed).
func TestDialogToken(t *testing.T) {
	e := newEnv(t, nil)
	seals := sipx.NewSeals([]byte("0123456789abcdef0123456789abcdef"))
	d := sipx.Dialog{CallID: "call-1", CallerTag: "caller-tag", CallerAOR: "mallory@foreign.test", CalleeAOR: "bob@example.test"}
	tok := seals.Issue(d, "a/127.0.0.1:5070", "u/192.0.2.1:5060", "127.0.0.1:5070")
	route := "Route: <sip:127.0.0.1;lr;sd=" + tok + ">"
	build := func(method, from, fromTag, to, toTag, callID string) *sip.Request {
		req := msg(t, method, from, to, "To: <sip:"+to+">;tag="+toTag, route)
		req.From().Params.Add("tag", fromTag)
		*req.CallID() = sip.CallIDHeader(callID)
		return req
	}
	tests := []struct {
		name string
		req  *sip.Request
		rule sipx.Rule
		dir  sipx.Direction
	}{
		{"caller to callee", build("BYE", "mallory@foreign.test", "caller-tag", "bob@example.test", "callee-tag", "call-1"), sipx.RuleDialog, sipx.Forward},
		{"callee to caller", build("BYE", "bob@example.test", "callee-tag", "mallory@foreign.test", "caller-tag", "call-1"), sipx.RuleDialog, sipx.Backward},
		{"another Call-ID", build("BYE", "mallory@foreign.test", "caller-tag", "bob@example.test", "callee-tag", "call-2"), sipx.RuleNone, 0},
		{"another caller tag", build("BYE", "mallory@foreign.test", "x", "bob@example.test", "callee-tag", "call-1"), sipx.RuleNone, 0},
		{"claims to be alice", build("MESSAGE", "alice@example.test", "caller-tag", "bob@example.test", "callee-tag", "call-1"), sipx.RuleNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := sipx.NewState(tt.req, zap.NewNop())
			next := false
			_, _ = e.a.Plugin()(sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
				next = true
				return 0, nil
			}}).ServeSIP(sipx.WithState(context.Background(), st), sipxtest.NewRecorder(), tt.req)
			if !next || st.Rule != tt.rule || st.Dialog.Direction != tt.dir {
				t.Fatalf("next %v rule %v direction %v; want %v %v", next, st.Rule, st.Dialog.Direction, tt.rule, tt.dir)
			}
		})
	}
}

func TestProxyCredentialsConsumed(t *testing.T) {
	e := newEnv(t, nil)
	r := e.serve(msg(t, "MESSAGE", "alice@example.test", "bob@example.test"))
	if r.status != 407 {
		t.Fatalf("status %d", r.status)
	}
	nonce := challenges(t, r.tx.Last(), "Proxy-Authenticate")[0].Nonce
	downstream := `Digest username="alice", realm="far.test", nonce="x", uri="sip:bob@example.test", response="00"`
	mine := client{user: "alice", password: "secret-alice", alg: SHA256, qop: "auth", nc: 1, uri: "sip:bob@example.test"}.answer(t, "MESSAGE", nonce)
	req := msg(t, "MESSAGE", "alice@example.test", "bob@example.test",
		"Proxy-Authorization: "+downstream,
		"proxy-authorization: "+mine, // sipgo keeps the name as received; removal must still work
		"Subject: hi")
	r = e.serve(req)
	if !r.next || r.authUser != "alice@example.test" {
		t.Fatalf("status %d, AuthUser %q", r.status, r.authUser)
	}
	left := req.GetHeaders("Proxy-Authorization")
	if len(left) != 1 || left[0].Value() != downstream {
		t.Fatalf("Proxy-Authorization left: %v", left)
	}
	if req.GetHeader("Subject") == nil || req.From() == nil || req.To() == nil || req.CallID() == nil {
		t.Fatal("other headers lost")
	}

	// In-dialog requests proven by our dialog token are not challenged, but our credentials
	// are not forwarded either.
	tok := sipx.NewSeals([]byte("0123456789abcdef0123456789abcdef")).Issue(sipx.Dialog{CallID: "fb3293e8d356eb88",
		CallerTag: "9b4385f96171112b", CallerAOR: "alice@example.test", CalleeAOR: "bob@example.test"}, "", "", "")
	req = msg(t, "SUBSCRIBE", "alice@example.test", "bob@example.test", "To: <sip:bob@example.test>;tag=abc",
		"Route: <sip:127.0.0.1;lr;sd="+tok+">", "Proxy-Authorization: "+mine, "Proxy-Authorization: "+downstream)
	r = e.serve(req)
	if !r.next || r.authUser != "" {
		t.Fatalf("in-dialog: status %d, AuthUser %q", r.status, r.authUser)
	}
	if left := req.GetHeaders("Proxy-Authorization"); len(left) != 1 || left[0].Value() != downstream {
		t.Fatalf("in-dialog Proxy-Authorization left: %v", left)
	}
}

func TestStoreErrors(t *testing.T) {
	for _, method := range []string{"Credential", "UseNonceCount"} {
		t.Run(method, func(t *testing.T) {
			e := newEnv(t, nil)
			nonce := e.nonceFor("alice@example.test")
			if method == "UseNonceCount" {
				// Keep Credential working: put alice in a users file.
				u, err := ParseUsers(strings.NewReader("alice@example.test:secret-alice\n"), "")
				if err != nil {
					t.Fatal(err)
				}
				e.a.users = u
			}
			e.store.err = fmt.Errorf("boom: %w", storage.ErrUnavailable)
			r := e.serve(msg(t, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+alice.answer(t, "REGISTER", nonce)))
			if r.status != 503 || !errors.Is(r.err, storage.ErrUnavailable) {
				t.Fatalf("status %d err %v", r.status, r.err)
			}
		})
	}
}

func TestUsersFile(t *testing.T) {
	users, err := ParseUsers(strings.NewReader(
		"erin@example.test:secret-erin\n"+
			"frank@example.test:example.test:"+HA1(MD5, "frank", "example.test", "secret-frank")+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Users = users })
	e.store.creds = map[string]storage.Credential{} // the store is empty: the file alone holds them
	nonce := e.nonceFor("erin@example.test")
	erin := client{user: "erin", password: "secret-erin", alg: SHA256, qop: "auth", nc: 1}
	if r := e.serve(msg(t, "REGISTER", "erin@example.test", "erin@example.test", "Authorization: "+erin.answer(t, "REGISTER", nonce))); !r.next {
		t.Fatalf("erin: %d", r.status)
	}
	// frank has an MD5 HA1 only: a SHA-256 answer gets a challenge offering MD5 alone.
	frank := client{user: "frank", password: "secret-frank", alg: SHA256, qop: "auth", nc: 1}
	r := e.serve(msg(t, "REGISTER", "frank@example.test", "frank@example.test", "Authorization: "+frank.answer(t, "REGISTER", nonce)))
	chs := challenges(t, r.tx.Last(), "WWW-Authenticate")
	if r.status != 401 || len(chs) != 1 || chs[0].Algorithm != "MD5" {
		t.Fatalf("frank SHA-256: %d %+v", r.status, chs)
	}
	frank.alg = MD5
	if r := e.serve(msg(t, "REGISTER", "frank@example.test", "frank@example.test", "Authorization: "+frank.answer(t, "REGISTER", chs[0].Nonce))); !r.next {
		t.Fatalf("frank MD5: %d", r.status)
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name string
		mod  func(o *Options)
	}{
		{name: "no store", mod: func(o *Options) { o.Store = nil }},
		{name: "no seals", mod: func(o *Options) { o.Seals = nil }},
		{name: "unknown mode", mod: func(o *Options) { o.Mode = "sometimes" }},
		{name: "unknown algorithm", mod: func(o *Options) { o.Algorithms = []Algorithm{SHA256, 99} }},
		{name: "duplicate algorithm", mod: func(o *Options) { o.Algorithms = []Algorithm{MD5, MD5} }},
		{name: "short secret", mod: func(o *Options) { o.Secret = []byte("short") }},
		{name: "negative lifetime", mod: func(o *Options) { o.NonceLifetime = -time.Second }},
		{name: "no lifetime", mod: func(o *Options) { o.NonceLifetime = 0 }},
		{name: "no algorithm", mod: func(o *Options) { o.Algorithms = nil }},
		{name: "no lockout threshold", mod: func(o *Options) { o.LockoutThreshold = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(Options{Domains: []string{"example.test"}, Store: newMemStore(), Mode: ModeRequired, Seals: sipx.NewSeals(nil)})
			tt.mod(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New accepted bad options")
			}
		})
	}
	// The metrics are registered once per registry.
	reg := prometheus.NewRegistry()
	if _, err := New(testOptions(Options{Store: newMemStore(), Mode: ModeRequired, Seals: sipx.NewSeals(nil), Registerer: reg})); err != nil {
		t.Fatal(err)
	}
	if _, err := New(testOptions(Options{Store: newMemStore(), Mode: ModeRequired, Seals: sipx.NewSeals(nil), Registerer: reg})); err == nil {
		t.Fatal("second registration on one registry succeeded")
	}
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if err != nil || len(mfs) != 3 || n != len(failReasons)+3 {
		t.Fatalf("gathered %d families, %d series, %v", len(mfs), n, err)
	}
	// Setup with the configuration's defaults: a random secret is not its business (the
	// wiring hands one), the lifetime and algorithms are DefaultConfig's.
	dir, err := NewDirectory("", newMemStore())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Mode = string(ModeOff)
	a, err := Setup(cfg, Deps{Users: dir, Store: newMemStore(), Secret: []byte("0123456789abcdef"), Seals: sipx.NewSeals(nil)})
	if err != nil || a.nonces.Lifetime() != 5*time.Minute || len(a.algs) != 1 || a.algs[0] != MD5 {
		t.Fatalf("defaults: %v", err)
	}
	cfg.Algorithms = []string{"SHA-256", "bogus"}
	if _, err := Setup(cfg, Deps{Users: dir, Store: newMemStore(), Secret: []byte("0123456789abcdef"), Seals: sipx.NewSeals(nil)}); err == nil {
		t.Fatal("Setup accepted an unknown algorithm")
	}
	if h := a.Plugin()(nil); h.Name() != "auth" {
		t.Fatalf("Name = %q", h.Name())
	}
}

// BenchmarkVerify measures one full verification through the stage: parse, nonce check,
// credential lookup, response check and nonce-count guard.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []Algorithm{MD5, SHA256} {
		b.Run(alg.String(), func(b *testing.B) {
			store := newMemStore()
			store.setPassword("alice", "example.test", "secret-alice")
			a, err := New(Options{Domains: []string{"example.test"}, Store: store, Algorithms: []Algorithm{alg}, Lockout: 5 * time.Minute,
				NonceLifetime: testNonceLifetime, LockoutThreshold: testLockoutThreshold})
			if err != nil {
				b.Fatal(err)
			}
			nonce, err := a.nonces.Issue("example.test", 1, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*sip.Request, b.N)
			for i := range reqs {
				c := client{user: "alice", password: "secret-alice", alg: alg, qop: "auth", nc: uint32(i + 1)}
				reqs[i] = msg(b, "REGISTER", "alice@example.test", "alice@example.test", "Authorization: "+c.answer(b, "REGISTER", nonce))
			}
			h := a.Plugin()(nil)
			ctx := context.Background()
			tx := sipxtest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if status, err := h.ServeSIP(ctx, tx, reqs[i]); status != 0 || err != nil {
					b.Fatalf("status %d, %v", status, err)
				}
			}
		})
	}
}

func TestSourceIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:5060": "192.0.2.1", "[2001:db8::1]:5060": "2001:db8::1", "2001:db8::1": "2001:db8::1",
		"192.0.2.1": "192.0.2.1", "": "", "[::1": "[::1",
	} {
		if got := sourceIP(in); got != want {
			t.Errorf("sourceIP(%q) = %q, want %q", in, got, want)
		}
	}
}
