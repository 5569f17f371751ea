package presence

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/gopool"
	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// The notifier sends the NOTIFYs of the subscriptions this node owns. Each subscription has
// at most one NOTIFY under way, so NOTIFYs arrive in CSeq order; a change that comes while
// one is under way, or sooner than MinNotifyInterval after the last, marks the subscription
// dirty, and one NOTIFY then carries the state as it is when it is sent (RFC 6446 rate
// control: bursts coalesce, the last state always goes out).
//
// Several nodes: every subscription has an owner (storage.Subscription.Node), the node it was
// last subscribed through, and only the owner sends its NOTIFYs, so a watcher gets each
// change once, over its own flow. The node that sees a change reads the presentity's
// subscriptions and sends each other owner that is alive a NotifyRequested naming its
// subscriptions (presentity); the subscriptions of a node that is gone (its lease expired)
// are claimed by the node that sees the change (ClaimSubscription, so exactly one wins) and
// notified from there; a stream subscription of a gone node ends with its connection.
//
// NOTIFY CSeqs rise across nodes and restarts without a store write per NOTIFY: the owner
// reserves a block of cseqBlock CSeqs in the store (Subscription.NotifyCSeq) and uses it up
// before reserving the next; a node that takes a subscription over, or that restarted, claims
// a fresh block above the stored reservation before its first NOTIFY (reserve).
type notifier struct {
	p *Presence
	// ctx bounds every NOTIFY; stop ends it when the agent stops, so shutdown does not wait
	// for watchers that no longer answer.
	ctx  context.Context
	stop context.CancelFunc
	// senders runs the NOTIFY sends on reused goroutines (their stacks stay grown).
	senders *gopool.Pool
	mu      sync.Mutex
	subs    map[subKey]*subState
	// winfo counts, per presentity, the presence.winfo subscriptions in subs: a change of
	// watchers is looked up in the store only for presentities that watch their watchers.
	winfo map[string]int
	// nobody remembers presentities found without subscriptions (see unwatchedFor);
	// watchGen counts the subscriptions created here and announced by other nodes, so a read
	// that raced one does not mark its presentity unwatched.
	nobody   map[string]time.Time
	watchGen uint64
	// pending holds the subscriptions stored but not yet answered: a change seen meanwhile
	// must not NOTIFY them before their 200 (JsSIP answers 481 to a NOTIFY that precedes it);
	// track sends their first NOTIFY, with the state as it is then.
	pending map[subKey]struct{}
	// gone remembers, for goneFor, the subscriptions this node stopped notifying (ended,
	// refused with 481, ...): a change whose store read still saw one must not bring it back.
	gone map[subKey]time.Time
	// watchers counts, per presentity and event package (watchKey), the subscriptions but
	// winfo ones this node knows of (held, tracked, or listed from the store), in all and per
	// foreign watcher domain, so that presence.max_watchers and max_watchers_per_domain cost
	// no store read; counted holds what each subscription admitted and not yet held in subs
	// was counted under (one in subs says it with subState.counted and its record).
	watchers map[string]*watcherCount
	counted  map[subKey]countedAs
	wg       sync.WaitGroup
	seed     maphash.Seed
	// window holds a token for each NOTIFY sent and not yet answered (see sendWindow).
	window chan struct{}
	// queue holds the subscriptions whose NOTIFY waits for a place in the window, oldest
	// first; dispatching: a dispatch goroutine serves it.
	qmu         sync.Mutex
	queue       []*subState
	dispatching bool
}

// sendWindow bounds the NOTIFYs this node has sent that are not yet answered, nor older than
// windowHold. A change of a presentity with 10,000 watchers otherwise sends its 10,000
// NOTIFYs at once: their 200s queue up behind one another past Timer E (T1, 500 ms), and every
// NOTIFY whose answer is still queued is retransmitted, which queues the answers further
// (measured: more retransmissions than NOTIFYs). Within the window a NOTIFY's answer comes
// back while its transaction is young.
const sendWindow = 256

// windowHold is how long one NOTIFY keeps its place in the window at most: a watcher that
// does not answer (gone, or its answers lost) must not hold the others back for Timer F. It is
// shorter than T1, so that a full window of such watchers still lets each NOTIFY behind them
// go before its own retransmission would.
const windowHold = 200 * time.Millisecond

type subKey struct{ aor, id string }

// countedAs is what a subscription was counted under: its watchKey and foreign domain.
type countedAs struct{ key, domain string }

// watchKey keys the watcher count of aor's subscriptions in event package event.
func watchKey(aor, event string) string {
	if event == EventPresence {
		return aor
	}
	return event + ":" + aor
}

// watcherCount is one presentity's watchers: all, and per foreign domain.
type watcherCount struct {
	all     int
	domains map[string]int
}

