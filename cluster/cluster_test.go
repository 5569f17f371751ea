package cluster_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/cluster"
	"github.com/simpled/simpled/storage"
	redisstore "github.com/simpled/simpled/storage/redis"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The Redis store is what the cluster runs on.
var _ cluster.Store = (*redisstore.Store)(nil)

// The cluster is what presence asks about the nodes (presence.Deps.Nodes).
var _ interface {
	Self() string
	Alive(node string) bool
	Leased() bool
} = (*cluster.Cluster)(nil)

// node is one cluster instance of a test, on its own Redis client.
type node struct {
	*cluster.Cluster
	store *redisstore.Store
	reg   *prometheus.Registry
}

// startNode starts node id on the Redis at url with lease, joined and running until the
// test ends.
func startNode(t testing.TB, url, id string, lease time.Duration) *node {
	t.Helper()
	st, err := redisstore.New(context.Background(), url, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := cluster.New(cluster.Options{Node: id, Store: st, Lease: lease, Registerer: reg,
		Listeners: func() []string { return []string{"udp://127.0.0.1:5060"} },
		Flows:     func() int { return 7 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(context.Background())
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
		_ = st.Close()
	})
	return &node{Cluster: c, store: st, reg: reg}
}

// waitFor polls cond every 20 ms for up to within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seeEachOther heartbeats every node once more (each then sees those that joined before)
// and waits until every node takes every other for alive.
func seeEachOther(t *testing.T, within time.Duration, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		_ = n.Join(context.Background())
	}
	waitFor(t, within, "nodes do not see each other", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if !a.Alive(b.Self()) {
					return false
				}
			}
		}
		return true
	})
}

// next returns the next event on ch, failing after a second.
func next(t *testing.T, ch <-chan *storage.Event) *storage.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2s")
		return nil
	}
}

// nothing fails when an event arrives on ch within d.
func nothing(t *testing.T, ch <-chan *storage.Event, d time.Duration) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %s %s from %q", ev.Kind, ev.AOR, ev.Node)
	case <-time.After(d):
	}
}

func subscribe(t *testing.T, n *node) <-chan *storage.Event {
	ch, stop := n.Subscribe(64)
	t.Cleanup(stop)
	return ch
}

// An event published on A reaches the subscribers of A, B and C, each with Node = A and the
// binding whole; a presence.notify published (not addressed) stays on A.
func TestEventsCross(t *testing.T) {
	rs := redistest.Start(t)
	a, b, c := startNode(t, rs.URL(), "a", 3*time.Second), startNode(t, rs.URL(), "b", 3*time.Second), startNode(t, rs.URL(), "c", 3*time.Second)
	seeEachOther(t, 3*time.Second, a, b, c)
	onA, onB, onC := subscribe(t, a), subscribe(t, b), subscribe(t, c)

	at := time.UnixMilli(time.Now().UnixMilli())
	bind := storage.Binding{Key: "<urn:uuid:1>", Contact: "<sip:alice@127.0.0.1:5070>", URI: "sip:alice@127.0.0.1:5070",
		ExpiresAt: time.Unix(at.Unix()+3600, 0).UTC(), Q: -1, CallID: "c1", CSeq: 7, Path: []string{"<sip:p;lr>"},
		Flow: "tok", Node: "a", UpdatedAt: time.Unix(at.Unix(), 0).UTC()}
	want := storage.Event{Kind: storage.BindingAdded, AOR: "sip:alice@example.test", Binding: bind, At: at,
		Mailbox: storage.MailboxHasMessages, Node: "a"}
	a.Publish(storage.Event{Kind: storage.BindingAdded, AOR: want.AOR, Binding: bind, At: at, Mailbox: storage.MailboxHasMessages})
	for name, ch := range map[string]<-chan *storage.Event{"a": onA, "b": onB, "c": onC} {
		got := *next(t, ch) // a copy: the event is shared with the node's other subscribers
		if !got.At.Equal(want.At) {
			t.Errorf("on %s: At %v, want %v", name, got.At, want.At)
		}
		got.At = want.At
		if !reflect.DeepEqual(got, want) {
			t.Errorf("on %s:\n got %+v\nwant %+v", name, got, want)
		}
	}

	a.Publish(storage.Event{Kind: storage.NotifyRequested, AOR: "sip:bob@example.test", IDs: []string{"s1"}})
	if ev := next(t, onA); ev.Kind != storage.NotifyRequested || ev.Node != "a" {
		t.Errorf("on a: %+v", ev)
	}
	nothing(t, onB, 300*time.Millisecond)
	nothing(t, onC, 0)

	b.Publish(storage.Event{Kind: storage.PresenceChanged, AOR: "sip:carol@example.test"})
	if ev := next(t, onB); ev.Node != "b" {
		t.Errorf("on b: %+v", ev)
	}
	for name, ch := range map[string]<-chan *storage.Event{"a": onA, "c": onC} {
		if ev := next(t, ch); ev.Kind != storage.PresenceChanged || ev.Node != "b" || ev.AOR != "sip:carol@example.test" {
			t.Errorf("on %s: %+v", name, ev)
		}
	}
	if got := metric(t, a.reg, "simpled_cluster_events_total", "sent"); got != 2 {
		t.Errorf("a sent %v events, want 2 (one binding event to b and c)", got)
	}
	if got := metric(t, c.reg, "simpled_cluster_events_total", "received"); got != 2 {
		t.Errorf("c received %v events, want 2", got)
	}

	// An event A passes on for B goes to the others, never back to B.
	a.Publish(storage.Event{Kind: storage.RulesChanged, AOR: "sip:dave@example.test", Node: "b"})
	if ev := next(t, onC); ev.Kind != storage.RulesChanged || ev.Node != "b" {
		t.Errorf("on c: %+v", ev)
	}
	next(t, onA)
	nothing(t, onB, 300*time.Millisecond)
}

