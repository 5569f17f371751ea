package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// branch is one forwarded copy of the request (RFC 3261 §16.6) and what came back on it.
type branch struct {
	t           target
	req         *sip.Request
	tx          sip.ClientTransaction
	provisional bool // a provisional response arrived: a CANCEL may be sent
	wantCancel  bool // cancel as soon as it is allowed
	cancelled   bool // CANCEL sent
	finished    bool // final response (or failure) seen
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
		case res := <-b.tx.Responses():
			post(event{b: b, res: res})
			if !res.IsProvisional() {
				return
			}
		case <-b.tx.Done():
			post(event{b: b, err: b.tx.Err()})
			return
		}
	}
}

// fork forwards fwd to every target, group after group (targets in a group in parallel), and
// answers req with the best response (§16.7). onFail, when set, is offered the branches' final
// statuses before the best response is sent when no branch succeeded; it reports whether it
// answered (MESSAGE: store for offline delivery). A nil tx means simpled originated req itself
// (offline delivery, the admin API): nothing is relayed and the final status is returned.
func (p *Proxy) fork(ctx context.Context, tx sip.ServerTransaction, req, fwd *sip.Request, groups [][]target,
	onFail func(statuses []int) (int, error, bool)) (int, error) {
	st := sipx.StateFrom(ctx)
	invite := req.IsInvite()
	if !invite && len(groups) == 1 && len(groups[0]) == 1 {
		return p.forkOne(ctx, st, tx, req, fwd, groups[0][0], onFail)
	}
	if invite && tx != nil {
		// §16.2: a stateful proxy answers 100 at once so the caller stops retransmitting.
		_ = tx.Respond(sipx.NewResponse(req, 100, ""))
	}
	hash := branchHash(tx, req)

	events := make(chan event, 8)
	stop := make(chan struct{})
	defer close(stop)
	var cancelled <-chan struct{}
	if invite && tx != nil {
		ch := make(chan struct{})
		var once sync.Once
		tx.OnCancel(func(*sip.Request) { once.Do(func() { close(ch) }) })
		cancelled = ch
	}
	var timerC <-chan time.Time
	var tc *time.Timer
	if invite {
		tc = time.NewTimer(p.opts.InviteTimeout)
		defer tc.Stop()
		timerC = tc.C
	}

	total := 0
	for _, g := range groups {
		total += len(g)
	}
	var (
		finals    []*sip.Response // final responses received, in order
		synthetic []int           // statuses of branches that failed without a response
		statuses  []int
		sent      int // final status sent upstream (2xx)
		global    bool
		upCancel  bool
		all       []*branch
	)
	cancelAll := func() {
		for _, b := range all {
			if !b.finished {
				b.wantCancel = true
				p.maybeCancel(b)
			}
		}
	}
	fail := func(b *branch, code int) {
		b.finished = true
		synthetic = append(synthetic, code)
		statuses = append(statuses, code)
		p.branches.WithLabelValues(string(req.Method), "error").Inc()
	}

groups:
	for _, group := range groups {
		live := 0
		for _, t := range group {
			b, err := p.startBranch(fwd, t, hash, arrival{st.Transport, st.Source, st.Rule.MayRelay()}, total == 1 && fwd != req)
			if err != nil {
				st.Logger().Info("branch not sent", zap.String("target", t.dest.String()), zap.Error(err))
				fail(&branch{t: t}, transportFailure(t))
				continue
			}
			all = append(all, b)
			live++
			go b.watch(events, stop)
		}
		for live > 0 {
			select {
			case ev := <-events:
				b := ev.b
				if ev.res == nil { // transaction over
					if !b.finished {
						code := 408
						if !errors.Is(ev.err, sip.ErrTransactionTimeout) {
							code = transportFailure(b.t)
						}
						if b.cancelled {
							code = 487
						}
						fail(b, code)
						live--
					}
					continue
				}
				res := ev.res
				if res.IsProvisional() {
					b.provisional = true
					p.maybeCancel(b)
					if invite && tx != nil && res.StatusCode > 100 && sent == 0 && !upCancel {
						if tc != nil {
							tc.Reset(p.opts.InviteTimeout)
						}
						_ = tx.Respond(upstream(req, res))
					}
					continue
				}
				if b.finished {
					continue
				}
				b.finished = true
				live--
				statuses = append(statuses, res.StatusCode)
				p.branches.WithLabelValues(string(req.Method), strconv.Itoa(res.StatusCode/100)+"xx").Inc()
				switch {
				case res.IsSuccess():
					if (sent == 0 || invite) && tx != nil {
						p.relay2xx(tx, req, res, invite)
					}
					if sent == 0 {
						sent = res.StatusCode
					}
					if invite && tx != nil {
						p.forward2xxRetransmissions(b, tx, req)
						cancelAll()
						continue
					}
					break groups // non-INVITE: the first 2xx ends the fork
				case res.StatusCode >= 600:
					finals = append(finals, res)
					global = true
					if invite {
						cancelAll()
						continue
					}
					break groups
				default:
					finals = append(finals, res)
				}
			case <-cancelled:
				cancelled = nil
				upCancel = true
				cancelAll()
			case <-timerC:
				timerC = nil
				st.Logger().Info("INVITE timed out (Timer C): cancelling branches")
				cancelAll()
			case <-ctx.Done():
				// The server transaction ended (its connection closed): nobody to answer.
				cancelAll()
				return 0, ctx.Err()
			}
		}
		if sent != 0 || global || upCancel {
			break
		}
	}
	switch {
	case sent != 0:
		return sent, nil
	case upCancel:
		return 487, nil // sipgo answered the INVITE 487 when the CANCEL came
	}
	if global {
		onFail = nil
	}
	return p.failed(st, tx, req, finals, synthetic, statuses, onFail)
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
	if tx == nil {
		return res.StatusCode, nil
	}
	if ce := st.Logger().Check(zap.DebugLevel, "proxied request failed"); ce != nil {
		ce.Write(zap.Int(logging.KeyStatus, res.StatusCode), zap.Ints("branches", statuses))
	}
	return sipx.RespondWith(tx, res)
}

