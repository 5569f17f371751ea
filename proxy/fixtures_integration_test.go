package proxy_test

import (
	"bytes"
	"compress/zlib"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/simpled/simpled/internal/servertest"
)

// inflatedMarker introduces a deflated body the capture shows inflated.
var inflatedMarker = regexp.MustCompile(`^\[(\d+)-byte body, Content-Encoding: deflate; shown inflated:\]\r\n`)

// wireBody rebuilds the body a fixture message had on the wire: deflated bodies are shown
// inflated in the captures, so they are compressed again (the bytes differ from the original
// capture, but they are binary as the original was, and must arrive unchanged).
func wireBody(t testing.TB, m servertest.Fixture) (head string, body []byte) {
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
	srv := servertest.Start(t, nil)
	n := 0
	for _, m := range append(servertest.LoadFixtures(t, "message-*.txt"), servertest.LoadFixtures(t, "offline-*.txt")...) {
		if m.Method() != "MESSAGE" || !strings.HasSuffix(strings.Fields(m.Text)[1], "@example.test") {
			continue // only client → server requests (the server's relayed copies go to contacts)
		}
		n++
		t.Run(m.File+m.N, func(t *testing.T) {
			tp := strings.ToLower(m.Transport)
			head, body := wireBody(t, m)
			target := strings.TrimPrefix(strings.Fields(head)[1], "sip:")
			user, _, _ := strings.Cut(target, "@")
			dev := servertest.NewUA(t, srv, tp, user)
			// The next case for the same user must not fork to this device's socket, whose
			// port a later socket may reuse.
			t.Cleanup(func() { servertest.Unregister(t, srv, user+"@example.test") })
			sender := servertest.Dial(t, tp, srv.Listener(tp))
			text := head + "\r\n\r\n"
			text = servertest.SetHeader(text, "Route", "<sip:"+srv.Listener(tp)+";transport="+tp+";lr>")
			text = servertest.SetHeader(text, "Content-Length", strconv.Itoa(len(body)))
			text = servertest.SetHeader(text, "Proxy-Authorization", "") // this server has no credentials
			text = regexp.MustCompile(`(?m)^Via: SIP/2.0/(UDP|TCP) [^;]+;`).ReplaceAllString(text, "Via: SIP/2.0/$1 {local};")
			sender.Send(sender.Expand(text) + string(body))
			got := dev.Request("MESSAGE")
			if !bytes.Equal(got.Body(), body) {
				t.Errorf("body changed in transit:\n got %q\nwant %q", got.Body(), body)
			}
			for _, h := range []string{"Content-Type", "Content-Encoding"} {
				if want := m.Header(h); servertest.HeaderValue(got.GetHeader(h)) != want {
					t.Errorf("%s %q, want %q", h, servertest.HeaderValue(got.GetHeader(h)), want)
				}
			}
			dev.Reply(got, 200)
			sender.Expect(`^SIP/2.0 200 `)
		})
	}
	if n == 0 {
		t.Fatal("no MESSAGE in the fixtures")
	}
}

// TestCPIMRelayedToSipgoUA: linphone's CPIM MESSAGE from the captures reaches a sipgo user
// agent byte for byte, Content-Type included, and the UA's 200 reaches the sender.
func TestCPIMRelayedToSipgoUA(t *testing.T) {
	srv := servertest.Start(t, nil)
	var m servertest.Fixture
	for _, f := range servertest.LoadFixtures(t, "message-udp.txt") {
		if f.Method() == "MESSAGE" && f.Header("Content-Type") == "message/cpim" && strings.HasSuffix(strings.Fields(f.Text)[1], "@example.test") {
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
	t.Cleanup(func() { pc.Close() }) // ends ServeUDP
	go func() { _ = uas.ServeUDP(pc) }()

	reg := servertest.Dial(t, "udp", srv.Listener("udp"))
	reg.Send(servertest.Register(user, "sipgo-ua", 1, "Contact: <sip:"+user+"@"+pc.LocalAddr().String()+">"))
	reg.Expect(`^SIP/2.0 200 `)

	sender := servertest.Dial(t, "udp", srv.Listener("udp"))
	text := servertest.SetHeader(head+"\r\n\r\n", "Route", "<sip:"+srv.Listener("udp")+";transport=udp;lr>")
	text = servertest.SetHeader(text, "Content-Length", strconv.Itoa(len(body)))
	text = regexp.MustCompile(`(?m)^Via: SIP/2.0/UDP [^;]+;`).ReplaceAllString(text, "Via: SIP/2.0/UDP {local};")
	sender.Send(sender.Expand(text) + string(body))
	select {
	case req := <-got:
		if !bytes.Equal(req.Body(), body) || req.ContentType().Value() != "message/cpim" {
			t.Fatalf("CPIM changed in transit:\n%q\nwant\n%q", req.Body(), body)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the sipgo UA got no MESSAGE")
	}
	sender.Expect(`^SIP/2.0 200 `)
}
