package transport

import (
	"net/netip"
	"testing"
	"time"
)

func TestLiveness(t *testing.T) {
	l := NewLiveness(64)
	t0 := time.Unix(1_700_000_000, 0)
	a := netip.MustParseAddrPort("192.0.2.1:5060")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060")
	if !l.Seen(a).IsZero() {
		t.Fatal("an address never heard from has a time")
	}
	l.Touch(mapped, t0)
	if got := l.Seen(a); !got.Equal(t0) {
		t.Fatalf("Seen after Touch of the IPv4-mapped form = %v, want %v", got, t0)
	}
	l.Touch(a, t0.Add(time.Minute))
	if got := l.Seen(a); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Seen after a second Touch = %v", got)
	}

	// Bounded: a flood of new addresses stops at the bound; known ones are still refreshed.
	for i := range 10000 {
		l.Touch(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(i)), t0)
	}
	if n := l.Len(); n > 64+livenessShards {
		t.Fatalf("%d addresses remembered, bound 64 (+ one per shard)", n)
	}
	l.Touch(a, t0.Add(2*time.Minute))
	if got := l.Seen(a); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("a known address is not refreshed once the table is full: %v", got)
	}

	// Keep records an address the table had no room for, and never moves a time back.
	watched := netip.MustParseAddrPort("203.0.113.9:5060")
	l.Touch(watched, t0)
	if !l.Seen(watched).IsZero() {
		t.Fatal("the full table took a new address")
	}
	l.Keep(watched, t0.Add(2*time.Minute))
	if got := l.Seen(watched); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("Seen after Keep on a full table = %v", got)
	}
	l.Keep(watched, t0)
	if got := l.Seen(watched); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("Keep with an older time moved it back: %v", got)
	}

	if n := l.Prune(t0.Add(time.Second)); n == 0 || l.Len() != 2 {
		t.Fatalf("Prune dropped %d, %d left; want all but the refreshed and the kept one", n, l.Len())
	}
}
