package sipgox

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// udpTxHarness is a UDP socket served by a UDPTransactions table with handler h (datagrams it
// does not take are counted in passed) and a client socket to talk to it.
type udpTxHarness struct {
	table  *UDPTransactions
	server net.PacketConn
	client net.PacketConn
	passed atomic.Int64
}

func newUDPTxHarness(t *testing.T, h func(*sip.Request, sip.ServerTransaction), set ...func(*UDPTransactions)) *udpTxHarness {
	t.Helper()
	// A cache with no room: every transaction keeps its own answer for Timer J.
	return newUDPTxHarnessCache(t, newRetransCache(time.Minute, 0, 0), h, set...)
}

// newUDPTxHarnessCache is newUDPTxHarness with the retransmission cache cache.
func newUDPTxHarnessCache(t *testing.T, cache *RetransCache, h func(*sip.Request, sip.ServerTransaction), set ...func(*UDPTransactions)) *udpTxHarness {
	t.Helper()
	server, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &udpTxHarness{table: NewUDPTransactions(sip.NewParser(), cache, h), server: server, client: client}
	for _, f := range set {
		f(u.table)
	}
	take := u.table.For(server)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, addr, err := server.ReadFrom(buf)
			if err != nil {
				return
			}
			if !take(buf[:n], addr) {
				u.passed.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		_ = server.Close()
		_ = client.Close()
		<-done
	})
	return u
}

func (u *udpTxHarness) send(t *testing.T, msg string) {
	t.Helper()
	if _, err := u.client.WriteTo([]byte(msg), u.server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
}

// read returns the next datagram the client gets within wait ("" when none).
func (u *udpTxHarness) read(t *testing.T, wait time.Duration) string {
	t.Helper()
	buf := make([]byte, 65535)
	_ = u.client.SetReadDeadline(time.Now().Add(wait))
	n, _, err := u.client.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func (u *udpTxHarness) pending() int { return u.table.pending() }

// pending is how many transactions the table holds.
func (t *UDPTransactions) pending() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func udpRequest(method, branch string, client net.Addr) string {
	return fmt.Sprintf("%s sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=%s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\n"+
		"Call-ID: c-%s\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n", method, client, branch, branch, method)
}

// A request is handled once, with its transport and source, and answered where it came from;
// retransmissions meanwhile are absorbed while unanswered, answered with the provisional
// answer once there is one, and with the final answer after it (RFC 3261 §17.2.2), for as
// long as the transaction is kept.
func TestUDPTransactionAbsorbsAndAnswersRetransmissions(t *testing.T) {
	var calls atomic.Int64
	proceed, finish := make(chan struct{}), make(chan struct{})
	seen := make(chan [2]string, 1)
	u := newUDPTxHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		calls.Add(1)
		seen <- [2]string{req.Source(), req.Transport()}
		<-proceed
		_ = tx.Respond(sip.NewResponseFromRequest(req, 183, "Progress", nil))
		<-finish
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Too Late", nil))
	})
	msg := udpRequest("MESSAGE", "z9hG4bK-abs", u.client.LocalAddr())
	u.send(t, msg)
	u.send(t, msg)
	if got := u.read(t, 200*time.Millisecond); got != "" {
		t.Fatalf("answer before the handler answered: %q", got)
	}
	close(proceed)
	if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 183 ") {
		t.Fatalf("first answer %q, want the 183", got)
	}
	u.send(t, msg)
	if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 183 ") {
		t.Fatalf("retransmission in Proceeding answered %q, want the 183 again", got)
	}
	close(finish)
	if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("final answer %q, want 200", got)
	}
	u.send(t, msg)
	if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("retransmission in Completed answered %q, want the 200 again", got)
	}
	if got := u.read(t, 100*time.Millisecond); got != "" {
		t.Fatalf("answer after the final one sent: %q", got)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times for one request and its retransmissions", n)
	}
	if got := <-seen; got != [2]string{u.client.LocalAddr().String(), "UDP"} {
		t.Fatalf("request seen from %q over %q", got[0], got[1])
	}
	if u.passed.Load() != 0 {
		t.Fatalf("%d datagrams left to sipgo", u.passed.Load())
	}
}