// subState is the notifier's memory of one subscription.
type subState struct {
	rec      subRecord // the subscription as last known
	cseq     uint32
	reserved uint32 // the CSeq reservation this node holds: it may send up to it; 0: none
	version  uint32 // document version (winfo: of the last sent; packages: of the next)
	inflight bool
	dirty    bool
	full     bool      // send even if the document did not change (first NOTIFY, refresh)
	reason   string    // non-empty: the next NOTIFY is the final one (terminated;reason=...)
	since    time.Time // when the oldest change not yet notified happened
	last     time.Time // when the last NOTIFY was sent
	timer    *time.Timer
	lastBody uint64
	sentBody bool
	// answered: the watcher answered one of this subscription's NOTIFYs (on this node);
	// until then a NOTIFY is retransmitted at most UnansweredRetransmits times (Retransmits).
	answered bool
	// counted: among its presentity's watchers (notifier.watchers), under the watchKey of its
	// AOR and event and, for a foreign watcher, under domain.
	counted bool
	// failures counts the NOTIFYs of a Lenient package's subscription that failed in a row.
	failures int32
	domain   string
	// winfoSent is what a winfo subscription's watcher knows of the watchers, as the
	// documents it accepted told it (nil: send a full document); sent the same for a
	// Package's subscription.
	winfoSent map[string]pidf.Watcher
	sent      map[string]string
}

func newNotifier(p *Presence) *notifier {
	ctx, stop := context.WithCancel(context.Background())
	return &notifier{p: p, ctx: ctx, stop: stop, senders: gopool.New(10 * time.Second), subs: map[subKey]*subState{},
		winfo: map[string]int{}, nobody: map[string]time.Time{}, pending: map[subKey]struct{}{}, gone: map[subKey]time.Time{},
		watchers: map[string]*watcherCount{}, counted: map[subKey]countedAs{}, seed: maphash.MakeSeed(),
		window: make(chan struct{}, sendWindow)}
}

// goneFor is how long an ended subscription is kept from being notified again: longer than a
// store read that could still return it.
const goneFor = 30 * time.Second

// notifyTimeout bounds one NOTIFY transaction (Timer F is 32 s).
const notifyTimeout = 40 * time.Second

// hold marks a new subscription as stored and not yet answered (see pending); track or
// release ends it.
func (n *notifier) hold(aor, id string) {
	n.mu.Lock()
	n.pending[subKey{aor, id}] = struct{}{}
	delete(n.nobody, aor)
	n.watchGen++
	n.mu.Unlock()
}

// admit holds a new subscription (as hold) unless its presentity has max watchers in its
// event package already, or max perDomain of the watcher's foreign domain (domain "": a local
// watcher, never counted against a domain); it returns the limit that refused it, or "".
func (n *notifier) admit(aor, id, event, domain string, max, perDomain int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	wk := watchKey(aor, event)
	if w := n.watchers[wk]; w != nil {
		if w.all >= max {
			return limitWatchers
		}
		if domain != "" && w.domains[domain] >= perDomain {
			return limitWatchersPerDomain
		}
	}
	k := subKey{aor, id}
	n.pending[k] = struct{}{}
	delete(n.nobody, aor)
	n.watchGen++
	n.count(k, wk, domain)
	return ""
}

// count counts a subscription not yet in subs among its presentity's watchers (wk:
// watchKey), once. Call with n.mu held.
func (n *notifier) count(k subKey, wk, domain string) {
	if _, ok := n.counted[k]; ok {
		return
	}
	n.counted[k] = countedAs{wk, domain}
	n.addWatcher(wk, domain)
}

// countState counts s, a subscription new in subs under k, among its presentity's watchers,
// once: what admit counted already is handed over from counted. Call with n.mu held.
func (n *notifier) countState(k subKey, s *subState) {
	if as, ok := n.counted[k]; ok {
		delete(n.counted, k)
		s.domain = as.domain
		if _, d := splitAOR(s.rec.field(recWatcher)); d == as.domain {
			s.domain = d // the record's text, not the SUBSCRIBE's
		}
	} else {
		s.domain = n.p.foreignDomain(s.rec.field(recWatcher))
		n.addWatcher(s.watchKey(), s.domain)
	}
	s.counted = true
}

// watchKey is the watchKey s is counted under.
func (s *subState) watchKey() string { return watchKey(s.rec.field(recAOR), s.rec.field(recEvent)) }

// addWatcher counts one more watcher under wk (and domain). Call with n.mu held.
func (n *notifier) addWatcher(wk, domain string) {
	w := n.watchers[wk]
	if w == nil {
		w = &watcherCount{}
		n.watchers[wk] = w
	}
	w.all++
	if domain != "" {
		if w.domains == nil {
			w.domains = map[string]int{}
		}
		w.domains[domain]++
	}
}

// uncount reverses count (of a subscription not in subs, or of s when it is not nil). Call
// with n.mu held.
func (n *notifier) uncount(k subKey, s *subState) {
	if as, ok := n.counted[k]; ok {
		delete(n.counted, k)
		n.dropWatcher(as.key, as.domain)
	}
	if s != nil && s.counted {
		s.counted = false
		n.dropWatcher(s.watchKey(), s.domain)
	}
}

// dropWatcher counts one watcher less under wk (and domain). Call with n.mu held.
func (n *notifier) dropWatcher(wk, domain string) {
	w := n.watchers[wk]
	if w == nil {
		return
	}
	w.all--
	if domain != "" && w.domains != nil {
		if w.domains[domain]--; w.domains[domain] <= 0 {
			delete(w.domains, domain)
		}
	}
	if w.all <= 0 {
		delete(n.watchers, wk)
	}
}

// release ends hold (or admit) for a subscription that was not accepted after all.
func (n *notifier) release(aor, id string) {
	n.mu.Lock()
	delete(n.pending, subKey{aor, id})
	if n.subs[subKey{aor, id}] == nil {
		n.uncount(subKey{aor, id}, nil)
	}
	n.mu.Unlock()
}

