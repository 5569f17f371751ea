// Package proxy is simpled's transaction-stateful SIP proxy (RFC 3261 §16), the last stage of the
// chain: it routes every request no earlier stage answered. Requests for a user of a local
// domain are forked to the user's registered contacts (parallel within a q-value, sequential
// between q-values) and the best answer goes back (§16.7); in-dialog requests follow the Route
// set simpled put itself in with Record-Route; requests for other domains are located with DNS
// (RFC 3263, resolve.go) — only for authenticated local users and trusted peers, so simpled is
// never an open relay. MESSAGE (RFC 3428) is relayed byte-exact after its body type is checked
// (message/cpim bodies are validated with package cpim), and stored for a known user who has no
// reachable device, to be delivered when that user registers again (offline.go).
package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Locator finds the live bindings of an address-of-record: the registrar.
type Locator interface {
	Lookup(ctx context.Context, aor string) ([]storage.Binding, error)
}

// Listener is one bound SIP socket of this node: the proxy puts it in Via and Record-Route and
// sends UDP requests from it (a NATed client only accepts packets from the address it talks to).
type Listener struct {
	Transport string // udp, tcp, tls, ws, wss
	Addr      netip.AddrPort
}

// Options configure a Proxy. Domains, IsOurs, Locator, Client and Listeners are required.
type Options struct {
	Domains []string
	// IsOurs reports whether a host (domain or address) is this server.
	IsOurs func(host string) bool
	// Listeners returns the bound SIP sockets (known only once the server started).
	Listeners func() []Listener
	Locator   Locator
	Client    *sipgo.Client
	// Messages keeps offline messages and known users; nil disables store-and-forward.
	Messages MessageStore
	// HasCredentials reports whether aor has digest credentials (a known user); may be nil.
	HasCredentials func(ctx context.Context, aor string) (bool, error)
	// Resolver locates foreign domains (RFC 3263); with nil, a next hop named by a host name
	// (not an IP address) is unroutable (404).
	Resolver *Resolver
	// MessageTypes are the MESSAGE Content-Types relayed (besides text/plain, message/cpim and
	// message/imdn+xml, which always are). "*" allows any type.
	MessageTypes []string
	// MaxBodySize bounds the bodies of messages simpled sends itself (Send); 0 means 64 KiB.
	MaxBodySize int
	// UDPMTU: a request bigger than this goes out over TCP instead of UDP (RFC 3261 §18.1.1),
	// falling back to UDP when TCP cannot connect. 0 means 1300.
	UDPMTU int
	// InviteTimeout is Timer C (RFC 3261 §16.6 step 11): a branch ringing this long is
	// cancelled. 0 means 180 s.
	InviteTimeout time.Duration
	// Offline limits store-and-forward.
	Offline OfflineOptions
	// Limited counts the offline messages refused by a mailbox limit
	// (simpled_limited_total{limit="mailbox"|"mailbox_sender"|"mailbox_foreign"}); nil counts
	// nothing.
	Limited *sipx.Limited
	// Secret keys the flow tokens in our Paths and Record-Routes (nodes sharing a store must
	// share it: auth.nonce_secret); empty draws a random secret.
	Secret []byte
	// Seals issues and checks the dialog tokens of our Record-Routes and the proofs this node
	// gives the others (the identity stage checks them with the same Seals). Required.
	Seals *sipx.Seals
	// LastSeen tells when a UDP client address was last heard from (a request or a
	// keepalive); of a device's several UDP flows the freshest is tried first. nil: by
	// registration time only.
	LastSeen func(netip.AddrPort) time.Time
	// GRUUs opens the temporary GRUUs the registrar issued (RFC 5627); nil routes only public
	// GRUUs.
	GRUUs *sipx.GRUUs
	// Allow lists the methods the server serves or routes, for 405 answers.
	Allow      func() string
	Bus        storage.Bus
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Proxy is the proxy stage. Create it with New; it is safe for concurrent use.
type Proxy struct {
	opts         Options
	domains      map[string]bool
	defaultDom   string
	messageTypes map[string]bool
	anyType      bool
	acceptText   string
	log          *zap.Logger
	offline      *Offline
	txs          *clientTxs
	secret       []byte
	flowKey      []byte
	seals        *sipx.Seals

	localIPs sync.Map // destination IP → our source IP, for wildcard listeners

	relayed   *prometheus.CounterVec
	branches  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
	flows     *prometheus.CounterVec
}

// New builds a proxy from opts.
func New(opts Options) (*Proxy, error) {
	if opts.IsOurs == nil || opts.Locator == nil || opts.Client == nil || opts.Listeners == nil || len(opts.Domains) == 0 || opts.Seals == nil {
		return nil, errors.New("proxy: Domains, IsOurs, Listeners, Locator, Client and Seals are required")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 64 << 10
	}
	if opts.UDPMTU <= 0 {
		opts.UDPMTU = 1300
	}
	if opts.InviteTimeout <= 0 {
		opts.InviteTimeout = 180 * time.Second
	}
	p := &Proxy{opts: opts, domains: map[string]bool{}, log: opts.Log, txs: newClientTxs(),
		messageTypes: map[string]bool{"text/plain": true, "message/cpim": true, "message/imdn+xml": true}}
	for _, d := range opts.Domains {
		p.domains[strings.ToLower(d)] = true
	}
	p.defaultDom = strings.ToLower(opts.Domains[0])
	p.secret = opts.Secret
	if len(p.secret) == 0 {
		p.secret = make([]byte, 32)
		_, _ = rand.Read(p.secret)
	}
	p.flowKey = flowKey(p.secret)
	p.seals = opts.Seals
	opts.Limited.Declare("mailbox", "mailbox_sender", "mailbox_foreign")
	for _, t := range opts.MessageTypes {
		if t == "*" || t == "*/*" {
			p.anyType = true
			continue
		}
		p.messageTypes[strings.ToLower(strings.TrimSpace(t))] = true
	}
	types := make([]string, 0, len(p.messageTypes))
	for t := range p.messageTypes {
		types = append(types, t)
	}
	slices.Sort(types)
	p.acceptText = strings.Join(types, ", ")

	p.relayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_messages_total",
		Help: "MESSAGE requests by outcome: relayed (a device answered 2xx), stored (kept offline, 202), delivered (an offline message reached a device), expired (dropped undelivered), refused (mailbox full), failed.",
	}, []string{"outcome"})
	p.branches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_proxy_branches_total", Help: "Forked branches by method and final status class (2xx..6xx, or error).",
	}, []string{"method", "class"})
	p.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_proxy_requests_total", Help: "Requests routed by the proxy, by method and route kind (local, dialog, foreign, refused).",
	}, []string{"method", "route"})
	p.flows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_flow_requests_total",
		Help: "Requests sent down a client's flow (RFC 5626), by transport and result: sent, or closed (the connection was gone; the device counts as unreachable).",
	}, []string{"transport", "result"})
	p.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "simpled_proxy_duration_seconds",
		Help:    "Time from receiving a request to sending its final answer, for proxied requests, by method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
	}, []string{"method"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{p.relayed, p.branches, p.forwarded, p.flows, p.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: metrics: %w", err)
			}
		}
	}
	if opts.Messages != nil {
		p.offline = newOffline(p, opts.Messages, opts.Offline)
	}
	return p, nil
}

