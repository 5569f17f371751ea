// Package cluster is the nodes of one deployment: who is alive, and the events between them.
// Several simpled nodes sharing one Redis (or Redis Cluster) are one server to their clients;
// this package is what each node knows of the others, and the bus that carries events from
// the node where something happened to the nodes that must react.
//
// # Membership
//
// Every node writes a heartbeat record (its id, SIP listeners, start time, and how many
// subscriptions and flows it owns) with a lease (cluster.lease, default 10 s), every lease/3.
// The store drops a record whose lease ended, by the store's clock, so nodes whose clocks
// differ agree on who is alive. Each heartbeat returns every live record: that is the view
// Alive and Nodes read, refreshed at each heartbeat, with each lease's end translated to this
// node's clock at the moment the answer arrived (late rather than early: a node is never
// taken for dead before its lease ended). So a node that stops is dead to the others within
// the lease, plus the time its last heartbeat took. A node is always alive to itself.
//
// Leased is a node's own view of its lease: false once its last successful heartbeat was
// sent longer ago than the lease minus a margin (lease/4), measured from the moment the
// heartbeat was sent, which is before the store computed the lease's end. A node that is not
// leased must assume the others may already treat it as dead and take over what it owns.
// On a clean shutdown a node removes its record (Close): the others see it gone at their next
// heartbeat instead of a lease later.
//
// # The bus
//
// Cluster implements storage.Bus. Publish delivers an event to this node's subscribers (an
// embedded storage.LocalBus) and, for the kinds other nodes need (binding.*,
// presence.changed, presence.rules, presence.watchers), to every other live node; PublishTo
// sends one event to one node (presence.notify: "notify these subscriptions you own"). An
// event from another node reaches the local subscribers with Event.Node set to that node.
//
// Each node has an inbox, a Redis stream (inbox:{<node>}, one key, so it works on Redis
// Cluster), read by one goroutine with XREAD BLOCK from the last entry it saw. Streams rather
// than pub/sub: pub/sub delivers only to a connection subscribed at the instant of PUBLISH,
// so a node whose connection to Redis dropped for a second would lose what was sent in that
// second with no way to know; a stream keeps the entries, and the reader, reconnected, reads
// on from its last ID and catches up. The inbox is bounded (MAXLEN ~ InboxMaxLen entries)
// and has a TTL its node's heartbeat refreshes; senders never create it (XADD NOMKSTREAM),
// so the inbox of a node that stopped vanishes with its TTL, and an event sent to a node that
// is gone is dropped and counted rather than kept. Pub/sub would also cost a fan-out to every
// node for directed events, and on Redis Cluster (before sharded pub/sub) every PUBLISH
// crosses the whole cluster bus.
//
// Publishing never blocks: events to send go into a bounded queue (QueueSize), and one
// goroutine takes what has gathered (up to BatchSize events), encodes each event once (JSON,
// the binding included for binding events) and appends one entry per target node to the
// targets' inboxes in one pipeline. An event the queue has no room for, or whose append
// failed, is dropped and counted (simpled_cluster_events_dropped_total). Ordering holds per
// sender and receiver; nothing orders two senders' events.
//
// # Cost
//
// With N nodes, every forwarded event costs N-1 stream entries, one XADD per target node
// and batch: under load a pipeline of N-1 XADDs carries up to BatchSize events, idle it is
// N-1 XADDs per event. An event is about 60 bytes (presence kinds) to 400 (a binding with a
// flow token), plus about 30 bytes of entry overhead. Each node adds one blocked XREAD
// (returning with whatever arrived) and, every lease/3, one pipeline of two scripts.
//
// # Storage
//
// The Redis side (storage/redis, cluster.go) is behind Store. Without one (the memory store)
// the cluster is this node alone: Alive is true for this node only, the bus is the local bus
// with this node's id.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/storage"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Store keeps the membership records and the nodes' inboxes: storage/redis.Store.
type Store interface {
	// Heartbeat writes rec with a lease, keeps rec's node's inbox (creating it when missing)
	// for keep, and returns every node whose lease runs and the store's clock.
	Heartbeat(ctx context.Context, rec storage.NodeRecord, lease, keep time.Duration) ([]storage.NodeRecord, time.Time, error)
	// LeaveCluster removes node's record.
	LeaveCluster(ctx context.Context, node string) error
	// AppendInbox appends each entry to its node's existing inbox (ok false: no such inbox),
	// trimmed to about maxLen entries, in one round trip.
	AppendInbox(ctx context.Context, entries []storage.InboxAppend, maxLen int64) (ok []bool, err error)
	// InboxTail is the ID of the last entry of node's inbox ("0-0" for none).
	InboxTail(ctx context.Context, node string) (string, error)
	// ReadInbox returns up to count entries of node's inbox after the entry after, waiting up
	// to block for one.
	ReadInbox(ctx context.Context, node, after string, count int, block time.Duration) ([]storage.InboxEntry, error)
}

