// Package sipgoxtest gives the unit tests of what sends SIP (client transactions, delivery,
// offline, the proxy) one sipgo user agent on a loopback UDP socket, wired as the server wires
// it (stray responses through a sipgox.StrayRouter), and devices: UDP sockets that answer
// every request with a fixed status. It is a test helper; no production code imports it.
package sipgoxtest

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/simpled/simpled/base/sipgox"
)

// Agent is a sipgo user agent serving a loopback UDP socket. Everything it opens is closed
// when the test ends.
type Agent struct {
	Client *sipgo.Client
	Server *sipgo.Server
	// Strays receives the responses no client transaction of sipgo's matched; hand it the
	// client transactions and the proxy's stray handler as the server does.
	Strays *sipgox.StrayRouter
	// Conn is the socket Server reads; requests sent through Client leave from it.
	Conn net.PacketConn
}

// NewAgent starts an Agent and returns once its socket is served.
func NewAgent(t testing.TB) *Agent {
	t.Helper()
	a := &Agent{Strays: &sipgox.StrayRouter{}}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(
		sip.WithTransactionLayerUnhandledResponseHandler(a.Strays.Serve)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	if a.Server, err = sipgo.NewServer(ua); err != nil {
		t.Fatal(err)
	}
	if a.Client, err = sipgo.NewClient(ua); err != nil {
		t.Fatal(err)
	}
	a.Conn = Listen(t)
	go func() { _ = a.Server.ServeUDP(a.Conn) }() // ends when Conn closes
	time.Sleep(50 * time.Millisecond)             // ServeUDP registered the socket with sipgo
	return a
}

// Addr is the address of the Agent's socket.
func (a *Agent) Addr() netip.AddrPort {
	return a.Conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Listen opens a UDP socket on 127.0.0.1, closed when the test ends.
func Listen(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// Answer makes pc a device: it answers every request it receives with code ("200 OK"; ""
// answers nothing) until pc closes, and passes each request's text on. Requests the reader
// does not take are dropped rather than stalling the device (the channel holds 64).
func Answer(pc net.PacketConn, code string) <-chan string {
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := string(buf[:n])
			select {
			case got <- req:
			default:
			}
			if code != "" {
				_, _ = pc.WriteTo([]byte(Response(req, code)), from)
			}
		}
	}()
	return got
}

// Response is the response with status line "SIP/2.0 "+code to the request text req: its Via,
// From, To, Call-ID and CSeq copied, no body.
func Response(req, code string) string {
	out := []string{"SIP/2.0 " + code}
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		switch strings.ToLower(strings.TrimSpace(strings.SplitN(l, ":", 2)[0])) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}
