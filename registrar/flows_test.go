package registrar

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestFlowIndex: the index remembers which AORs registered over which flow, hands a flow's
// AORs over once when it ends, takes a UDP flow as dead only after dead without being heard
// from (or registered over), forgets what is older than the longest expiry, and stays within
// its bound.
func TestFlowIndex(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	x := newFlowIndex(4)
	udp := netip.MustParseAddrPort("192.0.2.1:5060")
	heardAt := time.Time{}
	heard := func(ap netip.AddrPort) time.Time {
		if ap != udp {
			t.Fatalf("heard(%v): not the watched address", ap)
		}
		return heardAt
	}
	for _, p := range []struct{ token, aor string }{{"tcp1", "a"}, {"tcp1", "b"}, {"tcp1", "a"}, {"tcp2", "a"}} {
		if !x.track(p.token, "tok-"+p.token, p.aor, netip.AddrPort{}, t0) {
			t.Fatalf("track(%s, %s) refused below the bound", p.token, p.aor)
		}
	}
	if !x.track("udp1", "tok-udp1", "c", udp, t0) {
		t.Fatal("track(udp1, c) refused below the bound")
	}
	if x.track("tcp3", "tok-tcp3", "d", netip.AddrPort{}, t0) || x.track("tcp1", "tok-tcp1", "e", netip.AddrPort{}, t0) {
		t.Fatal("a fifth pair was remembered over a bound of 4")
	}
	if !x.track("tcp1", "tok-tcp1", "a", netip.AddrPort{}, t0.Add(time.Second)) {
		t.Fatal("a pair already remembered was refused at the bound")
	}
	if f, p := x.size(); f != 3 || p != 4 {
		t.Fatalf("size = %d flows, %d pairs; want 3, 4", f, p)
	}

	// A REGISTER that left b no binding on tcp1; then tcp1 closes, twice.
	x.untrack("tcp1", "b")
	x.end("tcp1", kindFlowClosed)
	x.end("tcp1", kindFlowClosed)
	x.end("unknown", kindFlowClosed)
	select {
	case <-x.wake:
	default:
		t.Fatal("end did not wake the worker")
	}
	ended := x.takeEnded()
	if len(ended) != 1 || ended[0].token != "tok-tcp1" || !slices.Equal(ended[0].aors, []string{"a"}) || ended[0].kind != kindFlowClosed {
		t.Fatalf("ended = %+v; want tcp1 with a, once", ended)
	}
	if f, p := x.size(); f != 2 || p != 2 {
		t.Fatalf("size after tcp1 ended = %d flows, %d pairs; want 2, 2", f, p)
	}

	// The UDP flow, heard from at +5s: alive at +6s with dead = 2s, dead at +8s.
	heardAt = t0.Add(5 * time.Second)
	if x.scan(t0.Add(6*time.Second), 2*time.Second, time.Hour, heard) {
		t.Fatal("a UDP flow heard from a second ago taken as dead")
	}
	if !x.scan(t0.Add(8*time.Second), 2*time.Second, time.Hour, heard) {
		t.Fatal("a UDP flow silent for longer than dead not taken as dead")
	}
	if ended := x.takeEnded(); len(ended) != 1 || ended[0].token != "tok-udp1" || ended[0].kind != kindFlowDead {
		t.Fatalf("ended = %+v; want udp1, dead", ended)
	}
	// tcp2 was last registered over at t0: forgotten once that is older than stale, ending
	// nothing (its bindings expired).
	if x.scan(t0.Add(time.Hour), 2*time.Second, 30*time.Minute, heard) || len(x.takeEnded()) != 0 {
		t.Fatal("a stale connection's entry was ended rather than forgotten")
	}
	if f, p := x.size(); f != 0 || p != 0 {
		t.Fatalf("size at the end = %d flows, %d pairs; want none", f, p)
	}
}

// TestFlowKey: a request's source and the close of its connection name one flow, whatever
// the case of the transport or the form of the address.
func TestFlowKey(t *testing.T) {
	if a, b := flowKey("TCP", "[::ffff:127.0.0.1]:40000"), flowKey("tcp", "127.0.0.1:40000"); a != b {
		t.Errorf("flowKey: %q != %q", a, b)
	}
	if a, b := flowKey("tcp", "127.0.0.1:40000"), flowKey("ws", "127.0.0.1:40000"); a == b {
		t.Errorf("flowKey: tcp and ws flows from one address are one: %q", a)
	}
}

// TestOnlyOverFlow: over a connection, a contact naming the connection's own address (port
// defaults included) or a ".invalid" host is reached only over it; any other address is not.
func TestOnlyOverFlow(t *testing.T) {
	for _, tc := range []struct {
		uri, source string
		want        bool
	}{
		{"sip:bob@127.0.0.1:40000;transport=tcp", "127.0.0.1:40000", true},
		{"sip:bob@[::1]:40000;transport=tcp", "[::1]:40000", true},
		{"sip:bob@127.0.0.1;transport=tcp", "127.0.0.1:5060", true},
		{"sips:bob@127.0.0.1", "127.0.0.1:5061", true},
		{"sip:r4nd0m@k3j2h1.invalid;transport=ws", "127.0.0.1:40000", true},
		{"sip:bob@127.0.0.1:5072;transport=tcp", "127.0.0.1:40000", false},
		{"sip:bob@127.0.0.2:40000;transport=tcp", "127.0.0.1:40000", false},
		{"sip:bob@host.example.com:40000", "127.0.0.1:40000", false},
		{"sip:bob@127.0.0.1:40000", "not an address", false},
		{"not a uri", "127.0.0.1:40000", false},
	} {
		if got := onlyOverFlow(tc.uri, tc.source); got != tc.want {
			t.Errorf("onlyOverFlow(%q, %q) = %v, want %v", tc.uri, tc.source, got, tc.want)
		}
	}
}