// Sizes of the bus. An inbox holds at most about InboxMaxLen entries of at most BatchSize
// events: what a node that lost its connection to Redis catches up on.
const (
	QueueSize   = 16384
	BatchSize   = 64
	InboxMaxLen = 4096
)

// Options configure a Cluster. Node is required, and Lease when Store is set.
type Options struct {
	// Node is this node's id: letters, digits, '.', '-', '_' (config node_id).
	Node string
	// Store is where the nodes meet; nil makes a cluster of this node alone.
	Store Store
	// Lease is how long a heartbeat keeps a node alive (config cluster.lease).
	Lease time.Duration
	// Listeners, Subscriptions and Flows feed the heartbeat record; each may be nil.
	Listeners     func() []string
	Subscriptions func() int
	Flows         func() int
	// Registerer takes the metrics (simpled_cluster_*, and the local bus's
	// simpled_bus_dropped_total); nil registers nothing.
	Registerer prometheus.Registerer
	Log        *zap.Logger
}

// NodeInfo is one live node as Nodes shows it.
type NodeInfo struct {
	ID        string
	Self      bool
	Listeners []string
	Started   time.Time
	// Heartbeat is when its record was last written and LeaseExpires when its lease ends,
	// by the store's clock; both zero for a cluster of one.
	Heartbeat     time.Time
	LeaseExpires  time.Time
	Subscriptions int
	Flows         int
}

// Cluster is this node's membership and the cross-node bus. Its methods are safe for
// concurrent use.
type Cluster struct {
	opts    Options
	self    string
	log     *zap.Logger
	local   *storage.LocalBus
	started time.Time
	m       *metrics

	// view is the last heartbeat's live nodes; leasedUntil (unix ns) is when this node's
	// lease is no longer sure.
	view        atomic.Pointer[view]
	leasedUntil atomic.Int64
	// refresh serialises the heartbeats Gone asks for.
	refresh sync.Mutex
	// joined (unix ns) is when this node's first heartbeat was sent: every other node has
	// seen it a heartbeat period later (Settled).
	joined atomic.Int64

	queue chan outgoing

	mu     sync.Mutex
	runCtx context.Context    // Run's
	cancel context.CancelFunc // ends Run
	done   chan struct{}      // closed when Run has returned
	// reader is the inbox reader's stop and end; after is the last inbox entry it read.
	readerStop context.CancelFunc
	readerDone chan struct{}
	after      string
}

// view is the membership as one heartbeat saw it.
type view struct {
	nodes []storage.NodeRecord
	until map[string]time.Time // each node's lease end, by this node's clock
	at    time.Time            // when the heartbeat that saw it was sent
}

var _ storage.Bus = (*Cluster)(nil)

// New builds the cluster service; Run starts it.
func New(opts Options) (*Cluster, error) {
	if !ValidNodeID(opts.Node) {
		return nil, fmt.Errorf("cluster: node id %q: want 1 to 64 letters, digits, '.', '-' or '_'", opts.Node)
	}
	if opts.Store != nil && opts.Lease < time.Second {
		return nil, fmt.Errorf("cluster: lease %s: must be at least 1s", opts.Lease)
	}
	opts.Log = cmp.Or(opts.Log, zap.NewNop())
	c := &Cluster{opts: opts, self: opts.Node, log: opts.Log, local: storage.NewLocalBus(), started: time.Now(),
		queue: make(chan outgoing, QueueSize), done: make(chan struct{})}
	c.local.SetNode(opts.Node)
	c.view.Store(&view{until: map[string]time.Time{}})
	var err error
	if c.m, err = newMetrics(opts.Registerer, c.local); err != nil {
		return nil, err
	}
	if opts.Store == nil {
		c.m.nodes.Set(1)
	}
	return c, nil
}