// track starts notifying a new subscription, once its 200 is sent: its first NOTIFY goes at
// once.
func (n *notifier) track(sub *storage.Subscription, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pending, subKey{sub.AOR, sub.ID})
	s := n.state(sub)
	s.rec.set(sub)
	s.reserved = sub.NotifyCSeq // a new subscription, stored with this node's first block
	n.want(s, true, now)
}

// refresh records a refreshed or re-authorized subscription and sends it the full state.
// moved: it was another node's until now, so this node claims a fresh CSeq block first.
func (n *notifier) refresh(sub *storage.Subscription, moved bool, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.state(sub)
	s.rec.set(sub)
	if moved {
		s.reserved = 0
	}
	n.want(s, true, now)
}

// final sends the last NOTIFY of a subscription that ended (terminated;reason=reason), after
// any NOTIFY under way, and forgets it.
func (n *notifier) final(sub *storage.Subscription, reason string, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.state(sub)
	s.rec.set(sub)
	s.reason = reason
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.dirty = true
	if !s.inflight {
		n.start(s)
	}
}

// forget drops a subscription without a final NOTIFY (its watcher answered 481).
func (n *notifier) forget(aor, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.subs[subKey{aor, id}]; s != nil {
		n.remove(subKey{aor, id}, s)
	}
}

// presentity has every subscription to aor's event package notified that its state changed
// at `at`. With dispatch, this node saw the change: subscriptions of other live nodes are
// handed to them (NotifyRequested), and those of nodes that are gone are taken over. Without,
// only this node's own subscriptions are notified.
func (n *notifier) presentity(ctx context.Context, aor, event string, at time.Time, dispatch bool) {
	if event != EventWinfo && n.unwatched(aor) {
		return
	}
	n.mu.Lock()
	gen := n.watchGen
	n.mu.Unlock()
	subs, err := n.p.opts.Store.Subscriptions(ctx, aor, n.p.opts.Now())
	if err != nil {
		if ctx.Err() == nil {
			n.p.log.Warn("subscriptions not read", zap.String(logging.KeyAOR, aor), zap.Error(err))
		}
		return
	}
	others := map[string][]string{}
	var lost []storage.Subscription
	alive := map[string]bool{} // the owners of the subscriptions, but this node
	if dispatch {
		for i := range subs {
			if node := subs[i].Node; !n.p.owns(node) {
				if _, ok := alive[node]; !ok {
					alive[node] = n.p.alive(ctx, node)
				}
			}
		}
	}
	n.mu.Lock()
	if len(subs) == 0 && n.watchGen == gen && n.p.settled() {
		// Not when a subscription was created (here or, as the bus said, anywhere) while the
		// store was read: the read may have missed it.
		n.markUnwatched(aor)
	}
	for i := range subs {
		sub := &subs[i]
		switch {
		case sub.Event != event && sub.Event == EventWinfo && n.p.owns(sub.Node):
			n.state(sub) // remembered, so its presentity's watcher changes reach it
		case sub.Event != event || !n.notifiable(sub):
		case n.p.owns(sub.Node):
			n.changed(sub, false, at)
		case !dispatch:
		case alive[sub.Node]:
			others[sub.Node] = append(others[sub.Node], sub.ID)
		case isStream(sub.Transport):
			lost = append(lost, *sub) // its connection went with its node
		default:
			n.changed(sub, false, at) // taken over: reserve claims it first
		}
	}
	n.mu.Unlock()
	for node, ids := range others {
		n.p.opts.Bus.PublishTo(node, storage.Event{Kind: storage.NotifyRequested, AOR: aor, IDs: ids, At: at})
	}
	for i := range lost {
		n.p.lost(ctx, &lost[i])
	}
}

// notifiable reports whether a stored subscription may be notified now: it is answered and
// has not ended since the store was read. Call with n.mu held.
func (n *notifier) notifiable(sub *storage.Subscription) bool {
	k := subKey{sub.AOR, sub.ID}
	if _, unanswered := n.pending[k]; unanswered {
		return false
	}
	if until, ok := n.gone[k]; ok && time.Now().Before(until) {
		return false // ended since the store was read
	}
	return true
}

// changed asks for a NOTIFY of sub (full: the whole state) for a change at `at`. Call with
// n.mu held.
func (n *notifier) changed(sub *storage.Subscription, full bool, at time.Time) {
	s := n.state(sub)
	if s.reason != "" {
		return
	}
	if !n.p.owns(sub.Node) {
		s.reserved = 0 // a takeover: reserve claims it from sub.Node first
	}
	s.rec.set(sub)
	n.want(s, full, at)
}