// forkOne is fork for the common case of a non-INVITE with one target (a MESSAGE to a user
// with one device, an in-dialog request): the same outcome, without a watcher goroutine and
// an event channel per request.
func (p *Proxy) forkOne(ctx context.Context, st *sipx.State, tx sip.ServerTransaction, req, fwd *sip.Request, t target,
	onFail func([]int) (int, error, bool)) (int, error) {
	b, err := p.startBranch(fwd, t, branchHash(tx, req), arrival{st.Transport, st.Source, st.Rule.MayRelay()}, fwd != req)
	if err != nil {
		st.Logger().Info("branch not sent", zap.String("target", t.dest.String()), zap.Error(err))
		code := transportFailure(t)
		p.branches.WithLabelValues(string(req.Method), "error").Inc()
		return p.failed(st, tx, req, nil, []int{code}, []int{code}, onFail)
	}
	for {
		select {
		case res := <-b.tx.Responses():
			if res.IsProvisional() {
				continue
			}
			p.branches.WithLabelValues(string(req.Method), strconv.Itoa(res.StatusCode/100)+"xx").Inc()
			if res.IsSuccess() {
				if tx == nil {
					return res.StatusCode, nil
				}
				return sipx.RespondWith(tx, upstream(req, res))
			}
			if res.StatusCode >= 600 {
				onFail = nil
			}
			return p.failed(st, tx, req, []*sip.Response{res}, nil, []int{res.StatusCode}, onFail)
		case <-b.tx.Done():
			code := 408
			if !errors.Is(b.tx.Err(), sip.ErrTransactionTimeout) {
				code = transportFailure(b.t)
			}
			p.branches.WithLabelValues(string(req.Method), "error").Inc()
			return p.failed(st, tx, req, nil, []int{code}, []int{code}, onFail)
		case <-ctx.Done():
			go b.watch(nil, closedChan) // keep draining: sipgo's channel is unbuffered
			return 0, ctx.Err()
		}
	}
}

