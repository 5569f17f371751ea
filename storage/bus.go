package storage

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EventKind names what happened: to a binding (below), or to a presentity's publications,
// rules or watchers (presence.go).
type EventKind string

// Binding events, published by the registrar.
const (
	BindingAdded     EventKind = "binding.added"
	BindingRefreshed EventKind = "binding.refreshed"
	BindingRemoved   EventKind = "binding.removed" // by the client (Expires 0, *), or the admin API
	BindingExpired   EventKind = "binding.expired"
	BindingEvicted   EventKind = "binding.evicted" // to respect the per-AOR contact limit
)

// Reasons a BindingRemoved gives (Event.Reason) when the client did not remove the binding
// itself; "" is a removal by the client (Expires 0, Contact: *).
const (
	RemovedFlowClosed = "flow_closed" // the binding's connection closed, by either side
	RemovedFlowDead   = "flow_dead"   // its UDP outbound flow sent no keepalive for 2 × Flow-Timer
	RemovedByAdmin    = "admin"       // the admin API removed it
)

// Event is one change published on a Bus. A subscriber receives a pointer to the event as
// published, shared with every other subscriber: an event is immutable once published, and
// a subscriber that wants a changed one makes a copy.
type Event struct {
	Kind    EventKind
	AOR     string
	Binding Binding
	At      time.Time
	// Mailbox, for events of a registration (BindingAdded, BindingRefreshed, ...), is the
	// BindingResult.Mailbox of the update that caused them; MailboxUnknown otherwise.
	Mailbox Mailbox
	// Node is the node the event comes from: the bus sets it to its own node (Bus.Self) when
	// it is empty, and a bus spanning nodes delivers another node's events with that node's
	// id, so a subscriber tells what happened here (Node == Self()) from what happened there.
	Node string
	// IDs, for the events one node sends another about subscriptions (NotifyRequested,
	// SubscriptionMoved, SubscriptionEnded), name the subscriptions of AOR concerned.
	IDs []string
	// Full, for NotifyRequested, asks for the full state (a subscription's state changed),
	// not only a change.
	Full bool
	// Reason, for SubscriptionEnded: the final NOTIFY's reason (RFC 6665 §4.1.3); for
	// BindingRemoved: why the binding went when the client did not remove it (RemovedFlowClosed,
	// RemovedFlowDead, RemovedByAdmin).
	Reason string `json:",omitempty"`
	// Package, for StateChanged and WatchersChanged, is the event package whose state or
	// subscriptions changed ("" for presence).
	Package string `json:",omitempty"`
}

// Bus carries events from the stage that caused them to the stages that react (presence from
// registration, offline delivery, reg event), on this node and, for a bus spanning the nodes
// of one deployment (package cluster), on the others. Neither Publish nor PublishTo ever
// blocks the caller.
type Bus interface {
	// Publish delivers ev to the subscribers of this node and, for a bus spanning nodes, of
	// every other node that needs its kind. An empty ev.Node becomes Self().
	Publish(ev Event)
	// PublishTo delivers ev to the subscribers on node only (this node's when node is this
	// node's id or ""). It never blocks the caller; delivery to another node is best effort,
	// counted when it fails.
	PublishTo(node string, ev Event)
	// Subscribe returns a channel of the events published from now on, buffered to buf, and a
	// function that ends the subscription and closes the channel. The channel carries
	// pointers, so that a buffer sized for bursts costs a word per slot, not an Event: every
	// subscriber gets the same event, which none may change.
	Subscribe(buf int, opts ...SubscribeOption) (<-chan *Event, func())
	// Self is this node's id ("" for a bus of one process that was given none).
	Self() string
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subscription)

// Coalesce makes a subscription lossless for the events key names (key(ev) != ""): when the
// subscriber's buffer is full such an event is held aside instead of dropped, the latest one
// per key, and delivered as soon as there is room. It is for events something stored depends
// on (a registration that starts offline delivery). The events held cost one per distinct
// key; while some are held, new events with a key join them, so of one key the subscriber
// sees the latest. Events without a key are dropped when the buffer is full, as always.
func Coalesce(key func(*Event) string) SubscribeOption {
	return func(s *subscription) { s.key = key }
}

// subscription is one subscriber of a LocalBus.
type subscription struct {
	ch  chan *Event
	key func(*Event) string // nil: nothing held aside

	mu    sync.Mutex
	held  map[string]*Event
	order []string      // keys of held, oldest first
	wake  chan struct{} // cap 1: something was held
	done  chan struct{} // closed when the subscription ends
	ended chan struct{} // closed when the pump has returned
}

