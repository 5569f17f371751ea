package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// target is one place a branch goes: the Request-URI it carries, the Route set to put in front
// (a binding's Path), and where and how the request is sent.
type target struct {
	uri       sip.Uri
	routes    []string       // Route header values to add (Path), in order
	dest      netip.AddrPort // where the request is sent
	transport string         // udp, tcp, tls, ws, wss
	// domain is the host of the URI dest was resolved from (a Route, the Request-URI, a
	// contact): the name a TLS server's certificate must prove (RFC 5922 §4); "" when dest
	// came from a flow or node address, which is then checked as an IP literal.
	domain  string
	contact bool // a registered device (a transport failure means "unavailable")
	// flow: dest is a client's flow (RFC 5626): over a stream transport, only the connection
	// it opened is used, never a new one.
	flow bool
	// node: dest is the node of this deployment that holds the client's flow, routes[0] the
	// Route naming it; the branch carries our proof for that node (sipx.NodeProofParam).
	node bool
	// alts are the same device's other flows (outbound: one per reg-id), tried in order when
	// this one cannot be sent on.
	alts []target
	// fresh is when the device was last known to be reachable here: its binding's last
	// refresh, or a later keepalive on its UDP flow. The freshest of a device's flows leads.
	fresh time.Time
	// retransmits, when > 0, caps the Timer E retransmissions of a non-INVITE over UDP
	// (SendInDialog's Dialog.Retransmits); 0 keeps RFC 3261's schedule.
	retransmits int
}

// errNoRoute: the next hop cannot be reached at all (unknown host, .invalid, no listener for
// its transport).
var errNoRoute = errors.New("proxy: no route to next hop")

// routeErrorStatus maps a routing failure to the answer.
func routeErrorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrNoTargets):
		return 404, "Domain Not Found"
	case errors.Is(err, ErrUnresolvable):
		return 404, "No Route To Destination"
	case errors.Is(err, errNoRoute):
		return 404, "No Route To Destination"
	}
	return 503, "Next Hop Unresolvable"
}

// isOurHop reports whether a Route (or Request-URI) value names this server: one of our domains
// or addresses, on one of our ports (or no port).
func (p *Proxy) isOurHop(u *sip.Uri) bool {
	host := strings.ToLower(u.Host)
	if !p.domains[host] && !p.opts.IsOurs(host) {
		return false
	}
	if u.Port == 0 || p.domains[host] {
		return true
	}
	for _, l := range p.opts.Listeners() {
		if int(l.Addr.Port()) == u.Port {
			return true
		}
	}
	return false
}

// processRoutes applies RFC 3261 §16.4 to fwd: a Request-URI that is one of our Record-Route
// values (a strict router before us) is replaced by the last Route; then every leading Route
// naming us is removed — the clients' pre-loaded outbound-proxy Route, and both of our own
// Record-Route entries when we double record-routed (RFC 5658). A Route to us anybody can
// write (every client pre-loads one) proves nothing: whether the request belongs to a dialog
// simpled record-routed was decided by the identity stage from the token in it
// (sipx.Seals.ProveDialog). flows are the client flows the removed Routes of ours name
// (flow tokens: a Path of another node, or our Record-Route in a dialog with clients on flows).
func (p *Proxy) processRoutes(fwd *sip.Request) (flows []namedFlow) {
	routes := sipx.Headers(fwd, "Route")
	if fwd.Recipient.User == "" && fwd.Recipient.UriParams.Has("lr") && p.isOurHop(&fwd.Recipient) && len(routes) > 0 {
		if last, ok := routes[len(routes)-1].(*sip.RouteHeader); ok {
			flows = p.namedFlows(&fwd.Recipient, flows)
			fwd.Recipient = *last.Address.Clone()
			removeLastHeader(fwd, "Route")
		}
	}
	for {
		r := fwd.Route()
		if r == nil || !p.isOurHop(&r.Address) {
			return flows
		}
		flows = p.namedFlows(&r.Address, flows)
		fwd.RemoveHeader("Route")
	}
}