// Plugin returns the proxy as the chain's last stage (it never passes a request on).
func (p *Proxy) Plugin() sipx.Plugin {
	return func(sipx.Handler) sipx.Handler { return p }
}

// Name implements sipx.Handler.
func (p *Proxy) Name() string { return "proxy" }

// Offline returns the store-and-forward component (nil when disabled), for the admin API.
func (p *Proxy) Offline() *Offline { return p.offline }

// Run runs the proxy's background work (offline delivery and expiry) until ctx ends.
func (p *Proxy) Run(ctx context.Context) {
	if p.offline != nil {
		p.offline.run(ctx)
	}
}

// ServeSIP routes req (RFC 3261 §16.4–16.5) and forwards it statefully.
func (p *Proxy) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	start := time.Now()
	status, err := p.route(ctx, st, tx, req)
	if status > 0 {
		p.duration.WithLabelValues(string(req.Method)).Observe(time.Since(start).Seconds())
	}
	if req.Method == sip.MESSAGE && status >= 200 && status < 300 && status != 202 {
		p.relayed.WithLabelValues("relayed").Inc()
	}
	return status, err
}

func (p *Proxy) route(ctx context.Context, st *sipx.State, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if p.looped(req) {
		return p.refuse(ctx, tx, req, 482, "")
	}
	inDialog := req.To().Params.Has("tag")
	dialog := inDialog && st.Rule == sipx.RuleDialog
	switch {
	case st.Rule == sipx.RuleNone && inDialog:
		// A To tag that no dialog of ours, no subscription and no credentials vouch for: a
		// forged in-dialog request is never delivered (docs/security.md).
		return p.refuse(ctx, tx, req, 481, "")
	case req.Method == sip.MESSAGE:
		// Whatever its route: simpled relays only bodies it accepts (RFC 3428 §7), under
		// the identity they claim.
		if status, reason, hdrs := p.checkMessage(st, req); status != 0 {
			return p.refuse(ctx, tx, req, status, reason, hdrs...)
		}
	}
	fwd := req.Clone()
	flows := p.processRoutes(fwd)
	prepare(fwd, st.Source)
	sipx.ForwardVias(req, fwd, st.Source)
	callID := req.CallID().Value()

	if flow, ok := (arrival{transport: st.Transport, source: st.Source}).elsewhere(flows); ok && fwd.Route() == nil {
		// A Route of ours naming a client's flow (a Path of another node, or our Record-Route
		// in a dialog with clients on flows) other than the one the request came on: the
		// request goes down that flow — in a dialog only to its other end, outside one only
		// under a rule and to a flow this node holds.
		switch {
		case dialog && !p.dialogHop(st, callID, nil, flow.f.Remote, true),
			!dialog && (st.Rule == sipx.RuleNone || !p.holds(flow.f)):
			return p.refuse(ctx, tx, req, 403, "Relaying Denied")
		}
		p.forwarded.WithLabelValues(string(req.Method), "flow").Inc()
		return p.fork(ctx, tx, req, fwd, [][]target{{p.flowTarget(fwd.Recipient, flow.f, flow.token)}}, nil)
	}

	if route := fwd.Route(); route != nil {
		// Loose routing (§16.4, §16.5): the next hop is the Route, the Request-URI stays.
		if !dialog && !st.Rule.MayRelay() {
			return p.refuse(ctx, tx, req, 403, "Relaying Denied")
		}
		p.forwarded.WithLabelValues(string(req.Method), "dialog").Inc()
		tgt, err := p.hopTarget(ctx, &route.Address, fwd.Recipient)
		if err != nil {
			return p.refuseErr(ctx, tx, req, err)
		}
		if dialog && !p.dialogHop(st, callID, &route.Address, tgt.dest, false) {
			return p.refuse(ctx, tx, req, 403, "Relaying Denied")
		}
		if status := p.secure(req, tgt); status != 0 {
			return p.refuse(ctx, tx, req, status, "")
		}
		return p.fork(ctx, tx, req, fwd, [][]target{{tgt}}, nil)
	}

	host := strings.ToLower(fwd.Recipient.Host)
	local := p.domains[host] || p.isOurHop(&fwd.Recipient)
	if !local {
		if !dialog && !st.Rule.MayRelay() {
			return p.refuse(ctx, tx, req, 403, "Relaying Denied")
		}
		p.forwarded.WithLabelValues(string(req.Method), "foreign").Inc()
		tgt, err := p.hopTarget(ctx, &fwd.Recipient, fwd.Recipient)
		if err != nil {
			return p.refuseErr(ctx, tx, req, err)
		}
		if dialog && !p.dialogHop(st, callID, &fwd.Recipient, tgt.dest, false) {
			return p.refuse(ctx, tx, req, 403, "Relaying Denied")
		}
		if status := p.secure(req, tgt); status != 0 {
			return p.refuse(ctx, tx, req, status, "")
		}
		return p.fork(ctx, tx, req, fwd, [][]target{{tgt}}, nil)
	}
	if st.Rule == sipx.RuleNone {
		// Only what the identity stage accepted reaches a local user.
		return p.refuse(ctx, tx, req, 403, "")
	}

	// A user of a local domain: location service.
	if fwd.Recipient.User == "" {
		// Addressed to the server itself, and no stage before us served it.
		switch {
		case inDialog:
			return p.refuse(ctx, tx, req, 481, "")
		case p.opts.Allow != nil && !slices.Contains(strings.Split(p.opts.Allow(), ", "), string(req.Method)):
			return p.refuse(ctx, tx, req, 405, "", sip.NewHeader("Allow", p.opts.Allow()))
		}
		return p.refuse(ctx, tx, req, 404, "")
	}
	domain := host
	if !p.domains[domain] {
		domain = p.defaultDom // addressed to one of our IPs: the default domain's user
	}
	aor := fwd.Recipient.User + "@" + domain
	instance, gruu := "", false
	if aor, instance, gruu = p.gruu(&fwd.Recipient, aor); gruu && instance == "" {
		return p.refuse(ctx, tx, req, 404, "Unknown GRUU")
	}
	bindings, err := p.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return sipx.RespondError(tx, req, fmt.Errorf("proxy: lookup %s: %w", aor, err))
	}
	p.forwarded.WithLabelValues(string(req.Method), "local").Inc()
	if gruu {
		// RFC 5627 §5.3: a GRUU reaches exactly the device it names, or nothing (480).
		bindings = ofInstance(bindings, instance)
		if len(bindings) == 0 {
			return p.refuse(ctx, tx, req, 480, "")
		}
	}
	if len(bindings) == 0 {
		known, err := p.known(ctx, aor)
		if err != nil {
			return sipx.RespondError(tx, req, fmt.Errorf("proxy: known %s: %w", aor, err))
		}
		switch {
		case !known:
			return p.refuse(ctx, tx, req, 404, "")
		case req.Method == sip.MESSAGE && p.offline != nil:
			return p.offline.store(ctx, tx, req, aor, false)
		}
		return p.refuse(ctx, tx, req, 480, "")
	}
	groups := p.targets(ctx, bindings)
	if req.Recipient.IsEncrypted() {
		// RFC 3261 §26.2.2: a sips: request travels over TLS on every hop, to the device too.
		if groups = secureGroups(groups); len(groups) == 0 {
			return p.refuse(ctx, tx, req, 480, "No Secure Contact")
		}
	}
	var onFail func([]int) (int, error, bool)
	if req.Method == sip.MESSAGE && p.offline != nil {
		onFail = func(statuses []int) (int, error, bool) {
			if !unreachable(statuses) {
				return 0, nil, false
			}
			status, err := p.offline.store(ctx, tx, req, aor, true)
			return status, err, true
		}
	}
	return p.fork(ctx, tx, req, fwd, groups, onFail)
}

