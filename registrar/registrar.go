// Package registrar is simpled's registrar stage (RFC 3261 §10.3): it binds addresses-of-record
// of the local domains to contacts, several per AOR, with expiry, q-values, Call-ID/CSeq
// ordering, Path (RFC 3327) and +sip.instance/reg-id (RFC 5626) as the identity of a device.
// A binding that only its flow reaches (a NATed or outbound client, one behind a connection
// of its own) records the flow and the node holding it (annotate), and goes when that flow
// ends: at once when its connection closes, after twice the Flow-Timer without a keepalive
// for a UDP outbound flow (flows.go). Every change and every expiry is published on the
// storage.Bus so later stages (presence from registration, offline message delivery) react to
// it; a binding whose flow ended is published as storage.BindingRemoved.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	flows   *flowIndex            // the flows of this node that carry registrations (flows.go)
	date    *dateCache            // the 200's Date, shared by the copies Plugin makes

	resultOf  children[int, prometheus.Counter] // results by status
	eventOf   children[string, prometheus.Counter]
	latencyOf children[string, prometheus.Observer] // nil map: no StoreLatency
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
	r := &Registrar{opts: opts, domains: map[string]bool{}, log: opts.Log, logGate: sipx.NewLogGate[string](time.Minute),
		flows: newFlowIndex(maxTrackedFlows), date: &dateCache{}}
	opts.Limited.Declare(limitNewAORs)
	if opts.MaxNewAORsPerSource > 0 {
		r.newAORs = newNewAORs(opts.MaxNewAORsPerSource, time.Minute)
	}
	for _, d := range opts.Domains {
		r.domains[strings.ToLower(d)] = true
	}
	r.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_binding_events_total",
		Help: "Binding changes by kind (added, refreshed, removed, expired, evicted, flow_closed: its connection closed, flow_dead: its UDP outbound flow sent no keepalive for twice the Flow-Timer).",
	}, []string{"kind"})
	r.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_register_results_total",
		Help: "REGISTER requests handled by the registrar, by final status.",
	}, []string{"status"})
	r.metricsOf()
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
	r.resultOf.get(status).Inc()
	return status, err
}

