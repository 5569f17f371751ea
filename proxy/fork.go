package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/routes"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// branch is one forwarded copy of the request (RFC 3261 §16.6) and what came back on it.
type branch struct {
	*delivery.Branch
	provisional bool // a provisional response arrived: a CANCEL may be sent
	wantCancel  bool // cancel as soon as it is allowed
	cancelled   bool // CANCEL sent
	finished    bool // final response (or failure) seen
	authed      bool // carries our answer to the next hop's challenge (routes)
}

// event is a response on a branch, or the end of its transaction (res nil).
type event struct {
	b   *branch
	res *sip.Response
	err error
}

// watch passes b's responses and its end to events until the fork stops listening, and keeps
// draining the transaction after that: sipgo's Responses channel is unbuffered. It returns at
// the first final response: sipgo passes nothing more up after one (a 2xx retransmitted to an
// INVITE comes through the retransmission hook), while the transaction itself lingers in its
// Completed state to absorb retransmissions.
func (b *branch) watch(events chan<- event, stop <-chan struct{}) {
	post := func(ev event) {
		select {
		case events <- ev:
		case <-stop:
		}
	}
	for {
		select {
		case res := <-b.Tx.Responses():
			post(event{b: b, res: res})
			if !res.IsProvisional() {
				return
			}
		case <-b.Tx.Done():
			post(event{b: b, err: b.Tx.Err()})
			return
		}
	}
}

// forking is the state of one fork (fork): its branches and what came back on them.
type forking struct {
	p       *Proxy
	ctx     context.Context
	st      *sipx.State
	tx      sip.ServerTransaction
	req     *sip.Request
	fwd     *sip.Request
	invite  bool
	hash    string
	events  chan event
	stop    chan struct{}
	timeout *time.Timer // Timer C, INVITE only

	cancelled <-chan struct{} // the caller sent CANCEL (INVITE only)
	timerC    <-chan time.Time

	// route is the proxy.routes entry the request follows, nil for other requests: its
	// next hops are tried one at a time (failover), its credentials answer a challenge.
	route *routes.Route

	finals    []*sip.Response // final responses received, in order
	synthetic []int           // statuses of branches that failed without a response
	statuses  []int
	sent      int // final status sent upstream (2xx)
	global    bool
	upCancel  bool
	timedOut  bool
	all       []*branch
	call      CallWatcher // nil: nobody follows this call (calls.go)
}

// fork forwards fwd, the copy of req the proxy received, to every target, group after group
// (targets in a group in parallel), and answers req with the best response (§16.7). onFail,
// when set, is offered the branches' final statuses before the best response is sent when no
// branch succeeded; it reports whether it answered (MESSAGE: store for offline delivery).
func (p *Proxy) fork(ctx context.Context, tx sip.ServerTransaction, req, fwd *sip.Request, groups [][]delivery.Target,
	onFail func(statuses []int) (int, error, bool)) (int, error) {
	if !req.IsInvite() && len(groups) == 1 && len(groups[0]) == 1 {
		return p.forkOne(ctx, sipx.StateFrom(ctx), tx, req, fwd, groups[0][0], onFail)
	}
	return p.newForking(ctx, tx, req, fwd).run(groups, onFail)
}

// newForking starts the state of a fork of fwd, the copy of req to forward.
func (p *Proxy) newForking(ctx context.Context, tx sip.ServerTransaction, req, fwd *sip.Request) *forking {
	return &forking{p: p, ctx: ctx, st: sipx.StateFrom(ctx), tx: tx, req: req, fwd: fwd, invite: req.IsInvite(),
		hash: loopHash(req), events: make(chan event, 8), stop: make(chan struct{})}
}

