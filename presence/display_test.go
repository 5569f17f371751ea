package presence

import (
	"testing"
	"time"

	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// TestNotifyWatcherNameStaysQuoted: a watcher's display name that ends in a backslash or an
// escaped quote, or holds quotes, is copied into the NOTIFY's To as a valid quoted-string
// that sipgo parses back to the same name (issue 14: `"a\""` became the unterminated `"a\"`).
func TestNotifyWatcherNameStaysQuoted(t *testing.T) {
	p := newTestPresence(t, PolicyAllow)
	for _, c := range []struct{ from, text string }{
		{`"a\"" <sip:eve@example.test>;tag=1`, `a"`},
		{`"evil\\" <sip:eve@example.test>;tag=1`, `evil\`},
		{`"\"quoted\" \\ name" <sip:eve@example.test>;tag=1`, `"quoted" \ name`},
	} {
		var uri sip.Uri
		var params sip.HeaderParams
		raw, err := sip.ParseAddressValue(c.from, &uri, &params)
		if err != nil {
			t.Fatalf("%s: %v", c.from, err)
		}
		sub := &storage.Subscription{ID: "s1", AOR: "bob@example.test", Event: "presence",
			Watcher: "eve@example.test", WatcherURI: "sip:eve@example.test", WatcherName: sanitizeName(raw),
			CallID: "c1", FromTag: "1", RemoteTarget: "sip:eve@127.0.0.1:5070", State: storage.SubActive,
			ExpiresAt: time.Now().Add(time.Hour)}
		if sub.WatcherName != c.text {
			t.Errorf("%s: stored name %q, want %q", c.from, sub.WatcherName, c.text)
		}
		req, err := p.request(sub, 1, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		wire := req.String()
		msg, err := sip.ParseMessage([]byte(wire))
		if err != nil {
			t.Errorf("%s: the NOTIFY does not parse: %v\n%s", c.from, err, wire)
			continue
		}
		to := msg.(*sip.Request).To()
		if to == nil || to.Address.User != "eve" || sanitizeName(to.DisplayName) != c.text {
			t.Errorf("%s: NOTIFY To %v, want the name %q back\n%s", c.from, to, c.text, wire)
		}
	}
}