func (r *Registrar) register(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	aor, path, no := r.precheck(req)
	if no != nil {
		return sipx.Respond(tx, req, no.code, no.reason, no.hdrs...)
	}
	now := r.opts.Now().Truncate(time.Second)
	callID := req.CallID().Value()
	cseq := req.CSeq().SeqNo
	changes, wildcard, err := r.parseContacts(req, now, callID, cseq)
	if err != nil {
		return r.refuseContacts(tx, req, st, aor, err)
	}

	if len(changes) == 0 && !wildcard {
		// A query: no Contact, answer the current bindings.
		bindings, err := r.bindings(ctx, aor, now)
		if err != nil {
			return sipx.RespondError(tx, req, err)
		}
		return r.respond(tx, req, aor, bindings, nil, now)
	}
	outbound, err := r.outbound(req, changes, path)
	if err != nil {
		return sipx.Respond(tx, req, 439, "First Hop Lacks Outbound Support")
	}
	token := r.annotate(st, req, changes, path, outbound, now)
	group, counted, no, err := r.admitNewAOR(ctx, st, aor, changes, now)
	if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	if no != nil {
		return sipx.Respond(tx, req, no.code, no.reason, no.hdrs...)
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
	watch := false // a UDP flow whose keepalives decide whether its bindings live
	if outbound {
		extra, watch = r.outboundHeaders(st.Transport, token)
	}
	status, err := r.respond(tx, req, aor, res.Bindings, path, now, extra...)
	r.trackFlow(st.Transport, st.Source, aor, token, watch, res, now)
	r.publish(aor, now, res, "")
	return status, err
}

// refuseContacts answers a REGISTER whose contacts parseContacts refused with err.
func (r *Registrar) refuseContacts(tx sip.ServerTransaction, req *sip.Request, st *sipx.State, aor string, err error) (int, error) {
	var bad errBadRequest
	switch {
	case errors.As(err, &bad):
		st.Logger().Debug("bad REGISTER", zap.String(logging.KeyAOR, aor), zap.String(logging.KeyReason, string(bad)))
		return sipx.Respond(tx, req, 400, string(bad))
	case errors.Is(err, errIntervalTooBrief):
		return sipx.Respond(tx, req, 423, "", sip.NewHeader("Min-Expires", strconv.Itoa(r.opts.MinExpires)))
	}
	return sipx.RespondError(tx, req, err)
}

// refusal is an answer a check gives instead of going on.
type refusal struct {
	code   int
	reason string
	hdrs   []sip.Header
}

// precheck runs RFC 3261 §10.3 steps 1-3 and the size bounds that come before any work (and
// any store call), and returns the AOR and the Path of the REGISTER, or the refusal.
func (r *Registrar) precheck(req *sip.Request) (aor string, path []string, no *refusal) {
	// §10.3 step 1: the Request-URI names the registrar's domain. An IP literal is taken as us
	// (phones configured with the server's address), a foreign name is not ours to register.
	if host := req.Recipient.Host; !r.IsLocal(host) && net.ParseIP(strings.Trim(host, "[]")) == nil {
		return "", nil, &refusal{code: 403, reason: "Domain Not Served"}
	}
	to := req.To()
	if !sipx.IsSIPScheme(to.Address.Scheme) {
		return "", nil, &refusal{code: 416}
	}
	// §10.3 step 3: the To header names the AOR, which must be of a local domain.
	if !r.IsLocal(to.Address.Host) || to.Address.User == "" {
		return "", nil, &refusal{code: 404, reason: "Unknown Address-of-Record"}
	}
	// §10.3 step 2: Require options we do not support.
	if bad := sipx.Unsupported(req, "Require", Supported...); len(bad) > 0 {
		return "", nil, &refusal{code: 420, hdrs: []sip.Header{sip.NewHeader("Unsupported", strings.Join(bad, ", "))}}
	}
	if n := sipx.Count(req, "Contact"); n > r.opts.MaxContacts {
		// Thousands of contacts in one REGISTER: refuse before any work (and any store call).
		return "", nil, &refusal{code: 403, reason: "Too Many Contacts"}
	}
	// Path is stored with every binding and copied into every request to it: bound it before
	// any work (a 216 KB REGISTER once grew a binding to 2.6 MB).
	path = sipx.AddressList(req, "Path") // RFC 3327, one value per route, in order
	if len(path) > MaxPath {
		return "", nil, &refusal{code: 400, reason: fmt.Sprintf("Too Many Path Entries (at most %d)", MaxPath)}
	}
	for _, p := range path {
		if len(p) > MaxPathEntry {
			return "", nil, &refusal{code: 400, reason: fmt.Sprintf("Path Entry Too Long (at most %d bytes)", MaxPathEntry)}
		}
	}
	return sipx.AOR(&to.Address), path, nil
}

// bindings reads aor's current bindings, timing the store call.
func (r *Registrar) bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	t0 := time.Now()
	bindings, err := r.opts.Store.Bindings(ctx, aor, now)
	r.observe("bindings", t0)
	if err != nil {
		return nil, fmt.Errorf("registrar: lookup %s: %w", aor, err)
	}
	return bindings, nil
}

// annotate records with every binding of changes where and how the device is reached: Path,
// source, transport, its User-Agent, and the flow; it returns the token of the flow the
// bindings were bound to ("" for none).
//
// The flow (RFC 5626 §5.3, RFC 3581) is the connection or the NAT binding the REGISTER came
// from, with this node's id (Binding.Node). Every binding of the REGISTER is bound to it when
// the client asked for outbound (reg-id, or an ";ob" contact) or its Via names another address
// than its packets come from — a NAT, a browser's ".invalid" host, or a TCP/TLS client whose
// connection leaves from another port than it listens on (baresip, linphone). Over a
// connection, a binding is bound to it too when its Contact names the connection's own
// address (a client with no listener of its own) or a ".invalid" host: nothing but the
// connection reaches it, from this node or through it from another. A REGISTER relayed by a
// proxy that added a Path is reached through that proxy, and a contact that names another
// address of a REGISTER whose Via is its source (a third party registering a device
// elsewhere, as sipp's load tests do) is taken at its word: its Contact is where requests go,
// and the registration outlives the connection it came over.
func (r *Registrar) annotate(st *sipx.State, req *sip.Request, changes []storage.BindingChange, path []string, outbound bool, now time.Time) string {
	ua := ""
	if h := sipx.Header(req, "User-Agent"); h != nil && sipx.Sanitize(h.Value()) {
		ua = h.Value()
		if len(ua) > 256 {
			ua = ua[:256]
		}
	}
	var all bool    // every binding goes over the flow
	var flow string // the flow's token, made when a binding needs it
	if r.opts.Flow != nil && len(path) == 0 {
		all = outbound || sipx.BehindNAT(req, st.Source)
		for i := 0; i < len(changes) && !all; i++ {
			all = hasURIParam(changes[i].Binding.URI, "ob")
		}
	}
	stream := isStream(st.Transport)
	bound := ""
	for i := range changes {
		b := &changes[i].Binding
		b.Path = path
		b.Received = st.Source
		b.Transport = st.Transport
		b.UserAgent = ua
		if r.opts.Flow == nil || len(path) > 0 || !(all || stream && onlyOverFlow(b.URI, st.Source)) {
			continue
		}
		if flow == "" {
			flow = r.opts.Flow(st.Transport, st.Source)
		}
		b.Flow = flow
		if flow == "" {
			continue
		}
		b.Node = r.opts.Node
		bound = flow
		if stream && b.ExpiresAt.After(now) {
			st.HoldFlow(b.ExpiresAt)
		}
	}
	return bound
}

