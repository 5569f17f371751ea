package cpim

import "testing"

// BenchmarkParse parses a typical linphone body (310 bytes, imdn headers, text/plain).
func BenchmarkParse(b *testing.B) {
	body := corpus(b)["linphone-message-udp-29.cpim"]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if m.MessageID() == "" {
			b.Fatal("no Message-ID")
		}
	}
}

// BenchmarkBytes serializes the same body.
func BenchmarkBytes(b *testing.B) {
	m, err := Parse(corpus(b)["linphone-message-udp-29.cpim"])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Bytes()
	}
}