// ValidNodeID reports whether id can name a node: 1 to 64 letters, digits, '.', '-' or '_'
// (so it fits a Redis hash tag and a log line as it is).
func ValidNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_", r)) {
			return false
		}
	}
	return true
}

// Self is this node's id.
func (c *Cluster) Self() string { return c.self }

// Alive reports whether node holds a running lease in the view of the last heartbeat. This
// node ("" too) is always alive to itself. While this node's own heartbeats fail its view
// ages and the others' leases run out in it, so a node that is not Leased must not act on
// another's death (claim what it owned).
func (c *Cluster) Alive(node string) bool {
	if node == "" || node == c.self {
		return true
	}
	until, ok := c.view.Load().until[node]
	return ok && time.Now().Before(until)
}

// Gone reports whether node is certainly not alive, so that what it owned may be taken over:
// it is not alive in a view taken after the question was asked. A node missing from the view
// may have joined since the last heartbeat, so a miss asks for a heartbeat first (one at a
// time; a question asked while one was under way is answered by it). False for this node,
// and when this node is not leased (its own view cannot be trusted) or the heartbeat fails.
func (c *Cluster) Gone(ctx context.Context, node string) bool {
	if node == "" || node == c.self || c.opts.Store == nil || !c.Leased() {
		return false
	}
	if c.Alive(node) {
		return false
	}
	asked := time.Now()
	c.refresh.Lock()
	defer c.refresh.Unlock()
	if v := c.view.Load(); v == nil || v.at.Before(asked) {
		if err := c.heartbeat(ctx); err != nil {
			return false
		}
	}
	return !c.Alive(node)
}

// Settled reports whether every other node knows this one: a heartbeat period (lease/3) and
// a margin have passed since its first heartbeat, so their broadcasts reach it. Until then
// what it caches of what other nodes change may miss an invalidation. Always true for a
// cluster of one.
func (c *Cluster) Settled() bool {
	if c.opts.Store == nil {
		return true
	}
	j := c.joined.Load()
	return j != 0 && time.Since(time.Unix(0, j)) > c.opts.Lease/3+c.margin()
}

// Leased reports whether this node may act on what it owns: its last successful heartbeat
// was sent less than the lease minus a margin ago. Always true for a cluster of one; false
// before the first heartbeat and after Close.
func (c *Cluster) Leased() bool {
	if c.opts.Store == nil {
		return true
	}
	return time.Now().UnixNano() < c.leasedUntil.Load()
}

// Nodes lists the live nodes by id, this node always among them.
func (c *Cluster) Nodes() []NodeInfo {
	v := c.view.Load()
	now := time.Now()
	var out []NodeInfo
	seenSelf := false
	for _, r := range v.nodes {
		if r.ID != c.self && !now.Before(v.until[r.ID]) {
			continue
		}
		seenSelf = seenSelf || r.ID == c.self
		out = append(out, NodeInfo{ID: r.ID, Self: r.ID == c.self, Listeners: r.Listeners, Started: r.Started,
			Heartbeat: r.Heartbeat, LeaseExpires: r.ExpiresAt, Subscriptions: r.Subscriptions, Flows: r.Flows})
	}
	if !seenSelf {
		r := c.record()
		out = append(out, NodeInfo{ID: c.self, Self: true, Listeners: r.Listeners, Started: r.Started,
			Subscriptions: r.Subscriptions, Flows: r.Flows})
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// record is this node's membership record as of now.
func (c *Cluster) record() storage.NodeRecord {
	r := storage.NodeRecord{ID: c.self, Started: c.started.UTC().Truncate(time.Millisecond)}
	if f := c.opts.Listeners; f != nil {
		r.Listeners = f()
	}
	if f := c.opts.Subscriptions; f != nil {
		r.Subscriptions = f()
	}
	if f := c.opts.Flows; f != nil {
		r.Flows = f()
	}
	return r
}

// Join writes this node's first heartbeat, so the others see it and it is Leased before it
// serves. Run does it too when Join was not called or failed.
func (c *Cluster) Join(ctx context.Context) error {
	if c.opts.Store == nil {
		return nil
	}
	return c.heartbeat(ctx)
}

// Run keeps this node's lease, reads its inbox and sends what is published for other nodes,
// until ctx ends or Close is called; then it removes this node's record. It returns once
// every goroutine it started has ended.
func (c *Cluster) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	if c.cancel != nil {
		c.mu.Unlock()
		cancel()
		return // already running, or closed
	}
	c.runCtx, c.cancel = ctx, cancel
	c.mu.Unlock()
	defer close(c.done)
	if c.opts.Store == nil {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.send(ctx) })
	c.startReader(ctx)
	c.keepLease(ctx)
	c.leave()
	c.stopReader()
	wg.Wait()
}

