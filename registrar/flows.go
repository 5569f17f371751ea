package registrar

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/storage"

	"go.uber.org/zap"
)

// Flows that end (RFC 5626 §3.5, §4.4). A binding registered over a connection is reached
// only down that connection; once the connection closes nothing reaches the device until it
// registers again, so its bindings are removed at once instead of at their expiry, and
// presence derived from registration shows the user closed. A UDP flow has no close: an
// outbound client (reg-id and +sip.instance) that got a Flow-Timer promised keepalives at
// that interval, and a flow that sent none for twice the interval is dead the same way.
//
// Only the node that holds a flow learns that it ended, so each node remembers which AORs
// registered over which of its flows (flowIndex). The removal is conditional
// (Store.RemoveFlowBindings): it takes only the bindings still bound to the ended flow, so
// a device that registered again over a new connection before the old one closed keeps its
// binding, whichever node now holds it.

// Reasons a flow ends, and the kinds simpled_binding_events_total counts its bindings'
// removal under. On the bus the removal is a storage.BindingRemoved with the reason in
// Event.Reason (the reg event tells a watcher why the contact went).
const (
	kindFlowClosed = storage.RemovedFlowClosed // the connection closed, by either side
	kindFlowDead   = storage.RemovedFlowDead   // a UDP outbound flow sent no keepalive for 2 × Flow-Timer
)

// maxTrackedFlows bounds the (flow, AOR) pairs a node remembers: about 200 bytes each. Past
// it a registration is not remembered, and its binding lasts until it expires, as before
// flows could end. A node holds at most transport.max_connections connections per stream
// listener (10,000 by default), most with one AOR each.
const maxTrackedFlows = 1 << 18

// flowIndex is what a node knows of the flows its clients registered over: for each flow
// (by transport and client address, flowKey) its token and the AORs that have a binding on
// it. Entries go when the flow ends, when a REGISTER over the flow leaves the AOR no binding
// on it, or — for what was removed elsewhere (an expiry, another node, the admin API) — once
// the latest registration over the flow is older than the longest expiry. Safe for
// concurrent use.
type flowIndex struct {
	max int

	mu    sync.Mutex
	flows map[string]*flowEntry
	pairs int         // AORs remembered over all flows, ended ones not yet removed included
	ended []endedFlow // flows that ended, their bindings not removed yet
	wake  chan struct{}
}

// flowEntry is one flow of this node that carries registrations.
type flowEntry struct {
	token string // the flow's token, as its bindings store it
	aors  map[string]struct{}
	// udp is the client's address of a UDP flow watched for keepalives; zero for a
	// connection.
	udp netip.AddrPort
	// last is the latest registration over the flow: for a UDP flow the floor of when it
	// was last heard from.
	last time.Time
}

// endedFlow is a flow that ended and the AORs whose bindings on it are to be removed.
type endedFlow struct {
	token string
	aors  []string
	kind  string // kindFlowClosed or kindFlowDead
}

func newFlowIndex(max int) *flowIndex {
	return &flowIndex{max: max, flows: map[string]*flowEntry{}, wake: make(chan struct{}, 1)}
}

// flowKey names a flow in the index: its transport and the client's address, as a request
// that came over it and the close of its connection give them.
func flowKey(transport, remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	return strings.ToLower(transport) + " " + remote
}

// track remembers that aor has a binding on the flow key (whose token is token), registered
// at now; udp is the client's address when the flow is a UDP flow watched for keepalives. It
// reports false when the index is full and the pair was not remembered.
func (x *flowIndex) track(key, token, aor string, udp netip.AddrPort, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.flows[key]
	known := false
	if e != nil {
		_, known = e.aors[aor]
	}
	if !known && x.pairs >= x.max {
		return false
	}
	if e == nil {
		e = &flowEntry{aors: map[string]struct{}{}}
		x.flows[key] = e
	}
	e.token = token
	if !known {
		e.aors[aor] = struct{}{}
		x.pairs++
	}
	e.udp = udp
	if now.After(e.last) {
		e.last = now
	}
	return true
}

// untrack forgets aor on the flow key: it has no binding on it any more.
func (x *flowIndex) untrack(key, aor string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.flows[key]
	if e == nil {
		return
	}
	if _, ok := e.aors[aor]; ok {
		delete(e.aors, aor)
		x.pairs--
	}
	if len(e.aors) == 0 {
		delete(x.flows, key)
	}
}

// end moves the flow key, if it carries registrations, to the ended flows and wakes the
// worker that removes them. Cheap: it runs on the listener's goroutine.
func (x *flowIndex) end(key, kind string) {
	x.mu.Lock()
	e := x.flows[key]
	if e != nil {
		delete(x.flows, key)
		x.endLocked(e, kind)
	}
	x.mu.Unlock()
	if e != nil {
		select {
		case x.wake <- struct{}{}:
		default:
		}
	}
}

func (x *flowIndex) endLocked(e *flowEntry, kind string) {
	f := endedFlow{token: e.token, kind: kind, aors: make([]string, 0, len(e.aors))}
	for aor := range e.aors {
		f.aors = append(f.aors, aor)
	}
	x.ended = append(x.ended, f)
}

