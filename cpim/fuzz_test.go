package cpim

import (
	"bytes"
	"testing"
)

// FuzzRoundTrip checks that Parse never panics and that what it accepts serializes (Bytes) to
// a body that parses back to an equal Message and serializes to the same bytes again. Seeds:
// the linphone bodies of testdata with CRLF and with bare LF, plus hand-written edge cases
// (folding, prefixes, Content-Length padding, limits, malformed lines).
func FuzzRoundTrip(f *testing.F) {
	for _, b := range corpus(f) {
		f.Add(b)
		f.Add(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
	}
	for _, s := range []string{
		"",
		"\n\n",
		"From: a\n\nContent-Type: text/plain",
		"From: a\r\n\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi\r\n",
		"Subject:;lang=fr Bonjour\n\nContent-Type: text/plain\n\n",
		"x.Message-ID: 1\nNS: x <urn:ietf:params:imdn>\nimdn.Message-ID: 2\n\ncontent-type: a/b\n\n\x00\xff",
		"NS: <urn:x>\nNS: imdn <urn:other>\nimdn.Message-ID: 3\n\nContent-Type: a/b\n\n",
		"\nContent-Type: text/plain;\n\tcharset=utf-8\n \n\nhi",
		"\nContent-Type:\n text/plain\n\n",
		"Subject: a\n b\n\nContent-Type: a/b\n\n",
		"foo.Bar: x\n\nContent-Type: a/b\n\n",
		"NS: a b <c>\n\nContent-Type: a/b\n\n",
		"\nContent-Type: a/b\nContent-Length: 9\n\nhi",
		"Subject: h\xc3\xa9llo\n\nContent-Type: a/b\n\n",
		"Subject: \xff\n\nContent-Type: a/b\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Parse(in)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned a message with error %v", err)
			}
			return
		}
		_, _ = m.DateTime()
		_ = m.MessageID()
		_ = m.DispositionNotification()
		out := m.Bytes()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, in, err)
		}
		if !equal(again, m) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", in, again, m)
		}
		if again.MessageID() != m.MessageID() {
			t.Fatalf("MessageID %q after round trip, was %q", again.MessageID(), m.MessageID())
		}
		if out2 := again.Bytes(); !bytes.Equal(out2, out) {
			t.Fatalf("Bytes not stable:\n%q\n%q", out, out2)
		}
	})
}