// requested notifies the subscriptions another node asked this one to (NotifyRequested):
// those of ev.IDs that this node still owns.
func (n *notifier) requested(ctx context.Context, ev *storage.Event) {
	subs, err := n.p.opts.Store.Subscriptions(ctx, ev.AOR, n.p.opts.Now())
	if err != nil {
		if ctx.Err() == nil {
			n.p.log.Warn("subscriptions not read", zap.String(logging.KeyAOR, ev.AOR), zap.Error(err))
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range subs {
		sub := &subs[i]
		if slices.Contains(ev.IDs, sub.ID) && n.p.owns(sub.Node) && n.notifiable(sub) {
			n.changed(sub, ev.Full, ev.At)
		}
	}
}

// watched forgets that aor was found without subscriptions: one was created (on any node).
func (n *notifier) watched(aor string) {
	n.mu.Lock()
	delete(n.nobody, aor)
	n.watchGen++
	n.mu.Unlock()
}

// finalKnown sends the final NOTIFY of a subscription this node owns that ended on another
// node (SubscriptionEnded), if this node holds it.
func (n *notifier) finalKnown(aor, id, reason string, at time.Time) {
	n.mu.Lock()
	s := n.subs[subKey{aor, id}]
	var sub storage.Subscription
	if s != nil {
		sub = s.rec.sub()
	}
	n.mu.Unlock()
	if s != nil {
		n.p.ended(&sub, reason, true)
	}
}

// snapshot returns the notifier's copy of a live subscription it holds.
func (n *notifier) snapshot(aor, id string, now time.Time) (storage.Subscription, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.subs[subKey{aor, id}]
	if s == nil || s.reason != "" || s.rec.expired(now) {
		return storage.Subscription{}, false
	}
	return s.rec.sub(), true // its Accept and RouteSet are the caller's
}

// unwatchedFor is how long a presentity found without subscriptions is taken to have none,
// unless a SUBSCRIBE to it reaches this node: a burst of PUBLISHes (initial, modify, remove)
// from a presentity nobody watches then costs one store read, not one each.
const unwatchedFor = 30 * time.Second

// unwatched reports whether aor was recently found without subscriptions.
func (n *notifier) unwatched(aor string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	until, ok := n.nobody[aor]
	if ok && time.Now().After(until) {
		delete(n.nobody, aor)
		return false
	}
	return ok
}

// markUnwatched remembers that aor has no subscription. Call with n.mu held.
func (n *notifier) markUnwatched(aor string) {
	if len(n.nobody) >= maxCached {
		clear(n.nobody)
	}
	n.nobody[aor] = time.Now().Add(unwatchedFor)
}

// state returns the notifier's state of sub, creating it (a subscription created before a
// restart is first seen here). Call with n.mu held.
func (n *notifier) state(sub *storage.Subscription) *subState {
	k := subKey{sub.AOR, sub.ID}
	s := n.subs[k]
	if s == nil {
		s = &subState{rec: packSub(sub)}
		// The keys share the record's text, not the request's strings.
		k = subKey{s.rec.field(recAOR), s.rec.field(recID)}
		n.subs[k] = s
		delete(n.nobody, k.aor)
		if sub.Event == EventWinfo {
			n.winfo[k.aor]++
		} else {
			n.countState(k, s)
		}
	}
	return s
}

// remove drops s from the notifier's memory. Call with n.mu held.
func (n *notifier) remove(k subKey, s *subState) {
	if n.subs[k] != s {
		return
	}
	delete(n.subs, k)
	n.uncount(k, s)
	if len(n.gone) >= maxCached {
		clear(n.gone)
	}
	n.gone[k] = time.Now().Add(goneFor)
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.rec.field(recEvent) == EventWinfo {
		if n.winfo[k.aor]--; n.winfo[k.aor] <= 0 {
			delete(n.winfo, k.aor)
		}
	}
}

// watchesWinfo reports whether aor has a presence.winfo subscription this node knows of.
// After a restart, one is known again once it is refreshed or listed with the presentity's
// other subscriptions (any change of its presence).
func (n *notifier) watchesWinfo(aor string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.winfo[aor] > 0
}

// want asks for a NOTIFY of s. Call with n.mu held.
func (n *notifier) want(s *subState, full bool, at time.Time) {
	if full {
		s.full = true
	}
	if s.since.IsZero() || at.Before(s.since) {
		s.since = at
	}
	s.dirty = true
	if s.inflight || s.timer != nil {
		return
	}
	wait := n.p.opts.MinNotifyInterval - time.Since(s.last)
	if s.last.IsZero() || wait <= 0 {
		n.start(s)
		return
	}
	s.timer = time.AfterFunc(wait, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		s.timer = nil
		if s.dirty && !s.inflight && n.subs[subKey{s.rec.field(recAOR), s.rec.field(recID)}] == s {
			n.start(s)
		}
	})
}

// start queues s's next NOTIFY: dispatch sends it on a goroutine of its own (from the senders
// pool) once it has a place in the send window. Call with n.mu held. Once the notifier is
// closing (its context ended), nothing starts: close is waiting on wg, which must not be
// added to meanwhile (a rate-control timer firing during shutdown did).
func (n *notifier) start(s *subState) {
	if n.ctx.Err() != nil {
		return
	}
	s.inflight = true
	n.wg.Add(1)
	n.qmu.Lock()
	n.queue = append(n.queue, s)
	if !n.dispatching {
		n.dispatching = true
		go n.dispatch()
	}
	n.qmu.Unlock()
}

// dispatch hands the queued NOTIFYs to sender goroutines, each once it has a place in the
// send window, until the queue is empty. So a change of 10,000 watchers has about sendWindow
// goroutines at work, not 10,000 waiting on the window: their stacks stay grown and the
// notifier's lock is not fought over by thousands. When the notifier closes, what is still
// queued is dropped.
func (n *notifier) dispatch() {
	for {
		n.qmu.Lock()
		if len(n.queue) == 0 {
			n.queue, n.dispatching = nil, false
			n.qmu.Unlock()
			return
		}
		s := n.queue[0]
		n.queue[0] = nil
		n.queue = n.queue[1:]
		n.qmu.Unlock()
		place, err := n.enter(n.ctx)
		if err != nil {
			n.abandon(s)
			n.wg.Done()
			continue
		}
		n.senders.Go(func() { n.send(s, place) })
	}
}

// send sends s's next NOTIFY, holding place in the send window until it is answered.
func (n *notifier) send(s *subState, place *windowPlace) {
	defer n.wg.Done()
	defer place.leave()
	if !n.reserve(s) {
		n.abandon(s)
		return
	}
	j := n.take(s)
	ctx, cancel := context.WithTimeout(n.ctx, notifyTimeout)
	defer cancel()
	if !j.answered {
		ctx = context.WithValue(ctx, unansweredKey{}, true)
	}
	status, skip, err := n.deliver(ctx, s, j)
	n.report(j, status, skip, err)
	n.settle(s, j, status, skip)
}

// cseqBlock is how many NOTIFY CSeqs an owner reserves at a time (Subscription.NotifyCSeq):
// one store write per cseqBlock NOTIFYs, and a subscription taken over skips at most that many.
const cseqBlock = 1000

// reserve makes sure this node holds CSeqs for s's next NOTIFY, and still owns s: it claims a
// new block when its own is used up, when it has none (a subscription taken over, or held
// before this process started), and when its lease may have lapsed meanwhile (another node
// may have taken s over: the claim then fails and s is forgotten). The final NOTIFY of a
// subscription already removed from the store follows the stored reservation.
func (n *notifier) reserve(s *subState) bool {
	n.mu.Lock()
	held := s.reserved > s.cseq && n.p.leased()
	var sub storage.Subscription
	if !held {
		sub = s.rec.sub()
	}
	if !held && s.reason != "" {
		s.cseq = max(s.cseq, sub.NotifyCSeq, legacyCSeq(&sub))
		s.reserved, held = s.cseq+1, true
	}
	n.mu.Unlock()
	if held {
		return true
	}
	ctx, cancel := context.WithTimeout(n.ctx, claimTimeout)
	defer cancel()
	claimed, err := n.p.opts.Store.ClaimSubscription(ctx, sub.AOR, sub.ID, sub.Node, n.p.opts.NodeID, cseqBlock, n.p.opts.Now())
	switch {
	case err == nil:
		n.mu.Lock()
		prev := claimed.NotifyCSeq - min(claimed.NotifyCSeq, cseqBlock)
		if prev == 0 {
			prev = legacyCSeq(&sub)
		}
		s.cseq, s.reserved = max(s.cseq, prev), claimed.NotifyCSeq
		s.rec.setNode(claimed.Node, claimed.NotifyCSeq)
		if !n.p.owns(sub.Node) || s.version == 0 {
			// Taken over, or held before this process started: the watcher's last document
			// came from elsewhere. Versions go on above every CSeq sent before (a node's
			// versions never pass its CSeqs), and the next document is full.
			s.version = max(s.version, uint32(min(prev, 1<<31)))
			s.winfoSent, s.sent = nil, nil
		}
		n.mu.Unlock()
		if !n.p.owns(sub.Node) {
			n.p.metrics.takeovers.Inc()
			n.p.log.Info("subscription taken over", zap.String(logging.KeyAOR, sub.AOR), zap.String("watcher", sub.Watcher),
				zap.String("from", sub.Node), zap.String("to", n.p.opts.NodeID))
		}
		return true
	case errors.Is(err, storage.ErrStale), errors.Is(err, storage.ErrNotFound):
		n.forget(sub.AOR, sub.ID) // another node owns it, or it is gone
	default:
		if n.ctx.Err() == nil {
			n.p.log.Warn("notify: subscription not claimed", zap.String(logging.KeyAOR, sub.AOR), zap.Error(err))
		}
	}
	return false
}

// claimTimeout bounds one ClaimSubscription.
const claimTimeout = 5 * time.Second

// legacyCSeq is the NOTIFY CSeq floor of a subscription stored before reservations existed
// (NotifyCSeq 0): its CSeqs were the hundredths of seconds since it was created.
func legacyCSeq(sub *storage.Subscription) uint32 {
	if sub.NotifyCSeq > 0 || sub.CreatedAt.IsZero() {
		return 0
	}
	return uint32(min(time.Since(sub.CreatedAt)/(10*time.Millisecond)+1, 1<<31-1))
}

// abandon ends a send that could not claim its subscription: the change waits for the next.
func (n *notifier) abandon(s *subState) {
	n.mu.Lock()
	s.inflight = false
	n.mu.Unlock()
}

// notifyJob is what one send of a subscription's NOTIFY works from: a copy of its state,
// taken under the lock.
type notifyJob struct {
	sub      storage.Subscription
	reason   string // Subscription-State reason: "" while the subscription goes on
	full     bool   // a full document (first NOTIFY, refresh)
	since    time.Time
	cseq     uint32
	version  uint32
	answered bool
	sent     map[string]pidf.Watcher // the watchers the last winfo document told of
	pkgSent  map[string]string       // what a package's watcher knows (subState.sent)
}

// take copies what send needs from s and claims the next CSeq (and winfo version).
func (n *notifier) take(s *subState) notifyJob {
	n.mu.Lock()
	defer n.mu.Unlock()
	j := notifyJob{sub: s.rec.sub(), reason: s.reason, full: s.full, since: s.since,
		answered: s.answered, sent: s.winfoSent}
	s.dirty, s.full, s.since = false, false, time.Time{}
	s.cseq++ // within the reservation: reserve made sure of it
	j.cseq = s.cseq
	switch {
	case j.sub.Event == EventWinfo:
		s.version++
		j.version = s.version
	case j.sub.Event != EventPresence:
		j.version = s.version // a package's first document is version 0
		s.version++
		j.pkgSent = s.sent
	}
	return j
}

// deliver builds j's document and sends it, unless it is the document the watcher has
// already (skip). status is the NOTIFY's final answer, 0 when none came.
func (n *notifier) deliver(ctx context.Context, s *subState, j notifyJob) (status int, skip bool, err error) {
	var (
		ctype     string
		body      []byte
		known     map[string]pidf.Watcher
		pkgKnown  map[string]string
		unchanged bool
	)
	if pkg := n.p.packages[j.sub.Event]; pkg != nil {
		sent := j.pkgSent
		if j.full || j.reason != "" {
			sent = nil
		}
		ctype = pkg.Type()
		body, pkgKnown, err = pkg.Document(ctx, &j.sub, j.version, sent)
		unchanged = err == nil && body == nil
	} else if j.sub.Event == EventWinfo {
		// A full document first, on a refresh and at the end; partial ones in between.
		sent := j.sent
		if j.full || j.reason != "" {
			sent = nil
		}
		ctype = TypeWatcherInfo
		body, known, err = n.p.winfoDocument(ctx, j.sub.AOR, j.version, sent)
		unchanged = err == nil && body == nil
	} else {
		ctype, body, err = n.p.body(ctx, &j.sub, j.version)
	}
	if err != nil {
		n.p.log.Warn("notify: document not built", zap.String(logging.KeyAOR, j.sub.AOR), zap.Error(err))
		return 0, false, err
	}
	h := maphash.Bytes(n.seed, body)
	n.mu.Lock()
	skip = unchanged || !j.full && j.reason == "" && s.sentBody && h == s.lastBody
	if skip && j.sub.Event != EventPresence {
		s.version-- // versions count the documents sent, one by one (RFC 3858 §4.4, RFC 4235 §4.1)
	}
	n.mu.Unlock()
	if skip {
		return 0, true, nil
	}
	status, err = n.notify(ctx, &j.sub, j.cseq, j.reason, ctype, body)
	n.mu.Lock()
	s.lastBody, s.sentBody = h, true
	// Refused or lost: the next document is full.
	s.winfoSent, s.sent = nil, nil
	if status >= 200 && status < 300 {
		s.winfoSent, s.sent = known, pkgKnown
	}
	n.mu.Unlock()
	return status, false, err
}

// report counts and logs how j's NOTIFY went.
func (n *notifier) report(j notifyJob, status int, skip bool, err error) {
	log, sub := n.p.log, j.sub
	switch {
	case skip:
		if ce := log.Check(zap.DebugLevel, "notify skipped: document unchanged"); ce != nil {
			ce.Write(zap.String(logging.KeyAOR, sub.AOR), zap.String("watcher", sub.Watcher))
		}
	case n.ctx.Err() != nil:
	case err != nil || status == 0:
		n.p.metrics.notifies.WithLabelValues("error").Inc()
		log.Info("notify not sent", zap.String(logging.KeyAOR, sub.AOR), zap.String("watcher", sub.Watcher), zap.Error(err))
	case status >= 200 && status < 300:
		n.p.metrics.notifies.WithLabelValues("ok").Inc()
		if ce := log.Check(zap.DebugLevel, "notify sent"); ce != nil {
			ce.Write(zap.String(logging.KeyAOR, sub.AOR), zap.String(logging.KeyEvent, sub.Event), zap.String("watcher", sub.Watcher),
				zap.Uint32(logging.KeyCSeq, j.cseq), zap.String(logging.KeyReason, j.reason))
		}
		if !j.full && !j.since.IsZero() && sub.Event == EventPresence {
			// A change's NOTIFY (not a subscription's first or a refresh's).
			n.p.metrics.latency.Observe(time.Since(j.since).Seconds())
		}
	default:
		n.p.metrics.notifies.WithLabelValues(strconv.Itoa(status / 100 * 100)).Inc()
		log.Debug("notify refused", zap.String(logging.KeyAOR, sub.AOR), zap.String("watcher", sub.Watcher), zap.Int(logging.KeyStatus, status))
	}
}

// settle records the outcome in s: the subscription ends (final NOTIFY sent, or an answer
// that terminates it), or a change that came in meanwhile is sent next.
func (n *notifier) settle(s *subState, j notifyJob, status int, skip bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sub := j.sub
	s.inflight = false
	if status >= 200 && status != 408 {
		s.answered = true // 408: nobody answered; the subscription ends (terminates)
	} else if status == 408 && !j.answered && sub.Transport == "udp" {
		// Its retransmissions were capped: a SUBSCRIBE from a source that never answers,
		// possibly forged.
		n.p.opts.Limited.Inc(limitUnansweredNotify)
	}
	if !skip {
		s.last = time.Now()
	}
	k := subKey{sub.AOR, sub.ID}
	if j.reason != "" {
		n.remove(k, s)
		return
	}
	if n.ends(s, status, skip) {
		n.remove(k, s)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.p.dropped(sub, status)
		}()
		return
	}
	if s.dirty && n.subs[k] == s {
		if s.reason != "" {
			n.start(s)
			return
		}
		s.dirty = false
		n.want(s, false, s.since)
	}
}