// onlyOverFlow reports whether a contact registered over a connection from source can be
// reached only down that connection: it names the connection's own address (host and port)
// or a ".invalid" host.
func onlyOverFlow(uri, source string) bool {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	host := strings.Trim(u.Host, "[]")
	if strings.HasSuffix(strings.ToLower(host), ".invalid") {
		return true
	}
	src, err := netip.ParseAddrPort(source)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Unmap() != src.Addr().Unmap() {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return port == int(src.Port())
}

// admitNewAOR applies the new-AORs-per-source limit to REGISTERs taken at their word (open
// mode): the AOR is counted before the store is written (register uncounts it when it was
// not new after all: counted), and over the budget only an AOR that has bindings already may
// go on (503 with Retry-After otherwise).
func (r *Registrar) admitNewAOR(ctx context.Context, st *sipx.State, aor string, changes []storage.BindingChange, now time.Time) (group string, counted bool, no *refusal, err error) {
	if r.newAORs == nil || st.Rule != sipx.RuleOpen || !adds(changes, now) ||
		(r.opts.TrustedPeer != nil && r.opts.TrustedPeer(st)) {
		return "", false, nil, nil
	}
	group = sipx.SourceGroup(st.SourceIP())
	ok, counted, retry := r.newAORs.reserve(group, aor, now)
	if ok {
		return group, counted, nil, nil
	}
	bindings, err := r.bindings(ctx, aor, now)
	if err != nil || len(bindings) > 0 {
		return group, counted, nil, err
	}
	r.opts.Limited.Inc(limitNewAORs)
	if r.logGate.Allow(group, time.Now()) {
		st.Logger().Warn("new AORs per source limit reached (logged once a minute)",
			zap.String(logging.KeyAOR, aor), zap.Int("limit", r.opts.MaxNewAORsPerSource))
	}
	secs := max(int((retry+time.Second-1)/time.Second), 1)
	return group, counted, &refusal{code: 503, reason: "Too Many New Registrations",
		hdrs: []sip.Header{sip.NewHeader("Retry-After", strconv.Itoa(secs))}}, nil
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
	if sipx.Count(req, "Via") > 1 {
		return false, errFirstHop
	}
	return true, nil
}

var errFirstHop = errors.New("registrar: first hop lacks outbound support")

// outboundHeaders are the headers of the 200 to a REGISTER that outbound applies to (RFC 5626
// §6), over transport tp, whose bindings were bound to flow token ("" for none): Require, and
// the keepalive interval (§4.4.1). Over UDP the Flow-Timer is given only when the flow ends
// here (no Path): then this node watches its keepalives (watch).
func (r *Registrar) outboundHeaders(tp, token string) (hdrs []sip.Header, watch bool) {
	hdrs = []sip.Header{sip.NewHeader("Require", "outbound")}
	timer := r.opts.FlowTimer
	if !isStream(tp) {
		watch = r.opts.UDPFlowTimer > 0 && token != ""
		timer = 0
		if watch {
			timer = r.opts.UDPFlowTimer
		}
	}
	if timer > 0 {
		hdrs = append(hdrs, sip.NewHeader("Flow-Timer", strconv.Itoa(int(timer/time.Second))))
	}
	return hdrs, watch
}

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
	_, s, more := strings.Cut(s, ";")
	for more {
		var p string
		p, s, more = strings.Cut(s, ";")
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
	r.contacts(res, aor, bindings, now, gruu)
	// RFC 3327 §5.3: the stored Path is returned when the UA said it supports path.
	if len(path) > 0 && sipx.HasToken(req, "Supported", "path") {
		res.AppendHeader(sip.NewHeader("Path", strings.Join(path, ", ")))
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Date", r.date.format(now)))
	return sipx.RespondWith(tx, res)
}

// contacts appends to res a Contact header for each binding live at now, with its remaining
// expiry, its q-value and, with gruu, its GRUUs. The values are written into one buffer sized
// beforehand, each header holding its part of it.
func (r *Registrar) contacts(res *sip.Response, aor string, bindings []storage.Binding, now time.Time, gruu bool) {
	size := 0
	for i := range bindings {
		size += len(bindings[i].Contact) + len(";expires=;q=0.000") + 20
	}
	var sb strings.Builder
	sb.Grow(size)
	var room [16]int // where each value ends in sb: on the stack for the first 16
	ends := room[:0]
	for i := range bindings {
		b := &bindings[i]
		left := int64((b.ExpiresAt.Sub(now) + time.Second - 1) / time.Second)
		if left <= 0 {
			continue
		}
		sb.WriteString(b.Contact)
		sb.WriteString(";expires=")
		var num [24]byte
		sb.Write(strconv.AppendInt(num[:0], left, 10))
		if b.Q >= 0 {
			sb.WriteString(";q=")
			sb.Write(appendQ(num[:0], b.Q))
		}
		if gruu && b.InstanceID != "" {
			sb.WriteString(r.gruuParams(aor, b.InstanceID))
		}
		ends = append(ends, sb.Len())
	}
	all, from := sb.String(), 0
	for _, to := range ends {
		res.AppendHeader(sip.NewHeader("Contact", all[from:to]))
		from = to
	}
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

// dateCache holds the Date value of the last second answered: REGISTERs within a second share
// it rather than each formatting the time again.
type dateCache struct{ last atomic.Pointer[sipDate] }

type sipDate struct {
	unix int64
	text string
}

// format returns t's second as a SIP-date.
func (c *dateCache) format(t time.Time) string {
	if d := c.last.Load(); d != nil && d.unix == t.Unix() {
		return d.text
	}
	d := &sipDate{unix: t.Unix(), text: t.UTC().Format(http1123)}
	c.last.Store(d)
	return d.text
}

// publish announces the update's effects on the bus.
// Its removals carry reason ("" for a removal by the client, storage.RemovedByAdmin).
func (r *Registrar) publish(aor string, now time.Time, res storage.BindingResult, reason string) {
	emit := func(kind storage.EventKind, bs []storage.Binding) {
		for _, b := range bs {
			r.eventOf.get(string(kind)).Inc()
			if r.opts.Bus != nil {
				ev := storage.Event{Kind: kind, AOR: aor, Binding: b, At: now, Mailbox: res.Mailbox}
				if kind == storage.BindingRemoved {
					ev.Reason = reason
				}
				r.opts.Bus.Publish(ev)
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
	if r.latencyOf.of != nil {
		r.latencyOf.get(op).Observe(time.Since(t0).Seconds())
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
	r.publish(aor, r.opts.Now(), storage.BindingResult{Removed: removed}, storage.RemovedByAdmin)
	return removed, nil
}

// Run sweeps expired bindings every SweepInterval until ctx ends, so that expiry events fire
// on time rather than at the AOR's next request; and removes the bindings of the flows of
// this node that ended (flows.go). A flow that ends after ctx ended (the node shuts down and
// closes its connections) leaves its bindings to expire, or to the client's next
// registration, on this node or another.
func (r *Registrar) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.runFlows(ctx) })
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
			r.eventOf.get(string(storage.BindingExpired)).Inc()
			if r.opts.Bus != nil {
				r.opts.Bus.Publish(storage.Event{Kind: storage.BindingExpired, AOR: e.AOR, Binding: e.Binding, At: now})
			}
		}
		if len(expired) < sweepBatch {
			return
		}
	}
}