// With the retransmission cache in front of the handler the transaction ends at its final
// answer, the table forgets it, and a retransmission is answered from the cache without
// running the handler again.
func TestUDPTransactionEndsIntoTheCache(t *testing.T) {
	var calls atomic.Int64
	var terminated atomic.Bool
	cache := newRetransCache(time.Minute, 1<<20, 1<<20)
	answered := prometheus.NewCounter(prometheus.CounterOpts{Name: "answered"})
	cache.answered = answered
	u := newUDPTxHarnessCache(t, cache, func(req *sip.Request, tx sip.ServerTransaction) {
		calls.Add(1)
		tx.OnTerminate(func(string, error) { terminated.Store(true) })
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	msg := udpRequest("REGISTER", "z9hG4bK-cache", u.client.LocalAddr())
	u.send(t, msg)
	first := u.read(t, 2*time.Second)
	if !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("answer %q", first)
	}
	deadline := time.Now().Add(2 * time.Second)
	for (u.pending() != 0 || !terminated.Load()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if u.pending() != 0 || !terminated.Load() {
		t.Fatalf("transaction kept after the cache took its answer (pending %d, terminated %v)", u.pending(), terminated.Load())
	}
	u.send(t, msg)
	if again := u.read(t, 2*time.Second); again != first {
		t.Fatalf("retransmission answered %q, want the first answer %q", again, first)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
	if got := counterValue(t, answered); got != 1 {
		t.Fatalf("%v retransmissions counted as answered, want 1", got)
	}
	// A new request (another branch) is a new transaction.
	u.send(t, udpRequest("REGISTER", "z9hG4bK-cache2", u.client.LocalAddr()))
	if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") || calls.Load() != 2 {
		t.Fatalf("second request: answer %q, handler ran %d times", got, calls.Load())
	}
}

// Responses, INVITE, ACK, CANCEL, requests sipgo answers itself (no RFC 3261 branch) and what
// does not parse are left to sipgo.
func TestUDPTransactionsLeaveTheRestToSipgo(t *testing.T) {
	var calls atomic.Int64
	u := newUDPTxHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		calls.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	from := u.client.LocalAddr()
	left := []string{
		udpRequest("INVITE", "z9hG4bK-i", from),
		udpRequest("ACK", "z9hG4bK-a", from),
		udpRequest("CANCEL", "z9hG4bK-c", from),
		udpRequest("MESSAGE", "old-style-branch", from),
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-r\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
		"MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-nocseq\r\n\r\n",
		"MESSAGE sip:bob@example.test SIP/2.0\r\nContent-Length: nope\r\n\r\n",
	}
	for _, m := range left {
		u.send(t, m)
	}
	deadline := time.Now().Add(2 * time.Second)
	for u.passed.Load() < int64(len(left)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := u.passed.Load(); got != int64(len(left)) || calls.Load() != 0 {
		t.Fatalf("%d of %d datagrams left to sipgo, handler ran %d times", got, len(left), calls.Load())
	}
}

// A handler that answers to another destination than the source is obeyed; Done and
// OnTerminate see the end of the transaction when the handler returns without a cache.
func TestUDPTransactionDestinationAndEnd(t *testing.T) {
	other, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ended := make(chan sip.ServerTransaction, 1)
	u := newUDPTxHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 404, "Not Here", nil)
		res.SetDestination(other.LocalAddr().String())
		_ = tx.Respond(res)
		ended <- tx
	})
	u.send(t, udpRequest("OPTIONS", "z9hG4bK-dest", u.client.LocalAddr()))
	buf := make([]byte, 2048)
	_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := other.ReadFrom(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 404 ") {
		t.Fatalf("answer at the handler's destination: %q, %v", buf[:n], err)
	}
	tx := <-ended
	select {
	case <-tx.Done():
		t.Fatal("a transaction answered finally without the cache ended before Timer J")
	case <-time.After(50 * time.Millisecond):
	}
	tx.Terminate()
	select {
	case <-tx.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed at Terminate")
	}
	if tx.OnTerminate(func(string, error) {}) {
		t.Fatal("OnTerminate accepted after the end")
	}
	if u.pending() != 0 {
		t.Fatal("terminated transaction still in the table")
	}
}

// discardConn is a PacketConn whose writes go nowhere, for the fuzzer.
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