// hold keeps ev aside under k (replacing an older event of k) and wakes the pump.
func (s *subscription) hold(k string, ev *Event) {
	s.mu.Lock()
	if _, ok := s.held[k]; !ok {
		s.order = append(s.order, k)
	}
	s.held[k] = ev
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// holding reports whether events are held aside.
func (s *subscription) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order) > 0
}

// pump moves held events into the channel, blocking on it (never the publisher), until the
// subscription ends.
func (s *subscription) pump() {
	defer close(s.ended)
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if len(s.order) == 0 {
				s.order = nil
				s.mu.Unlock()
				break
			}
			k := s.order[0]
			s.order = s.order[1:]
			ev := s.held[k]
			delete(s.held, k)
			s.mu.Unlock()
			select {
			case s.ch <- ev:
			case <-s.done:
				return
			}
		}
	}
}

// LocalBus is the in-process Bus. A subscriber whose buffer is full loses the event (counted
// by Dropped and simpled_bus_dropped_total{kind}) rather than stalling the registrar, unless
// it subscribed with Coalesce for that event; subscribers size their buffers for bursts. It
// reaches no other node: an event PublishTo addresses to another node is dropped and counted
// the same way.
type LocalBus struct {
	mu      sync.RWMutex
	node    string
	subs    map[int]*subscription
	next    int
	dropped atomic.Uint64
	metric  *prometheus.CounterVec
}

var _ Bus = (*LocalBus)(nil)

// NewLocalBus returns an empty in-process bus. Its drop counter is Collector.
func NewLocalBus() *LocalBus {
	return &LocalBus{subs: map[int]*subscription{}, metric: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_bus_dropped_total",
		Help: "Events a subscriber of the in-process event bus lost because its buffer was full, by event kind.",
	}, []string{"kind"})}
}

// Collector is simpled_bus_dropped_total{kind}, for the server's registry.
func (b *LocalBus) Collector() prometheus.Collector { return b.metric }

// SetNode names the node the bus runs on (Self, and the Node of events published without
// one). Call it before the first Publish.
func (b *LocalBus) SetNode(id string) {
	b.mu.Lock()
	b.node = id
	b.mu.Unlock()
}

// Self implements Bus.
func (b *LocalBus) Self() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.node
}

// PublishTo implements Bus: ev is published here when node is this node (or ""), else
// dropped and counted, since a LocalBus reaches no other node.
func (b *LocalBus) PublishTo(node string, ev Event) {
	if node == "" || node == b.Self() {
		b.Publish(ev)
		return
	}
	b.dropped.Add(1)
	b.metric.WithLabelValues(string(ev.Kind)).Inc()
}

// Publish delivers ev to every subscriber that has room for it, or holds it aside for those
// that coalesce it. An empty ev.Node becomes the bus's node.
func (b *LocalBus) Publish(ev Event) {
	b.PublishShared(&ev)
}

// PublishShared is Publish of an event the caller hands over: the subscribers get ev itself,
// which nobody may change from then on (an empty ev.Node is set first).
// It spares a bus spanning nodes a second copy of an event it also sends elsewhere.
func (b *LocalBus) PublishShared(ev *Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if ev.Node == "" {
		ev.Node = b.node
	}
	for _, s := range b.subs {
		k := ""
		if s.key != nil {
			k = s.key(ev)
		}
		if k != "" && s.holding() {
			s.hold(k, ev) // behind the ones held already
			continue
		}
		select {
		case s.ch <- ev:
		default:
			if k != "" {
				s.hold(k, ev)
				continue
			}
			b.dropped.Add(1)
			b.metric.WithLabelValues(string(ev.Kind)).Inc()
		}
	}
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(buf int, opts ...SubscribeOption) (<-chan *Event, func()) {
	s := &subscription{ch: make(chan *Event, buf)}
	for _, o := range opts {
		o(s)
	}
	if s.key != nil {
		s.held = map[string]*Event{}
		s.wake = make(chan struct{}, 1)
		s.done = make(chan struct{})
		s.ended = make(chan struct{})
		go s.pump()
	}
	b.mu.Lock()
	id := b.next
	b.next++
	b.subs[id] = s
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, id)
			b.mu.Unlock()
			if s.key != nil {
				close(s.done)
				<-s.ended // the pump sends on ch no more
			}
			close(s.ch)
		})
	}
}

// Dropped returns how many events were lost to full subscriber buffers.
func (b *LocalBus) Dropped() uint64 { return b.dropped.Load() }
