package server_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// Issue 15's reproductions of one source exhausting simpled, each with the legitimate client
// from another address still served.

// scanOptions is an OPTIONS to the server from a foreign domain, with a fresh branch.
func scanOptions(n int) string {
	return "OPTIONS sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bKopt" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:scan@evil.example>;tag=s" + fmt.Sprint(n) + "\n" +
		"To: <sip:example.test>\n" +
		"Call-ID: scan-" + fmt.Sprint(n) + "-" + servertest.NextBranch() + "\n" +
		"CSeq: 1 OPTIONS\n" +
		"Content-Length: 0\n\n"
}

// A scanner sweeping OPTIONS from one address past limits.source_rate gets one 503 with
// Retry-After a second and silence otherwise; a client at another address is answered.
func TestSourceRateFloodOverUDP(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) { o.Limits.SourceRate, o.Limits.SourceBurst = 50, 100 })
	flood := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	var (
		mu               sync.Mutex
		ok, busy, others int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg := flood.Read(time.Second)
			if msg == "" {
				return
			}
			mu.Lock()
			switch {
			case strings.HasPrefix(msg, "SIP/2.0 200 "):
				ok++
			case strings.HasPrefix(msg, "SIP/2.0 503 ") && strings.Contains(msg, "\r\nRetry-After: 1\r\n"):
				busy++
			default:
				others++
			}
			mu.Unlock()
		}
	}()
	start := time.Now()
	for i := range 2000 {
		flood.Send(scanOptions(i))
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // stay within the socket buffers
		}
	}
	elapsed := time.Since(start)
	legit := servertest.DialFrom(t, "udp", "127.0.0.3", srv.Listener("udp"))
	legit.Send(scanOptions(-1))
	legit.Expect(`^SIP/2.0 200 `)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if maxOK := 100 + int(50*(elapsed+time.Second).Seconds()) + 10; ok > maxOK || ok < 100 {
		t.Errorf("the flooding source got %d answers in %v, want its burst and rate (100 + 50/s, at most %d)", ok, elapsed, maxOK)
	}
	if maxBusy := int(elapsed.Seconds()) + 2; busy < 1 || busy > maxBusy {
		t.Errorf("%d 503 answers in %v, want one a second (1 to %d)", busy, elapsed, maxBusy)
	}
	if others != 0 {
		t.Errorf("%d other answers", others)
	}
	if got := servertest.MetricValue(t, srv, `simpled_limited_total{limit="source_rate"}`); got < 1500 {
		t.Errorf(`simpled_limited_total{limit="source_rate"} = %v, want the refused ~1800`, got)
	}
}

// Issue 15: 20 TCP SUBSCRIBEs from a foreign domain pinned every connection slot (transport.
// max_connections 20) and legitimate connections were refused. Only authenticated flows are
// pinned now, and CRLF keepalives do not keep the others open: they close at the idle
// timeout, and a user's REGISTER gets through.
func TestForeignSubscriptionsDoNotPinConnections(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		o.UsersFile = servertest.UsersFile(t, "alice", "bob")
		o.Transport.MaxConnections = 20
		o.Transport.IdleTimeout = time.Second
	})
	addr := srv.Listener("tcp")
	var foreign []*servertest.Wire
	for i := range 20 {
		w := servertest.DialFrom(t, "tcp", "127.0.0.2", addr)
		w.Send(servertest.Subscribe("eve@evil.example", "alice", fmt.Sprintf("pin-%d-%s", i, servertest.NextBranch()), 1, "presence", 3600))
		w.Expect(`^SIP/2.0 20[02] `)
		foreign = append(foreign, w)
	}
	// Keepalives every 300 ms, as an attacker holding the slots would send.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, w := range foreign {
					_, _ = w.Conn.Write([]byte("\r\n\r\n"))
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	// Every foreign connection is closed within a few idle timeouts.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range foreign {
		buf := make([]byte, 4096)
		for {
			_ = w.Conn.SetReadDeadline(deadline)
			if _, err := w.Conn.Read(buf); err != nil {
				if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("a foreign subscriber's connection is still open after 5 s (idle timeout 1 s)")
				}
				break
			}
		}
	}
	alice := servertest.DialFrom(t, "tcp", "127.0.0.1", addr)
	alice.WithAuth(servertest.Register("alice", "pin-alice-"+servertest.NextBranch(), 1, "Contact: <sip:alice@{local};transport=tcp;ob>"),
		"alice", "sip:example.test", `^SIP/2.0 200 `)
	// Alice's authenticated flow is pinned: it outlives the idle timeout.
	time.Sleep(1500 * time.Millisecond)
	alice.Send(scanOptions(0))
	alice.Expect(`^SIP/2.0 200 `)
}