// run sends the groups one after the other and answers the request (fork).
func (f *forking) run(groups [][]delivery.Target, onFail func(statuses []int) (int, error, bool)) (int, error) {
	p, st, tx, req, invite := f.p, f.st, f.tx, f.req, f.invite
	defer close(f.stop)
	if invite {
		// §16.2: a stateful proxy answers 100 at once so the caller stops retransmitting.
		_ = tx.Respond(sipx.NewResponse(req, 100, ""))
		ch := make(chan struct{})
		var once sync.Once
		tx.OnCancel(func(*sip.Request) { once.Do(func() { close(ch) }) })
		f.cancelled = ch
		f.timeout = time.NewTimer(p.opts.InviteTimeout)
		defer f.timeout.Stop()
		f.timerC = f.timeout.C
		f.call = p.watchCall(f.ctx, st, req)
	}
	total := 0
	for _, g := range groups {
		total += len(g)
	}
	for _, group := range groups {
		live := f.startGroup(group, total == 1 && f.fwd != req && f.route == nil)
		if err := f.await(live); err != nil {
			f.failedCall(0, "")
			return 0, err
		}
		if f.sent != 0 || f.global || f.upCancel || (f.route != nil && !failover(f.statuses)) {
			break
		}
	}
	switch {
	case f.sent != 0:
		return f.sent, nil
	case f.upCancel:
		f.failedCall(487, CallCancelled)
		return 487, nil // sipgo answered the INVITE 487 when the CANCEL came
	}
	if f.global {
		onFail = nil
	}
	status, err := p.failed(st, tx, req, f.finals, f.synthetic, f.statuses, onFail)
	f.failedCall(status, "")
	return status, err
}

// failedCall tells the call's watcher, if any, that the call ended without a 2xx.
func (f *forking) failedCall(status int, cause string) {
	if f.call == nil {
		return
	}
	if cause == "" && f.timedOut {
		cause = CallTimeout
	}
	f.call.Failed(status, cause)
}

// startGroup sends the branches of one group and returns how many are under way.
func (f *forking) startGroup(group []delivery.Target, only bool) int {
	live := 0
	for _, t := range group {
		b, err := f.p.startBranch(f.fwd, t, f.hash, f.st, only, f.recordRoute())
		if err != nil {
			f.st.Logger().Info("branch not sent", zap.String("target", t.Dest.String()), zap.Error(err))
			f.fail(&branch{Branch: &delivery.Branch{Target: t}}, delivery.TransportFailure(t))
			continue
		}
		f.all = append(f.all, b)
		live++
		go b.watch(f.events, f.stop)
	}
	return live
}

// await handles events until the live branches of a group have ended, or one ended the whole
// fork (a 2xx or 6xx to a non-INVITE). It fails when ctx ends: the server transaction is gone.
func (f *forking) await(live int) error {
	for live > 0 {
		select {
		case ev := <-f.events:
			ended, stop := f.onEvent(ev)
			if ended {
				live--
			}
			if stop {
				return nil
			}
		case <-f.cancelled:
			f.cancelled = nil
			f.upCancel = true
			f.cancelAll()
		case <-f.timerC:
			f.timerC = nil
			f.timedOut = true
			f.st.Logger().Info("INVITE timed out (Timer C): cancelling branches")
			f.cancelAll()
		case <-f.ctx.Done():
			// The server transaction ended (its connection closed): nobody to answer.
			f.cancelAll()
			return f.ctx.Err()
		}
	}
	return nil
}

// onEvent takes one response or transaction end: ended reports that the branch is over, stop
// that the fork is (a non-INVITE's first 2xx or 6xx).
func (f *forking) onEvent(ev event) (ended, stop bool) {
	b := ev.b
	if ev.res == nil { // transaction over
		if b.finished {
			return false, false
		}
		code := 408
		if !errors.Is(ev.err, sip.ErrTransactionTimeout) {
			code = delivery.TransportFailure(b.Target)
		}
		if b.cancelled {
			code = 487
		}
		f.fail(b, code)
		return true, false
	}
	res := ev.res
	if res.IsProvisional() {
		b.provisional = true
		f.p.maybeCancel(b)
		if f.invite && res.StatusCode > 100 && f.sent == 0 && !f.upCancel {
			f.timeout.Reset(f.p.opts.InviteTimeout)
			_ = f.tx.Respond(upstream(f.req, res))
			if f.call != nil {
				f.call.Response(res)
			}
		}
		return false, false
	}
	if b.finished {
		return false, false
	}
	if (res.StatusCode == 401 || res.StatusCode == 407) && f.answerChallenge(b, res) {
		return false, false // b is over, its authenticated copy under way in its place
	}
	b.finished = true
	f.statuses = append(f.statuses, res.StatusCode)
	f.p.opts.Delivery.CountBranch(f.req.Method, res.StatusCode)
	switch {
	case res.IsSuccess():
		if f.sent == 0 || f.invite {
			f.p.relay2xx(f.tx, f.req, res, f.invite)
		}
		if f.call != nil {
			f.call.Response(res)
		}
		if f.sent == 0 {
			f.sent = res.StatusCode
		}
		if f.invite {
			f.p.forward2xxRetransmissions(b, f.tx, f.req)
			f.cancelAll()
			return true, false
		}
		return true, true // non-INVITE: the first 2xx ends the fork
	case res.StatusCode >= 600:
		f.finals = append(f.finals, res)
		f.global = true
		if f.invite {
			f.cancelAll()
			return true, false
		}
		return true, true
	}
	f.finals = append(f.finals, res)
	return true, false
}

