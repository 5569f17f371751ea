package proxy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/delivery"

	"github.com/emiago/sipgo/sip"
)

// prepare applies to the request as received what every branch shares (§16.6 steps 1-3 and
// RFC 3581): the client's Via gets received/rport, Max-Forwards is decremented.
func prepare(fwd *sip.Request, source string) {
	if via := fwd.Via(); via != nil {
		host, port, err := net.SplitHostPort(source)
		if err == nil {
			if _, ok := via.Params.Get("rport"); ok {
				via.Params.Add("rport", port)
				via.Params.Add("received", host)
			} else if strings.Trim(via.Host, "[]") != host {
				via.Params.Add("received", host)
			}
		}
	}
	if mf := fwd.MaxForwards(); mf != nil {
		mf.Dec()
	}
}

// recordRoutes says which dialog-creating requests get our Record-Route.
func recordRoutes(req *sip.Request) bool {
	if req.To().Params.Has("tag") {
		return false
	}
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER:
		return true
	}
	return false
}

// addRecordRoute puts our Record-Route on r, the branch of base (already prepared) leaving from
// listener l for t (§16.6 step 4). in is the flow the request came in on: when the branch
// leaves on another transport, we record-route twice (RFC 5658) so both sides reach us on their
// own transport; and when that flow is a connection or a NATed UDP client, the Record-Route
// facing it names the flow (RFC 5626 §5.3), so requests of the dialog from the other side go
// down the same flow.
func (p *Proxy) addRecordRoute(base, r *sip.Request, l netip.AddrPort, t delivery.Target, in arrival) {
	flows := p.flows
	token := p.dialogToken(base, t, in)
	caller, callee := "", "" // the flow tokens of the two sides, when they are on flows
	if in.transport != "" && (delivery.IsStream(in.transport) || sipx.BehindNAT(base, in.source)) {
		caller = flows.Token(in.transport, in.source)
	}
	if t.Flow {
		callee = flows.TokenOf(transport.Flow{Transport: t.Transport, Remote: t.Dest,
			Local: netip.AddrPortFrom(flows.Advertised(l, t.Dest.Addr()), l.Port())})
	}
	if inL := flows.Listener(in.transport); inL.IsValid() && in.transport != t.Transport {
		r.PrependHeader(p.recordRoute(inL, in.transport, t.Dest.Addr(), token, caller, ""))
		caller = ""
	}
	r.PrependHeader(p.recordRoute(l, t.Transport, t.Dest.Addr(), token, caller, callee))
}

// recordRoute is our Record-Route for a listener, with the dialog's token (dialogToken) and the
// flow tokens of the clients on flows it faces: user (the caller's, or the callee's when only
// the callee is on one) and, when both are, the callee's in the ft parameter.
func (p *Proxy) recordRoute(l netip.AddrPort, tp string, dest netip.Addr, token, user, callee string) *sip.RecordRouteHeader {
	params := sip.HeaderParams{{K: "transport", V: tp}, {K: "lr", V: ""}, {K: sipx.DialogParam, V: token}}
	switch {
	case user == "":
		user = callee
	case callee != "":
		params = append(params, sip.HeaderKV{K: ftParam, V: callee})
	}
	return &sip.RecordRouteHeader{Address: sip.Uri{
		Scheme:    "sip",
		User:      user,
		Host:      delivery.HostLiteral(p.flows.Advertised(l, dest)),
		Port:      int(l.Port()),
		UriParams: params,
	}}
}

// cancelRequest builds the CANCEL for a forwarded INVITE (RFC 3261 §9.1): same Request-URI,
// Call-ID, From, To, CSeq number and Route set, our Via alone.
func cancelRequest(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.SipVersion = inv.SipVersion
	c.AppendHeader(inv.Via().Clone())
	for _, h := range sipx.Headers(inv, "Route") {
		c.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	return c
}

// upstream turns a response from a branch into the response we send back: our Via removed,
// addressed to where the request came from.
func upstream(req *sip.Request, res *sip.Response) *sip.Response {
	out := res.Clone()
	// Our Via goes; the others are the request's as we forwarded them, rendered by sipgo:
	// the client gets its own back, byte for byte (RFC 3261 §8.2.6.2).
	for out.RemoveHeader("Via") {
	}
	sipx.ResponseVias(req, out)
	out.SetTransport(req.Transport())
	out.SetDestination(req.Source())
	return out
}

// branchID is the branch of r's top Via, for logs.
func branchID(r *sip.Request) string {
	if v := r.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}