// Issue 15: 6,000 anonymous MESSAGEs to a user whose device never answers took goroutines
// from 52 to 24,052 and the heap up 211 MB. From one source, requests in flight stop at
// limits.max_inflight_per_source (503 with Retry-After beyond): goroutines and heap stay
// bounded, and a client at another address is served.
func TestInflightPerSourceBounded(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		o.UsersFile = servertest.UsersFile(t, "alice", "bob")
		// The rate limit would stop this flood first: let only the in-flight bound act.
		o.Limits.SourceRate, o.Limits.SourceBurst = 1_000_000, 1_000_000
	})
	// bob's device: registered, never answers.
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	_ = bob

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	const n = 3000
	flood := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	busy := make(chan int, 1)
	sent := make(chan struct{})
	go func() {
		count, other := 0, map[string]int{}
		for {
			msg := flood.Read(500 * time.Millisecond)
			if msg == "" {
				select {
				case <-sent:
					t.Logf("the flooding source got %d 503s with Retry-After, and %v", count, other)
					busy <- count
					return
				default:
					continue
				}
			}
			other[servertest.FirstLine(msg)]++
			if strings.HasPrefix(msg, "SIP/2.0 503 ") && strings.Contains(msg, "\r\nRetry-After: ") {
				count++
			}
		}
	}()
	for i := range n {
		flood.Send(strings.Replace(servertest.Message("x", "bob", fmt.Sprintf("spam-%d-%s", i, servertest.NextBranch()), "text/plain", "buy now"),
			"From: <sip:x@example.test>", "From: <sip:spam@evil.example>", 1))
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	wait := time.Now().Add(5 * time.Second)
	for time.Now().Before(wait) && servertest.MetricValue(t, srv, `simpled_sip_requests_total{method="MESSAGE"}`) < n*9/10 {
		time.Sleep(50 * time.Millisecond)
	}
	peak := runtime.NumGoroutine()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	legit := servertest.DialFrom(t, "udp", "127.0.0.3", srv.Listener("udp"))
	legit.WithAuth(servertest.Register("alice", "inflight-alice-"+servertest.NextBranch(), 1, "Contact: <sip:alice@{local}>"),
		"alice", "sip:example.test", `^SIP/2.0 200 `)

	close(sent)
	got := servertest.MetricValue(t, srv, `simpled_sip_requests_total{method="MESSAGE"}`)
	growth := peak - g0
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%v MESSAGEs received; goroutines %d -> %d; heap in use %+d MiB", got, g0, peak, heap>>20)
	if growth > 3000 {
		t.Errorf("goroutines grew by %d for %d MESSAGEs from one source, want at most 3000 (500 in flight)", growth, n)
	}
	// The goroutine count is what tells the bound apart (6,000 more without it); the heap
	// (about +30 MiB without it, +7 to +18 MiB with it) is bounded loosely, against leaks.
	if heap > 40<<20 {
		t.Errorf("heap in use grew by %d MiB, want under 40 MiB", heap>>20)
	}
	if v := servertest.MetricValue(t, srv, `simpled_limited_total{limit="inflight_per_source"}`); v < n/2 {
		t.Errorf(`simpled_limited_total{limit="inflight_per_source"} = %v, want most of the %d`, v, n)
	}
	// The flooder's socket buffer overflows: some of its 503s are lost to it.
	if c := <-busy; c < 1 {
		t.Error("the flooding source got no 503 with Retry-After")
	}
}
