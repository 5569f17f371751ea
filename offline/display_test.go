package offline

import (
	"testing"

	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// TestStoredMessageKeepsDisplayName: a stored MESSAGE whose From display name ends in an
// escaped quote or a backslash, or holds a '<', is delivered with a From that parses back
// to the same name (issue 14: trimming quotes by hand left an unterminated quoted-string).
func TestStoredMessageKeepsDisplayName(t *testing.T) {
	for _, from := range []string{
		`"a\"" <sip:alice@example.test>;tag=1`,
		`"evil\\" <sip:alice@example.test>;tag=1`,
		`"x <y> \"z\"" <sip:alice@example.test>;tag=1`,
		`Alice <sip:alice@example.test>;tag=1`,
	} {
		var want sip.Uri
		var params sip.HeaderParams
		name, err := sip.ParseAddressValue(from, &want, &params)
		if err != nil {
			t.Fatal(err)
		}
		req, err := requestOf("bob@example.test", &storage.Message{From: from, To: "<sip:bob@example.test>",
			CallID: "c1", CSeq: 1, ContentType: "text/plain", Body: []byte("hi")})
		if err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		wire := req.String()
		msg, err := sip.ParseMessage([]byte(wire))
		if err != nil {
			t.Errorf("%s: the delivered MESSAGE does not parse: %v\n%s", from, err, wire)
			continue
		}
		got := msg.(*sip.Request).From()
		if got.DisplayName != name || got.Address.User != "alice" {
			t.Errorf("%s: delivered From %q, want the name %q", from, got.Value(), name)
		}
	}
}