// dialogHop reports whether a request of the dialog st.Dialog proves may go to the next hop
// (sipx.Seals.Hop): forward, to the address the callee was reached at (dest); backward, to
// the caller's hop as the route set names it (uri), or its flow (dest, when flow).
func (p *Proxy) dialogHop(st *sipx.State, callID string, uri *sip.Uri, dest netip.AddrPort, flow bool) bool {
	var hop string
	switch {
	case flow || st.Dialog.Direction == sipx.Forward:
		hop = addrHop(dest)
	default:
		hop = sipx.HopURI(uri.Scheme, uri.Host, uri.Port)
	}
	source, ip := "", ""
	if ap, err := netip.ParseAddrPort(st.Source); err == nil {
		a := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		source, ip = a.String(), a.Addr().String()
	}
	return p.seals.Hop(st.Dialog, callID, hop, source, ip)
}

// addrHop names a next hop by the address a request goes to.
func addrHop(dest netip.AddrPort) string {
	return "a/" + netip.AddrPortFrom(dest.Addr().Unmap(), dest.Port()).String()
}

// dialogToken is the token of our Record-Route in a dialog-creating request base sent to t
// (sipx.Seals.Issue): forward requests may only go where t goes; backward ones only to the
// caller's side as base shows it (its upstream Record-Route, the flow it came on, or its
// Contact) and, unless the caller was vouched for (an authenticated user or a trusted peer),
// only from the address t is reached at — the callee's.
func (p *Proxy) dialogToken(base *sip.Request, t target, in arrival) string {
	from, to := base.From(), base.To()
	tag, _ := from.Params.Get("tag")
	d := sipx.Dialog{CallID: base.CallID().Value(), CallerTag: tag,
		CallerAOR: sipx.AOR(&from.Address), CalleeAOR: sipx.AOR(&to.Address)}
	// The caller's side as a backward request will be routed (route): by the Route set when
	// proxies before us record-routed, else down the caller's flow, else to its Contact.
	caller := ""
	switch {
	case base.RecordRoute() != nil:
		u := &base.RecordRoute().Address
		caller = sipx.HopURI(u.Scheme, u.Host, u.Port)
	case in.transport != "" && (isStream(in.transport) || sipx.BehindNAT(base, in.source)):
		if ap, err := netip.ParseAddrPort(in.source); err == nil {
			caller = addrHop(ap)
		}
	case base.Contact() != nil:
		u := &base.Contact().Address
		caller = sipx.HopURI(u.Scheme, u.Host, u.Port)
	}
	source := ""
	if !in.vouched {
		dest := netip.AddrPortFrom(t.dest.Addr().Unmap(), t.dest.Port())
		source = dest.String()
		if isStream(t.transport) && !t.flow {
			// A connection we open to the callee; its requests come on one it opens, from
			// another port.
			source = dest.Addr().String()
		}
	}
	return p.seals.Issue(d, addrHop(t.dest), caller, source)
}

// removeLastHeader removes the last header called name.
func removeLastHeader(req *sip.Request, name string) {
	hs := sipx.Headers(req, name)
	if len(hs) == 0 {
		return
	}
	keep := slices.Clone(hs[:len(hs)-1])
	for range hs {
		req.RemoveHeader(name)
	}
	for _, h := range keep {
		req.AppendHeader(h)
	}
}

// branchMagic starts every branch we generate: RFC 3261's cookie, then "sd" and the loop hash.
const branchMagic = "z9hG4bKsd"

