// Package proxy is simpled's transaction-stateful SIP proxy (RFC 3261 §16), the last stage of the
// chain: it routes every request no earlier stage answered. Requests for a user of a local
// domain are forked to the user's registered contacts (parallel within a q-value, sequential
// between q-values) and the best answer goes back (§16.7); in-dialog requests follow the Route
// set simpled put itself in with Record-Route; requests for other domains are located with DNS
// (RFC 3263, package dns, through package delivery) — only for authenticated local users and
// trusted peers, so simpled is never an open relay. MESSAGE (RFC 3428) is relayed byte-exact
// after its body type is checked (package msgcheck), and handed to store-and-forward (package
// offline) for a known user who has no reachable device. A request outside a dialog that a
// rule of proxy.routes takes (package routes: extensions of a PBX, a voicemail server's
// subscriptions) goes to that rule's next hops instead, one at a time (routed.go), with the
// route's credentials answering a next hop's challenge.
//
// The proxy decides where a request goes and answers its sender; package delivery picks how a
// contact is reached (its flow, the node holding it, its Path) and sends the branches. The
// requests simpled originates itself (NOTIFYs, stored messages) never pass through here.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/offline"
	"github.com/simpled/simpled/routes"
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

// Options configure a Proxy. Domains, IsOurs, Locator, Client, Delivery and Seals are
// required.
type Options struct {
	Domains []string
	// IsOurs reports whether a host (domain or address) is this server.
	IsOurs  func(host string) bool
	Locator Locator
	// Client sends CANCELs, ACKs and stray 2xx; branches go through Delivery.
	Client *sipgo.Client
	// Delivery reaches contacts and sends the branches; its flows service names our
	// listeners.
	Delivery *delivery.Delivery
	// Offline keeps MESSAGEs for known users with no reachable device; nil disables
	// store-and-forward.
	Offline *offline.Offline
	// HasCredentials reports whether aor has digest credentials (a known user), when there
	// is no Offline (which knows more users); may be nil.
	HasCredentials func(ctx context.Context, aor string) (bool, error)
	// Messages are the rules a relayed MESSAGE must meet; nil allows the default types.
	Messages *msgcheck.Rules
	// InviteTimeout is Timer C (RFC 3261 §16.6 step 11): a branch ringing this long is
	// cancelled. 0 means 180 s.
	InviteTimeout time.Duration
	// Seals issues and checks the dialog tokens of our Record-Routes (the identity stage
	// checks them with the same Seals). Required.
	Seals *sipx.Seals
	// Routes is the proxy.routes table: a request outside a dialog one of its rules takes
	// goes to the rule's next hops rather than where it would go otherwise. Nil routes
	// nothing.
	Routes *routes.Table
	// Allow lists the methods the server serves or routes, for 405 answers.
	Allow func() string
	// Calls is told of the calls routed (calls.go); nil: nobody is.
	Calls      CallObserver
	Log        *zap.Logger
	Registerer prometheus.Registerer
}

// Proxy is the proxy stage. Create it with New; it is safe for concurrent use.
type Proxy struct {
	opts       Options
	domains    map[string]bool
	defaultDom string
	log        *zap.Logger
	flows      *transport.Flows
	seals      *sipx.Seals

	duration  *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
}

