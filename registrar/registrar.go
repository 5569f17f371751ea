// Package registrar is simpled's registrar stage (RFC 3261 §10.3): it binds addresses-of-record
// of the local domains to contacts, several per AOR, with expiry, q-values, Call-ID/CSeq
// ordering, Path (RFC 3327) and +sip.instance/reg-id (RFC 5626) as the identity of a device.
// Every change and every expiry is published on the storage.Bus so later stages (presence from
// registration, offline message delivery) react to it.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// options is a Registrar's settings: its section and what the wiring hands it.
type options struct {
	Config
	Deps
}

// Registrar is the REGISTER stage. Create it with Setup, put Plugin in the chain and run Run for
// the expiry sweep.
type Registrar struct {
	opts    options
	domains map[string]bool
	log     *zap.Logger
	next    sipx.Handler
	events  *prometheus.CounterVec
	results *prometheus.CounterVec
	newAORs *newAORs              // nil: no limit
	logGate *sipx.LogGate[string] // refusals logged once a minute per source
}

// newRegistrar checks opts and returns a Registrar.
func newRegistrar(opts options) (*Registrar, error) {
	if opts.Store == nil {
		return nil, errors.New("registrar: no store")
	}
	if opts.MinExpires < 1 || opts.MinExpires > opts.DefaultExpires || opts.DefaultExpires > opts.MaxExpires {
		return nil, fmt.Errorf("registrar: expiry limits: want 1 <= min %d <= default %d <= max %d",
			opts.MinExpires, opts.DefaultExpires, opts.MaxExpires)
	}
	if opts.MaxContacts < 1 || opts.SweepInterval <= 0 {
		return nil, fmt.Errorf("registrar: max contacts %d, sweep interval %s: want at least 1 and more than 0",
			opts.MaxContacts, opts.SweepInterval)
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registrar{opts: opts, domains: map[string]bool{}, log: opts.Log, logGate: sipx.NewLogGate[string](time.Minute)}
	opts.Limited.Declare(limitNewAORs)
	if opts.MaxNewAORsPerSource > 0 {
		r.newAORs = newNewAORs(opts.MaxNewAORsPerSource, time.Minute)
	}
	for _, d := range opts.Domains {
		r.domains[strings.ToLower(d)] = true
	}
	r.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_binding_events_total",
		Help: "Binding changes by kind (added, refreshed, removed, expired, evicted).",
	}, []string{"kind"})
	r.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_register_results_total",
		Help: "REGISTER requests handled by the registrar, by final status.",
	}, []string{"status"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{r.events, r.results} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registrar: metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Plugin returns the registrar as a chain stage.
func (r *Registrar) Plugin() sipx.Plugin {
	return func(next sipx.Handler) sipx.Handler {
		rr := *r
		rr.next = next
		return &rr
	}
}

// Bounds of a REGISTER's Path (RFC 3327): a REGISTER with more entries, or a longer entry,
// gets 400 and nothing is stored. Real deployments cross one to three edge proxies, each
// adding a short URI.
const (
	MaxPath      = 5
	MaxPathEntry = 1024
)

// Name implements sipx.Handler.
func (r *Registrar) Name() string { return "registrar" }

// IsLocal reports whether domain is one of ours.
func (r *Registrar) IsLocal(domain string) bool { return r.domains[strings.ToLower(domain)] }

// ServeSIP handles REGISTER for the local domains and passes every other request on.
func (r *Registrar) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if req.Method != sip.REGISTER {
		return sipx.Next(ctx, r.next, tx, req)
	}
	status, err := r.register(ctx, tx, req)
	r.results.WithLabelValues(strconv.Itoa(status)).Inc()
	return status, err
}

