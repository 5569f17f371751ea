package msgcheck

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/simpled/simpled/base/sipx"
)

// message parses a MESSAGE from alice@example.test to bob with the given extra headers and body.
func message(t *testing.T, headers string, body []byte) *sip.Request {
	t.Helper()
	raw := "MESSAGE sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=a\r\n" +
		"To: <sip:bob@example.test>\r\n" +
		"Call-ID: c1@127.0.0.1\r\n" +
		"CSeq: 7 MESSAGE\r\n" +
		headers +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
	msg, err := sipx.NewParser(1 << 20).ParseSIP(append([]byte(raw), body...))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return msg.(*sip.Request)
}

func cpimBody(from, id string) []byte {
	h := "From: " + from + "\r\nTo: <sip:bob@example.test>\r\n"
	if id != "" {
		h += "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: " + id + "\r\n"
	}
	return []byte(h + "\r\nContent-Type: text/plain\r\n\r\nhello")
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

// TestCheck: what a MESSAGE must meet, for each rule it can be accepted under.
func TestCheck(t *testing.T) {
	r := New(Options{
		Domains:     []string{"example.test"},
		IsOurs:      func(h string) bool { return h == "127.0.0.1" },
		Types:       []string{"application/vnd.gsma.rcs-ft-http+xml"},
		MaxBodySize: 64 << 10,
	})
	user := &sipx.State{Rule: sipx.RuleUser, AuthUser: "alice@example.test"}
	tests := []struct {
		name    string
		st      *sipx.State
		headers string
		body    []byte
		code    int
		header  string // a header the refusal must carry
	}{
		{name: "no body", st: user},
		{name: "plain text", st: user, headers: "Content-Type: text/plain;charset=UTF-8\r\n", body: []byte("hi")},
		{name: "configured type", st: user, headers: "Content-Type: application/vnd.gsma.rcs-ft-http+xml\r\n", body: []byte("<x/>")},
		{name: "body without type", st: user, body: []byte("hi"), code: 400},
		{name: "type not allowed", st: user, headers: "Content-Type: application/octet-stream\r\n", body: []byte("x"), code: 415, header: "Accept"},
		{name: "unknown encoding", st: user, headers: "Content-Type: text/plain\r\nContent-Encoding: br\r\n", body: []byte("x"), code: 415, header: "Accept-Encoding"},
		{name: "cpim from the user", st: user, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:alice@example.test>", "")},
		{name: "cpim from our address", st: user, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<im:alice@127.0.0.1>", "")},
		{name: "cpim from someone else", st: user, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:mallory@example.test>", ""), code: 403},
		{name: "cpim without a URI", st: user, headers: "Content-Type: message/cpim\r\n", body: cpimBody("Alice", ""), code: 403},
		{name: "cpim gzipped, someone else", st: user, headers: "Content-Type: message/cpim\r\nContent-Encoding: gzip\r\n", body: gzipped(cpimBody("<sip:mallory@example.test>", "")), code: 403},
		{name: "cpim gzipped, the user", st: user, headers: "Content-Type: message/cpim\r\nContent-Encoding: gzip\r\n", body: gzipped(cpimBody("<sip:alice@example.test>", ""))},
		{name: "cpim deflate garbage", st: user, headers: "Content-Type: message/cpim\r\nContent-Encoding: deflate\r\n", body: []byte("not deflate"), code: 400},
		{name: "cpim malformed", st: user, headers: "Content-Type: message/cpim\r\n", body: []byte("no headers at all"), code: 400},
		{name: "peer vouches", st: &sipx.State{Rule: sipx.RulePeer}, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:anyone@elsewhere.test>", "")},
		{name: "federation, sender's domain", st: &sipx.State{Rule: sipx.RuleFederation}, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:carol@example.test>", "")},
		{name: "federation, another domain", st: &sipx.State{Rule: sipx.RuleFederation}, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:alice@other.test>", ""), code: 403},
		{name: "dialog, the SIP From", st: &sipx.State{Rule: sipx.RuleDialog}, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:alice@example.test>", "")},
		{name: "dialog, another user", st: &sipx.State{Rule: sipx.RuleDialog}, headers: "Content-Type: message/cpim\r\n", body: cpimBody("<sip:bob@example.test>", ""), code: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, hdrs := r.Check(tt.st, message(t, tt.headers, tt.body))
			if code != tt.code {
				t.Fatalf("Check = %d %q, want %d", code, reason, tt.code)
			}
			if strings.ContainsAny(reason, "\r\n") {
				t.Errorf("reason %q spans lines", reason)
			}
			if tt.header != "" && !hasHeader(hdrs, tt.header) {
				t.Errorf("%d without %s: %v", code, tt.header, hdrs)
			}
		})
	}
}

func hasHeader(hs []sip.Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name(), name) && h.Value() != "" {
			return true
		}
	}
	return false
}

// TestDedupKey: a re-sent MESSAGE is known by its IMDN Message-ID whatever its Call-ID, and a
// MESSAGE without one by Call-ID and CSeq.
func TestDedupKey(t *testing.T) {
	a := message(t, "Content-Type: message/cpim\r\n", cpimBody("<sip:alice@example.test>", "m-1"))
	b := message(t, "Content-Type: message/cpim\r\n", cpimBody("<sip:alice@example.test>", "m-1"))
	*b.CallID() = "c2@127.0.0.1"
	if ka, kb := DedupKey(a), DedupKey(b); ka != kb || ka != "imdn:m-1" {
		t.Errorf("same IMDN id, keys %q and %q", ka, kb)
	}
	p := message(t, "Content-Type: text/plain\r\n", []byte("hi"))
	if k := DedupKey(p); k != "c1@127.0.0.1 7" {
		t.Errorf("plain MESSAGE key %q", k)
	}
	if k := DedupKey(message(t, "Content-Type: message/cpim\r\n", cpimBody("<sip:alice@example.test>", ""))); k != "c1@127.0.0.1 7" {
		t.Errorf("CPIM MESSAGE without an IMDN id: key %q", k)
	}
}
