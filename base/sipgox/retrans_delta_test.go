package sipgox

import (
	"bytes"
	"hash/maphash"
	"strings"
	"testing"
)

const deltaRegister = "REGISTER sip:example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ab3c2e;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: \"Alice\" <sip:alice@example.test>;tag=9fxced76sl\r\n" +
	"To: <sip:alice@example.test>\r\n" +
	"Call-ID: 3848276298220188511@192.0.2.10\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n" +
	"Expires: 3600\r\n" +
	"Content-Length: 0\r\n\r\n"

const deltaAnswer = "SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---77ab3c2e;rport=5060;received=192.0.2.10\r\n" +
	"From: \"Alice\" <sip:alice@example.test>;tag=9fxced76sl\r\n" +
	"To: <sip:alice@example.test>;tag=2fm9110cvhpp7\r\n" +
	"Call-ID: 3848276298220188511@192.0.2.10\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Content-Length: 0\r\n" +
	"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n" +
	"Date: Sun, 06 Dec 2026 01:42:06 GMT\r\n\r\n"

// An answer is kept without the lines its request holds (here From, Call-ID, CSeq and
// Content-Length; the Via
// gained rport and received, the To a tag; Content-Length is the same line in both), and the retransmission rebuilds it byte for byte.
// A request that differs in a line the answer took from it does not rebuild it.
func TestAnswerDeltaRoundTrip(t *testing.T) {
	seed := maphash.MakeSeed()
	enc := encodeAnswer(nil, []byte(deltaAnswer), []byte(deltaRegister), seed)
	saved := len("From: \"Alice\" <sip:alice@example.test>;tag=9fxced76sl\r\n") +
		len("Call-ID: 3848276298220188511@192.0.2.10\r\n") + len("CSeq: 2 REGISTER\r\n") +
		len("Content-Length: 0\r\n")
	if want := len(deltaAnswer) - saved + 1 + 8 + 4*answerRef; len(enc) != want {
		t.Fatalf("encoded in %d bytes, want %d (answer %d)", len(enc), want, len(deltaAnswer))
	}
	got, ok := decodeAnswer(nil, enc, []byte(deltaRegister), seed)
	if !ok || string(got) != deltaAnswer {
		t.Fatalf("decoded %v:\n%s\nwant\n%s", ok, got, deltaAnswer)
	}
	other := strings.Replace(deltaRegister, "tag=9fxced76sl", "tag=9fxced76sm", 1)
	if got, ok := decodeAnswer(nil, enc, []byte(other), seed); ok {
		t.Fatalf("a request with another From tag rebuilt\n%s", got)
	}
	// The references hold whatever the lines' places in the request (a longer first line
	// shifts them all): the hash, not the places, decides.
	shifted := strings.Replace(deltaRegister, "Max-Forwards: 70", "Max-Forwards: 69", 1)
	if got, ok := decodeAnswer(nil, enc, []byte(shifted), seed); !ok || string(got) != deltaAnswer {
		t.Fatalf("a request differing only in a line the answer does not hold: %v\n%s", ok, got)
	}
}

// An answer that shares no line with its request is kept whole.
func TestAnswerDeltaNoRefs(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, resp := range []string{"SIP/2.0 200 OK\r\n\r\n", "SIP/2.0 200 OK\r\nX-Only: in the answer, long enough\r\n\r\n", "garbage", ""} {
		enc := encodeAnswer(nil, []byte(resp), []byte(deltaRegister), seed)
		if enc[0] != 0 || string(enc[1:]) != resp {
			t.Errorf("%q encoded as %q", resp, enc)
		}
		if got, ok := decodeAnswer(nil, enc, nil, seed); !ok || string(got) != resp {
			t.Errorf("%q decoded as %q, %v", resp, got, ok)
		}
	}
}

// Whatever the answer and the requests, decoding gives the answer encoded or reports false;
// with the request it was encoded against, the answer.
func FuzzAnswerDelta(f *testing.F) {
	f.Add([]byte(deltaAnswer), []byte(deltaRegister), []byte(deltaRegister))
	f.Add([]byte(deltaAnswer), []byte(deltaRegister), []byte(strings.ReplaceAll(deltaRegister, "\r\n", "\n")))
	f.Add([]byte("SIP/2.0 200 OK\r\nA: 0123456789\r\nA: 0123456789\r\n\r\n"), []byte("X\r\nA: 0123456789\r\n"), []byte(""))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n\r\n"), []byte("\r\n\r\n"), []byte("\n"))
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, resp, req, other []byte) {
		enc := encodeAnswer(nil, resp, req, seed)
		got, ok := decodeAnswer(nil, enc, req, seed)
		if !ok || !bytes.Equal(got, resp) {
			t.Fatalf("with its own request: %v\n%q\nwant\n%q", ok, got, resp)
		}
		if got, ok := decodeAnswer(nil, enc, other, seed); ok && !bytes.Equal(got, resp) {
			t.Fatalf("another request rebuilt another answer:\n%q", got)
		}
		// A damaged encoding is refused or decodes to something; it never panics.
		if len(enc) > 2 {
			_, _ = decodeAnswer(nil, enc[:len(enc)/2], req, seed)
		}
	})
}
