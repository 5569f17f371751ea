package sipgox

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ServeUDP answers requests on the socket through the handlers wrapped as the server wraps them
// (Retransmits around OnWorkers), and returns once the socket is closed.
func TestServeUDP(t *testing.T) {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRequest(sip.OPTIONS, Retransmits(NewRetransCache(100, nil), OnWorkers(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeUDP(srv, conn) }()

	peer, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	local := peer.LocalAddr().String()
	msg := "OPTIONS sip:" + conn.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-serve-udp\r\n" +
		"From: <sip:alice@example.test>;tag=1\r\nTo: <sip:" + conn.LocalAddr().String() + ">\r\n" +
		"Call-ID: serve-udp\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	buf := make([]byte, 4096)
	for i := range 2 { // the second is a retransmission, answered from the cache
		if _, err := peer.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("send %d: no answer: %v", i+1, err)
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") {
			t.Fatalf("send %d answered %q", i+1, buf[:n])
		}
	}
	conn.Close()
	select {
	case err := <-served:
		_ = err // after the close it says only that the socket closed
	case <-time.After(5 * time.Second):
		t.Fatal("ServeUDP did not return after the socket closed")
	}
}