// FuzzUDPTransactionsTake feeds any datagram to Take: it never panics, takes only requests of
// its kind (never a response, INVITE, ACK or CANCEL), hands each taken request to the handler
// once, and leaves no transaction behind once the handler answered.
func FuzzUDPTransactionsTake(f *testing.F) {
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	for _, m := range []string{"REGISTER", "MESSAGE", "SUBSCRIBE", "INVITE", "ACK", "CANCEL", "OPTIONS"} {
		f.Add([]byte(udpRequest(m, "z9hG4bK-f"+m, from)))
	}
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-r\r\nCSeq: 1 MESSAGE\r\n\r\n"))
	f.Add([]byte("MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx\r\nCSeq: 1 MESSAGE\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("FOO sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK\r\nCSeq: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		handled := make(chan *sip.Request, 1)
		table := NewUDPTransactions(sip.NewParser(), newRetransCache(time.Minute, 1<<20, 1<<20),
			func(req *sip.Request, tx sip.ServerTransaction) {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
				handled <- req
			})
		if !table.Take(data, from, discardConn{}) {
			return
		}
		select {
		case req := <-handled:
			if req.IsInvite() || req.IsAck() || req.IsCancel() {
				t.Fatalf("took a %s", req.Method)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a taken request never reached the handler")
		}
		deadline := time.Now().Add(5 * time.Second)
		for table.pending() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("transaction left in the table after its answer")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// The handler's context (TxContext) lives while the handler runs and ends with the
// transaction, also when the transaction ends first.
func TestUDPTransactionContext(t *testing.T) {
	ctxs := make(chan context.Context, 2)
	u := newUDPTxHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		ctx, cancel := TxContext(tx)
		defer cancel()
		if ctx.Err() != nil {
			t.Error("context ended while the handler runs")
		}
		if req.Method == sip.OPTIONS {
			tx.Terminate()
			if ctx.Err() == nil {
				t.Error("context alive after the transaction ended")
			}
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		ctxs <- ctx
	})
	for _, m := range []string{"MESSAGE", "OPTIONS"} {
		u.send(t, udpRequest(m, "z9hG4bK-ctx"+m, u.client.LocalAddr()))
		ctx := <-ctxs
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: context not ended after the handler returned", m)
		}
	}
}

// A copy of an answered request sent from another address (a forged retransmission) gets
// the answer sent again to where the first went, never to the copy's source: it reflects
// nothing to a third party.
func TestUDPRetransmissionAnsweredToTheFirstSource(t *testing.T) {
	for _, cached := range []bool{true, false} {
		cache := newRetransCache(time.Minute, 0, 0) // full: the transaction keeps its answer
		if cached {
			cache = newRetransCache(time.Minute, 1<<20, 1<<20)
		}
		u := newUDPTxHarnessCache(t, cache, func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
		other, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		msg := udpRequest("MESSAGE", "z9hG4bK-refl", u.client.LocalAddr())
		u.send(t, msg)
		first := u.read(t, 2*time.Second)
		if !strings.HasPrefix(first, "SIP/2.0 200 ") {
			t.Fatalf("cached %v: answer %q", cached, first)
		}
		if _, err := other.WriteTo([]byte(msg), u.server.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if again := u.read(t, 2*time.Second); again != first {
			t.Fatalf("cached %v: the first source got %q, want the answer again", cached, again)
		}
		buf := make([]byte, 2048)
		_ = other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := other.ReadFrom(buf); err == nil {
			t.Fatalf("cached %v: the copy's source got %q", cached, buf[:n])
		}
		_ = other.Close()
	}
}

// A request Inline picks runs on the goroutine that read it: the next datagram waits for its
// handler. Other requests still run on pooled goroutines, side by side.
func TestUDPTransactionInline(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 4)
	u := newUDPTxHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		started <- string(req.Method)
		if req.Method == sip.REGISTER {
			<-release
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}, func(t *UDPTransactions) { t.Inline = func(req *sip.Request) bool { return req.Method == sip.REGISTER } })
	u.send(t, udpRequest("REGISTER", "z9hG4bK-in1", u.client.LocalAddr()))
	if got := <-started; got != "REGISTER" {
		t.Fatalf("first handler %s", got)
	}
	u.send(t, udpRequest("MESSAGE", "z9hG4bK-in2", u.client.LocalAddr()))
	select {
	case got := <-started:
		t.Fatalf("%s handled while the inline REGISTER held the read loop", got)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if got := <-started; got != "MESSAGE" {
		t.Fatalf("second handler %s", got)
	}
	for range 2 {
		if got := u.read(t, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") {
			t.Fatalf("answer %q", got)
		}
	}
}
