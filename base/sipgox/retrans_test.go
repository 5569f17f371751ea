package sipgox

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus"
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
	if want := entrySize(answer); target.bytes != want {
		t.Fatalf("shard holds %d bytes, want %d", target.bytes, want)
	}
}

// The log of one shard is freed as it expires: a long run of puts and expiries does not keep
// every answer ever stored.
func TestRetransCacheLogIsFreed(t *testing.T) {
	c := newRetransCache(time.Millisecond, 1<<30, 1<<30)
	dest := netip.MustParseAddrPort("127.0.0.1:5060")
	t0 := time.Unix(1000, 0)
	answer := make([]byte, 300)
	for i := range 100000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		c.put("x"+time.Duration(i).String(), answer, dest, now)
	}
	entries, chunks := 0, 0
	for i := range c.shards {
		entries += len(c.shards[i].m)
		chunks += len(c.shards[i].chunks)
	}
	if entries > 2*retransShards+2 {
		t.Fatalf("%d entries kept, want only the live ones", entries)
	}
	if chunks > 2*retransShards {
		t.Fatalf("%d chunks kept for %d live entries", chunks, entries)
	}
}

// Every answer stored is found with its own bytes and destination, whatever its size (up to
// larger than a chunk) and the family of its destination; a key stored again answers with the
// last answer; once all expire, the cache holds nothing (bytes, entries, per-source shares).
func TestRetransCacheKeepsEachAnswer(t *testing.T) {
	c := newRetransCache(time.Second, 1<<30, 1<<30)
	t0 := time.Unix(1000, 0)
	dests := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:5060"),
		netip.MustParseAddrPort("[2001:db8::1]:5062"),
		netip.MustParseAddrPort("[fe80::1%eth0]:5064"),
	}
	answer := func(i int) []byte {
		n := 200 + i%700
		if i%97 == 0 {
			n = retransChunk + i // its own chunk
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i + j)
		}
		return b
	}
	const n = 3000
	for i := range n {
		if !c.put(fmt.Sprintf("key-%d", i), answer(i), dests[i%len(dests)], t0.Add(time.Duration(i)*time.Microsecond)) {
			t.Fatalf("put %d refused", i)
		}
	}
	if !c.put("key-5", []byte("SIP/2.0 500 again"), dests[1], t0.Add(time.Millisecond)) {
		t.Fatal("put of a key again refused")
	}
	at := t0.Add(500 * time.Millisecond)
	for i := range n {
		e, ok := c.get(fmt.Sprintf("key-%d", i), at)
		want, wantDest := answer(i), dests[i%len(dests)]
		if i == 5 {
			want, wantDest = []byte("SIP/2.0 500 again"), dests[1]
		}
		if !ok || !bytes.Equal(e.resp, want) || e.dest != wantDest {
			t.Fatalf("key-%d: found %v, %d bytes to %v; want %d bytes to %v", i, ok, len(e.resp), e.dest, len(want), wantDest)
		}
	}
	if _, ok := c.get("key-none", at); ok {
		t.Fatal("a key never stored found")
	}
	later := t0.Add(2 * time.Second)
	for i := range n {
		if _, ok := c.get(fmt.Sprintf("key-%d", i), later); ok {
			t.Fatalf("key-%d found after its expiry", i)
		}
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.expire(later.UnixNano())
		if len(s.m) != 0 || s.bytes != 0 || len(s.chunks) > 1 {
			t.Fatalf("shard %d: %d entries, %d bytes, %d chunks left after expiry", i, len(s.m), s.bytes, len(s.chunks))
		}
		if len(c.sources[i].m) != 0 {
			t.Fatalf("source shard %d still charged: %v", i, c.sources[i].m)
		}
	}
}

// One source's answers fill at most its share of the cache: past it that source's
// transactions stay with sipgo, and another source's answers are still cached. Its share comes
// back as its answers expire; IPv6 sources of one /64 share one share.
func TestRetransCachePerSourceShare(t *testing.T) {
	c := newRetransCache(time.Second, 1<<30, 10*entrySize(make([]byte, 1000)))
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

// recorderUDPTx is a recorded server transaction whose request came over the UDP socket conn.
type recorderUDPTx struct {
	*siptest.ServerTxRecorder
	conn *sip.UDPConnection
}

func (t recorderUDPTx) Connection() sip.Connection { return t.conn }

// Retransmits answers a UDP non-INVITE request the second time from the cache, with the bytes
// of the first answer sent to the same address, without calling the handler; INVITE and TCP
// requests always reach the handler.
func TestRetransmitsAnswersFromCache(t *testing.T) {
	server, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn := &sip.UDPConnection{PacketConn: server, PacketAddr: server.LocalAddr().String()}
	c := newRetransCache(time.Minute, 1<<20, 1<<20)
	c.answered = prometheus.NewCounter(prometheus.CounterOpts{Name: "answered"})
	calls := 0
	h := Retransmits(c, func(req *sip.Request, tx sip.ServerTransaction) {
		calls++
		if err := tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil)); err != nil {
			t.Errorf("respond: %v", err)
		}
	})
	newReq := func(method sip.RequestMethod, transport string) *sip.Request {
		req := sip.NewRequest(method, sip.Uri{User: "bob", Host: "example.test"})
		req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport,
			Host: "127.0.0.1", Port: 5070, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-rtx-" + string(method)}}})
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
		req.AppendHeader(sip.NewHeader("Call-ID", "rtx-test"))
		req.SetTransport(transport)
		req.SetSource(peer.LocalAddr().String())
		return req
	}
	serve := func(req *sip.Request) *siptest.ServerTxRecorder {
		rec := siptest.NewServerTxRecorder(req)
		h(req, recorderUDPTx{ServerTxRecorder: rec, conn: conn})
		return rec
	}

	first := serve(newReq(sip.MESSAGE, "UDP"))
	if calls != 1 || len(first.Result()) != 1 {
		t.Fatalf("first request: %d handler calls, %d answers", calls, len(first.Result()))
	}
	want := first.Result()[0].String()
	again := serve(newReq(sip.MESSAGE, "UDP"))
	if calls != 1 || len(again.Result()) != 0 {
		t.Fatalf("retransmission reached the handler (%d calls, %d answers)", calls, len(again.Result()))
	}
	buf := make([]byte, 4096)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer to the retransmission: %v", err)
	}
	if got := string(buf[:n]); got != want {
		t.Fatalf("retransmission answered\n%s\nwant\n%s", got, want)
	}
	if got := counterValue(t, c.answered); got != 1 {
		t.Fatalf("answered = %v, want 1", got)
	}
	for _, req := range []*sip.Request{newReq(sip.INVITE, "UDP"), newReq(sip.OPTIONS, "TCP")} {
		before := calls
		serve(req)
		serve(req)
		if calls != before+2 {
			t.Errorf("%s over %s: %d handler calls for two sends, want 2", req.Method, req.Transport(), calls-before)
		}
	}
}

// counterValue reads the value of a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %v (%d families)", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

// A source's share is what its rate needs for Timer J, at least a sixteenth of the cache and
// at most all of it.
func TestRetransShare(t *testing.T) {
	for _, c := range []struct{ rate, want int }{
		{0, maxRetrans / 16},
		{200, maxRetrans / 16},
		{5000, 5000 * 32 * 2048},
		{1 << 20, maxRetrans},
	} {
		if got := retransShare(c.rate, 32*time.Second); got != c.want {
			t.Errorf("retransShare(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
}
