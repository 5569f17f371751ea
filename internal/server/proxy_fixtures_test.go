package server

import (
	"bytes"
	"compress/zlib"
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// inflatedMarker introduces a deflated body the capture shows inflated.
var inflatedMarker = regexp.MustCompile(`^\[(\d+)-byte body, Content-Encoding: deflate; shown inflated:\]\r\n`)

// wireBody rebuilds the body a fixture message had on the wire: deflated bodies are shown
// inflated in the captures, so they are compressed again (the bytes differ from the original
// capture, but they are binary as the original was, and must arrive unchanged).
func wireBody(t testing.TB, m fixtureMessage) (head string, body []byte) {
	t.Helper()
	head, text, _ := strings.Cut(m.Text, "\r\n\r\n")
	if loc := inflatedMarker.FindStringIndex(text); loc != nil {
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		_, _ = zw.Write([]byte(text[loc[1]:]))
		_ = zw.Close()
		return head, buf.Bytes()
	}
	return head, []byte(text)
}

// TestFixtureMessagesRelayed replays every MESSAGE a real client sent to the server in the
// captures: the recipient (registered by a test UA on the same transport) must get it with the
// body, Content-Type and Content-Encoding byte for byte as sent, and the sender the 200.
func TestFixtureMessagesRelayed(t *testing.T) {
	srv := startServer(t, nil)
	n := 0
	for _, m := range append(loadFixtures(t, "message-*.txt"), loadFixtures(t, "offline-*.txt")...) {
		if m.Method() != "MESSAGE" || !strings.HasSuffix(strings.Fields(m.Text)[1], "@example.test") {
			continue // only client → server requests (the server's relayed copies go to contacts)
		}
		n++
		t.Run(m.File+m.N, func(t *testing.T) {
			tp := strings.ToLower(m.Transport)
			head, body := wireBody(t, m)
			target := strings.TrimPrefix(strings.Fields(head)[1], "sip:")
			user, _, _ := strings.Cut(target, "@")
			dev := newUA(t, srv, tp, user)
			// The next case for the same user must not fork to this device's socket, whose
			// port a later socket may reuse.
			t.Cleanup(func() { _, _ = srv.registrar.Remove(context.Background(), user+"@example.test") })
			sender := dial(t, tp, srv.Listener(tp))
			text := head + "\r\n\r\n"
			text = setHeader(text, "Route", "<sip:"+srv.Listener(tp)+";transport="+tp+";lr>")
			text = setHeader(text, "Content-Length", strconv.Itoa(len(body)))
			text = setHeader(text, "Proxy-Authorization", "") // this server has no credentials
			text = regexp.MustCompile(`(?m)^Via: SIP/2.0/(UDP|TCP) [^;]+;`).ReplaceAllString(text, "Via: SIP/2.0/$1 {local};")
			sender.send(sender.expand(text) + string(body))
			got := dev.request("MESSAGE")
			if !bytes.Equal(got.Body(), body) {
				t.Errorf("body changed in transit:\n got %q\nwant %q", got.Body(), body)
			}
			for _, h := range []string{"Content-Type", "Content-Encoding"} {
				if want := m.header(h); headerValue(got.GetHeader(h)) != want {
					t.Errorf("%s %q, want %q", h, headerValue(got.GetHeader(h)), want)
				}
			}
			dev.reply(got, 200)
			sender.expect(`^SIP/2.0 200 `)
		})
	}
	if n == 0 {
		t.Fatal("no MESSAGE in the fixtures")
	}
}

func headerValue(h interface{ Value() string }) string {
	if h == nil {
		return ""
	}
	return h.Value()
}

// TestCPIMRelayedToSipgoUA: linphone's CPIM MESSAGE from the captures reaches a sipgo user
// agent byte for byte, Content-Type included, and the UA's 200 reaches the sender.
func TestCPIMRelayedToSipgoUA(t *testing.T) {
	srv := startServer(t, nil)
	var m fixtureMessage
	for _, f := range loadFixtures(t, "message-udp.txt") {
		if f.Method() == "MESSAGE" && f.header("Content-Type") == "message/cpim" && strings.HasSuffix(strings.Fields(f.Text)[1], "@example.test") {
			m = f
			break
		}
	}
	if m.Text == "" {
		t.Fatal("no CPIM MESSAGE in message-udp.txt")
	}
	head, body := wireBody(t, m)
	user, _, _ := strings.Cut(strings.TrimPrefix(strings.Fields(head)[1], "sip:"), "@")

	ua, err := sipgo.NewUA(sipgo.WithUserAgent(user))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	uas, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *sip.Request, 1)
	uas.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		got <- req
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = uas.ServeUDP(pc) }()

	reg := dial(t, "udp", srv.Listener("udp"))
	reg.send(register(user, "sipgo-ua", 1, "Contact: <sip:"+user+"@"+pc.LocalAddr().String()+">"))
	reg.expect(`^SIP/2.0 200 `)

	sender := dial(t, "udp", srv.Listener("udp"))
	text := setHeader(head+"\r\n\r\n", "Route", "<sip:"+srv.Listener("udp")+";transport=udp;lr>")
	text = setHeader(text, "Content-Length", strconv.Itoa(len(body)))
	text = regexp.MustCompile(`(?m)^Via: SIP/2.0/UDP [^;]+;`).ReplaceAllString(text, "Via: SIP/2.0/UDP {local};")
	sender.send(sender.expand(text) + string(body))
	select {
	case req := <-got:
		if !bytes.Equal(req.Body(), body) || req.ContentType().Value() != "message/cpim" {
			t.Fatalf("CPIM changed in transit:\n%q\nwant\n%q", req.Body(), body)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the sipgo UA got no MESSAGE")
	}
	sender.expect(`^SIP/2.0 200 `)
}