// New builds a proxy from opts.
func New(opts Options) (*Proxy, error) {
	if opts.IsOurs == nil || opts.Locator == nil || opts.Client == nil || opts.Delivery == nil || len(opts.Domains) == 0 || opts.Seals == nil {
		return nil, errors.New("proxy: Domains, IsOurs, Locator, Client, Delivery and Seals are required")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	// Settings come from config.Default, the one home of defaults: a zero here is a wiring
	// mistake, not a request for a default.
	if opts.InviteTimeout <= 0 || opts.Messages == nil {
		return nil, errors.New("proxy: InviteTimeout (proxy.invite_timeout) and Messages are required")
	}
	p := &Proxy{opts: opts, domains: map[string]bool{}, log: opts.Log, flows: opts.Delivery.Flows(), seals: opts.Seals}
	for _, d := range opts.Domains {
		p.domains[strings.ToLower(d)] = true
	}
	p.defaultDom = strings.ToLower(opts.Domains[0])
	p.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_proxy_requests_total", Help: "Requests routed by the proxy, by method and route kind (local, dialog, foreign, route, refused).",
	}, []string{"method", "route"})
	p.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "simpled_proxy_duration_seconds",
		Help:    "Time from receiving a request to sending its final answer, for proxied requests, by method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
	}, []string{"method"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{p.forwarded, p.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Plugin returns the proxy as the chain's last stage (it never passes a request on).
func (p *Proxy) Plugin() sipx.Plugin {
	return func(sipx.Handler) sipx.Handler { return p }
}

// Name implements sipx.Handler.
func (p *Proxy) Name() string { return "proxy" }

// ServeSIP routes req (RFC 3261 §16.4–16.5) and forwards it statefully.
func (p *Proxy) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	start := time.Now()
	status, err := p.route(ctx, st, tx, req)
	if status > 0 {
		p.duration.WithLabelValues(string(req.Method)).Observe(time.Since(start).Seconds())
	}
	if req.Method == sip.MESSAGE && status >= 200 && status < 300 && status != 202 {
		p.opts.Delivery.CountMessage("relayed")
	}
	if req.Method == sip.BYE {
		p.observeBye(ctx, st, req, status)
	}
	return status, err
}

// route answers a request that loops or that no rule lets through, and otherwise routes it
// by what it names: a client's flow (routeFlow), a next hop in its Route or a foreign
// Request-URI (routeHop), or a user of ours (routeLocal).
func (p *Proxy) route(ctx context.Context, st *sipx.State, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if p.looped(req) {
		return p.refuse(ctx, tx, req, 482, "")
	}
	inDialog := req.To().Params.Has("tag")
	switch {
	case st.Rule == sipx.RuleNone && inDialog:
		// A To tag that no dialog of ours, no subscription and no credentials vouch for: a
		// forged in-dialog request is never delivered (docs/security.md).
		return p.refuse(ctx, tx, req, 481, "")
	case req.Method == sip.MESSAGE:
		// Whatever its route: simpled relays only bodies it accepts (RFC 3428 §7), under
		// the identity they claim.
		if status, reason, hdrs := p.opts.Messages.Check(st, req); status != 0 {
			return p.refuse(ctx, tx, req, status, reason, hdrs...)
		}
	}
	fwd := req.Clone()
	flows := p.processRoutes(fwd)
	prepare(fwd, st.Source)
	sipx.ForwardVias(req, fwd, st.Source)
	r := routing{st: st, tx: tx, req: req, fwd: fwd, dialog: inDialog && st.Rule == sipx.RuleDialog}

	if flow, ok := (arrival{transport: st.Transport, source: st.Source}).elsewhere(flows); ok && fwd.Route() == nil {
		return p.routeFlow(ctx, r, flow)
	}
	if route := fwd.Route(); route != nil {
		// Loose routing (§16.4, §16.5): the next hop is the Route, the Request-URI stays.
		return p.routeHop(ctx, r, &route.Address, "dialog")
	}
	if rt := p.opts.Routes.Match(fwd); rt != nil {
		return p.routeTable(ctx, r, rt)
	}
	host := strings.ToLower(fwd.Recipient.Host)
	if !p.domains[host] && !p.isOurHop(&fwd.Recipient) {
		return p.routeHop(ctx, r, &fwd.Recipient, "foreign")
	}
	if st.Rule == sipx.RuleNone {
		// Only what the identity stage accepted reaches a local user.
		return p.refuse(ctx, tx, req, 403, "")
	}
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
	return p.routeLocal(ctx, r, host)
}

// routing is a request being routed: as received (req) and the copy to forward (fwd).
type routing struct {
	st       *sipx.State
	tx       sip.ServerTransaction
	req, fwd *sip.Request
	// dialog: the request is of a dialog simpled record-routed (the identity stage proved
	// it), so it may only go to the dialog's other end.
	dialog bool
}

// routeFlow sends a request down a client's flow named by a Route of ours (a Path of another
// node, or our Record-Route in a dialog with clients on flows) other than the one the request
// came on: in a dialog only to its other end, outside one only under a rule and to a flow
// this node holds.
func (p *Proxy) routeFlow(ctx context.Context, r routing, flow namedFlow) (int, error) {
	switch {
	case r.dialog && !p.dialogHop(r.st, r.req.CallID().Value(), nil, flow.f.Remote, true),
		!r.dialog && (r.st.Rule == sipx.RuleNone || !p.flows.Holds(flow.f)):
		return p.refuse(ctx, r.tx, r.req, 403, "Relaying Denied")
	}
	p.forwarded.WithLabelValues(string(r.req.Method), "flow").Inc()
	t := p.opts.Delivery.FlowTarget(r.fwd.Recipient, flow.f, flow.token)
	return p.fork(ctx, r.tx, r.req, r.fwd, [][]delivery.Target{{t}}, nil)
}

// routeHop sends a request to the next hop a URI names (a Route, or a foreign Request-URI):
// only in a dialog of ours, to its other end, or for a sender who may relay (§16.5; simpled is
// no open relay). kind labels simpled_proxy_requests_total.
func (p *Proxy) routeHop(ctx context.Context, r routing, hop *sip.Uri, kind string) (int, error) {
	if !r.dialog && !r.st.Rule.MayRelay() {
		return p.refuse(ctx, r.tx, r.req, 403, "Relaying Denied")
	}
	p.forwarded.WithLabelValues(string(r.req.Method), kind).Inc()
	tgt, err := p.opts.Delivery.HopTarget(ctx, hop, r.fwd.Recipient)
	if err != nil {
		return p.refuseErr(ctx, r.tx, r.req, err)
	}
	if r.dialog && !p.dialogHop(r.st, r.req.CallID().Value(), hop, tgt.Dest, false) {
		return p.refuse(ctx, r.tx, r.req, 403, "Relaying Denied")
	}
	if status := p.secure(r.req, tgt); status != 0 {
		return p.refuse(ctx, r.tx, r.req, status, "")
	}
	return p.fork(ctx, r.tx, r.req, r.fwd, [][]delivery.Target{{tgt}}, nil)
}

// routeLocal forks a request for a user of a local domain (host, or the default domain for
// one of our addresses) to the user's registered devices, or the device a GRUU names (RFC
// 5627 §5.3); a MESSAGE no device took goes to store-and-forward.
func (p *Proxy) routeLocal(ctx context.Context, r routing, host string) (int, error) {
	req, tx := r.req, r.tx
	domain := host
	if !p.domains[domain] {
		domain = p.defaultDom // addressed to one of our IPs: the default domain's user
	}
	aor := r.fwd.Recipient.User + "@" + domain
	instance, gruu := "", false
	if aor, instance, gruu = p.opts.Delivery.GRUU(&r.fwd.Recipient, aor); gruu && instance == "" {
		return p.refuse(ctx, tx, req, 404, "Unknown GRUU")
	}
	bindings, err := p.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return sipx.RespondError(tx, req, fmt.Errorf("proxy: lookup %s: %w", aor, err))
	}
	p.forwarded.WithLabelValues(string(req.Method), "local").Inc()
	if gruu {
		// RFC 5627 §5.3: a GRUU reaches exactly the device it names, or nothing (480).
		bindings = delivery.OfInstance(bindings, instance)
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
		case req.Method == sip.MESSAGE && p.opts.Offline != nil:
			return p.opts.Offline.Store(ctx, tx, req, aor, false)
		}
		return p.refuse(ctx, tx, req, 480, "")
	}
	groups := p.opts.Delivery.Targets(ctx, bindings)
	if req.Recipient.IsEncrypted() {
		// RFC 3261 §26.2.2: a sips: request travels over TLS on every hop, to the device too.
		if groups = secureGroups(groups); len(groups) == 0 {
			return p.refuse(ctx, tx, req, 480, "No Secure Contact")
		}
	}
	var onFail func([]int) (int, error, bool)
	if req.Method == sip.MESSAGE && p.opts.Offline != nil {
		onFail = func(statuses []int) (int, error, bool) {
			if !unreachable(statuses) {
				return 0, nil, false
			}
			status, err := p.opts.Offline.Store(ctx, tx, req, aor, true)
			return status, err, true
		}
	}
	return p.fork(ctx, tx, req, r.fwd, groups, onFail)
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

