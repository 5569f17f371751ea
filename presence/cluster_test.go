package presence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
)

// testNet joins the buses of several presence agents in one process as the cluster bus joins
// nodes: Publish reaches every node, PublishTo one; each event carries the node it came from.
type testNet struct {
	mu     sync.Mutex
	buses  map[string]*storage.LocalBus
	alive  map[string]bool
	lapsed map[string]bool // nodes whose own lease lapsed (cut off from Redis)
}

func (n *testNet) bus(node string) storage.Bus { return &netBus{net: n, self: node} }

func (n *testNet) Alive(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.alive[node]
}

func (n *testNet) Leased() bool { return true }

// view is one node's Nodes: its own lease may lapse.
type view struct {
	*testNet
	self string
}

func (v view) Leased() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.lapsed[v.self]
}

func (n *testNet) Settled() bool { return true }

func (n *testNet) Gone(_ context.Context, node string) bool { return !n.Alive(node) }

func (n *testNet) kill(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alive[node] = false
}

type netBus struct {
	net  *testNet
	self string
}

func (b *netBus) Publish(ev storage.Event) {
	if ev.Node == "" {
		ev.Node = b.self
	}
	b.net.mu.Lock()
	defer b.net.mu.Unlock()
	for node, lb := range b.net.buses {
		if b.net.alive[node] {
			lb.Publish(ev)
		}
	}
}

func (b *netBus) PublishTo(node string, ev storage.Event) {
	if ev.Node == "" {
		ev.Node = b.self
	}
	if node == "" {
		node = b.self
	}
	b.net.mu.Lock()
	defer b.net.mu.Unlock()
	if lb := b.net.buses[node]; lb != nil && b.net.alive[node] {
		lb.Publish(ev)
	}
}

func (b *netBus) Self() string { return b.self }

func (b *netBus) Subscribe(buf int, opts ...storage.SubscribeOption) (<-chan *storage.Event, func()) {
	return b.net.buses[b.self].Subscribe(buf, opts...)
}

// sent is one NOTIFY a node sent.
type sent struct {
	node, id string
	cseq     uint32
}

// netSender records the NOTIFYs of one node in the cluster's log, answering 200.
type netSender struct {
	node string
	c    *cluster
}

func (s *netSender) SendInDialog(_ context.Context, req *sip.Request, sub *storage.Subscription) (int, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.log = append(s.c.log, sent{node: s.node, id: sub.ID, cseq: req.CSeq().SeqNo})
	return 200, nil
}

