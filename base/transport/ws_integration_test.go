//go:build linux

package transport_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// wsPhone is a browser-like client (JsSIP's habits) built on sipgo's WebSocket transport — the
// gobwas/ws library simpled serves WebSockets with — over ws or wss: a random ".invalid"
// Contact host nobody can resolve, +sip.instance and reg-id, requests it receives collected.
type wsPhone struct {
	t        *testing.T
	client   *sipgo.Client
	tp       string // WS or WSS
	addr     string // simpled's listener
	user     string
	received chan *sip.Request
}

func newWSPhone(t *testing.T, srv *servertest.Server, scheme, user string) *wsPhone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("ws-phone"),
		sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true})) // the test's self-signed cert
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	client, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	server, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	p := &wsPhone{t: t, client: client, tp: strings.ToUpper(scheme), addr: srv.Listener(scheme), user: user,
		received: make(chan *sip.Request, 16)}
	for _, m := range []sip.RequestMethod{sip.MESSAGE, sip.NOTIFY} {
		server.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			p.received <- req
		})
	}
	return p
}

// do sends a request to simpled over the phone's WebSocket and returns the final response,
// answering a digest challenge (401 or 407) with the password servertest.UsersFile gives the user, as
// JsSIP does.
func (p *wsPhone) do(req *sip.Request) *sip.Response {
	p.t.Helper()
	req.SetTransport(p.tp)
	req.SetDestination(p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: "secret-" + p.user})
	}
	if err != nil {
		p.t.Fatalf("%s over %s: %v", req.Method, p.tp, err)
	}
	return res
}

func (p *wsPhone) Request(method sip.RequestMethod, to sip.Uri, extra ...sip.Header) *sip.Request {
	req := sip.NewRequest(method, to)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: "example.test"},
		Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to.User, Host: "example.test"}})
	for _, h := range extra {
		req.AppendHeader(h)
	}
	return req
}

// next returns the next request the phone received.
func (p *wsPhone) next(method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	select {
	case req := <-p.received:
		if req.Method != method {
			p.t.Fatalf("phone got %s, want %s", req.Method, method)
		}
		return req
	case <-time.After(5 * time.Second):
		p.t.Fatalf("phone got no %s within 5 s", method)
		return nil
	}
}

// A browser-style client over WebSocket (ws and wss) registers, receives and sends MESSAGEs,
// and subscribes to presence: every request for it comes down its own connection, though its
// Contact names an ".invalid" host.
func TestWebSocketClient(t *testing.T) {
	cert, key := servertest.SelfSignedCert(t)
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Listen = append(o.Listen, "ws://127.0.0.1:0", "wss://127.0.0.1:0")
		o.TLSCert, o.TLSKey = cert, key
		o.UsersFile = servertest.UsersFile(t, "bob", "web-ws", "web-wss")
	})
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			user := "web-" + scheme
			phone := newWSPhone(t, srv, scheme, user)
			reg := phone.Request(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.test"},
				sip.NewHeader("Contact", `<sip:k3j2h1@r4nd0m.invalid;transport=`+scheme+`>;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-4000-8000-00000000`+scheme+`01>";expires=600`),
				sip.NewHeader("Supported", "path, gruu, outbound"))
			reg.To().Address.User = user
			if res := phone.do(reg); res.StatusCode != 200 {
				t.Fatalf("REGISTER over %s: %d", scheme, res.StatusCode)
			}
			if reg, body := servertest.Lookup(t, srv, user+"@example.test"); len(reg.Bindings) != 1 || reg.Bindings[0].Transport != scheme {
				t.Fatalf("bindings after REGISTER over %s: %s", scheme, body)
			}

			bob.WithAuth(servertest.Message("bob", user, "ws-in-"+scheme, "text/plain", "to the browser"), "bob", "sip:"+user+"@example.test", "")
			if got := phone.next(sip.MESSAGE); string(got.Body()) != "to the browser" || got.Recipient.User != "k3j2h1" {
				t.Fatalf("MESSAGE at the phone: R-URI %s body %q", got.Recipient.String(), got.Body())
			}
			bob.Expect(`^SIP/2.0 200 `)

			out := phone.Request(sip.MESSAGE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"},
				sip.NewHeader("Content-Type", "text/plain"))
			out.SetBody([]byte("from the browser"))
			go func() { bob.Reply(bob.Request("MESSAGE"), 200) }()
			if res := phone.do(out); res.StatusCode != 200 {
				t.Fatalf("MESSAGE from the phone: %d", res.StatusCode)
			}

			sub := phone.Request(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"},
				sip.NewHeader("Contact", "<sip:k3j2h1@r4nd0m.invalid;transport="+scheme+">"),
				sip.NewHeader("Event", "presence"), sip.NewHeader("Expires", "600"))
			if res := phone.do(sub); res.StatusCode != 200 || res.Contact() == nil {
				t.Fatalf("SUBSCRIBE over %s: %d, Contact %v", scheme, res.StatusCode, res.Contact())
			}
			if n := phone.next(sip.NOTIFY); !strings.HasPrefix(servertest.SubState(n), "active") {
				t.Fatalf("NOTIFY Subscription-State %q", servertest.SubState(n))
			}
		})
	}
}
