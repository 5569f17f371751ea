package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// TestBadInput sends hostile and malformed requests; each gets its answer and the server keeps
// serving.
func TestBadInput(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) { o.Limits.MaxBodySize = 1024 })
	valid := servertest.Register("alice", "ok1", 1, "Contact: <sip:alice@127.0.0.1:5070>")
	tests := []struct {
		name string
		tp   string
		msg  string
		want string // regexp on the response, "" for no response
	}{
		{name: "garbage datagram", tp: "udp", msg: "\x00\x01\x02 hello", want: ""},
		{name: "truncated", tp: "udp", msg: valid[:150], want: `^SIP/2.0 400 Truncated Message`},
		{name: "content-length beyond body", tp: "udp", msg: strings.Replace(valid, "Content-Length: 0", "Content-Length: 400", 1), want: `^SIP/2.0 400 Content-Length Exceeds Body`},
		{name: "60 KB header line over udp", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 70\nX-Big: "+strings.Repeat("a", 60000), 1), want: `^SIP/2.0 400 Header Line Too Long`},
		{name: "64 KiB header line over tcp", tp: "tcp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 70\nX-Big: "+strings.Repeat("a", 64<<10), 1), want: `^SIP/2.0 400 Header Too Long`},
		{name: "thousands of contacts", tp: "tcp", msg: servertest.Register("alice", "many", 1, strings.TrimSuffix(strings.Repeat("Contact: <sip:alice@127.0.0.1:5070>\n", 3000), "\n")), want: `^SIP/2.0 403 Too Many Contacts`},
		{name: "invalid contact uri", tp: "udp", msg: servertest.Register("alice", "c2", 1, "Contact: <sip:alice@127.0.0.1:notaport>"), want: `^SIP/2.0 400 Malformed Contact`},
		{name: "negative expires", tp: "udp", msg: servertest.Register("alice", "c3", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: -5"), want: `^SIP/2.0 400 Malformed Expires`},
		{name: "huge expires clamped", tp: "udp", msg: servertest.Register("alice", "c4", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: 999999999999999"), want: `(?s)^SIP/2.0 200 .*expires=7200`},
		{name: "too brief", tp: "udp", msg: servertest.Register("alice", "c5", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: 10"), want: `(?s)^SIP/2.0 423 .*Min-Expires: 60`},
		{name: "non-numeric cseq", tp: "udp", msg: strings.Replace(valid, "CSeq: 1 REGISTER", "CSeq: one REGISTER", 1), want: `^SIP/2.0 400 `},
		{name: "duplicated To", tp: "udp", msg: strings.Replace(valid, "To: <sip:alice@example.test>", "To: <sip:alice@example.test>\nTo: <sip:bob@example.test>", 1), want: `^SIP/2.0 400 Duplicate To`},
		{name: "malformed From", tp: "udp", msg: strings.Replace(valid, "From: <sip:alice@example.test>", "From: <sip:alice@example.test", 1), want: `^SIP/2.0 400 Malformed From`},
		{name: "missing Call-ID", tp: "udp", msg: strings.Replace(valid, "Call-ID: ok1\n", "", 1), want: `^SIP/2.0 400 Missing Call-ID`},
		{name: "missing Max-Forwards", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70\n", "", 1), want: `^SIP/2.0 400 Missing Max-Forwards`},
		{name: "max-forwards 0", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 0", 1), want: `^SIP/2.0 483 `},
		{name: "cseq method mismatch", tp: "udp", msg: strings.Replace(valid, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1), want: `^SIP/2.0 400 CSeq Method Mismatch`},
		{name: "unknown proxy-require", tp: "udp", msg: servertest.Register("alice", "c6", 1, "Proxy-Require: foo"), want: `(?s)^SIP/2.0 420 .*Unsupported: foo`},
		{name: "unknown require on REGISTER", tp: "udp", msg: servertest.Register("alice", "c7", 1, "Require: bar"), want: `(?s)^SIP/2.0 420 .*Unsupported: bar`},
		{name: "body over the limit", tp: "tcp", msg: strings.Replace(servertest.Register("alice", "c8", 1, "Content-Type: text/plain"), "Content-Length: 0\n\n", "Content-Length: 2000\n\n"+strings.Repeat("x", 2000), 1), want: `^SIP/2.0 413 `},
		{name: "sip version 3", tp: "udp", msg: strings.Replace(valid, "SIP/2.0\n", "SIP/3.0\n", 1), want: `^SIP/2.0 505 `},
		// A proxy routes methods it does not know (RFC 3261 §16); addressed to the server
		// itself, such a method gets 405 with Allow.
		{name: "unsupported method", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "FOO sip:example.test", "1 REGISTER", "1 FOO").Replace(valid), want: `(?s)^SIP/2.0 405 .*Allow: [A-Z, ]*REGISTER`},
		{name: "unknown method for a user", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "FOO sip:nobody@example.test", "1 REGISTER", "1 FOO").Replace(valid), want: `^SIP/2.0 404 `},
		{name: "stray CANCEL", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "CANCEL sip:bob@example.test", "1 REGISTER", "1 CANCEL").Replace(valid), want: `^SIP/2.0 481 `},
		{name: "stray ACK is not answered", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "ACK sip:bob@example.test", "1 REGISTER", "1 ACK").Replace(valid), want: ""},
		{name: "options to the server", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "OPTIONS sip:example.test", "1 REGISTER", "1 OPTIONS").Replace(valid), want: `(?s)^SIP/2.0 200 .*Allow: .*Accept: .*Supported: `},
		{name: "options to the server with max-forwards 0", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "OPTIONS sip:example.test", "1 REGISTER", "1 OPTIONS", "Max-Forwards: 70", "Max-Forwards: 0").Replace(valid), want: `^SIP/2.0 200 `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := servertest.Dial(t, tt.tp, srv.Listener(tt.tp))
			w.Send(tt.msg)
			if tt.want == "" {
				w.ExpectNothing(300 * time.Millisecond)
			} else {
				w.Expect(tt.want)
			}
			// The server still serves this client afterwards.
			w2 := servertest.Dial(t, "udp", srv.Listener("udp"))
			w2.Send(servertest.Register("carol", "after-"+strings.ReplaceAll(tt.name, " ", "-"), 1))
			w2.Expect(`^SIP/2.0 200 `)
		})
	}
}

// TestRedisOutage stops Redis under a running simpled: REGISTER gets 503 with Retry-After
// quickly, /readyz turns 503, and everything recovers when Redis is back.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	srv := servertest.Start(t, func(o *config.Options) { o.Store = rs.URL() })
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("alice", "out", 1, "Contact: <sip:alice@127.0.0.1:5070>"))
	w.Expect(`^SIP/2.0 200 `)

	rs.Stop(t)
	start := time.Now()
	w.Send(servertest.Register("alice", "out", 2, "Contact: <sip:alice@127.0.0.1:5070>"))
	res := w.Expect(`^SIP/2.0 503 `)
	if res.GetHeader("Retry-After") == nil {
		t.Errorf("503 without Retry-After:\n%s", res)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("503 took %v", d)
	}
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/readyz", 503)

	rs.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for srv.Ready(ctx) != nil && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	w.Send(servertest.Register("alice", "out", 3, "Contact: <sip:alice@127.0.0.1:5070>"))
	res = w.Expect(`^SIP/2.0 200 `)
	if len(res.GetHeaders("Contact")) != 1 {
		t.Fatalf("binding lost across the outage:\n%s", res)
	}
}