// UnansweredRetransmits is how often a NOTIFY is retransmitted over UDP, at most, to a
// watcher that has not answered any NOTIFY of its subscription yet: the first NOTIFY goes to
// the source of an unauthenticated SUBSCRIBE, which may be forged, and sipgo's Timer E
// schedule would send it 11 times — an amplifier. A real watcher answers the first or one of
// two retransmissions (a loss rate that drops three in a row leaves no usable subscription
// anyway); one that never answers gets 408 at Timer F, which ends the subscription.
const UnansweredRetransmits = 2

type unansweredKey struct{}

// Retransmits is the cap on UDP retransmissions the Sender applies to the NOTIFY it sends
// with ctx: UnansweredRetransmits while its watcher has not answered a NOTIFY, else 0 (no
// cap: RFC 3261's Timer E schedule).
func Retransmits(ctx context.Context) int {
	if ctx.Value(unansweredKey{}) != nil {
		return UnansweredRetransmits
	}
	return 0
}

// terminates reports whether a NOTIFY's final status ends the subscription (RFC 6665
// §4.1.2.3; RFC 5057 §5.1 lists the answers that end a dialog usage): no answer, no dialog,
// or the watcher is gone.
func terminates(status int) bool {
	switch status {
	case 404, 405, 408, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 503, 604:
		return true
	}
	return false
}

