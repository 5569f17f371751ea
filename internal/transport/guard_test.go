package transport

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const okRegister = "REGISTER sip:example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK1;rport\r\n" +
	"From: <sip:alice@example.test>;tag=a\r\n" +
	"To: <sip:alice@example.test>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Max-Forwards: 70\r\n" +
	"Content-Length: 0\r\n\r\n"

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