// Close stops Run and waits for it to return (at once when it never ran). It may be called
// more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	cancel, ran := c.cancel, c.cancel != nil
	if !ran {
		c.cancel = func() {} // Run started later returns at once
		close(c.done)
	}
	c.mu.Unlock()
	if ran {
		cancel()
	}
	<-c.done
	return nil
}

// leaveTimeout bounds the clean-shutdown calls to the store (removing the record, waking the
// reader).
const leaveTimeout = 2 * time.Second

// leave removes this node's record, so the others take it for dead at their next heartbeat;
// from now on it is not Leased.
func (c *Cluster) leave() {
	c.leasedUntil.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := c.opts.Store.LeaveCluster(ctx, c.self); err != nil {
		c.log.Warn("cluster: could not remove this node's record; the others see it gone when its lease ends", zap.Error(err))
	}
}

// keepLease heartbeats every lease/3 until ctx ends.
func (c *Cluster) keepLease(ctx context.Context) {
	every := c.opts.Lease / 3
	if !c.Leased() {
		_ = c.heartbeat(ctx)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = c.heartbeat(ctx)
		}
	}
}

// margin is how long before its lease ends, by its own clock, a node stops taking itself
// for leased.
func (c *Cluster) margin() time.Duration { return c.opts.Lease / 4 }

// heartbeat writes this node's record and takes the live nodes as the new view.
func (c *Cluster) heartbeat(ctx context.Context) error {
	lease := c.opts.Lease
	ctx, cancel := context.WithTimeout(ctx, lease/3)
	defer cancel()
	sent := time.Now()
	nodes, storeNow, err := c.opts.Store.Heartbeat(ctx, c.record(), lease, keepFor(lease))
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return err
		}
		c.m.heartbeatFailures.Inc()
		if c.Leased() {
			c.log.Warn("cluster: heartbeat failed; this node stays leased until its lease ends",
				zap.Time("lease_until", time.Unix(0, c.leasedUntil.Load())), zap.Error(err))
		} else {
			c.log.Debug("cluster: heartbeat failed", zap.Error(err))
		}
		return err
	}
	received := time.Now()
	was := c.Leased()
	c.leasedUntil.Store(sent.Add(lease - c.margin()).UnixNano())
	c.joined.CompareAndSwap(0, sent.UnixNano())
	v := &view{nodes: nodes, until: make(map[string]time.Time, len(nodes)), at: sent}
	for _, r := range nodes {
		v.until[r.ID] = received.Add(r.ExpiresAt.Sub(storeNow))
	}
	c.view.Store(v)
	c.m.nodes.Set(float64(len(nodes)))
	if !was {
		c.log.Info("cluster: node leased", zap.String("node", c.self), zap.Int("nodes", len(nodes)))
	}
	return nil
}

// keepFor is how long a heartbeat keeps the node's inbox and the nodes key: longer than any
// sender can still take the node for alive (its lease, plus a heartbeat of the sender's).
func keepFor(lease time.Duration) time.Duration { return 3 * lease }

// metrics are the cluster's counters.
type metrics struct {
	nodes             prometheus.Gauge
	events            *prometheus.CounterVec
	dropped           prometheus.Counter
	heartbeatFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, local *storage.LocalBus) (*metrics, error) {
	m := &metrics{
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "simpled_cluster_nodes",
			Help: "Live nodes of the deployment (this one included) at the last heartbeat."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "simpled_cluster_events_total",
			Help: "Events sent to other nodes (one per event and target node) and received from them."}, []string{"direction"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "simpled_cluster_events_dropped_total",
			Help: "Events for other nodes lost: the send queue was full, the append failed, or the target's inbox was gone."}),
		heartbeatFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "simpled_cluster_heartbeat_failures_total",
			Help: "Heartbeats that did not reach the store."}),
	}
	m.events.WithLabelValues("sent")
	m.events.WithLabelValues("received")
	if reg != nil {
		for _, col := range []prometheus.Collector{m.nodes, m.events, m.dropped, m.heartbeatFailures, local.Collector()} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("cluster: metrics: %w", err)
			}
		}
	}
	return m, nil
}