// takeEnded returns the ended flows and forgets them.
func (x *flowIndex) takeEnded() []endedFlow {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := x.ended
	x.ended = nil
	for _, f := range out {
		x.pairs -= len(f.aors)
	}
	return out
}

// scan ends the UDP flows not heard from (heard, or a registration over them) for longer than
// dead, and forgets the flows whose latest registration is older than stale (every binding
// registered over them has expired since). It reports whether a flow ended.
func (x *flowIndex) scan(now time.Time, dead, stale time.Duration, heard func(netip.AddrPort) time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := len(x.ended)
	for key, e := range x.flows {
		switch {
		case e.udp.IsValid() && dead > 0 && now.Sub(latest(e.last, heard, e.udp)) > dead:
			delete(x.flows, key)
			x.endLocked(e, kindFlowDead)
		case now.Sub(e.last) > stale:
			delete(x.flows, key)
			x.pairs -= len(e.aors)
		}
	}
	return len(x.ended) > n
}

// latest is the later of last and when ap was last heard from.
func latest(last time.Time, heard func(netip.AddrPort) time.Time, ap netip.AddrPort) time.Time {
	if heard == nil {
		return last
	}
	if h := heard(ap); h.After(last) {
		return h
	}
	return last
}

// size returns the flows and (flow, AOR) pairs remembered (tests).
func (x *flowIndex) size() (flows, pairs int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.flows), x.pairs
}

// FlowClosed tells the registrar that the connection from remote (host:port) over stream
// transport tp closed on this node (transport.Flows.OnClosed). The bindings registered over
// it are removed in the background, soon after; this call only notes it and never blocks.
func (r *Registrar) FlowClosed(tp, remote string) { r.flows.end(flowKey(tp, remote), kindFlowClosed) }

// trackFlow remembers, after a REGISTER of aor over flow token was stored (res), whether aor
// now has a binding on that flow, so that the flow's end removes it. A connection is always
// remembered; a UDP flow only when watched (an outbound client given a Flow-Timer), since
// nothing else tells that it ended.
func (r *Registrar) trackFlow(transport, source, aor, token string, watch bool, res storage.BindingResult, now time.Time) {
	if token == "" {
		return
	}
	bound := false
	for i := range res.Bindings {
		bound = bound || res.Bindings[i].Flow == token
	}
	stream := isStream(transport)
	key := flowKey(transport, source)
	if !bound || (!stream && !watch) {
		r.flows.untrack(key, aor)
		return
	}
	var udp netip.AddrPort
	if !stream {
		ap, err := netip.ParseAddrPort(source)
		if err != nil {
			return
		}
		udp = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if r.opts.Liveness != nil {
			r.opts.Liveness.Keep(udp, now)
		}
	}
	if !r.flows.track(key, token, aor, udp, now) {
		if r.logGate.Allow("flows", time.Now()) {
			r.log.Warn("too many flows with registrations remembered: a binding lasts until it expires (logged once a minute)",
				zap.String(logging.KeyAOR, aor), zap.Int("limit", r.flows.max))
		}
		return
	}
	// The connection may have closed while the REGISTER was handled, before it was
	// remembered: then no close will come for it.
	if stream && r.opts.FlowOpen != nil && !r.opts.FlowOpen(transport, source) {
		r.FlowClosed(transport, source)
	}
}

// runFlows removes the bindings of flows that ended until ctx ends: at once for a closed
// connection, and every SweepInterval it looks for dead UDP flows.
func (r *Registrar) runFlows(ctx context.Context) {
	t := time.NewTicker(r.opts.SweepInterval)
	defer t.Stop()
	dead := 2 * r.opts.UDPFlowTimer
	if r.opts.Liveness == nil {
		dead = 0 // nothing tells when a UDP flow was heard from
	}
	var heard func(netip.AddrPort) time.Time
	if r.opts.Liveness != nil {
		heard = r.opts.Liveness.Seen
	}
	stale := time.Duration(r.opts.MaxExpires)*time.Second + r.opts.SweepInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.flows.wake:
		case <-t.C:
			if !r.flows.scan(r.opts.Now(), dead, stale, heard) {
				continue
			}
		}
		r.removeEnded(ctx)
	}
}

// removeEnded removes the bindings of the flows that ended and announces their removal.
func (r *Registrar) removeEnded(ctx context.Context) {
	for _, f := range r.flows.takeEnded() {
		for _, aor := range f.aors {
			now := r.opts.Now()
			t0 := time.Now()
			removed, err := r.opts.Store.RemoveFlowBindings(ctx, aor, f.token, now)
			r.observe("remove_flow_bindings", t0)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("removing the bindings of an ended flow failed: they last until they expire",
						zap.String(logging.KeyAOR, aor), zap.String(logging.KeyReason, f.kind), zap.Error(err))
				}
				continue
			}
			for _, b := range removed {
				r.log.Debug("binding removed: its flow ended", zap.String(logging.KeyAOR, aor),
					zap.String(logging.KeyContact, b.URI), zap.String(logging.KeyReason, f.kind))
				r.eventOf.get(f.kind).Inc()
				if r.opts.Bus != nil {
					r.opts.Bus.Publish(storage.Event{Kind: storage.BindingRemoved, AOR: aor, Binding: b, At: now, Reason: f.kind})
				}
			}
		}
	}
}