// loopHash is the part of our branch parameter that identifies the request as it reached us
// (RFC 3261 §16.6 step 8): a request coming back with the same values in a Via of ours has
// looped; with different ones it is spiralling (e.g. re-targeted to another URI).
func loopHash(req *sip.Request) string {
	h := sha256.New()
	h.Write([]byte(req.Recipient.String()))
	h.Write([]byte{0})
	if v := req.CallID(); v != nil {
		h.Write([]byte(v.Value()))
	}
	h.Write([]byte{0})
	if v := req.From(); v != nil {
		tag, _ := v.Params.Get("tag")
		h.Write([]byte(tag))
	}
	h.Write([]byte{0})
	if v := req.To(); v != nil {
		tag, _ := v.Params.Get("tag")
		h.Write([]byte(tag))
	}
	h.Write([]byte{0})
	if v := req.CSeq(); v != nil {
		h.Write([]byte(strconv.FormatUint(uint64(v.SeqNo), 10)))
	}
	for _, pr := range sipx.Headers(req, "Proxy-Require") {
		h.Write([]byte{0})
		h.Write([]byte(pr.Value()))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// looped reports whether req carries a Via of ours whose branch holds req's own loop hash
// (§16.3 step 4).
func (p *Proxy) looped(req *sip.Request) bool {
	var hash string
	for _, h := range sipx.Headers(req, "Via") {
		via, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		branch, _ := via.Params.Get("branch")
		if !strings.HasPrefix(branch, branchMagic) || !p.isOurSentBy(via) {
			continue
		}
		if hash == "" {
			hash = loopHash(req)
		}
		if strings.HasPrefix(branch[len(branchMagic):], hash) {
			return true
		}
	}
	return false
}

func (p *Proxy) isOurSentBy(via *sip.ViaHeader) bool {
	u := sip.Uri{Host: via.Host, Port: via.Port}
	return p.opts.IsOurs(strings.ToLower(via.Host)) && p.isOurHop(&u)
}

// hopTarget is the target for a next hop named by a URI (a Route or a foreign Request-URI):
// an IP literal is used as it is, a name goes through the resolver (RFC 3263).
func (p *Proxy) hopTarget(ctx context.Context, hop *sip.Uri, ruri sip.Uri) (target, error) {
	tp := uriTransport(hop)
	host := strings.Trim(hop.Host, "[]")
	t := target{uri: ruri, domain: strings.ToLower(host)}
	if ip, err := netip.ParseAddr(host); err == nil {
		port := hop.Port
		if port == 0 {
			port = defaultPort(tp)
		}
		t.dest = netip.AddrPortFrom(ip.Unmap(), uint16(port))
		t.transport = tp
		return t, nil
	}
	if p.opts.Resolver == nil || strings.HasSuffix(strings.ToLower(host), ".invalid") {
		return t, fmt.Errorf("%w: %s", errNoRoute, hop.Host)
	}
	tgts, err := p.opts.Resolver.Resolve(ctx, *hop)
	if err != nil {
		return t, err
	}
	for _, rt := range tgts {
		if p.listener(rt.Transport).IsValid() {
			t.dest, t.transport = rt.Addr, rt.Transport
			return t, nil
		}
	}
	return t, fmt.Errorf("%w: no listener for the transports of %s", errNoRoute, hop.Host)
}

// uriTransport is the transport a URI asks for (RFC 3263 §4.1 with the URI's own parameter),
// lower case.
func uriTransport(u *sip.Uri) string {
	if tp, ok := u.UriParams.Get("transport"); ok && tp != "" {
		tp = strings.ToLower(tp)
		if u.IsEncrypted() && tp == "tcp" {
			return "tls"
		}
		return tp
	}
	if u.IsEncrypted() {
		return "tls"
	}
	return "udp"
}

func defaultPort(tp string) int {
	switch tp {
	case "tls", "wss":
		return 5061
	case "ws":
		return 80
	}
	return 5060
}

// targets turns bindings into fork groups: highest q first, equal q in parallel (§16.6,
// RFC 3261 §16.6 with the q ordering of §16.5).
func (p *Proxy) targets(ctx context.Context, bindings []storage.Binding) [][]target {
	sorted := slices.Clone(bindings)
	slices.SortStableFunc(sorted, func(a, b storage.Binding) int {
		if c := cmp.Compare(qOf(b), qOf(a)); c != 0 {
			return c
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)
	})
	var groups [][]target
	// A device registered over several flows (RFC 5626: one binding per reg-id of one
	// +sip.instance) is one target: its most recently refreshed flow first, the others as
	// alternatives when it cannot be sent on (§5.3: "the first that works").
	device := map[string][2]int{}
	lastQ := -2
	for i := range sorted {
		b := &sorted[i]
		t, ok := p.bindingTarget(ctx, b)
		if !ok {
			continue
		}
		t.fresh = b.UpdatedAt
		if t.flow && t.transport == "udp" && p.opts.LastSeen != nil {
			if seen := p.opts.LastSeen(t.dest); seen.After(t.fresh) {
				t.fresh = seen
			}
		}
		if b.InstanceID != "" && b.RegID > 0 {
			if at, seen := device[b.InstanceID]; seen {
				first := &groups[at[0]][at[1]]
				first.alts = append(first.alts, t)
				continue
			}
		}
		if q := qOf(*b); q != lastQ || len(groups) == 0 {
			groups = append(groups, nil)
			lastQ = q
		}
		if b.InstanceID != "" && b.RegID > 0 {
			device[b.InstanceID] = [2]int{len(groups) - 1, len(groups[len(groups)-1])}
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
	}
	if len(device) > 0 {
		for gi := range groups {
			for ti := range groups[gi] {
				if t := &groups[gi][ti]; len(t.alts) > 0 {
					all := append([]target{*t}, t.alts...)
					all[0].alts = nil
					slices.SortStableFunc(all, func(a, b target) int { return b.fresh.Compare(a.fresh) })
					*t = all[0]
					t.alts = all[1:]
				}
			}
		}
	}
	return groups
}

// qOf is a binding's q-value for ordering: no q-value counts as 1.0 (RFC 3261 §16.6 leaves it
// to the proxy; Kamailio does the same).
func qOf(b storage.Binding) int {
	if b.Q < 0 {
		return 1000
	}
	return b.Q
}

// bindingTarget is where a registered contact is reached: the contact URI as Request-URI, its
// Path as Route set, and the address to send to — the first Path hop; else the flow the
// registrar bound it to (the connection or NAT binding the REGISTER came from, flow.go); else
// the contact's own address (over a connection to it that is already open, if any).
func (p *Proxy) bindingTarget(ctx context.Context, b *storage.Binding) (target, bool) {
	var t target
	if err := sip.ParseUri(b.URI, &t.uri); err != nil {
		p.log.Warn("unusable binding", zap.String("contact", b.URI), zap.Error(err))
		return t, false
	}
	t.contact = true
	t.routes = b.Path
	if len(b.Path) > 0 {
		if route, err := parseRoute(b.Path[0]); err == nil {
			hop, err := p.hopTarget(ctx, &route.Address, t.uri)
			if err == nil {
				hop.routes, hop.contact = b.Path, true
				return hop, true
			}
		}
		p.log.Warn("unusable Path", zap.String("path", b.Path[0]))
		return t, false
	}
	if b.Flow != "" {
		f, token, ok := p.bindingFlow(b)
		if !ok {
			p.log.Warn("unusable flow", zap.String("contact", b.URI), zap.String("received", b.Received))
			return t, false
		}
		return p.flowTarget(t.uri, f, token), true
	}
	hop, err := p.hopTarget(ctx, &t.uri, t.uri)
	if err != nil {
		// A contact we cannot resolve (".invalid", a name without DNS): reach it where it
		// registered from — over a connection, only the one it registered on.
		if ap, perr := netip.ParseAddrPort(b.Received); perr == nil {
			t.dest = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			t.transport = cmp.Or(b.Transport, "udp")
			t.flow = isStream(t.transport)
			return t, true
		}
		return t, false
	}
	hop.contact = true
	return hop, true
}

func isStream(tp string) bool {
	switch tp {
	case "tcp", "tls", "ws", "wss":
		return true
	}
	return false
}
