package storage

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A subscriber whose buffer is full loses events, and every loss is counted by kind.
func TestLocalBusCountsDrops(t *testing.T) {
	b := NewLocalBus()
	events, stop := b.Subscribe(2)
	defer stop()
	for i := range 5 {
		b.Publish(Event{Kind: BindingAdded, AOR: fmt.Sprint("a", i)})
	}
	for i := range 3 {
		b.Publish(Event{Kind: BindingExpired, AOR: fmt.Sprint("e", i)})
	}
	if got := b.Dropped(); got != 6 {
		t.Errorf("Dropped() = %d, want 6", got)
	}
	if got := droppedOf(t, b, BindingAdded); got != 3 {
		t.Errorf(`simpled_bus_dropped_total{kind="binding.added"} = %v, want 3`, got)
	}
	if got := droppedOf(t, b, BindingExpired); got != 3 {
		t.Errorf(`simpled_bus_dropped_total{kind="binding.expired"} = %v, want 3`, got)
	}
	if n := len(events); n != 2 {
		t.Errorf("%d events buffered, want 2", n)
	}
}

// A coalescing subscriber that falls behind loses no event it named: of each key it gets the
// latest, once it reads again; events without a key are dropped and counted. What is held
// aside is one event per key, however many are published.
func TestLocalBusCoalesceLosesNothing(t *testing.T) {
	b := NewLocalBus()
	events, stop := b.Subscribe(1, Coalesce(func(ev *Event) string {
		if ev.Kind == BindingAdded {
			return ev.AOR
		}
		return ""
	}))
	defer stop()
	t0 := time.Unix(1e9, 0)
	const keys, rounds = 100, 20
	for r := range rounds {
		for k := range keys {
			b.Publish(Event{Kind: BindingAdded, AOR: fmt.Sprint("aor", k), At: t0.Add(time.Duration(r) * time.Second)})
			b.Publish(Event{Kind: BindingRemoved, AOR: fmt.Sprint("aor", k)})
		}
	}
	var s *subscription
	b.mu.RLock()
	for _, sub := range b.subs {
		s = sub
	}
	b.mu.RUnlock()
	s.mu.Lock()
	held := len(s.held)
	s.mu.Unlock()
	if held > keys {
		t.Errorf("%d events held aside, want at most one per key (%d)", held, keys)
	}
	if got := droppedOf(t, b, BindingAdded); got != 0 {
		t.Errorf("coalesced events counted as dropped: %v", got)
	}
	if got := droppedOf(t, b, BindingRemoved); got != keys*rounds {
		t.Errorf(`simpled_bus_dropped_total{kind="binding.removed"} = %v, want %d`, got, keys*rounds)
	}

	latest := map[string]time.Time{}
	deadline := time.After(5 * time.Second)
	for len(latest) < keys || !allAt(latest, t0.Add((rounds-1)*time.Second)) {
		select {
		case ev := <-events:
			if ev.Kind != BindingAdded {
				t.Fatalf("got a %s event, want only the coalesced ones", ev.Kind)
			}
			latest[ev.AOR] = ev.At
		case <-deadline:
			t.Fatalf("after 5 s: %d of %d keys seen with their latest event", len(latest), keys)
		}
	}
}

func allAt(m map[string]time.Time, at time.Time) bool {
	for _, t := range m {
		if !t.Equal(at) {
			return false
		}
	}
	return true
}

// Ending a coalescing subscription while events are held and nobody reads closes the channel
// and stops its pump (no send on a closed channel).
func TestLocalBusCoalesceStop(t *testing.T) {
	b := NewLocalBus()
	events, stop := b.Subscribe(1, Coalesce(func(ev *Event) string { return ev.AOR }))
	for i := range 10 {
		b.Publish(Event{Kind: BindingAdded, AOR: fmt.Sprint("a", i)})
	}
	stop()
	stop()
	b.Publish(Event{Kind: BindingAdded, AOR: "late"})
	n := 0
	for range events {
		n++
	}
	if n > 10 {
		t.Errorf("%d events after stop", n)
	}
}

// droppedOf reads simpled_bus_dropped_total{kind} as a scrape would.
func droppedOf(t *testing.T, b *LocalBus, kind EventKind) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "simpled_bus_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == string(kind) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A bus given a node id stamps the events published without one with it, keeps another
// node's id, and PublishTo delivers here only what is addressed to this node: an event for
// another node is lost (a LocalBus reaches none) and counted.
func TestLocalBusNode(t *testing.T) {
	b := NewLocalBus()
	b.SetNode("n1")
	if b.Self() != "n1" {
		t.Fatalf("Self() = %q, want n1", b.Self())
	}
	events, stop := b.Subscribe(8)
	defer stop()
	b.Publish(Event{Kind: BindingAdded, AOR: "a"})
	b.Publish(Event{Kind: BindingAdded, AOR: "b", Node: "n2"})
	b.PublishTo("", Event{Kind: NotifyRequested, AOR: "c", IDs: []string{"s1"}})
	b.PublishTo("n1", Event{Kind: NotifyRequested, AOR: "d", Full: true})
	b.PublishTo("n2", Event{Kind: NotifyRequested, AOR: "e"})
	want := []struct{ aor, node string }{{"a", "n1"}, {"b", "n2"}, {"c", "n1"}, {"d", "n1"}}
	for _, w := range want {
		ev := <-events
		if ev.AOR != w.aor || ev.Node != w.node {
			t.Fatalf("got event %s from %q, want %s from %q", ev.AOR, ev.Node, w.aor, w.node)
		}
	}
	if n := len(events); n != 0 {
		t.Fatalf("%d more events delivered, want none (e was for node n2)", n)
	}
	if got := droppedOf(t, b, NotifyRequested); got != 1 {
		t.Errorf(`simpled_bus_dropped_total{kind="presence.notify"} = %v, want 1`, got)
	}
}
