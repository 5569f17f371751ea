package proxy

import (
	"context"
	"strings"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/routes"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// routeTable forwards a request a proxy.routes entry takes to the route's next hops, one at
// a time (serial failover: the next after a 408, a 5xx or a transport failure; RFC 3261 §16.7
// keeps the best response), in place of the location service: an explicit rule is the
// administrator's intent. The Request-URI stays; the hop is where the request is sent. Only
// what the identity stage accepted goes to a user of ours, and only a sender who may relay
// to another domain (routeHop's rule).
func (p *Proxy) routeTable(ctx context.Context, r routing, rt *routes.Route) (int, error) {
	local := p.domains[strings.ToLower(r.fwd.Recipient.Host)] || p.isOurHop(&r.fwd.Recipient)
	switch {
	case local && r.st.Rule == sipx.RuleNone:
		return p.refuse(ctx, r.tx, r.req, 403, "")
	case !local && !r.st.Rule.MayRelay():
		return p.refuse(ctx, r.tx, r.req, 403, "Relaying Denied")
	}
	p.forwarded.WithLabelValues(string(r.req.Method), "route").Inc()
	var groups [][]delivery.Target
	var unreached []int // hops that cannot be reached at all: failures, as their transport's
	for i := range rt.Hops {
		t, err := p.opts.Delivery.HopTarget(ctx, &rt.Hops[i], r.fwd.Recipient)
		if err == nil && p.secure(r.req, t) != 0 {
			continue // a sips: request reaches only a hop over TLS (RFC 3261 §26.2.2)
		}
		if err != nil {
			code, _ := sipx.ErrorStatus(err)
			r.st.Logger().Info("route next hop not reachable", zap.Int("route", rt.Index),
				zap.String("hop", rt.Rule.To[i]), zap.Int(logging.KeyStatus, code), zap.Error(err))
			unreached = append(unreached, 503)
			continue
		}
		groups = append(groups, []delivery.Target{t})
	}
	if len(groups) == 0 {
		code := 480
		if len(unreached) > 0 {
			code = 503
		}
		return p.refuse(ctx, r.tx, r.req, code, "No Route Available")
	}
	f := p.newForking(ctx, r.tx, r.req, r.fwd)
	f.route = rt
	f.synthetic, f.statuses = unreached, append([]int(nil), unreached...)
	return f.run(groups, nil)
}

// failover reports whether a route's next hop ended in a way that sends the request to the
// following one: no answer (408), a 5xx (503 with Retry-After too: that hop is out of
// service, the next may not be) or a transport failure (as 503, §16.9).
func failover(statuses []int) bool {
	if len(statuses) == 0 {
		return true
	}
	last := statuses[len(statuses)-1]
	return last == 408 || last >= 500 && last < 600
}

// recordRoute reports whether the fork's branches get our Record-Route: the requests that
// create a dialog, unless their route says not to.
func (f *forking) recordRoute() bool {
	return recordRoutes(f.fwd) && (f.route == nil || f.route.Rule.RecordRoute)
}

// answerChallenge answers a next hop's 401 or 407 on branch b with the route's credentials
// (routes.Credentials.Answer): a copy of the request with Authorization or
// Proxy-Authorization, on a new client transaction (new branch) to the same target, which
// takes b's place — a CANCEL goes to it. The CSeq stays the caller's, so that the responses
// and the dialog match what the caller sent. Once per request: a challenge to the answer, or
// one simpled cannot answer, is relayed upstream. It reports whether it sent the answer.
func (f *forking) answerChallenge(b *branch, res *sip.Response) bool {
	if f.route == nil || f.route.Rule.Auth.Username == "" || b.authed || f.sent != 0 || f.upCancel || f.global {
		return false
	}
	log := f.st.Logger()
	h, err := f.route.Rule.Auth.Answer(res, b.Req)
	if err != nil {
		log.Info("route next hop's challenge not answered", zap.Int("route", f.route.Index), zap.Error(err))
		return false
	}
	base := f.fwd.Clone()
	base.AppendHeader(h)
	nb, err := f.p.startBranch(base, b.Target, f.hash, f.st, true, f.recordRoute())
	if err != nil {
		log.Info("authenticated branch not sent", zap.String("target", b.Target.Dest.String()), zap.Error(err))
		return false
	}
	if ce := log.Check(zap.DebugLevel, "answered the next hop's challenge"); ce != nil {
		ce.Write(zap.Int(logging.KeyStatus, res.StatusCode), zap.String(logging.KeyBranch, branchID(nb.Req)))
	}
	b.finished = true
	nb.authed = true
	f.all = append(f.all, nb)
	go nb.watch(f.events, f.stop)
	return true
}
