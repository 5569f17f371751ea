package proxy

import (
	"context"
	"net"
	"strconv"
	"strings"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// ServeACK forwards an ACK that matched no transaction of ours — the ACK for a 2xx, which is
// its own transaction end to end (RFC 3261 §13.2.2.4) — statelessly along the route set we
// Record-Routed (§16.11). An ACK is never answered: one that cannot be routed is dropped. ctx
// bounds the lookup of its next hop.
func (p *Proxy) ServeACK(ctx context.Context, req *sip.Request) {
	if req.MaxForwards() != nil && req.MaxForwards().Val() == 0 || p.looped(req) {
		return
	}
	proof, ok := p.seals.ProveDialog(req)
	if !ok {
		// Not in a dialog we Record-Routed (the token in our Route proves it, rule (c) of
		// docs/security.md): dropping it keeps simpled from relaying for anyone who sends an
		// ACK.
		p.dropACK(req, "ACK outside our route set dropped")
		return
	}
	// The ACK bypasses the chain (it is no transaction of ours): the dialog's rule is
	// checked here, the next hop below, as the identity stage and route do for the others.
	st := &sipx.State{Source: req.Source(), Transport: strings.ToLower(req.Transport()), Rule: sipx.RuleDialog, Dialog: proof}
	fwd := req.Clone()
	flows := p.processRoutes(fwd)
	prepare(fwd, req.Source())
	sipx.ForwardVias(req, fwd, req.Source())
	callID := req.CallID().Value()
	var t delivery.Target
	if flow, ok := (arrival{transport: st.Transport, source: st.Source}).elsewhere(flows); ok && fwd.Route() == nil {
		if !p.dialogHop(st, callID, nil, flow.f.Remote, true) {
			p.dropACK(req, "ACK towards another than the dialog's end dropped")
			return
		}
		t = p.opts.Delivery.FlowTarget(fwd.Recipient, flow.f, flow.token) // the caller or callee on a flow
	} else {
		hop := &fwd.Recipient
		if r := fwd.Route(); r != nil {
			hop = &r.Address
		}
		var err error
		if t, err = p.opts.Delivery.HopTarget(ctx, hop, fwd.Recipient); err != nil {
			p.log.Debug("ACK not routable", zap.Error(err))
			return
		}
		if !p.isOurHop(hop) && !p.dialogHop(st, callID, hop, t.Dest, false) {
			p.dropACK(req, "ACK towards another than the dialog's end dropped")
			return
		}
	}
	r, err := p.opts.Delivery.Build(fwd, t, delivery.BranchOptions{Hash: loopHash(req), Only: true})
	if err != nil {
		p.log.Debug("ACK not routable", zap.Error(err))
		return
	}
	if err := p.opts.Client.WriteRequest(r, delivery.AsBuilt); err != nil {
		p.log.Debug("ACK not sent", zap.String(logging.KeyCallID, req.CallID().Value()), zap.Error(err))
	}
}

// dropACK logs at Debug why an ACK was not forwarded.
func (p *Proxy) dropACK(req *sip.Request, why string) {
	if ce := p.log.Check(zap.DebugLevel, why); ce != nil {
		ce.Write(zap.String("request_uri", req.Recipient.String()), zap.String(logging.KeyRemoteAddr, req.Source()))
	}
}

// ServeStrayResponse takes a response that matched no client transaction (sipgox.StrayRouter
// offers it after simpled's own transactions declined it): a 2xx to an INVITE retransmitted
// after our transaction ended is forwarded statelessly to the next Via (§16.7 step 10 for 2xx,
// RFC 6026). It reports whether the response was ours to relay; anything else is dropped.
func (p *Proxy) ServeStrayResponse(res *sip.Response) bool {
	via := res.Via()
	if via == nil || !p.isOurSentBy(via) || !res.IsSuccess() {
		return false
	}
	cs := res.CSeq()
	if cs == nil || cs.MethodName != sip.INVITE {
		return false
	}
	out := res.Clone()
	out.RemoveHeader("Via")
	next := out.Via()
	if next == nil {
		return true
	}
	host, port := next.Host, next.Port
	if v, ok := next.Params.Get("received"); ok && v != "" {
		host = v
	}
	if v, ok := next.Params.Get("rport"); ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			port = n
		}
	}
	tp := strings.ToLower(next.Transport)
	if port == 0 {
		port = delivery.DefaultPort(tp)
	}
	p.writeResponse(out, tp, net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)))
	return true
}

// writeResponse sends a response outside any transaction: over UDP from our listening socket,
// over a stream transport on the connection to dest if one is open.
func (p *Proxy) writeResponse(res *sip.Response, tp, dest string) {
	res.SetTransport(strings.ToUpper(tp))
	res.SetDestination(dest)
	tl := p.opts.Client.TransportLayer()
	addr := dest
	if tp == "udp" {
		l := p.flows.Listener("udp")
		if !l.IsValid() {
			return
		}
		addr = l.String()
	}
	conn, err := tl.GetConnection(tp, addr)
	if err != nil {
		p.log.Debug("response not relayed: no connection", zap.String("destination", dest), zap.Error(err))
		return
	}
	if err := conn.WriteMsg(res); err != nil {
		p.log.Debug("response not relayed", zap.String("destination", dest), zap.Error(err))
	}
}
