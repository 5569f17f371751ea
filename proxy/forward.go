package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// connectTimeout bounds opening a connection to a next hop.
const connectTimeout = 5 * time.Second

// listener returns our socket for transport tp, or the zero AddrPort.
func (p *Proxy) listener(tp string) netip.AddrPort {
	for _, l := range p.opts.Listeners() {
		if l.Transport == tp {
			return l.Addr
		}
	}
	return netip.AddrPort{}
}

// advertised is the address we put in Via and Record-Route for a listener: the listener's own,
// or — for a wildcard listener — the local address the kernel uses to reach dest.
func (p *Proxy) advertised(l netip.AddrPort, dest netip.Addr) netip.Addr {
	if !l.Addr().IsUnspecified() {
		return l.Addr()
	}
	if v, ok := p.localIPs.Load(dest); ok {
		return v.(netip.Addr)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	if c, err := net.Dial("udp", netip.AddrPortFrom(dest, 9).String()); err == nil {
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if v, ok := netip.AddrFromSlice(a.IP); ok {
				ip = v.Unmap()
			}
		}
		c.Close()
	}
	p.localIPs.Store(dest, ip)
	return ip
}

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

// newBranch builds the request for one target (§16.6 steps 1-8) from base (already prepared).
// in is the flow the request came in on: when the branch leaves on another transport, we
// record-route twice (RFC 5658) so both sides reach us on their own transport; and when that
// flow is a connection or a NATed UDP client, the Record-Route facing it names the flow
// (RFC 5626 §5.3), so requests of the dialog from the other side go down the same flow.
// With only true, base is the only branch's and is modified in place rather than copied.
func (p *Proxy) newBranch(base *sip.Request, t target, hash string, in arrival, only bool) (*sip.Request, error) {
	l := p.listener(t.transport)
	if !l.IsValid() {
		return nil, fmt.Errorf("%w: no %s listener", errNoRoute, t.transport)
	}
	r := base
	if !only {
		r = base.Clone()
	}
	r.Recipient = *t.uri.Clone()
	for i := len(t.routes) - 1; i >= 0; i-- {
		route, err := parseRoute(t.routes[i])
		if err != nil {
			return nil, fmt.Errorf("proxy: Path %q: %w", t.routes[i], err)
		}
		r.PrependHeader(route)
	}
	if t.node && len(t.routes) > 0 {
		// The Route to the node holding the callee's flow: our proof that we accepted this
		// request, so that node takes it as a trusted peer's (sipx.NodeProofParam).
		if top := r.Route(); top != nil {
			tag, _ := base.From().Params.Get("tag")
			top.Address.UriParams = append(top.Address.UriParams, sip.HeaderKV{K: sipx.NodeProofParam,
				V: p.seals.NodeProof(base.CallID().Value(), base.CSeq().SeqNo, tag, p.opts.Now())})
		}
	}
	if recordRoutes(base) {
		token := p.dialogToken(base, t, in)
		caller, callee := "", "" // the flow tokens of the two sides, when they are on flows
		if in.transport != "" && (isStream(in.transport) || sipx.BehindNAT(base, in.source)) {
			caller = p.FlowToken(in.transport, in.source)
		}
		if t.flow {
			callee = transport.Flow{Transport: t.transport, Remote: t.dest,
				Local: netip.AddrPortFrom(p.advertised(l, t.dest.Addr()), l.Port())}.Token(p.flowKey)
		}
		if inL := p.listener(in.transport); inL.IsValid() && in.transport != t.transport {
			r.PrependHeader(p.recordRoute(inL, in.transport, t.dest.Addr(), token, caller, ""))
			caller = ""
		}
		r.PrependHeader(p.recordRoute(l, t.transport, t.dest.Addr(), token, caller, callee))
	}
	p.setVia(r, l, t, hash)
	return r, nil
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
		Host:      hostLiteral(p.advertised(l, dest)),
		Port:      int(l.Port()),
		UriParams: params,
	}}
}