func (f *forking) cancelAll() {
	for _, b := range f.all {
		if !b.finished {
			b.wantCancel = true
			f.p.maybeCancel(b)
		}
	}
}

func (f *forking) fail(b *branch, code int) {
	b.finished = true
	f.synthetic = append(f.synthetic, code)
	f.statuses = append(f.statuses, code)
	f.p.opts.Delivery.CountBranch(f.req.Method, 0)
}

// failed answers a request none of whose branches succeeded: onFail first (when it handles
// the case), else the best response.
func (p *Proxy) failed(st *sipx.State, tx sip.ServerTransaction, req *sip.Request, finals []*sip.Response,
	synthetic, statuses []int, onFail func([]int) (int, error, bool)) (int, error) {
	if onFail != nil {
		if status, err, handled := onFail(statuses); handled {
			return status, err
		}
	}
	res := best(req, finals, synthetic)
	if ce := st.Logger().Check(zap.DebugLevel, "proxied request failed"); ce != nil {
		ce.Write(zap.Int(logging.KeyStatus, res.StatusCode), zap.Ints("branches", statuses))
	}
	return sipx.RespondWith(tx, res)
}

// forkOne is fork for the common case of a non-INVITE with one target (a MESSAGE to a user
// with one device, an in-dialog request): the same outcome, without a watcher goroutine and
// an event channel per request.
func (p *Proxy) forkOne(ctx context.Context, st *sipx.State, tx sip.ServerTransaction, req, fwd *sip.Request, t delivery.Target,
	onFail func([]int) (int, error, bool)) (int, error) {
	b, err := p.startBranch(fwd, t, loopHash(req), st, fwd != req, recordRoutes(fwd))
	if err != nil {
		st.Logger().Info("branch not sent", zap.String("target", t.Dest.String()), zap.Error(err))
		code := delivery.TransportFailure(t)
		p.opts.Delivery.CountBranch(req.Method, 0)
		return p.failed(st, tx, req, nil, []int{code}, []int{code}, onFail)
	}
	for {
		select {
		case res := <-b.Tx.Responses():
			if res.IsProvisional() {
				continue
			}
			p.opts.Delivery.CountBranch(req.Method, res.StatusCode)
			if res.IsSuccess() {
				return sipx.RespondWith(tx, upstream(req, res))
			}
			if res.StatusCode >= 600 {
				onFail = nil
			}
			return p.failed(st, tx, req, []*sip.Response{res}, nil, []int{res.StatusCode}, onFail)
		case <-b.Tx.Done():
			code := 408
			if !errors.Is(b.Tx.Err(), sip.ErrTransactionTimeout) {
				code = delivery.TransportFailure(b.Target)
			}
			p.opts.Delivery.CountBranch(req.Method, 0)
			return p.failed(st, tx, req, nil, []int{code}, []int{code}, onFail)
		case <-ctx.Done():
			go b.watch(nil, closedChan) // keep draining: sipgo's channel is unbuffered
			return 0, ctx.Err()
		}
	}
}