// maxFailures is how many NOTIFYs of a Lenient package's subscription may fail in a row
// before it ends.
const maxFailures = 3

// ends reports whether status, the answer to s's NOTIFY, ends the subscription: terminates
// says so, but for a Lenient package only a 481 or the maxFailures-th failure (no answer, or
// any answer but a 2xx) in a row does;
// a failure short of that has the next change send the whole document again, even one equal
// to the lost one. Call with n.mu held.
func (n *notifier) ends(s *subState, status int, skip bool) bool {
	event := s.rec.field(recEvent)
	l, ok := n.p.packages[event].(Lenient)
	if !ok || !l.KeepOnTimeout() {
		return terminates(status)
	}
	switch {
	case skip:
		return false
	case status >= 200 && status < 300:
		s.failures = 0
		return false
	case status == 481:
		return true
	case status == 0: // not sent, or no answer before the agent stopped: not counted
		s.sentBody = false
		return false
	case status >= 300:
		s.failures++
		s.sentBody = false
		if s.failures < maxFailures {
			n.p.log.Info("notify failed, subscription kept", zap.String(logging.KeyAOR, s.rec.field(recAOR)),
				zap.String(logging.KeyEvent, event), zap.String("watcher", s.rec.field(recWatcher)),
				zap.Int(logging.KeyStatus, status), zap.Int32("failures", s.failures))
			return false
		}
		return true
	}
	return false
}

