package server

import (
	"net/netip"
	"testing"

	"github.com/simpled/simpled/base/sipx"
)

// The in-flight bound counts in all and per source (an IPv6 /64 is one source); a trusted peer
// counts in the total only; every release gives its slot back and the per-source table empties.
func TestInflightBounds(t *testing.T) {
	f := newInflight(5, 2)
	key := func(s string) netip.Addr { return sipx.SourceKey(netip.MustParseAddr(s)) }
	a, b, b2 := key("192.0.2.1"), key("2001:db8::1"), key("2001:db8::2")
	for range 2 {
		if l := f.acquire(a, true); l != "" {
			t.Fatalf("first two from a refused: %s", l)
		}
	}
	if l := f.acquire(a, true); l != limitInflightPerSource {
		t.Fatalf("third from a: %q, want %s", l, limitInflightPerSource)
	}
	if l := f.acquire(b, true); l != "" {
		t.Fatalf("b refused: %s", l)
	}
	if l := f.acquire(b2, true); l != "" {
		t.Fatalf("b2 refused: %s", l)
	}
	if l := f.acquire(b2, true); l != limitInflightPerSource {
		t.Fatalf("a third from b's /64: %q, want %s", l, limitInflightPerSource)
	}
	peer := key("198.51.100.1")
	if l := f.acquire(peer, false); l != "" {
		t.Fatalf("trusted peer refused below the total: %s", l)
	}
	if l := f.acquire(peer, false); l != limitInflight {
		t.Fatalf("sixth request: %q, want %s", l, limitInflight)
	}
	f.release(a, true)
	f.release(a, true)
	f.release(b, true)
	f.release(b2, true)
	f.release(peer, false)
	if n := f.total.Load(); n != 0 {
		t.Fatalf("total %d after every release, want 0", n)
	}
	for i := range f.shards {
		if len(f.shards[i].m) != 0 {
			t.Fatalf("per-source table not empty: %v", f.shards[i].m)
		}
	}
}
