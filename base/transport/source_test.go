package transport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func newLimitedForTest(t *testing.T) (*sipx.Limited, func(string) float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := sipx.NewLimited(reg)
	if err != nil {
		t.Fatal(err)
	}
	return l, func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "limit" && lp.GetValue() == name {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
}

// A source gets its burst, then its rate; past them one 503 a second and silence otherwise.
// Sources are independent, an IPv6 /64 is one source, trusted peers are never limited.
func TestSourceRate(t *testing.T) {
	lim, count := newLimitedForTest(t)
	r := NewSourceRate(10, 20, lim, zap.NewNop())
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1000, 0)
	for i := range 20 {
		if pass, _ := r.Allow(a, nil, t0); !pass {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	pass, answer := r.Allow(a, nil, t0)
	if pass || !answer {
		t.Fatalf("past the burst: pass %v answer %v, want refused and answered", pass, answer)
	}
	// Within the second after a 503, refusals are silent.
	for range 10 {
		if pass, answer := r.Allow(a, nil, t0.Add(600*time.Millisecond)); !pass && answer {
			t.Fatal("a second 503 within a second")
		}
	}
	if pass, _ := r.Allow(b, nil, t0); !pass {
		t.Fatal("another source refused")
	}
	// A second later, 10 more pass.
	passed := 0
	for range 30 {
		if p, _ := r.Allow(a, nil, t0.Add(1600*time.Millisecond)); p {
			passed++
		}
	}
	if passed != 10 {
		t.Fatalf("after a second %d passed, want the rate, 10", passed)
	}
	if got := count(LimitSourceRate); got < 20 {
		t.Fatalf("simpled_limited_total{limit=source_rate} = %v, want the refusals counted", got)
	}

	v6a, v6b := netip.MustParseAddr("2001:db8:5:6::1"), netip.MustParseAddr("2001:db8:5:6::2")
	for range 20 {
		r.Allow(v6a, nil, t0)
	}
	if pass, _ := r.Allow(v6b, nil, t0); pass {
		t.Fatal("another address of the same /64 has a bucket of its own")
	}

	peer := netip.MustParseAddr("198.51.100.1")
	r.Trusted = func(ip netip.Addr, _ []string) bool { return ip == peer }
	for i := range 1000 {
		if pass, _ := r.Allow(peer, nil, t0); !pass {
			t.Fatalf("trusted peer refused at message %d", i+1)
		}
	}
}

// A flood of distinct (spoofed) sources cannot grow the table beyond its bound, and the pass
// path allocates nothing.
func TestSourceRateBounded(t *testing.T) {
	r := NewSourceRate(200, 400, nil, zap.NewNop())
	t0 := time.Unix(1000, 0)
	for i := range 300000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r.Allow(ip, nil, t0.Add(time.Duration(i)*time.Microsecond))
	}
	if n := r.Len(); n > sourceShards*sourceShardMax {
		t.Fatalf("table holds %d sources, want at most %d", n, sourceShards*sourceShardMax)
	}
	ip := netip.MustParseAddr("192.0.2.9")
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(10 * time.Millisecond)
		r.Allow(ip, nil, now)
	})
	if allocs != 0 {
		t.Fatalf("Allow allocates %v times per call, want 0", allocs)
	}
}

func udpRegister(n int) string {
	return strings.Replace(strings.Replace(okRegister, "branch=z9hG4bK1", fmt.Sprintf("branch=z9hG4bK-rate-%d", n), 1),
		"Call-ID: c1", fmt.Sprintf("Call-ID: rate-%d", n), 1)
}