func (r *Registrar) register(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	// §10.3 step 1: the Request-URI names the registrar's domain. An IP literal is taken as us
	// (phones configured with the server's address), a foreign name is not ours to register.
	if host := req.Recipient.Host; !r.IsLocal(host) && net.ParseIP(strings.Trim(host, "[]")) == nil {
		return sipx.Respond(tx, req, 403, "Domain Not Served")
	}
	to := req.To()
	if !sipx.IsSIPScheme(to.Address.Scheme) {
		return sipx.Respond(tx, req, 416, "")
	}
	// §10.3 step 3: the To header names the AOR, which must be of a local domain.
	if !r.IsLocal(to.Address.Host) || to.Address.User == "" {
		return sipx.Respond(tx, req, 404, "Unknown Address-of-Record")
	}
	// §10.3 step 2: Require options we do not support.
	if bad := sipx.Unsupported(req, "Require", Supported...); len(bad) > 0 {
		return sipx.Respond(tx, req, 420, "", sip.NewHeader("Unsupported", strings.Join(bad, ", ")))
	}
	aor := sipx.AOR(&to.Address)
	now := r.opts.Now().Truncate(time.Second)
	if n := len(sipx.Headers(req, "Contact")); n > r.opts.MaxContacts {
		// Thousands of contacts in one REGISTER: refuse before any work (and any store call).
		return sipx.Respond(tx, req, 403, "Too Many Contacts")
	}
	// Path is stored with every binding and copied into every request to it: bound it before
	// any work (a 216 KB REGISTER once grew a binding to 2.6 MB).
	path := sipx.AddressList(req, "Path") // RFC 3327, one value per route, in order
	if len(path) > MaxPath {
		return sipx.Respond(tx, req, 400, fmt.Sprintf("Too Many Path Entries (at most %d)", MaxPath))
	}
	for _, p := range path {
		if len(p) > MaxPathEntry {
			return sipx.Respond(tx, req, 400, fmt.Sprintf("Path Entry Too Long (at most %d bytes)", MaxPathEntry))
		}
	}
	callID := req.CallID().Value()
	cseq := req.CSeq().SeqNo
	changes, wildcard, err := r.parseContacts(req, now, callID, cseq)
	var bad errBadRequest
	switch {
	case errors.As(err, &bad):
		st.Logger().Debug("bad REGISTER", zap.String(logging.KeyAOR, aor), zap.String(logging.KeyReason, string(bad)))
		return sipx.Respond(tx, req, 400, string(bad))
	case errors.Is(err, errIntervalTooBrief):
		return sipx.Respond(tx, req, 423, "", sip.NewHeader("Min-Expires", strconv.Itoa(r.opts.MinExpires)))
	case err != nil:
		return sipx.RespondError(tx, req, err)
	}

	if len(changes) == 0 && !wildcard {
		// A query: no Contact, answer the current bindings.
		t0 := time.Now()
		bindings, err := r.opts.Store.Bindings(ctx, aor, now)
		r.observe("bindings", t0)
		if err != nil {
			return sipx.RespondError(tx, req, fmt.Errorf("registrar: lookup %s: %w", aor, err))
		}
		return r.respond(tx, req, aor, bindings, nil, now)
	}

	ua := ""
	if h := sipx.Header(req, "User-Agent"); h != nil && sipx.Sanitize(h.Value()) {
		ua = h.Value()
		if len(ua) > 256 {
			ua = ua[:256]
		}
	}
	outbound, err := r.outbound(req, changes, path)
	if err != nil {
		return sipx.Respond(tx, req, 439, "First Hop Lacks Outbound Support")
	}
	// The flow the device is reached over (RFC 5626 §5.3, RFC 3581): the connection or the
	// NAT binding the REGISTER came from, when the client asked for outbound (reg-id, or an
	// ";ob" contact) or its Via names another address than its packets come from — a NAT, a
	// browser's ".invalid" host, or a TCP/TLS client whose connection leaves from another port
	// than it listens on (baresip, linphone). A REGISTER relayed by a proxy that added a Path
	// is reached through that proxy, and one whose Via is its source (a third party
	// registering a device elsewhere, as sipp's load tests do) is taken at its word: its
	// Contact is where requests go.
	flow := ""
	if r.opts.Flow != nil && len(path) == 0 {
		bind := outbound || sipx.BehindNAT(req, st.Source)
		for i := 0; i < len(changes) && !bind; i++ {
			bind = hasURIParam(changes[i].Binding.URI, "ob")
		}
		if bind {
			flow = r.opts.Flow(st.Transport, st.Source)
		}
	}
	for i := range changes {
		b := &changes[i].Binding
		b.Path = path
		b.Received = st.Source
		b.Transport = st.Transport
		b.Flow = flow
		b.UserAgent = ua
		if flow != "" && isStream(st.Transport) && b.ExpiresAt.After(now) {
			st.HoldFlow(b.ExpiresAt)
		}
	}
	// New AORs per source (open mode): counted before the store is written, uncounted
	// below when the AOR was not new after all.
	group, counted := "", false
	if r.newAORs != nil && st.Rule == sipx.RuleOpen && adds(changes, now) &&
		(r.opts.TrustedPeer == nil || !r.opts.TrustedPeer(st)) {
		group = sipx.SourceGroup(st.SourceIP())
		ok, c, retry := r.newAORs.reserve(group, aor, now)
		counted = c
		if !ok {
			// Over the budget only an AOR that has bindings already may go on.
			t0 := time.Now()
			bindings, err := r.opts.Store.Bindings(ctx, aor, now)
			r.observe("bindings", t0)
			if err != nil {
				return sipx.RespondError(tx, req, fmt.Errorf("registrar: lookup %s: %w", aor, err))
			}
			if len(bindings) == 0 {
				r.opts.Limited.Inc(limitNewAORs)
				if r.logGate.Allow(group, time.Now()) {
					st.Logger().Warn("new AORs per source limit reached (logged once a minute)",
						zap.String(logging.KeyAOR, aor), zap.Int("limit", r.opts.MaxNewAORsPerSource))
				}
				secs := max(int((retry+time.Second-1)/time.Second), 1)
				return sipx.Respond(tx, req, 503, "Too Many New Registrations",
					sip.NewHeader("Retry-After", strconv.Itoa(secs)))
			}
		}
	}
	update := storage.BindingUpdate{
		Now:         now,
		RemoveAll:   wildcard,
		CallID:      callID,
		CSeq:        cseq,
		Changes:     changes,
		MaxBindings: r.opts.MaxContacts,
		EvictOldest: r.opts.OnMaxContacts != "reject",
	}
	t0 := time.Now()
	res, err := r.opts.Store.UpdateBindings(ctx, aor, update)
	r.observe("update_bindings", t0)
	if counted && (err != nil || !newAOR(res)) {
		r.newAORs.release(group, aor)
	}
	if err != nil {
		if errors.Is(err, storage.ErrStale) || errors.Is(err, storage.ErrTooManyBindings) {
			st.Logger().Info("REGISTER refused", zap.String(logging.KeyAOR, aor), zap.Error(err))
			code, reason := sipx.ErrorStatus(err)
			return sipx.Respond(tx, req, code, reason)
		}
		return sipx.RespondError(tx, req, fmt.Errorf("registrar: update %s: %w", aor, err))
	}
	// Answer first, then announce: what reacts to a new binding (offline messages waiting
	// for it) must reach the device after its 200, not race it.
	var extra []sip.Header
	if outbound {
		// RFC 5626 §6: outbound applied; the keepalive interval for connections.
		extra = append(extra, sip.NewHeader("Require", "outbound"))
		if r.opts.FlowTimer > 0 && isStream(st.Transport) {
			extra = append(extra, sip.NewHeader("Flow-Timer", strconv.Itoa(int(r.opts.FlowTimer/time.Second))))
		}
	}
	status, err := r.respond(tx, req, aor, res.Bindings, path, now, extra...)
	r.publish(aor, now, res)
	return status, err
}

