package server

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestRetransCacheExpiresAndBounds(t *testing.T) {
	c := newRetransCache(time.Second, retransShards*2500, 1<<30) // two 1,000-byte answers per shard
	dest := netip.MustParseAddrPort("127.0.0.1:5060")
	t0 := time.Unix(1000, 0)
	if !c.put("k1", []byte("SIP/2.0 200 OK"), dest, t0) {
		t.Fatal("put into an empty cache refused")
	}
	e, ok := c.get("k1", t0.Add(999*time.Millisecond))
	if !ok || string(e.resp) != "SIP/2.0 200 OK" || e.dest != dest {
		t.Fatalf("get before expiry = %+v, %v", e, ok)
	}
	if _, ok := c.get("k1", t0.Add(time.Second)); ok {
		t.Fatal("entry still there at its expiry")
	}
	if s := c.shard("k1"); len(s.m) != 0 || s.bytes != 0 {
		t.Fatalf("%d entries, %d bytes left after expiry", len(s.m), s.bytes)
	}
	// Fill one shard: keys hashing to the same shard as "a".
	target := c.shard("a")
	var same []string
	for i := 0; len(same) < 4 && i < 100000; i++ {
		k := "k" + time.Duration(i).String()
		if c.shard(k) == target {
			same = append(same, k)
		}
	}
	if len(same) < 4 {
		t.Fatal("no four keys in one shard")
	}
	answer := make([]byte, 1000)
	if c.put(same[3], make([]byte, 3000), dest, t0) {
		t.Fatal("an answer larger than the shard's budget accepted")
	}
	if !c.put(same[0], answer, dest, t0) || !c.put(same[1], answer, dest, t0) {
		t.Fatal("put below the bound refused")
	}
	if c.put(same[2], answer, dest, t0) {
		t.Fatal("put past the bound accepted")
	}
	// Once the first two expire there is room again, and the bytes are accounted back.
	if !c.put(same[2], answer, dest, t0.Add(2*time.Second)) {
		t.Fatal("put after expiry refused")
	}
	if want := entrySize(same[2], answer); target.bytes != want {
		t.Fatalf("shard holds %d bytes, want %d", target.bytes, want)
	}
}

// The queue of one shard is compacted as it is consumed: a long run of puts and expiries
// does not keep every key ever stored.
func TestRetransCacheQueueCompacts(t *testing.T) {
	c := newRetransCache(time.Millisecond, 1<<30, 1<<30)
	dest := netip.MustParseAddrPort("127.0.0.1:5060")
	t0 := time.Unix(1000, 0)
	s := c.shard("x")
	for i := range 100000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		c.put("x"+time.Duration(i).String(), []byte("r"), dest, now)
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].fifo) - c.shards[i].head
	}
	if total > 2*retransShards+2 {
		t.Fatalf("%d keys queued, want only the live ones", total)
	}
	if cap(s.fifo) > 8192 {
		t.Fatalf("queue capacity %d grew with every key", cap(s.fifo))
	}
}

// One source's answers fill at most its share of the cache: past it that source's
// transactions stay with sipgo, and another source's answers are still cached. Its share comes
// back as its answers expire; IPv6 sources of one /64 share one share.
func TestRetransCachePerSourceShare(t *testing.T) {
	c := newRetransCache(time.Second, 1<<30, 10*entrySize("k0000", make([]byte, 1000)))
	flood := netip.MustParseAddrPort("127.0.0.2:5060")
	other := netip.MustParseAddrPort("127.0.0.3:5060")
	t0 := time.Unix(1000, 0)
	answer := make([]byte, 1000)
	stored := 0
	for i := range 1000 {
		if c.put(fmt.Sprintf("k%04d", i), answer, flood, t0) {
			stored++
		}
	}
	if stored != 10 {
		t.Fatalf("one source stored %d answers, want its share of 10", stored)
	}
	if !c.put("other", answer, other, t0) {
		t.Fatal("another source's answer refused while the first is at its share")
	}
	// Shards expire lazily, as they are used: the share comes back within a few puts.
	back := false
	for i := 0; i < 1000 && !back; i++ {
		back = c.put(fmt.Sprintf("later%04d", i), answer, flood, t0.Add(2*time.Second))
	}
	if !back {
		t.Fatal("the flooding source's share did not come back after expiry")
	}
	v6a := netip.MustParseAddrPort("[2001:db8:1:2::a]:5060")
	v6b := netip.MustParseAddrPort("[2001:db8:1:2::b]:5060")
	t1 := t0.Add(4 * time.Second)
	stored = 0
	for i := range 20 {
		dest := v6a
		if i%2 == 1 {
			dest = v6b
		}
		if c.put(fmt.Sprintf("v6-%02d", i), answer, dest, t1) {
			stored++
		}
	}
	if stored != 10 {
		t.Fatalf("one IPv6 /64 stored %d answers, want one share of 10", stored)
	}
}
