package transport

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v3"
	"go.uber.org/zap"
)

const okRegister = "REGISTER sip:example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK1;rport\r\n" +
	"From: <sip:alice@example.test>;tag=a\r\n" +
	"To: <sip:alice@example.test>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Max-Forwards: 70\r\n" +
	"Content-Length: 0\r\n\r\n"

// TestCheckHeaders: on a stream, what sipgo's stream parser would close the connection for is
// refused (to be answered first); a response's fault is never answered.
func TestCheckHeaders(t *testing.T) {
	head := func(msg string) []byte {
		i := strings.Index(msg, "\r\n")
		return []byte(msg[i+2 : len(msg)-2])
	}
	if v := CheckHeaders(head(okRegister), false); v.Code != 0 {
		t.Errorf("valid request: %+v", v)
	}
	noCL := strings.Replace(okRegister, "Content-Length: 0\r\n", "", 1)
	if v := CheckHeaders(head(noCL), false); v.Code != 400 || v.Reason != "Missing Content-Length" {
		t.Errorf("no Content-Length on a stream: %+v", v)
	}
	if v := CheckHeaders(head(strings.Replace(okRegister, "Content-Length: 0", "Content-Length: -999", 1)), true); v.Code != -1 {
		t.Errorf("response with a bad Content-Length: %+v, want dropped", v)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		bufLen int
		code   int
		reason string
	}{
		{name: "valid request", data: okRegister, code: 0},
		{name: "keepalive", data: "\r\n\r\n", code: 0},
		{name: "no content-length on udp (linphone)", data: strings.Replace(okRegister, "Content-Length: 0\r\n", "", 1), code: 0},
		{name: "garbage", data: "\x16\x03\x01hello world", code: -1},
		{name: "http request", data: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", code: -1},
		{name: "truncated headers", data: okRegister[:120], code: 400, reason: "Truncated Message"},
		{name: "content-length larger than body", data: strings.Replace(okRegister, "Content-Length: 0", "Content-Length: 10", 1) + "abc", code: 400, reason: "Content-Length Exceeds Body"},
		{name: "compact content-length larger", data: strings.Replace(okRegister, "Content-Length: 0", "l: 10", 1), code: 400},
		{name: "content-length not a number", data: strings.Replace(okRegister, "Content-Length: 0", "Content-Length: x", 1), code: 400, reason: "Malformed Content-Length"},
		{name: "content-length smaller than body", data: strings.Replace(okRegister, "Content-Length: 0", "Content-Length: 2", 1) + "abcdef", code: 0},
		{name: "header line of 64 KiB", data: strings.Replace(okRegister, "Max-Forwards: 70", "X-Big: "+strings.Repeat("a", 64<<10), 1), bufLen: 1 << 20, code: 400, reason: "Header Line Too Long"},
		{name: "datagram filling the buffer", data: okRegister + strings.Repeat("x", 100), bufLen: len(okRegister) + 100, code: 513},
		{name: "bad request-uri", data: strings.Replace(okRegister, "sip:example.test SIP", "sip:exa mple SIP", 1), code: 400},
		{name: "sip version 3", data: strings.Replace(okRegister, "example.test SIP/2.0", "example.test SIP/3.0", 1), code: 505},
		{name: "response passes", data: "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n", code: 0},
		// RFC 4475 §3.1.2.10: trailing blanks after the version were dropped unanswered.
		{name: "request line with trailing blanks", data: strings.Replace(okRegister, "SIP/2.0\r\n", "SIP/2.0  \r\n", 1), code: 400, reason: "Malformed Request-Line"},
		// §3.3.3: a well-formed URI of another scheme is 416, not a parse error.
		{name: "other scheme", data: strings.Replace(okRegister, "sip:example.test SIP", "soap.beep://192.0.2.103:3002 SIP", 1), code: 416},
		// §3.1.2.4: a sequence number over 2^31-1 got sipgo's bare 400.
		{name: "cseq too large", data: strings.Replace(okRegister, "CSeq: 1 ", "CSeq: 36893488147419103232 ", 1), code: 400, reason: "Malformed CSeq"},
		{name: "cseq folded", data: strings.Replace(okRegister, "CSeq: 1 REGISTER", "CSeq: 0009\r\n  REGISTER", 1), code: 0},
		// §3.3.9.
		{name: "two content-lengths", data: strings.Replace(okRegister, "Max-Forwards: 70", "l: 0", 1), code: 400, reason: "Duplicate Content-Length"},
		// §3.1.2.19: a response that cannot be parsed is dropped, never answered.
		{name: "status code too large", data: "SIP/2.0 4294967301 better not\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n", code: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufLen := tt.bufLen
			if bufLen == 0 {
				bufLen = 65535
			}
			v := Check([]byte(tt.data), bufLen)
			if v.Code != tt.code {
				t.Fatalf("Check = %d %q, want %d", v.Code, v.Reason, tt.code)
			}
			if tt.reason != "" && v.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", v.Reason, tt.reason)
			}
		})
	}
}