// limitNewAORs names the new-AORs-per-source limit in simpled_limited_total{limit}.
const limitNewAORs = "new_aors"

// Supported lists the option tags the registrar understands in Require.
var Supported = []string{"path", "outbound", "gruu"}

// outbound reports whether RFC 5626 applies to this REGISTER: the UA supports it and a
// contact carries +sip.instance and reg-id. It is an error when the first hop cannot keep the
// flow: the REGISTER crossed a proxy that added no Path with ";ob" (§6, 439).
func (r *Registrar) outbound(req *sip.Request, changes []storage.BindingChange, path []string) (bool, error) {
	if !sipx.HasToken(req, "Supported", "outbound") {
		return false, nil
	}
	regID := false
	for i := range changes {
		if b := &changes[i].Binding; b.InstanceID != "" && b.RegID > 0 {
			regID = true
		}
	}
	if !regID {
		return false, nil
	}
	if len(path) > 0 {
		if !hasURIParam(path[0], "ob") {
			return false, errFirstHop
		}
		return true, nil
	}
	if len(sipx.Headers(req, "Via")) > 1 {
		return false, errFirstHop
	}
	return true, nil
}

var errFirstHop = errors.New("registrar: first hop lacks outbound support")

// hasURIParam reports whether the first URI in s (a URI, or a name-addr "<uri>;params") has
// the URI parameter name.
func hasURIParam(s, name string) bool {
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	for _, p := range strings.Split(s, ";")[1:] {
		k, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return true
		}
	}
	return false
}

func isStream(tp string) bool {
	switch tp {
	case "tcp", "tls", "ws", "wss":
		return true
	}
	return false
}

