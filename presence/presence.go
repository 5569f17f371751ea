package presence

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Event packages served (RFC 3856, RFC 3857) and their document types.
const (
	EventPresence = "presence"
	EventWinfo    = "presence.winfo"

	TypePIDF        = "application/pidf+xml"
	TypeWatcherInfo = "application/watcherinfo+xml"

	// baseEvents is the Allow-Events of 489 answers when no other package is served.
	baseEvents = EventPresence + ", " + EventWinfo
)

// Watcher policies: what happens to a watcher the presentity has no rule for.
const (
	PolicyAllow      = "allow"       // every watcher is active at once
	PolicySameDomain = "same-domain" // watchers of the presentity's domain are active, others pending
	PolicyConfirm    = "confirm"     // every other watcher is pending until a rule decides
)

// Locator finds the live bindings of an AOR (the registrar): presence from registration.
type Locator interface {
	Lookup(ctx context.Context, aor string) ([]storage.Binding, error)
}

// Nodes is what the presence agent knows of the nodes that share its store: whether a
// subscription's owner is alive, and whether this node's own lease still holds (when it may
// have lapsed, other nodes may have taken its subscriptions over, so it renews its claim on
// each before sending again). Package cluster implements it.
type Nodes interface {
	Alive(node string) bool
	// Gone reports whether node is certainly gone (not merely missing from a view older
	// than its arrival), so that its subscriptions may be taken over.
	Gone(ctx context.Context, node string) bool
	Leased() bool
	// Settled reports whether every other node knows this one, so that the changes they
	// broadcast reach it: until then it keeps no "nobody watches" answer.
	Settled() bool
}

// Sender sends a request within a subscription's dialog (a NOTIFY) and returns the final
// status: the watcher's answer, 408 when it never answered, 503 when no transport reached it.
// Package delivery sends it (internal/server adapts delivery.SendInDialog).
type Sender interface {
	SendInDialog(ctx context.Context, req *sip.Request, sub *storage.Subscription) (int, error)
}

// options is a Presence's settings: its section and what the wiring hands it.
type options struct {
	Config
	Deps
}

// Presence is the presence agent stage. Create it with Setup, put Plugin in the chain, and run
// Run for the sweeps and the notifier.
type Presence struct {
	opts    options
	events  <-chan *storage.Event
	stopBus func()
	domains map[string]bool
	log     *zap.Logger
	next    sipx.Handler
	*shared
}

// shared is what the Plugin copies of a Presence share.
type shared struct {
	// packages are the event packages served besides presence and presence.winfo (Serve),
	// by Event name; allowEvents lists them all for Allow-Events.
	packages    map[string]Package
	allowEvents string
	notifier    *notifier
	docs        *docCache
	sources     *sourceCounts
	metrics     *metrics
	logGate     *sipx.LogGate[string]
}