// known reports whether aor is a user of ours: one with credentials, or (with
// store-and-forward) one who registered within the offline max age.
func (p *Proxy) known(ctx context.Context, aor string) (bool, error) {
	if p.opts.Offline != nil {
		return p.opts.Offline.Known(ctx, aor)
	}
	if p.opts.HasCredentials != nil {
		return p.opts.HasCredentials(ctx, aor)
	}
	return false, nil
}

// secure answers 480 for a sips: request whose next hop is not over TLS (RFC 3261 §26.2.2),
// else 0.
func (p *Proxy) secure(req *sip.Request, t delivery.Target) int {
	if req.Recipient.IsEncrypted() && !secureTransport(t.Transport) {
		return 480
	}
	return 0
}

func secureTransport(tp string) bool { return tp == "tls" || tp == "wss" }

// secureGroups keeps the targets reached over TLS or secure WebSocket, dropping groups left
// empty.
func secureGroups(groups [][]delivery.Target) [][]delivery.Target {
	var out [][]delivery.Target
	for _, g := range groups {
		var keep []delivery.Target
		for _, t := range g {
			if secureTransport(t.Transport) {
				var alts []delivery.Target
				for _, a := range t.Alts {
					if secureTransport(a.Transport) {
						alts = append(alts, a)
					}
				}
				t.Alts = alts
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

// refuseErr answers a routing error (sipx.ErrorStatus): a next hop that cannot exist is 404,
// a DNS failure 503.
func (p *Proxy) refuseErr(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, err error) (int, error) {
	code, reason := sipx.ErrorStatus(err)
	sipx.StateFrom(ctx).Logger().Info("request not routable", zap.Int(logging.KeyStatus, code), zap.Error(err))
	status, rerr := sipx.Respond(tx, req, code, reason)
	return status, rerr
}