func TestReplyIsParseableAndMatchesRequest(t *testing.T) {
	data := []byte(okRegister[:len(okRegister)-30]) // cut inside the headers
	res := Reply(data, 400, "Truncated Message")
	if res == nil {
		t.Fatal("no reply")
	}
	msg, err := sip.ParseMessage(res)
	if err != nil {
		t.Fatalf("reply does not parse: %v\n%s", err, res)
	}
	r, ok := msg.(*sip.Response)
	if !ok || r.StatusCode != 400 {
		t.Fatalf("reply = %s", res)
	}
	if b, _ := r.Via().Params.Get("branch"); b != "z9hG4bK1" {
		t.Errorf("branch = %q, want the request's", b)
	}
	if r.CallID().Value() != "c1" || r.CSeq().SeqNo != 1 {
		t.Errorf("call-id/cseq not echoed: %s", res)
	}
	if !r.To().Params.Has("tag") {
		t.Errorf("To has no tag: %s", res)
	}
}

func TestReplyNeedsVia(t *testing.T) {
	if res := Reply([]byte("REGISTER sip:x SIP/2.0\r\nFrom: <sip:a@x>\r\n"), 400, "Bad"); res != nil {
		t.Fatalf("replied without a Via: %s", res)
	}
	if res := Reply([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n\r\n"), 400, "Bad"); res != nil {
		t.Fatal("replied to a response")
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(okRegister))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte(okRegister[:60]))
	f.Fuzz(func(t *testing.T, data []byte) {
		v := Check(data, 65535)
		if v.Code > 0 {
			if res := Reply(data, v.Code, v.Reason); res != nil {
				if !bytes.HasPrefix(res, []byte("SIP/2.0 ")) {
					t.Fatalf("reply %q", res)
				}
			}
		}
	})
}

// replayConn is a PacketConn that returns its datagrams in turn, forever, from one source
// address, and swallows writes: the guard's own cost, without a socket.
type replayConn struct {
	net.PacketConn // nil: only ReadFrom and WriteTo are called
	datagrams      [][]byte
	next           int
	from           net.Addr
	writes         int
}

func (c *replayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	d := c.datagrams[c.next%len(c.datagrams)]
	c.next++
	return copy(b, d), c.from, nil
}

func (c *replayConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.writes++
	return len(b), nil
}

const okResponse = "SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK1;rport\r\n" +
	"From: <sip:alice@example.test>;tag=a\r\n" +
	"To: <sip:alice@example.test>;tag=b\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Content-Length: 0\r\n\r\n"

func newReplayGuard(datagrams ...string) (*GuardConn, *replayConn) {
	rc := &replayConn{from: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5062}}
	for _, d := range datagrams {
		rc.datagrams = append(rc.datagrams, []byte(d))
	}
	g := NewGuardConn(rc, zap.NewNop())
	g.OnSTUN = func(string) {}
	g.OnKeepalive = func(net.Addr, string) {}
	return g, rc
}

// TestGuardConnAllocs: the guard's ReadFrom allocates nothing on the SIP path beyond what Check
// does (the Request-URI parse of a request; nothing for a response), and nothing for a CRLF
// keepalive, hooks set.
func TestGuardConnAllocs(t *testing.T) {
	buf := make([]byte, 65535)
	for _, tt := range []struct {
		name      string
		datagrams []string
		check     string // the datagram ReadFrom returns
	}{
		{name: "response", datagrams: []string{okResponse}, check: okResponse},
		{name: "request", datagrams: []string{okRegister}, check: okRegister},
		{name: "crlf keepalive then response", datagrams: []string{"\r\n\r\n", okResponse}, check: okResponse},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newReplayGuard(tt.datagrams...)
			data := []byte(tt.check)
			want := testing.AllocsPerRun(200, func() { Check(data, len(buf)) })
			got := testing.AllocsPerRun(200, func() {
				n, _, err := g.ReadFrom(buf)
				if err != nil || string(buf[:n]) != tt.check {
					t.Fatalf("ReadFrom = %q, %v", buf[:n], err)
				}
			})
			if got > want {
				t.Errorf("ReadFrom: %v allocations, Check alone %v", got, want)
			}
			if tt.name != "request" && got != 0 {
				t.Errorf("ReadFrom: %v allocations, want none", got)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	data := []byte(okRegister)
	b.ReportAllocs()
	for b.Loop() {
		if v := Check(data, 65535); v.Code != 0 {
			b.Fatal(v)
		}
	}
}

func BenchmarkGuardReadFrom(b *testing.B) {
	binding := buildSTUN(b, stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw
	for _, bb := range []struct {
		name      string
		datagrams []string
	}{
		{name: "request", datagrams: []string{okRegister}},
		{name: "response", datagrams: []string{okResponse}},
		{name: "crlf+response", datagrams: []string{"\r\n\r\n", okResponse}},
		{name: "stun+response", datagrams: []string{string(binding), okResponse}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			g, _ := newReplayGuard(bb.datagrams...)
			buf := make([]byte, 65535)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := g.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