// metric is the value of name's sample with a label valued lv ("": the only sample) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name, lv string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := lv == ""
			for _, l := range m.GetLabel() {
				ok = ok || l.GetValue() == lv
			}
			if ok {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, lv)
	return 0
}

// PublishTo reaches the target's subscribers only, with the request's subscriptions.
func TestPublishToReachesOnlyTarget(t *testing.T) {
	rs := redistest.Start(t)
	a, b, c := startNode(t, rs.URL(), "a", 3*time.Second), startNode(t, rs.URL(), "b", 3*time.Second), startNode(t, rs.URL(), "c", 3*time.Second)
	seeEachOther(t, 3*time.Second, a, b, c)
	onA, onB, onC := subscribe(t, a), subscribe(t, b), subscribe(t, c)

	a.PublishTo("b", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:alice@example.test", IDs: []string{"s1", "s2"}, Full: true})
	ev := next(t, onB)
	if ev.Kind != storage.NotifyRequested || ev.Node != "a" || !ev.Full || !reflect.DeepEqual(ev.IDs, []string{"s1", "s2"}) {
		t.Errorf("on b: %+v", ev)
	}
	nothing(t, onC, 300*time.Millisecond)
	nothing(t, onA, 0)

	a.PublishTo("a", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:alice@example.test", IDs: []string{"s3"}})
	if ev := next(t, onA); ev.Node != "a" || ev.IDs[0] != "s3" {
		t.Errorf("on a: %+v", ev)
	}
	nothing(t, onB, 300*time.Millisecond)

	// A node that never joined has no inbox: the event is dropped and counted, not kept.
	a.PublishTo("nobody", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:alice@example.test"})
	waitFor(t, 2*time.Second, "drop not counted", func() bool {
		return metric(t, a.reg, "simpled_cluster_events_dropped_total", "") == 1
	})
	if n, _ := a.store.Client().Exists(context.Background(), "inbox:{nobody}").Result(); n != 0 {
		t.Error("sending to an unknown node created its inbox")
	}
}

// A node whose reader was cut off (a lost connection) catches up, in order, on what was sent
// to it meanwhile.
func TestCatchUpAfterDisconnect(t *testing.T) {
	rs := redistest.Start(t)
	a, b := startNode(t, rs.URL(), "a", 3*time.Second), startNode(t, rs.URL(), "b", 3*time.Second)
	seeEachOther(t, 3*time.Second, a, b)
	onB := subscribe(t, b)

	b.StopReader()
	for _, aor := range []string{"sip:1@x", "sip:2@x", "sip:3@x"} {
		a.Publish(storage.Event{Kind: storage.RulesChanged, AOR: aor})
		time.Sleep(20 * time.Millisecond) // one entry each
	}
	nothing(t, onB, 300*time.Millisecond)
	b.StartReader()
	for _, aor := range []string{"sip:1@x", "sip:2@x", "sip:3@x"} {
		if ev := next(t, onB); ev.AOR != aor || ev.Node != "a" {
			t.Fatalf("caught up %s from %q, want %s from a", ev.AOR, ev.Node, aor)
		}
	}

	// A real disconnect: every client connection of Redis killed; the reader reconnects
	// and reads on.
	if err := a.store.Client().Do(context.Background(), "client", "kill", "type", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	a.Publish(storage.Event{Kind: storage.RulesChanged, AOR: "sip:4@x"})
	if ev := next(t, onB); ev.AOR != "sip:4@x" {
		t.Fatalf("after the connections were killed: %+v", ev)
	}
}

// A node that stops heartbeating (its Redis client gone) is dead to the others within its
// lease and one heartbeat; it knows itself not leased before that; the others stop sending
// to it.
func TestExpiredLease(t *testing.T) {
	rs := redistest.Start(t)
	const lease = 1500 * time.Millisecond
	a, b := startNode(t, rs.URL(), "a", lease), startNode(t, rs.URL(), "b", lease)
	seeEachOther(t, 2*time.Second, a, b)
	if ttl := a.store.Client().PTTL(context.Background(), "inbox:{b}").Val(); ttl <= 0 {
		t.Errorf("b's inbox has TTL %v, want one", ttl)
	}

	cut := time.Now()
	_ = b.store.Close() // b's heartbeats fail from now on
	if !a.Alive("b") {
		t.Fatal("b dead to a at once; its lease still runs")
	}
	waitFor(t, lease, "b still leased to itself after its lease", func() bool { return !b.Leased() })
	waitFor(t, lease+lease/3+500*time.Millisecond, "b alive to a after its lease and a heartbeat", func() bool { return !a.Alive("b") })
	if took := time.Since(cut); took > lease+lease/3+200*time.Millisecond {
		t.Errorf("a saw b dead %s after b's last heartbeat, want within lease + lease/3", took)
	}
	if !b.Alive("b") {
		t.Error("a node is always alive to itself")
	}
	for _, n := range a.Nodes() {
		if n.ID == "b" {
			t.Errorf("a lists dead b: %+v", n)
		}
	}
	a.Publish(storage.Event{Kind: storage.PresenceChanged, AOR: "sip:x@y"})
	time.Sleep(100 * time.Millisecond)
	if got := metric(t, a.reg, "simpled_cluster_events_total", "sent"); got != 0 {
		t.Errorf("a sent %v events to dead b", got)
	}
}

// A node's Redis going away makes it not leased within the lease minus the margin; when
// Redis is back it is leased again and the bus works on.
func TestLeasedFollowsRedis(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	const lease = 1200 * time.Millisecond
	a, b := startNode(t, rs.URL(), "a", lease), startNode(t, rs.URL(), "b", lease)
	seeEachOther(t, 2*time.Second, a, b)
	if !a.Leased() {
		t.Fatal("a not leased after joining")
	}
	rs.Stop(t)
	waitFor(t, lease, "a leased with Redis down", func() bool { return !a.Leased() })
	if metric(t, a.reg, "simpled_cluster_heartbeat_failures_total", "") == 0 {
		t.Error("no heartbeat failure counted")
	}
	rs.Restart(t)
	waitFor(t, 3*time.Second, "a not leased again with Redis back", func() bool { return a.Leased() && b.Leased() })
	seeEachOther(t, 2*time.Second, a, b)
	onB := subscribe(t, b)
	a.Publish(storage.Event{Kind: storage.WatchersChanged, AOR: "sip:w@x"})
	if ev := next(t, onB); ev.AOR != "sip:w@x" {
		t.Fatalf("after Redis came back: %+v", ev)
	}
}

// A node that shuts down cleanly leaves: the others see it gone at their next heartbeat, not
// a lease later, and it is no longer leased.
func TestCleanLeave(t *testing.T) {
	rs := redistest.Start(t)
	const lease = 3 * time.Second
	a, b := startNode(t, rs.URL(), "a", lease), startNode(t, rs.URL(), "b", lease)
	seeEachOther(t, 3*time.Second, a, b)
	nodes := a.Nodes()
	if len(nodes) != 2 || nodes[0].ID != "a" || !nodes[0].Self || nodes[1].ID != "b" || nodes[1].Self {
		t.Fatalf("a.Nodes() = %+v", nodes)
	}
	nb := nodes[1]
	if nb.Flows != 7 || len(nb.Listeners) != 1 || nb.Started.IsZero() || !nb.LeaseExpires.After(nb.Heartbeat) ||
		nb.LeaseExpires.Sub(nb.Heartbeat) != lease {
		t.Errorf("b as a lists it: %+v", nb)
	}
	_ = b.Close()
	if b.Leased() {
		t.Error("b leased after Close")
	}
	waitFor(t, lease/3+500*time.Millisecond, "a takes b for alive after it left", func() bool { return !a.Alive("b") })
}

// Without a store the cluster is this node alone: its bus is local, with this node's id.
func TestClusterOfOne(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := cluster.New(cluster.Options{Node: "solo", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.Run(context.Background()) }()
	defer func() { _ = c.Close(); <-done }()
	if !c.Alive("solo") || !c.Alive("") || c.Alive("other") || !c.Leased() || c.Self() != "solo" {
		t.Error("a cluster of one: alive to itself only, always leased")
	}
	if n := c.Nodes(); len(n) != 1 || n[0].ID != "solo" || !n[0].Self {
		t.Errorf("Nodes() = %+v", n)
	}
	ch, stop := c.Subscribe(4)
	defer stop()
	c.Publish(storage.Event{Kind: storage.BindingAdded, AOR: "sip:a@x"})
	c.PublishTo("", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:b@x"})
	c.PublishTo("other", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:c@x"})
	for _, aor := range []string{"sip:a@x", "sip:b@x"} {
		if ev := next(t, ch); ev.AOR != aor || ev.Node != "solo" {
			t.Errorf("got %+v, want %s from solo", ev, aor)
		}
	}
	nothing(t, ch, 50*time.Millisecond)
	if got := metric(t, reg, "simpled_cluster_events_dropped_total", ""); got != 1 {
		t.Errorf("dropped %v, want 1 (the event for another node)", got)
	}
	if got := metric(t, reg, "simpled_cluster_nodes", ""); got != 1 {
		t.Errorf("simpled_cluster_nodes = %v, want 1", got)
	}
}

// New refuses what it cannot run with.
func TestNewRefuses(t *testing.T) {
	rs := redistest.Start(t)
	st, err := redisstore.New(context.Background(), rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, o := range []cluster.Options{
		{Node: ""}, {Node: "a{b}"}, {Node: strings.Repeat("x", 65)}, {Node: "a", Store: st},
		{Node: "a", Store: st, Lease: 100 * time.Millisecond},
	} {
		if _, err := cluster.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// On Redis Cluster (which refuses a command or script touching keys of two slots) the
// heartbeat, the inboxes and the reader work as on one server.
func TestRedisCluster(t *testing.T) {
	rs := redistest.Start(t, redistest.WithCluster())
	a, b := startNode(t, rs.ClusterURL(), "a", 3*time.Second), startNode(t, rs.ClusterURL(), "b", 3*time.Second)
	seeEachOther(t, 3*time.Second, a, b)
	onB := subscribe(t, b)
	a.Publish(storage.Event{Kind: storage.BindingRemoved, AOR: "sip:alice@example.test"})
	a.PublishTo("b", storage.Event{Kind: storage.NotifyRequested, AOR: "sip:alice@example.test", IDs: []string{"s"}})
	for _, kind := range []storage.EventKind{storage.BindingRemoved, storage.NotifyRequested} {
		if ev := next(t, onB); ev.Kind != kind || ev.Node != "a" {
			t.Errorf("on b: %+v, want %s from a", ev, kind)
		}
	}
}
