package sipgox_test

import (
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/simpled/simpled/base/sipgox"
	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
)

// txHarness is a transaction table on a loopback sipgo user agent whose unmatched responses
// reach the table through its StrayRouter, as in the server, and a peer socket. It returns the
// table, our socket and the peer's.
func txHarness(t testing.TB) (*sipgox.ClientTxs, net.PacketConn, net.PacketConn) {
	t.Helper()
	a := sipgoxtest.NewAgent(t)
	txs := sipgox.NewClientTxs(a.Client)
	a.Strays.Handle(txs.Deliver)
	return txs, a.Conn, sipgoxtest.Listen(t)
}

var branchSeq atomic.Uint64

// message builds a MESSAGE from our socket to peer, with our Via (a fresh branch) on top and
// addressed as a proxy addresses a branch: UDP, the peer's address, from our socket.
func message(t testing.TB, ours, peer net.PacketConn) *sip.Request {
	t.Helper()
	to := peer.LocalAddr().(*net.UDPAddr)
	from := ours.LocalAddr().(*net.UDPAddr)
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: to.Port})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "127.0.0.1", Port: from.Port,
		Params: sip.HeaderParams{{K: "branch", V: "z9hG4bKtest" + strconv.FormatUint(branchSeq.Add(1), 10)}}})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "example.test"}, Params: sip.HeaderParams{{K: "tag", V: "1"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"}})
	cid := sip.CallIDHeader("tx-test")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody([]byte("hi"))
	req.SetTransport("UDP")
	req.SetDestination(to.String())
	req.Laddr = sip.Addr{IP: from.IP, Port: from.Port}
	return req
}

// readRequest reads one datagram from peer, returning its text and sender.
func readRequest(t *testing.T, peer net.PacketConn, wait time.Duration) (string, net.Addr) {
	t.Helper()
	buf := make([]byte, 65535)
	_ = peer.SetReadDeadline(time.Now().Add(wait))
	n, from, err := peer.ReadFrom(buf)
	if err != nil {
		return "", nil
	}
	return string(buf[:n]), from
}

// TestNonInviteRetransmittedUntilAnswered: over UDP the request is sent again on Timer E
// (T1, doubling) until the peer answers; the final response reaches Responses once even when
// the peer repeats it; the transaction then ends without error.
func TestNonInviteRetransmittedUntilAnswered(t *testing.T) {
	t.Cleanup(sipgox.SetTimers(20*time.Millisecond, 80*time.Millisecond, 50*time.Millisecond)) // restored as found, Timer D kept
	txs, ours, peer := txHarness(t)
	tx, err := txs.Start(message(t, ours, peer), 0)
	if err != nil {
		t.Fatal(err)
	}
	first, from := readRequest(t, peer, time.Second)
	again, _ := readRequest(t, peer, time.Second)
	if first == "" || again != first {
		t.Fatalf("no retransmission of the request:\n%q\n%q", first, again)
	}
	for range 2 {
		_, _ = peer.WriteTo([]byte(sipgoxtest.Response(first, "200 OK")), from)
	}
	select {
	case res := <-tx.Responses():
		if res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
	case <-time.After(time.Second):
		t.Fatal("no final response passed up")
	}
	select {
	case res := <-tx.Responses():
		t.Fatalf("the repeated final response was passed up too: %d", res.StatusCode)
	case <-tx.Done():
	case <-time.After(time.Second):
		t.Fatal("transaction did not end after its final response")
	}
	if tx.Err() != nil {
		t.Errorf("Err() = %v after a final response", tx.Err())
	}
	if msg, _ := readRequest(t, peer, 100*time.Millisecond); msg != "" {
		t.Errorf("retransmitted after the final response")
	}
}

// TestNonInviteTimesOut: a peer that never answers ends the transaction with a timeout after
// Timer F (64·T1), which a fork turns into 408.
func TestNonInviteTimesOut(t *testing.T) {
	t.Cleanup(sipgox.SetTimers(5*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond)) // restored as found, Timer D kept
	txs, ours, peer := txHarness(t)
	start := time.Now()
	tx, err := txs.Start(message(t, ours, peer), 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-tx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("no timeout")
	}
	if !errors.Is(tx.Err(), sip.ErrTransactionTimeout) {
		t.Fatalf("Err() = %v, want a timeout", tx.Err())
	}
	if d := time.Since(start); d < 64*5*time.Millisecond {
		t.Errorf("timed out after %v, before Timer F", d)
	}
}

// TestNonInviteRetransmitsCapped: with a cap of 2 a peer that never answers gets the request
// three times in all (not Timer E's schedule until Timer F), and the transaction still ends
// with a timeout.
func TestNonInviteRetransmitsCapped(t *testing.T) {
	t.Cleanup(sipgox.SetTimers(5*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond)) // restored as found, Timer D kept
	txs, ours, peer := txHarness(t)
	tx, err := txs.Start(message(t, ours, peer), 2)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		msg, _ := readRequest(t, peer, 500*time.Millisecond)
		if msg == "" {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("peer got the request %d times, want 3 (the first and 2 retransmissions)", n)
	}
	select {
	case <-tx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("no timeout")
	}
	if !errors.Is(tx.Err(), sip.ErrTransactionTimeout) {
		t.Fatalf("Err() = %v, want a timeout", tx.Err())
	}
}