// newPresence checks opts and returns a presence agent.
func newPresence(opts options) (*Presence, error) {
	if opts.Store == nil || opts.Locator == nil || opts.Sender == nil || opts.Contact == nil || opts.IsOurs == nil || len(opts.Domains) == 0 {
		return nil, errors.New("presence: Domains, Store, Locator, Sender, Contact and IsOurs are required")
	}
	switch opts.Policy {
	case PolicyAllow, PolicySameDomain, PolicyConfirm:
	default:
		return nil, fmt.Errorf("presence: policy %q: want allow, same-domain or confirm", opts.Policy)
	}
	if opts.MinExpires < 1 || opts.MinExpires > opts.DefaultExpires || opts.DefaultExpires > opts.MaxExpires {
		return nil, fmt.Errorf("presence: expiry limits: want 1 <= min %d <= default %d <= max %d",
			opts.MinExpires, opts.DefaultExpires, opts.MaxExpires)
	}
	if opts.MinNotifyInterval < 0 || opts.MaxSubscriptionsPerSource < 1 || opts.MaxWatchers < 1 ||
		opts.MaxWatchersPerDomain < 1 || opts.SweepInterval <= 0 {
		return nil, fmt.Errorf("presence: limits: min notify interval %s, max subscriptions per source %d, max watchers %d, per domain %d, sweep interval %s: want the interval 0 or more, the others more than 0",
			opts.MinNotifyInterval, opts.MaxSubscriptionsPerSource, opts.MaxWatchers, opts.MaxWatchersPerDomain, opts.SweepInterval)
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Presence{opts: opts, domains: map[string]bool{}, log: opts.Log}
	for _, d := range opts.Domains {
		p.domains[strings.ToLower(d)] = true
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	p.shared = &shared{packages: map[string]Package{}, allowEvents: baseEvents, docs: newDocCache(), sources: &sourceCounts{n: map[string]int{}}, metrics: m,
		logGate: sipx.NewLogGate[string](time.Minute)}
	opts.Limited.Declare(limitSubscriptionsPerSource, limitWatchers, limitWatchersPerDomain, limitUnansweredNotify)
	p.notifier = newNotifier(p)
	m.owner = p.notifier
	if opts.Bus != nil {
		// Subscribed now, not in Run: an event published between start-up and Run's first
		// instant must not be lost.
		var stop func()
		p.events, stop = opts.Bus.Subscribe(16384)
		p.stopBus = sync.OnceFunc(stop)
	}
	return p, nil
}

// Close ends the subscription to the bus that Setup took, for a Presence whose Run never ran
// (Run ends it itself); it may be called more than once.
func (p *Presence) Close() error {
	if p.stopBus != nil {
		p.stopBus()
	}
	return nil
}

// Plugin returns the presence agent as a chain stage.
func (p *Presence) Plugin() sipx.Plugin {
	return func(next sipx.Handler) sipx.Handler {
		pp := *p
		pp.next = next
		return &pp
	}
}

// Name implements sipx.Handler.
func (p *Presence) Name() string { return "presence" }

// ServeSIP handles PUBLISH and SUBSCRIBE addressed to a presentity of a local domain, and
// in-dialog SUBSCRIBEs of the subscriptions it holds; everything else goes on.
func (p *Presence) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	switch req.Method {
	case sip.PUBLISH:
		if p.ours(req) && !p.routed(req) {
			return p.publish(ctx, tx, req)
		}
	case sip.NOTIFY:
		// An out-of-dialog NOTIFY of a package that takes them (unsolicited MWI).
		if to := req.To(); to != nil && !to.Params.Has("tag") && p.ours(req) {
			if r, ok := p.packages[eventPackage(req)].(Receiver); ok {
				return r.Receive(ctx, tx, req)
			}
		}
	case sip.SUBSCRIBE:
		if to := req.To(); to != nil && to.Params.Has("tag") {
			if p.inDialogOurs(req) {
				return p.resubscribe(ctx, tx, req)
			}
		} else if p.ours(req) && !p.routed(req) {
			return p.subscribe(ctx, tx, req)
		}
	}
	return sipx.Next(ctx, p.next, tx, req)
}

// ours reports whether an out-of-dialog request is for a presentity of ours: its Request-URI
// names a user of a local domain, and no Route sends it anywhere but here (a Route to us is
// what clients pre-load; the sanity stage has checked the header syntax).
func (p *Presence) ours(req *sip.Request) bool {
	if req.Recipient.User == "" || !p.domains[strings.ToLower(req.Recipient.Host)] {
		return false
	}
	return !p.routedElsewhere(req)
}

// routed reports whether a route of the proxy (proxy.routes) takes req elsewhere: a PBX
// answers the SUBSCRIBE or PUBLISH itself (its extensions' BLF, its voicemail's MWI).
func (p *Presence) routed(req *sip.Request) bool {
	return p.opts.Routed != nil && p.opts.Routed(req)
}

// inDialogOurs reports whether an in-dialog SUBSCRIBE is for a subscription of ours: its To
// names a presentity of a local domain and its Request-URI is our Contact (the 200 gave it).
func (p *Presence) inDialogOurs(req *sip.Request) bool {
	to := req.To()
	if !p.domains[strings.ToLower(to.Address.Host)] || p.routedElsewhere(req) {
		return false
	}
	return p.isOurContact(&req.Recipient)
}

// isOurContact reports whether u names this server: one of our addresses (the Contact we
// hand out) or one of our domains.
func (p *Presence) isOurContact(u *sip.Uri) bool {
	return p.domains[strings.ToLower(u.Host)] || p.opts.IsOurs(u.Host)
}

// routedElsewhere reports whether req carries a Route header naming a host that is not this
// server (then the proxy routes it).
func (p *Presence) routedElsewhere(req *sip.Request) bool {
	for _, h := range sipx.Headers(req, "Route") {
		r, ok := h.(*sip.RouteHeader)
		if !ok || !p.isOurContact(&r.Address) {
			return true
		}
	}
	return false
}

// Run sweeps expired publications and subscriptions and reacts to events (registrations,
// publications, rules, watchers) until ctx ends, then waits for the NOTIFYs under way.
func (p *Presence) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if p.events != nil {
		// Events are handled by eventWorkers goroutines, each owning the AORs that hash to
		// it: one AOR's events stay in order while a store round trip for one presentity
		// does not hold up the others.
		queues := make([]chan *storage.Event, eventWorkers)
		for i := range queues {
			queues[i] = make(chan *storage.Event, 1024)
			wg.Add(1)
			go func(q <-chan *storage.Event) {
				defer wg.Done()
				for ev := range q {
					if ctx.Err() == nil {
						p.onEvent(ctx, ev)
					}
				}
			}(queues[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.stopBus()
			defer func() {
				for _, q := range queues {
					close(q)
				}
			}()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-p.events:
					if !ok {
						return
					}
					select {
					case queues[maphash.String(p.notifier.seed, ev.AOR)%eventWorkers] <- ev:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	t := time.NewTicker(p.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			p.notifier.close()
			return
		case <-t.C:
			p.sweep(ctx)
		}
	}
}

// eventWorkers is how many goroutines handle presence events.
const eventWorkers = 16

// sweepBatch bounds one sweep call; a backlog is taken batch after batch.
const sweepBatch = 256

func (p *Presence) sweep(ctx context.Context) {
	now := p.opts.Now()
	for {
		pubs, err := p.opts.Store.ExpirePublications(ctx, now, sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("publication sweep failed", zap.Error(err))
			}
			break
		}
		seen := map[string]bool{}
		for _, e := range pubs {
			p.metrics.publications.WithLabelValues("expired").Inc()
			if !seen[e.AOR] {
				seen[e.AOR] = true
				event, aor := storage.SplitPublicationKey(e.AOR)
				p.published(aor, event, now)
			}
		}
		if len(pubs) < sweepBatch {
			break
		}
	}
	for {
		subs, err := p.opts.Store.ExpireSubscriptions(ctx, now, sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("subscription sweep failed", zap.Error(err))
			}
			break
		}
		seen := map[string]bool{}
		for _, e := range subs {
			s := e.Subscription
			p.endOwned(ctx, &s, "timeout")
			if s.Event == EventPresence && !seen[e.AOR] {
				seen[e.AOR] = true
				p.changed(e.AOR, storage.WatchersChanged, now)
			}
		}
		if len(subs) < sweepBatch {
			break
		}
	}
}

// changed announces a change of aor's state to every node (the bus), or handles it here
// when there is no bus.
func (p *Presence) changed(aor string, kind storage.EventKind, now time.Time) {
	ev := storage.Event{Kind: kind, AOR: aor, At: now}
	if p.opts.Bus != nil {
		p.opts.Bus.Publish(ev)
		return
	}
	p.onEvent(context.Background(), &ev)
}

// onEvent reacts to one event. A change seen on this node (a publication, a registration,
// a rule) is this node's to dispatch: it reads the presentity's subscriptions once and has
// each notified by its owner (notifier.presentity). The same change seen on another node
// only invalidates what this node keeps of it; the owner hears of it in a NotifyRequested.
// ev is shared with the bus's other subscribers: it is read, never changed.
func (p *Presence) onEvent(ctx context.Context, ev *storage.Event) {
	here := ev.Node == "" || ev.Node == p.opts.NodeID
	if strings.HasPrefix(string(ev.Kind), "binding.") {
		p.bindingChanged(ctx, ev, here)
	}
	switch ev.Kind {
	case storage.BindingAdded, storage.BindingRemoved, storage.BindingExpired, storage.BindingEvicted,
		storage.PresenceChanged:
		p.docs.invalidate(ev.AOR)
		if here {
			p.notifier.presentity(ctx, ev.AOR, EventPresence, ev.At, true)
		}
	case storage.StateChanged:
		if f, ok := p.packages[ev.Package].(Forgetter); ok {
			f.Forget(ev.AOR)
		}
		if here && p.packages[ev.Package] != nil {
			p.notifier.presentity(ctx, ev.AOR, ev.Package, ev.At, true)
			if o, ok := p.packages[ev.Package].(Originator); ok {
				o.ChangedHere(ev.AOR)
			}
		}
	case storage.WatchersChanged:
		p.notifier.watched(ev.AOR)
		if ev.Package == "" && p.notifier.watchesWinfo(ev.AOR) {
			// Each node notifies the presence.winfo subscriptions it owns.
			p.notifier.presentity(ctx, ev.AOR, EventWinfo, ev.At, false)
		}
	case storage.RulesChanged:
		p.docs.invalidateRules(ev.AOR)
		if here {
			p.reauthorize(ctx, ev.AOR)
		}
	case storage.NotifyRequested:
		// The change it reports may not have reached this node yet (a node that joined
		// moments ago is not in the sender's view of whom to tell): what is cached of the
		// presentity is not trusted.
		p.docs.invalidate(ev.AOR)
		p.notifier.requested(ctx, ev)
	case storage.SubscriptionMoved:
		for _, id := range ev.IDs {
			p.notifier.forget(ev.AOR, id)
		}
	case storage.SubscriptionEnded:
		for _, id := range ev.IDs {
			p.notifier.finalKnown(ev.AOR, id, ev.Reason, ev.At)
		}
	}
}

// owns reports whether this node sends the NOTIFYs of a subscription owned by node.
func (p *Presence) owns(node string) bool { return node == "" || node == p.opts.NodeID }

// alive reports whether node, a subscription's owner, may be alive: a node is taken for gone
// (and what it owned taken over) only when the cluster is sure of it.
func (p *Presence) alive(ctx context.Context, node string) bool {
	if p.owns(node) || p.opts.Nodes == nil {
		return p.owns(node)
	}
	return p.opts.Nodes.Alive(node) || !p.opts.Nodes.Gone(ctx, node)
}

// settled reports whether the other nodes' broadcasts reach this node (see Nodes).
func (p *Presence) settled() bool { return p.opts.Nodes == nil || p.opts.Nodes.Settled() }

// leased reports whether this node's ownership of its subscriptions is certain.
func (p *Presence) leased() bool { return p.opts.Nodes == nil || p.opts.Nodes.Leased() }

// expiry applies the expiry limits to a requested value: ok false means 423 (below the
// minimum and not 0).
func (p *Presence) expiry(req *sip.Request) (secs int, ok bool, err error) {
	v, has, err := sipx.Expires(req)
	if err != nil {
		return 0, false, err
	}
	if !has {
		return p.opts.DefaultExpires, true, nil
	}
	if v == 0 {
		return 0, true, nil
	}
	if int64(v) < int64(p.opts.MinExpires) {
		return 0, false, nil
	}
	return int(min(int64(v), int64(p.opts.MaxExpires))), true, nil
}

// eventPackage returns the event package of req's Event header (its value without
// parameters, lower case), "" when there is none.
func eventPackage(req *sip.Request) string {
	h := sipx.Header(req, "Event")
	if h == nil {
		return ""
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// seconds truncates t to the whole second stores keep.
func seconds(t time.Time) time.Time { return time.Unix(t.Unix(), 0).UTC() }