// branchHash is the loop hash our branches carry: loopHash for a request we relay; a request
// simpled originates (tx nil: a NOTIFY, an offline delivery) cannot loop back as the same
// request, and hashing its Request-URI was a tenth of a NOTIFY's cost.
func branchHash(tx sip.ServerTransaction, req *sip.Request) string {
	if tx == nil {
		return "0"
	}
	return loopHash(req)
}

// closedChan lets watch drain a transaction nobody listens to any more.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// request sends a request simpled originates (offline delivery, the admin API) to groups and
// returns the final status: the first 2xx, else the best failure (0 if ctx ended first).
func (p *Proxy) request(ctx context.Context, req *sip.Request, groups [][]target) int {
	status, _ := p.fork(ctx, nil, req, req, groups, nil)
	return status
}

// transportFailure is the status of a branch that could not be sent or whose transport failed
// (§16.9 says "as if 503"): for a registered device that means it is not reachable now (480,
// which also sends a MESSAGE to the offline store); for another server, 503.
func transportFailure(t target) int {
	if t.contact {
		return 480
	}
	return 503
}

// startBranch builds and sends the request for t, or for the first of t's alternative flows
// that can be sent on. A request too big for UDP goes over TCP when we listen on TCP, back to
// UDP if TCP cannot connect (RFC 3261 §18.1.1).
func (p *Proxy) startBranch(fwd *sip.Request, t target, hash string, in arrival, only bool) (*branch, error) {
	b, err := p.startOne(fwd, t, hash, in, only && len(t.alts) == 0)
	for _, alt := range t.alts {
		if err == nil {
			break
		}
		b, err = p.startOne(fwd, alt, hash, in, false)
	}
	return b, err
}

func (p *Proxy) startOne(fwd *sip.Request, t target, hash string, in arrival, only bool) (*branch, error) {
	if t.flow {
		if isStream(t.transport) && !p.connected(t) {
			p.flows.WithLabelValues(t.transport, "closed").Inc()
			return nil, errFlowGone
		}
		p.flows.WithLabelValues(t.transport, "sent").Inc()
	}
	r, err := p.newBranch(fwd, t, hash, in, only)
	if err != nil {
		return nil, err
	}
	if !t.flow && (t.transport == "tls" || t.transport == "wss") {
		if err := p.verifyPeer(r, t); err != nil {
			return nil, err
		}
	}
	if t.transport == "udp" && p.overMTU(r) {
		if r2, t2, ok := p.toTCP(r, t); ok {
			if tx, err := p.start(r2, t.retransmits); err == nil {
				return &branch{t: t2, req: r2, tx: tx}, nil
			}
		}
	}
	tx, err := p.start(r, t.retransmits)
	if err != nil {
		return nil, err
	}
	return &branch{t: t, req: r, tx: tx}, nil
}

// start starts the client transaction of a branch: INVITEs in sipgo's transaction layer (ACK
// generation, 2xx handling), everything else in the proxy's own (clienttx.go), with at most
// retransmits Timer E retransmissions over UDP when retransmits > 0.
func (p *Proxy) start(r *sip.Request, retransmits int) (sip.ClientTransaction, error) {
	if r.IsInvite() {
		return p.send(r)
	}
	return p.sendNonInvite(r, retransmits)
}

// maybeCancel sends a CANCEL on an INVITE branch that should be cancelled, once a provisional
// response allows it (§9.1: never before).
func (p *Proxy) maybeCancel(b *branch) {
	if !b.wantCancel || b.cancelled || !b.provisional || b.finished || !b.req.IsInvite() {
		return
	}
	b.cancelled = true
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	tx, err := p.opts.Client.TransactionRequest(ctx, cancelRequest(b.req), asBuilt)
	if err != nil {
		p.log.Debug("CANCEL not sent", zap.String(logging.KeyBranch, branchID(b.req)), zap.Error(err))
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
	b.tx.OnRetransmission(func(res *sip.Response) {
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
