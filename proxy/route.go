package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"

	"github.com/emiago/sipgo/sip"
)

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
	for _, l := range p.flows.Listeners() {
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
func (p *Proxy) dialogToken(base *sip.Request, t delivery.Target, in arrival) string {
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
	case in.transport != "" && (delivery.IsStream(in.transport) || sipx.BehindNAT(base, in.source)):
		if ap, err := netip.ParseAddrPort(in.source); err == nil {
			caller = addrHop(ap)
		}
	case base.Contact() != nil:
		u := &base.Contact().Address
		caller = sipx.HopURI(u.Scheme, u.Host, u.Port)
	}
	source := ""
	if !in.vouched {
		dest := netip.AddrPortFrom(t.Dest.Addr().Unmap(), t.Dest.Port())
		source = dest.String()
		if delivery.IsStream(t.Transport) && !t.Flow {
			// A connection we open to the callee; its requests come on one it opens, from
			// another port.
			source = dest.Addr().String()
		}
	}
	return p.seals.Issue(d, addrHop(t.Dest), caller, source)
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
		if !strings.HasPrefix(branch, delivery.BranchMagic) || !p.isOurSentBy(via) {
			continue
		}
		if hash == "" {
			hash = loopHash(req)
		}
		if strings.HasPrefix(branch[len(delivery.BranchMagic):], hash) {
			return true
		}
	}
	return false
}

func (p *Proxy) isOurSentBy(via *sip.ViaHeader) bool {
	u := sip.Uri{Host: via.Host, Port: via.Port}
	return p.opts.IsOurs(strings.ToLower(via.Host)) && p.isOurHop(&u)
}