// closedChan lets watch drain a transaction nobody listens to any more.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// startBranch sends fwd to t (delivery.Start) with the proxy's Record-Route when fwd creates a
// dialog and rr. st is the request's state: the flow it came in on and whether its sender is
// vouched for (dialogToken).
func (p *Proxy) startBranch(fwd *sip.Request, t delivery.Target, hash string, st *sipx.State, only, rr bool) (*branch, error) {
	o := delivery.BranchOptions{Hash: hash, Only: only}
	if rr {
		in := arrival{transport: st.Transport, source: st.Source, vouched: st.Rule.MayRelay()}
		o.RecordRoute = func(r *sip.Request, l netip.AddrPort, t delivery.Target) { p.addRecordRoute(fwd, r, l, t, in) }
	}
	b, err := p.opts.Delivery.Start(fwd, t, o)
	if err != nil {
		return nil, err
	}
	return &branch{Branch: b}, nil
}

// maybeCancel sends a CANCEL on an INVITE branch that should be cancelled, once a provisional
// response allows it (§9.1: never before).
func (p *Proxy) maybeCancel(b *branch) {
	if !b.wantCancel || b.cancelled || !b.provisional || b.finished || !b.Req.IsInvite() {
		return
	}
	b.cancelled = true
	ctx, cancel := context.WithTimeout(context.Background(), delivery.ConnectTimeout)
	defer cancel()
	tx, err := p.opts.Client.TransactionRequest(ctx, cancelRequest(b.Req), delivery.AsBuilt)
	if err != nil {
		p.log.Debug("CANCEL not sent", zap.String(logging.KeyBranch, branchID(b.Req)), zap.Error(err))
		return
	}
	go func() { // drain the CANCEL's own transaction
		for {
			select {
			case <-tx.Responses():
			case <-tx.Done():
				return
			}
		}
	}()
}

// relay2xx sends a 2xx upstream. For INVITE a 2xx may follow a final answer sipgo gave itself
// (487 after a CANCEL): the caller must still see it, so it goes out statelessly then.
func (p *Proxy) relay2xx(tx sip.ServerTransaction, req *sip.Request, res *sip.Response, invite bool) {
	out := upstream(req, res)
	if err := tx.Respond(out); err != nil && invite {
		p.writeResponse(out, strings.ToLower(req.Transport()), req.Source())
	}
}

// forward2xxRetransmissions relays the callee's retransmitted 2xx (until the caller's ACK
// reaches it) to the caller: RFC 6026 makes that the proxy's job.
func (p *Proxy) forward2xxRetransmissions(b *branch, tx sip.ServerTransaction, req *sip.Request) {
	b.Tx.OnRetransmission(func(res *sip.Response) {
		if res.IsSuccess() {
			p.relay2xx(tx, req, res, true)
		}
	})
}

// best chooses the response to send when no branch succeeded (§16.7 step 6): a 6xx if any,
// else the lowest class (3xx before 4xx before 5xx), first received within a class; a 503 from
// downstream becomes 500 (the 503 is about that server, not us); 401 and 407 challenges of all
// branches are collected into the one sent (step 7).
func best(req *sip.Request, finals []*sip.Response, synthetic []int) *sip.Response {
	var pick *sip.Response
	for _, r := range finals {
		if r.StatusCode >= 600 {
			pick = r
			break
		}
		if pick == nil || r.StatusCode/100 < pick.StatusCode/100 {
			pick = r
		}
	}
	if pick == nil || pick.StatusCode < 600 {
		for _, code := range synthetic {
			if pick == nil || code/100 < pick.StatusCode/100 {
				return sipx.NewResponse(req, code, "")
			}
		}
	}
	if pick == nil {
		return sipx.NewResponse(req, 480, "")
	}
	out := upstream(req, pick)
	if pick.StatusCode == 503 {
		out.StatusCode, out.Reason = 500, "Next Hop Unavailable"
	}
	if pick.StatusCode == 401 || pick.StatusCode == 407 {
		for _, r := range finals {
			if r == pick || (r.StatusCode != 401 && r.StatusCode != 407) {
				continue
			}
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range sipx.Headers(r, name) {
					out.AppendHeader(sip.HeaderClone(h))
				}
			}
		}
	}
	return out
}