// unreachable reports whether every branch ended in a way that means "no device got it":
// 408 (timeout), 480 (unavailable, or transport failure), 503.
func unreachable(statuses []int) bool {
	if len(statuses) == 0 {
		return true
	}
	for _, s := range statuses {
		if s != 408 && s != 480 && s != 503 {
			return false
		}
	}
	return true
}

// known reports whether aor is a user of ours: one with credentials, or one who registered
// within the offline max age.
func (p *Proxy) known(ctx context.Context, aor string) (bool, error) {
	if p.opts.HasCredentials != nil {
		ok, err := p.opts.HasCredentials(ctx, aor)
		if err != nil || ok {
			return ok, err
		}
	}
	if p.opts.Messages == nil {
		return false, nil
	}
	return p.opts.Messages.Known(ctx, aor, p.opts.Now())
}

// secure answers 480 for a sips: request whose next hop is not over TLS (RFC 3261 §26.2.2),
// else 0.
func (p *Proxy) secure(req *sip.Request, t target) int {
	if req.Recipient.IsEncrypted() && !secureTransport(t.transport) {
		return 480
	}
	return 0
}

func secureTransport(tp string) bool { return tp == "tls" || tp == "wss" }

// secureGroups keeps the targets reached over TLS or secure WebSocket, dropping groups left
// empty.
func secureGroups(groups [][]target) [][]target {
	var out [][]target
	for _, g := range groups {
		var keep []target
		for _, t := range g {
			if secureTransport(t.transport) {
				var alts []target
				for _, a := range t.alts {
					if secureTransport(a.transport) {
						alts = append(alts, a)
					}
				}
				t.alts = alts
				keep = append(keep, t)
			}
		}
		if len(keep) > 0 {
			out = append(out, keep)
		}
	}
	return out
}

// refuse answers req with code and logs it at Debug (routing refusals are normal traffic).
func (p *Proxy) refuse(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) (int, error) {
	if code == 403 {
		p.forwarded.WithLabelValues(string(req.Method), "refused").Inc()
	}
	st := sipx.StateFrom(ctx)
	if ce := st.Logger().Check(zap.DebugLevel, "request refused"); ce != nil {
		ce.Write(zap.Int(logging.KeyStatus, code), zap.String(logging.KeyReason, reason),
			zap.String("request_uri", req.Recipient.String()))
	}
	return sipx.Respond(tx, req, code, reason, hdrs...)
}

// refuseErr answers a routing error (routeErrorStatus): a next hop that cannot exist is 404,
// a DNS failure 503.
func (p *Proxy) refuseErr(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, err error) (int, error) {
	code, reason := routeErrorStatus(err)
	sipx.StateFrom(ctx).Logger().Info("request not routable", zap.Int(logging.KeyStatus, code), zap.Error(err))
	status, rerr := sipx.Respond(tx, req, code, reason)
	return status, rerr
}