// notify builds and sends one NOTIFY.
func (n *notifier) notify(ctx context.Context, sub *storage.Subscription, cseq uint32, reason, ctype string, body []byte) (int, error) {
	req, err := n.p.request(sub, cseq, reason, ctype, body)
	if err != nil {
		return 0, err
	}
	return n.p.opts.Sender.SendInDialog(ctx, req, sub)
}

// enter waits for a place in the send window (sendWindow) and returns it: its leave gives
// the place back, once the NOTIFY is answered (or not sent) or after windowHold, whichever
// comes first.
func (n *notifier) enter(ctx context.Context) (*windowPlace, error) {
	select {
	case n.window <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w := &windowPlace{window: n.window}
	w.timer = time.AfterFunc(windowHold, w.free)
	return w, nil
}

// windowPlace is one NOTIFY's place in the send window.
type windowPlace struct {
	window chan struct{}
	timer  *time.Timer
	left   atomic.Bool
}

// leave gives the place back (the NOTIFY is answered).
func (w *windowPlace) leave() {
	w.timer.Stop()
	w.free()
}

func (w *windowPlace) free() {
	if w.left.CompareAndSwap(false, true) {
		<-w.window
	}
}

// close abandons the NOTIFYs under way and waits for their goroutines. The context ends under
// n.mu, so every start either added to wg before (Wait waits for it) or sees it ended.
func (n *notifier) close() {
	n.mu.Lock()
	n.stop()
	n.mu.Unlock()
	n.wg.Wait()
}

// request builds a NOTIFY of sub: From the presentity with our tag, To the watcher with its
// tag, the dialog's Call-ID, Event, Subscription-State, our Contact, and always a
// Content-Length (a NOTIFY without one crashes baresip 1.0.0) with a Content-Type whenever
// there is a body. The Request-URI and route set are the Sender's to set.
func (p *Presence) request(sub *storage.Subscription, cseq uint32, reason, ctype string, body []byte) (*sip.Request, error) {
	var target, watcher sip.Uri
	if err := sip.ParseUri(sub.RemoteTarget, &target); err != nil {
		return nil, err
	}
	if err := sip.ParseUri(sub.WatcherURI, &watcher); err != nil {
		return nil, err
	}
	user, host := splitAOR(sub.AOR)
	req := sip.NewRequest(sip.NOTIFY, target)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host},
		Params: sip.HeaderParams{{K: "tag", V: sub.ID}}})
	req.AppendHeader(&sip.ToHeader{DisplayName: sipx.QuoteDisplayName(sub.WatcherName), Address: watcher,
		Params: sip.HeaderParams{{K: "tag", V: sub.FromTag}}})
	callID := sip.CallIDHeader(sub.CallID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Event", sub.Event))
	state := sub.State
	if reason != "" {
		state = storage.SubTerminated + ";reason=" + reason
	} else {
		left := int(time.Until(sub.ExpiresAt).Seconds())
		state += ";expires=" + strconv.Itoa(max(left, 0))
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Contact", "<"+p.opts.Contact(sub.Transport, sub.Source)+">"))
	if len(body) > 0 {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req, nil
}

// dropped removes a subscription whose NOTIFY its watcher refused for good (or never
// answered) and tells the presentity's winfo watchers.
func (p *Presence) dropped(sub storage.Subscription, status int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.opts.Store.DeleteSubscription(ctx, sub.AOR, sub.ID, p.opts.Now())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		p.log.Warn("subscription not removed", zap.String(logging.KeyAOR, sub.AOR), zap.Error(err))
		return
	}
	p.log.Info("subscription ended by its NOTIFY's answer", zap.String(logging.KeyAOR, sub.AOR),
		zap.String("watcher", sub.Watcher), zap.Int(logging.KeyStatus, status))
	p.ended(&sub, "notify_failed", false)
	if sub.Event == EventPresence {
		p.changed(sub.AOR, storage.WatchersChanged, p.opts.Now())
	}
}

func splitAOR(aor string) (user, host string) {
	for i := len(aor) - 1; i >= 0; i-- {
		if aor[i] == '@' {
			return aor[:i], aor[i+1:]
		}
	}
	return "", aor
}

// isStream reports whether a subscription's transport is a connection (tcp, tls, ws, wss).
func isStream(transport string) bool {
	return transport != "" && !strings.EqualFold(transport, "udp")
}

// lost ends a stream subscription whose owner is gone: its connection went with the node, so
// no NOTIFY can reach the watcher, which subscribes again on another node when it reconnects.
func (p *Presence) lost(ctx context.Context, sub *storage.Subscription) {
	if _, err := p.opts.Store.DeleteSubscription(ctx, sub.AOR, sub.ID, p.opts.Now()); err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			p.log.Warn("subscription of a lost node not removed", zap.String(logging.KeyAOR, sub.AOR), zap.Error(err))
		}
		return // another node removed it
	}
	p.log.Info("subscription ended with its node", zap.String(logging.KeyAOR, sub.AOR),
		zap.String("watcher", sub.Watcher), zap.String("node", sub.Node))
	// Not ended(): the source's slot was counted on the node that is gone, not here.
	p.metrics.ended.WithLabelValues("node_lost").Inc()
	p.notifier.forget(sub.AOR, sub.ID)
	if sub.Event == EventPresence {
		p.changed(sub.AOR, storage.WatchersChanged, p.opts.Now())
	}
}