// cluster is three presence agents a, b, c on one store, joined by a testNet.
type cluster struct {
	store   *memory.Store
	net     *testNet
	agents  map[string]*Presence
	mu      sync.Mutex
	log     []sent
	version int
	stop    map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newCluster(t *testing.T) *cluster { return newSkewedCluster(t, nil) }

// newSkewedCluster is newCluster with each node's clock off by skew[node].
func newSkewedCluster(t *testing.T, skew map[string]time.Duration) *cluster {
	t.Helper()
	c := &cluster{store: memory.New(), net: &testNet{buses: map[string]*storage.LocalBus{}, alive: map[string]bool{}, lapsed: map[string]bool{}},
		agents: map[string]*Presence{}, stop: map[string]context.CancelFunc{}}
	for _, node := range []string{"a", "b", "c"} {
		c.net.buses[node] = storage.NewLocalBus()
		c.net.alive[node] = true
	}
	for _, node := range []string{"a", "b", "c"} {
		p, err := Setup(withPolicy(PolicyAllow), testDeps(Deps{
			Domains: []string{"example.test"}, Store: c.store, Locator: noBindings{},
			Sender:  &netSender{node: node, c: c},
			Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
			IsOurs:  func(h string) bool { return h == "127.0.0.1" },
			NodeID:  node, Nodes: view{c.net, node}, Bus: c.net.bus(node),
			Now: func() time.Time { return time.Now().Add(skew[node]) },
		}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.agents[node], c.stop[node] = p, cancel
		c.wg.Go(func() { p.Run(ctx) })
	}
	t.Cleanup(func() {
		for _, stop := range c.stop {
			stop()
		}
		c.wg.Wait()
	})
	return c
}

// subscribe stores a subscription of watcher to bob, owned by node, as node's SUBSCRIBE
// handler does, and waits for its first NOTIFY.
func (c *cluster) subscribe(t *testing.T, node, id, transport string) {
	t.Helper()
	now := time.Now()
	sub := storage.Subscription{ID: id, AOR: "bob@example.test", Event: EventPresence, Watcher: id + "@example.test",
		WatcherURI: "sip:" + id + "@example.test", CallID: "call-" + id, FromTag: "f-" + id,
		RemoteTarget: "sip:" + id + "@127.0.0.1:5070", Transport: transport, Source: "127.0.0.1:5070",
		State: storage.SubActive, ExpiresAt: now.Add(time.Hour), CreatedAt: now, Node: node, NotifyCSeq: cseqBlock}
	if err := c.store.PutSubscription(t.Context(), sub, 0); err != nil {
		t.Fatal(err)
	}
	c.agents[node].notifier.track(&sub, now)
	c.await(t, 1, id)
}

// change publishes a new document of bob's on node, as a PUBLISH there does.
func (c *cluster) change(t *testing.T, node string) {
	t.Helper()
	c.mu.Lock()
	c.version++
	v := c.version
	c.mu.Unlock()
	now := time.Now()
	body := fmt.Sprintf(`<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.test">`+
		`<tuple id="t"><status><basic>open</basic></status><note>v%d</note></tuple></presence>`, v)
	_, err := c.store.Publish(t.Context(), "bob@example.test", storage.PublishOp{Now: now, NewETag: fmt.Sprintf("e%d", v),
		ContentType: TypePIDF, Body: []byte(body), ExpiresAt: now.Add(time.Hour), Source: "127.0.0.1:5070"})
	if err != nil {
		t.Fatal(err)
	}
	c.agents[node].changed("bob@example.test", storage.PresenceChanged, now)
}

// notifies returns the NOTIFYs sent so far to the subscription id.
func (c *cluster) notifies(id string) []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []sent
	for _, s := range c.log {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

// await waits until id has had n NOTIFYs, and a little longer for any extra one.
func (c *cluster) await(t *testing.T, n int, id string) []sent {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for len(c.notifies(id)) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	got := c.notifies(id)
	if len(got) != n {
		t.Fatalf("%s: %d NOTIFYs, want %d: %+v", id, len(got), n, got)
	}
	return got
}

// TestClusterNotifiesOnceByTheOwner: a change on any node reaches every watcher exactly once,
// sent by the node that owns its subscription, whichever node saw the change.
func TestClusterNotifiesOnceByTheOwner(t *testing.T) {
	c := newCluster(t)
	c.subscribe(t, "a", "w1", "udp")
	c.subscribe(t, "c", "w2", "tcp")
	for i, node := range []string{"b", "a", "c"} {
		time.Sleep(250 * time.Millisecond) // past min_notify_interval: no coalescing
		c.change(t, node)
		for _, w := range []struct{ id, owner string }{{"w1", "a"}, {"w2", "c"}} {
			got := c.await(t, i+2, w.id)
			last := got[len(got)-1]
			if last.node != w.owner {
				t.Errorf("change on %s: %s notified by %s, want its owner %s", node, w.id, last.node, w.owner)
			}
			if last.cseq <= got[len(got)-2].cseq {
				t.Errorf("change on %s: %s CSeq %d after %d", node, w.id, last.cseq, got[len(got)-2].cseq)
			}
		}
	}
}

// TestClusterTakeover: the UDP subscriptions of a node that is gone are taken over by the node
// that sees the next change — one NOTIFY each, its CSeq above any the gone node could have
// sent — and its stream subscriptions end with it.
func TestClusterTakeover(t *testing.T) {
	c := newCluster(t)
	c.subscribe(t, "a", "w1", "udp")
	c.subscribe(t, "a", "w2", "tcp")
	c.stop["a"]()
	c.net.kill("a")
	c.change(t, "b")
	got := c.await(t, 2, "w1")
	if got[1].node != "b" {
		t.Errorf("after a died, w1 notified by %s, want b (which saw the change)", got[1].node)
	}
	if got[1].cseq <= cseqBlock {
		t.Errorf("taken over with CSeq %d: not above a's reservation %d", got[1].cseq, cseqBlock)
	}
	sub, err := c.store.Subscription(t.Context(), "bob@example.test", "w1", time.Now())
	if err != nil || sub.Node != "b" {
		t.Fatalf("w1 after the takeover: owner %q, %v; want b", sub.Node, err)
	}
	c.await(t, 1, "w2")
	if _, err := c.store.Subscription(t.Context(), "bob@example.test", "w2", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the stream subscription of the gone node is still stored: %v", err)
	}
	// The next change, seen on c, goes to the new owner b once.
	time.Sleep(250 * time.Millisecond)
	c.change(t, "c")
	got = c.await(t, 3, "w1")
	if got[2].node != "b" || got[2].cseq <= got[1].cseq {
		t.Errorf("next change: %+v, want b with a higher CSeq", got[2])
	}
}

// TestClusterClaimRace: two nodes that see changes at once both find the subscription of a
// gone node: only one claims it, so each change is notified once.
func TestClusterClaimRace(t *testing.T) {
	c := newCluster(t)
	c.subscribe(t, "a", "w1", "udp")
	c.stop["a"]()
	c.net.kill("a")
	var wg sync.WaitGroup
	for _, node := range []string{"b", "c"} {
		wg.Go(func() { c.change(t, node) })
	}
	wg.Wait()
	// Both changes may coalesce into one NOTIFY (RFC 6446) or go as two, but from one owner.
	deadline := time.Now().Add(3 * time.Second)
	for len(c.notifies("w1")) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	got := c.notifies("w1")
	if len(got) < 2 || len(got) > 3 {
		t.Fatalf("w1: %d NOTIFYs for two changes, want 1 or 2 after the first: %+v", len(got), got)
	}
	for i, s := range got[1:] {
		if s.node != got[1].node {
			t.Errorf("NOTIFYs from %s and %s: two owners", got[1].node, s.node)
		}
		if s.cseq <= got[i].cseq {
			t.Errorf("CSeq %d after %d", s.cseq, got[i].cseq)
		}
	}
	sub, err := c.store.Subscription(t.Context(), "bob@example.test", "w1", time.Now())
	if err != nil || sub.Node != got[1].node {
		t.Errorf("stored owner %q (%v), but %s notified", sub.Node, err, got[1].node)
	}
}

// TestClusterClockSkew: a node whose clock is an hour behind takes a subscription over with
// CSeqs still above the ones sent before (they come from the stored reservation, not a clock).
func TestClusterClockSkew(t *testing.T) {
	c := newSkewedCluster(t, map[string]time.Duration{"b": -time.Hour})
	c.subscribe(t, "a", "w1", "udp")
	time.Sleep(250 * time.Millisecond)
	c.change(t, "a")
	before := c.await(t, 2, "w1")
	c.stop["a"]()
	c.net.kill("a")
	c.change(t, "b")
	got := c.await(t, 3, "w1")
	if got[2].node != "b" || got[2].cseq <= before[1].cseq {
		t.Errorf("after the takeover by a node an hour behind: %+v, want b with CSeq above %d", got[2], before[1].cseq)
	}
}

// TestClusterLateRequest: a NotifyRequested that arrives after its subscription ended (it was
// removed from the store meanwhile) sends nothing.
func TestClusterLateRequest(t *testing.T) {
	c := newCluster(t)
	c.subscribe(t, "a", "w1", "udp")
	if _, err := c.store.DeleteSubscription(t.Context(), "bob@example.test", "w1", time.Now()); err != nil {
		t.Fatal(err)
	}
	c.net.bus("b").PublishTo("a", storage.Event{Kind: storage.NotifyRequested, AOR: "bob@example.test", IDs: []string{"w1"},
		Full: true, At: time.Now()})
	c.await(t, 1, "w1")
}

// TestClusterStalledNodeStaysQuiet: node a is cut off from Redis longer than its lease, so b
// takes its subscription over; a change a still had pending when it comes back is not sent by
// a (it renews its claim first, finds b the owner and forgets the subscription): the watcher
// hears from b alone.
func TestClusterStalledNodeStaysQuiet(t *testing.T) {
	c := newCluster(t)
	c.subscribe(t, "a", "w1", "udp")
	c.net.mu.Lock()
	c.net.alive["a"], c.net.lapsed["a"] = false, true
	c.net.mu.Unlock()
	c.change(t, "b")
	got := c.await(t, 2, "w1")
	if got[1].node != "b" {
		t.Fatalf("after a stalled, the change was sent by %s, want b", got[1].node)
	}
	// a's pending change goes out now, with a's lease still lapsed.
	n := c.agents["a"].notifier
	n.mu.Lock()
	s := n.subs[subKey{"bob@example.test", "w1"}]
	if s == nil {
		n.mu.Unlock()
		t.Fatal("a forgot w1 before it tried to send")
	}
	s.last = time.Time{}
	n.want(s, true, time.Now())
	n.mu.Unlock()
	c.await(t, 2, "w1")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs[subKey{"bob@example.test", "w1"}] != nil {
		t.Error("a still holds w1 after finding b the owner")
	}
}