// setVia puts our Via on top of r and addresses r to t from listener l.
func (p *Proxy) setVia(r *sip.Request, l netip.AddrPort, t target, hash string) {
	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       strings.ToUpper(t.transport),
		Host:            hostLiteral(p.advertised(l, t.dest.Addr())),
		Port:            int(l.Port()),
		// Unique per branch (RFC 3261 §8.1.1.7), not secret: math/rand/v2's per-thread
		// ChaCha8 costs no system call, crypto/rand's getrandom does.
		Params: sip.HeaderParams{{K: "branch", V: branchMagic + hash + "." + strconv.FormatUint(rand.Uint64(), 36)}},
	}
	r.PrependHeader(via)
	address(r, l, t)
}

// address sets where sipgo sends r: the target's address over its transport, from our UDP
// listening socket for UDP.
func address(r *sip.Request, l netip.AddrPort, t target) {
	r.SetTransport(strings.ToUpper(t.transport))
	r.SetDestination(t.dest.String())
	if t.transport == "udp" {
		r.Laddr = sip.Addr{IP: net.IP(l.Addr().AsSlice()), Port: int(l.Port())}
	} else {
		r.Laddr = sip.Addr{}
	}
}

// parseRoute parses one Route or Path value ("<sip:host;lr>").
func parseRoute(v string) (*sip.RouteHeader, error) {
	var route sip.RouteHeader
	var params sip.HeaderParams
	if _, err := sip.ParseAddressValue(v, &route.Address, &params); err != nil {
		return nil, err
	}
	return &route, nil
}

// hostLiteral renders an IP for a URI or Via host (IPv6 in brackets).
func hostLiteral(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[" + ip.String() + "]"
	}
	return ip.Unmap().String()
}

// overMTU reports whether r is too big for UDP (RFC 3261 §18.1.1).
func (p *Proxy) overMTU(r *sip.Request) bool {
	if len(r.Body()) < p.opts.UDPMTU/2 {
		return false // headers alone never come near the MTU: skip serialising
	}
	return len(r.String()) > p.opts.UDPMTU
}

// toTCP moves a branch from UDP to TCP: same address, TCP listener in Via.
func (p *Proxy) toTCP(r *sip.Request, t target) (*sip.Request, target, bool) {
	l := p.listener("tcp")
	if !l.IsValid() {
		return r, t, false
	}
	t.transport = "tcp"
	c := r.Clone()
	via := c.Via()
	via.Transport = "TCP"
	via.Host = hostLiteral(p.advertised(l, t.dest.Addr()))
	via.Port = int(l.Port())
	address(c, l, t)
	return c, t, true
}

// asBuilt is a sipgo request option that leaves the request exactly as we built it (without
// options sipgo would add its own Via, From, To...).
func asBuilt(*sipgo.Client, *sip.Request) error { return nil }

// send starts a client transaction for r. Only a stream transport may have to connect (and
// bounds it); UDP sends from our listening socket.
func (p *Proxy) send(r *sip.Request) (sip.ClientTransaction, error) {
	if r.Transport() == "UDP" {
		return p.opts.Client.TransactionRequest(context.Background(), r, asBuilt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return p.opts.Client.TransactionRequest(ctx, r, asBuilt)
}

// verifyPeer opens (or reuses) the TLS connection r goes over and checks that the server's
// certificate names t's SIP domain (RFC 5922 §4, §7.2), or t's address when t has no domain
// (a flow or node address). The chain was verified when the connection was made
// (transport.ClientTLS); a reused connection is checked again for each request, so a
// connection made for one domain never carries requests for another its certificate does
// not name. A flow (the client's own connection) is not checked: it is the client's.
func (p *Proxy) verifyPeer(r *sip.Request, t target) error {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := p.opts.Client.TransportLayer().ClientRequestConnection(ctx, r)
	if err != nil {
		return err
	}
	defer conn.TryClose()
	var nc net.Conn
	switch c := conn.(type) {
	case *sip.TCPConnection:
		nc = c.Conn
	case *sip.WSConnection:
		nc = c.Conn
	}
	name := t.domain
	if name == "" {
		name = t.dest.Addr().String()
	}
	if err := transport.VerifyPeerName(nc, name); err != nil {
		p.log.Warn("TLS peer refused", zap.String("target", t.dest.String()), zap.Error(err))
		return err
	}
	return nil
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