// respond sends the 200 listing every current binding with its remaining expiry (§10.3 step 8)
// and, when the UA supports GRUU, each device's public and a new temporary GRUU (RFC 5627).
func (r *Registrar) respond(tx sip.ServerTransaction, req *sip.Request, aor string, bindings []storage.Binding, path []string, now time.Time, extra ...sip.Header) (int, error) {
	res := sipx.NewResponse(req, 200, "")
	gruu := r.opts.GRUUs != nil && sipx.HasToken(req, "Supported", "gruu")
	for i := range bindings {
		b := &bindings[i]
		left := int64((b.ExpiresAt.Sub(now) + time.Second - 1) / time.Second)
		if left <= 0 {
			continue
		}
		v := b.Contact + ";expires=" + strconv.FormatInt(left, 10)
		if b.Q >= 0 {
			v += ";q=" + formatQ(b.Q)
		}
		if gruu && b.InstanceID != "" {
			v += r.gruuParams(aor, b.InstanceID)
		}
		res.AppendHeader(sip.NewHeader("Contact", v))
	}
	// RFC 3327 §5.3: the stored Path is returned when the UA said it supports path.
	if len(path) > 0 && sipx.HasToken(req, "Supported", "path") {
		res.AppendHeader(sip.NewHeader("Path", strings.Join(path, ", ")))
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(http1123)))
	return sipx.RespondWith(tx, res)
}

// gruuParams are the pub-gruu and temp-gruu Contact parameters of a device (RFC 5627 §5.2):
// the AOR with the instance as gr, and a sealed name only this deployment can resolve.
func (r *Registrar) gruuParams(aor, instance string) string {
	urn := strings.Trim(instance, "<>")
	_, domain, _ := strings.Cut(aor, "@")
	return `;pub-gruu="sip:` + aor + `;gr=` + urn + `";temp-gruu="sip:` + r.opts.GRUUs.Temp(aor, instance) + "@" + domain + `;gr"`
}

// http1123 is the SIP-date format (RFC 3261 §20.17).
const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

// publish announces the update's effects on the bus.
func (r *Registrar) publish(aor string, now time.Time, res storage.BindingResult) {
	emit := func(kind storage.EventKind, bs []storage.Binding) {
		for _, b := range bs {
			r.events.WithLabelValues(string(kind)).Inc()
			if r.opts.Bus != nil {
				r.opts.Bus.Publish(storage.Event{Kind: kind, AOR: aor, Binding: b, At: now, Mailbox: res.Mailbox})
			}
		}
	}
	emit(storage.BindingAdded, res.Added)
	emit(storage.BindingRefreshed, res.Refreshed)
	emit(storage.BindingRemoved, res.Removed)
	emit(storage.BindingExpired, res.Expired)
	emit(storage.BindingEvicted, res.Evicted)
}

func (r *Registrar) observe(op string, t0 time.Time) {
	if r.opts.StoreLatency != nil {
		r.opts.StoreLatency.WithLabelValues(op).Observe(time.Since(t0).Seconds())
	}
}

// Lookup returns aor's live bindings (for the admin API and, later, the proxy).
func (r *Registrar) Lookup(ctx context.Context, aor string) ([]storage.Binding, error) {
	return r.opts.Store.Bindings(ctx, aor, r.opts.Now())
}

// Remove deletes every binding of aor and publishes their removal (admin API).
func (r *Registrar) Remove(ctx context.Context, aor string) ([]storage.Binding, error) {
	removed, err := r.opts.Store.RemoveBindings(ctx, aor)
	if err != nil {
		return nil, err
	}
	r.publish(aor, r.opts.Now(), storage.BindingResult{Removed: removed})
	return removed, nil
}

// Run sweeps expired bindings every SweepInterval until ctx ends, so that expiry events fire
// on time rather than at the AOR's next request.
func (r *Registrar) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sweep(ctx)
		}
	}
}

// sweepBatch bounds one sweep's work; a backlog is taken in several batches.
const sweepBatch = 1000

func (r *Registrar) sweep(ctx context.Context) {
	for range 100 {
		now := r.opts.Now()
		t0 := time.Now()
		expired, err := r.opts.Store.SweepExpired(ctx, now, sweepBatch)
		r.observe("sweep_expired", t0)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("expiry sweep failed", zap.Error(err))
			}
			return
		}
		for _, e := range expired {
			r.log.Debug("binding expired", zap.String(logging.KeyAOR, e.AOR), zap.String(logging.KeyContact, e.Binding.URI))
			r.events.WithLabelValues(string(storage.BindingExpired)).Inc()
			if r.opts.Bus != nil {
				r.opts.Bus.Publish(storage.Event{Kind: storage.BindingExpired, AOR: e.AOR, Binding: e.Binding, At: now})
			}
		}
		if len(expired) < sweepBatch {
			return
		}
	}
}