// Over UDP, a source past its burst gets one 503 with Retry-After, and its further datagrams
// never reach the reader; another source is still read.
func TestGuardConnSourceRate(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	lim, count := newLimitedForTest(t)
	g := NewGuardConn(pc, zap.NewNop())
	g.Rate = NewSourceRate(1, 5, lim, zap.NewNop())
	passed := make(chan string, 100)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, addr, err := g.ReadFrom(buf)
			if err != nil {
				return
			}
			passed <- addr.String() + " " + string(buf[:n])
		}
	}()
	flood, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Skip("127.0.0.2 not available:", err)
	}
	defer flood.Close()
	for i := range 50 {
		if _, err := flood.WriteTo([]byte(udpRegister(i)), pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	_ = flood.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65535)
	n, _, err := flood.ReadFrom(buf)
	if err != nil {
		t.Fatal("no answer to the flooding source:", err)
	}
	res := string(buf[:n])
	if !strings.HasPrefix(res, "SIP/2.0 503 ") || !strings.Contains(res, "\r\nRetry-After: 1\r\n") ||
		!strings.Contains(res, "Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK-rate-5") {
		t.Fatalf("answer %q, want a 503 with Retry-After to the sixth REGISTER", res)
	}
	_ = flood.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := flood.ReadFrom(buf); err == nil {
		t.Fatalf("a second answer within the second: %q", buf[:n])
	}
	other, err := net.ListenPacket("udp", "127.0.0.3:0")
	if err != nil {
		t.Skip("127.0.0.3 not available:", err)
	}
	defer other.Close()
	if _, err := other.WriteTo([]byte(udpRegister(99)), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got := 0
	deadline := time.After(2 * time.Second)
	for fromOther := false; !fromOther; {
		select {
		case p := <-passed:
			if strings.HasPrefix(p, "127.0.0.2:") {
				got++
			} else {
				fromOther = true
			}
		case <-deadline:
			t.Fatal("the other source's datagram was not read")
		}
	}
	if got > 6 {
		t.Fatalf("%d datagrams of the flooding source were read, want its burst of 5 (6 at a token's refill)", got)
	}
	if c := count(LimitSourceRate); c < 40 {
		t.Fatalf("source_rate refusals counted %v, want about 45", c)
	}
}

// Over a stream, a message past the source's rate is answered 503 with Retry-After and the
// connection is closed; what came before it was served.
func TestStreamSourceRate(t *testing.T) {
	lim, count := newLimitedForTest(t)
	s := startStreamServer(t, StreamOptions{Transport: "tcp", Rate: NewSourceRate(1, 3, lim, zap.NewNop())})
	c := s.dial(t)
	var all strings.Builder
	for range 10 {
		all.WriteString(streamRegister("tcp", ""))
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var codes []string
	for range 4 {
		codes = append(codes, readSIP(t, c, br)[:11])
	}
	sort := strings.Join(codes, ",")
	if strings.Count(sort, "SIP/2.0 200") != 3 || strings.Count(sort, "SIP/2.0 503") != 1 {
		t.Fatalf("answers %v, want three 200 and one 503", codes)
	}
	expectClosed(t, c)
	s.ev.wait(t, EventRejected, ReasonRate, 1)
	if count(LimitSourceRate) < 1 {
		t.Fatal("refusal not counted")
	}
}

// A source may hold at most MaxConnectionsPerIP connections; another source is still admitted,
// and a closed connection gives its slot back.
func TestStreamMaxConnectionsPerIP(t *testing.T) {
	lim, count := newLimitedForTest(t)
	s := startStreamServer(t, StreamOptions{Transport: "tcp", MaxConnectionsPerIP: 3, Limited: lim})
	var conns []net.Conn
	for range 3 {
		conns = append(conns, s.dial(t))
	}
	streamPoll(t, "3 open", func() bool { return s.l.Len() == 3 })
	extra := s.dial(t)
	expectClosed(t, extra)
	s.ev.wait(t, EventRejected, ReasonLimitPerIP, 1)
	if count(LimitConnectionsPerIP) != 1 {
		t.Fatalf("connections_per_ip = %v, want 1", count(LimitConnectionsPerIP))
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: streamWait}
	other, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Skip("127.0.0.2 not available:", err)
	}
	defer other.Close()
	if _, err := io.WriteString(other, streamRegister("tcp", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, other, bufio.NewReader(other)))
	_ = conns[0].Close()
	streamPoll(t, "slot freed", func() bool { return s.l.Len() == 3 })
	again := s.dial(t)
	if _, err := io.WriteString(again, streamRegister("tcp", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, again, bufio.NewReader(again)))
}

// CRLF keepalives do not keep a connection that no pin holds open past the idle timeout
// (they are still answered); on a pinned connection they do not matter.
func TestStreamKeepaliveDoesNotExtendIdle(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "tcp", IdleTimeout: 500 * time.Millisecond})
	c := s.dial(t)
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("closed after %v", d)
			}
			s.ev.wait(t, EventRejected, ReasonIdle, 1)
			return
		case <-tick.C:
			if time.Since(start) > 3*time.Second {
				t.Fatal("keepalives kept an unpinned connection open past its idle timeout")
			}
			_, _ = io.WriteString(c, "\r\n\r\n")
		}
	}
}

// Over WebSocket, a message past the source's rate closes the connection with 1008 (policy
// violation); the messages before it were served.
func TestWSSourceRate(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "ws", Rate: NewSourceRate(1, 2, nil, zap.NewNop())})
	c := s.dialWS(t)
	for range 2 {
		c.send(t, ws.OpText, true, streamRegister("ws", ""))
		expect200(t, c.readText(t))
	}
	c.send(t, ws.OpText, true, streamRegister("ws", ""))
	if code := c.readClose(t); code != ws.StatusPolicyViolation {
		t.Fatalf("close status %d, want 1008", code)
	}
	s.ev.wait(t, EventRejected, ReasonRate, 1)
}

// A trusted peer is exempt from the rate and the per-source connection bound, and its
// keepalives keep its connection open as a pin would.
func TestStreamTrustedPeerExempt(t *testing.T) {
	loop := netip.MustParseAddr("127.0.0.1")
	s := startStreamServer(t, StreamOptions{Transport: "tcp", IdleTimeout: 400 * time.Millisecond,
		Rate: NewSourceRate(1, 1, nil, zap.NewNop()), MaxConnectionsPerIP: 1,
		Trusted: func(ip netip.Addr, _ []string) bool { return ip == loop }})
	a, b := s.dial(t), s.dial(t)
	for _, c := range []net.Conn{a, b} {
		br := bufio.NewReader(c)
		for range 5 {
			if _, err := io.WriteString(c, streamRegister("tcp", "")); err != nil {
				t.Fatal(err)
			}
			expect200(t, readSIP(t, c, br))
		}
	}
	pong := make([]byte, 2)
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(a, "\r\n\r\n"); err != nil {
			t.Fatal("the trusted peer's connection closed:", err)
		}
		_ = a.SetReadDeadline(time.Now().Add(streamWait))
		if _, err := io.ReadFull(a, pong); err != nil {
			t.Fatal("the trusted peer's connection closed:", err)
		}
	}
	if _, err := io.WriteString(a, streamRegister("tcp", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, a, bufio.NewReader(a)))
}
