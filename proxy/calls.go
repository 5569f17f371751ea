package proxy

import (
	"context"
	"strings"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
)

// Call tracking. The proxy is transaction-stateful, so it sees every call it routes: the
// INVITE, each response it relays upstream, the caller's CANCEL, Timer C, and the BYE of each
// dialog it record-routed. A CallObserver (the dialog event package's call tracker, BLF) is
// told of them; with none (Options.Calls nil) the INVITE path does nothing more.

// CallObserver is told of the calls the proxy routes.
type CallObserver interface {
	// Invite is called when an out-of-dialog INVITE is about to be forwarded. It returns
	// the watcher of that call, or nil to not follow it. It must not block.
	Invite(ctx context.Context, c Call) CallWatcher
	// Bye is called once the BYE req of a dialog simpled record-routed (or of a trusted
	// peer) has its final answer, status (0 when none was sent).
	Bye(ctx context.Context, req *sip.Request, status int)
}

// Call is an out-of-dialog INVITE the proxy forwards.
type Call struct {
	// Request is the INVITE as received.
	Request *sip.Request
	// Caller is the caller's AOR when it is a user of ours whose identity the request
	// proves (digest user; From of a trusted peer or with auth off), else "". Callee is the
	// AOR the Request-URI names when it is ours, else "".
	Caller, Callee string
}

// CallWatcher follows one call. Its methods are called from the call's own goroutine, in the
// order of the events, and must not block.
type CallWatcher interface {
	// Response is a response relayed upstream: a provisional one (not 100) or a 2xx (each
	// 2xx of a forked call that more than one device answered).
	Response(res *sip.Response)
	// Failed reports that the call ended without a 2xx: status is the final answer sent
	// upstream (0: none, the caller's transaction ended first) and cause what ended it:
	// "cancelled" (the caller's CANCEL), "timeout" (Timer C) or "" (every branch failed).
	Failed(status int, cause string)
}

// Call-end causes for CallWatcher.Failed.
const (
	CallCancelled = "cancelled"
	CallTimeout   = "timeout"
)

// watchCall asks the observer about an out-of-dialog INVITE: nil when there is no observer.
func (p *Proxy) watchCall(ctx context.Context, st *sipx.State, req *sip.Request) CallWatcher {
	if p.opts.Calls == nil || req.To().Params.Has("tag") {
		return nil
	}
	return p.opts.Calls.Invite(ctx, Call{Request: req, Caller: p.callerAOR(st, req), Callee: p.calleeAOR(req)})
}

// callerAOR is the caller's AOR of ours, proven: the digest user, or the From of a trusted
// peer or of a server without authentication.
func (p *Proxy) callerAOR(st *sipx.State, req *sip.Request) string {
	if st.AuthUser != "" {
		return st.AuthUser
	}
	if st.Rule != sipx.RulePeer && st.Rule != sipx.RuleOpen {
		return ""
	}
	from := req.From()
	if from == nil || from.Address.User == "" || !p.domains[strings.ToLower(from.Address.Host)] {
		return ""
	}
	return sipx.AOR(&from.Address)
}

// calleeAOR is the AOR of ours the Request-URI names (one of our addresses: the default
// domain's user), else "".
func (p *Proxy) calleeAOR(req *sip.Request) string {
	u := &req.Recipient
	if u.User == "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	switch {
	case p.domains[host]:
		return u.User + "@" + host
	case p.isOurHop(u):
		return u.User + "@" + p.defaultDom
	}
	return ""
}

// observeBye tells the observer of a BYE in a dialog (one simpled record-routed, or from a
// trusted peer) and its final status.
func (p *Proxy) observeBye(ctx context.Context, st *sipx.State, req *sip.Request, status int) {
	if p.opts.Calls == nil || req.Method != sip.BYE || !req.To().Params.Has("tag") {
		return
	}
	if st.Rule == sipx.RuleDialog || st.Rule == sipx.RulePeer {
		p.opts.Calls.Bye(ctx, req, status)
	}
}
