package main

import (
	"bytes"
	"testing"

	"golang.org/x/net/ipv4"
)

// FuzzParse feeds hostile datagrams to what reads the network: the parser, the challenge,
// branch and Call-ID readers, and the responder's answers. None may panic, and the answer
// to a request that parsed must itself parse, with the request's Call-ID and CSeq.
func FuzzParse(f *testing.F) {
	f.Add([]byte(response))
	f.Add([]byte("SUBSCRIBE sip:u000001@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKL1.0.0.1\r\n" +
		"From: <sip:w0@example.test>;tag=a\r\nTo: <sip:u000001@example.test>\r\nCall-ID: 1.0.0@load\r\nCSeq: 1 SUBSCRIBE\r\n" +
		"Contact: <sip:w0@127.0.0.1:1>\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("REGISTER sip:example.test SIP/2.0\nv: x\ni: y\nCSeq: 1 REGISTER\nt: <sip:a@b\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m sipMsg
		ok := parse(b, &m)
		_, _ = parseChallenge(m.authn)
		_, _ = parseBranch(param(m.topVia(), "branch"))
		_, _ = parseCallID(m.callID)
		_ = hostOf(uriOf(m.to))
		if !ok || !m.request {
			return
		}
		s := &server{laddr: "127.0.0.1:5060", opts: respondOpts{auth: true, notify: true}, wms: make([]ipv4.Message, 2)}
		for i := range s.wms {
			s.wms[i].Buffers = make([][]byte, 1)
		}
		s.answer(b, nil)
		for i := 0; i < s.nw; i++ {
			var a sipMsg
			out := s.wms[i].Buffers[0]
			if !parse(out, &a) {
				t.Fatalf("our answer %q to %q does not parse", out, b)
			}
			if !bytes.Equal(a.callID, trim(m.callID)) {
				t.Fatalf("Call-ID %q became %q", m.callID, a.callID)
			}
		}
	})
}