// moved tells sub's former owner, when it is alive, that another node notifies sub now.
func (p *Presence) moved(sub *storage.Subscription) {
	if p.opts.Bus != nil && p.opts.Nodes != nil && p.opts.Nodes.Alive(sub.Node) {
		p.opts.Bus.PublishTo(sub.Node, storage.Event{Kind: storage.SubscriptionMoved, AOR: sub.AOR, IDs: []string{sub.ID}})
	}
}

// notifyOwner has sub notified (full: its whole state) by its owner: this node, or the live
// node that owns it; a subscription of a node that is gone is taken over here.
func (p *Presence) notifyOwner(ctx context.Context, sub *storage.Subscription, full bool, at time.Time) {
	if !p.owns(sub.Node) && p.alive(ctx, sub.Node) {
		p.opts.Bus.PublishTo(sub.Node, storage.Event{Kind: storage.NotifyRequested, AOR: sub.AOR,
			IDs: []string{sub.ID}, Full: full, At: at})
		return
	}
	p.notifier.mu.Lock()
	p.notifier.changed(sub, full, at)
	p.notifier.mu.Unlock()
}

// endOwned ends a subscription removed from the store on this node (expiry, a rule): its
// owner forgets it and sends its final NOTIFY (reason) — this node, or the live node that
// owns it.
func (p *Presence) endOwned(ctx context.Context, sub *storage.Subscription, reason string) {
	if !p.owns(sub.Node) && p.alive(ctx, sub.Node) {
		p.opts.Bus.PublishTo(sub.Node, storage.Event{Kind: storage.SubscriptionEnded, AOR: sub.AOR,
			IDs: []string{sub.ID}, Reason: reason, At: p.opts.Now()})
		return
	}
	p.ended(sub, reason, true)
}

// OwnedSubscriptions is how many live subscriptions this node notifies (the cluster's view of
// the node: GET /api/v1/cluster).
func (p *Presence) OwnedSubscriptions() int {
	n := p.notifier
	n.mu.Lock()
	defer n.mu.Unlock()
	count := 0
	for _, s := range n.subs {
		if s.reason == "" && p.owns(s.rec.field(recNode)) {
			count++
		}
	}
	return count
}
