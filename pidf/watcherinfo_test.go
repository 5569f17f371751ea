package pidf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// rfc3858Example is the example of RFC 3858 section 6.
const rfc3858Example = `<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"
             version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active"
             id="8ajksjda7s"
             duration-subscribed="509"
             event="approved" >sip:userA@example.net</watcher>
    <watcher status="pending"
             id="hh8juja87s997-ass7"
             display-name="Mr. Subscriber"
             event="subscribe">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>`

func TestParseWatcherInfoRFC(t *testing.T) {
	w, err := ParseWatcherInfo([]byte(rfc3858Example))
	if err != nil {
		t.Fatal(err)
	}
	want := &WatcherInfo{Version: 0, State: "full", Lists: []WatcherList{{
		Resource: "sip:professor@example.net", Package: "presence",
		Watchers: []Watcher{
			{ID: "8ajksjda7s", Status: "active", Event: "approved", URI: "sip:userA@example.net", DurationSubscribed: 509, Expiration: -1},
			{ID: "hh8juja87s997-ass7", Status: "pending", Event: "subscribe", URI: "sip:userB@example.org", DisplayName: "Mr. Subscriber", DurationSubscribed: -1, Expiration: -1},
		},
	}}}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("ParseWatcherInfo() = %+v\nwant %+v", w, want)
	}
	w2, err := ParseWatcherInfo(w.Bytes())
	if err != nil || !reflect.DeepEqual(w2, w) {
		t.Errorf("round trip: %v\n%+v", err, w2)
	}
}

func TestWatcherInfoBytes(t *testing.T) {
	w := &WatcherInfo{Version: 7, State: "partial", Lists: []WatcherList{
		{Resource: "sip:alice@example.test", Package: "presence", Watchers: []Watcher{
			{ID: "w1", Status: "terminated", Event: "rejected", URI: "sip:bob@example.test", DisplayName: `Bob "B" & Co <x>`, DurationSubscribed: 0, Expiration: 600},
			{ID: "w2", Status: "waiting", Event: "timeout", URI: "sip:carol@example.test", DurationSubscribed: -1, Expiration: -1},
		}},
		{Resource: "sip:alice@example.test", Package: "message-summary"},
	}}
	const want = `<?xml version="1.0" encoding="UTF-8"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="7" state="partial">
  <watcher-list resource="sip:alice@example.test" package="presence">
    <watcher id="w1" status="terminated" event="rejected" display-name="Bob &quot;B&quot; &amp; Co &lt;x>" duration-subscribed="0" expiration="600">sip:bob@example.test</watcher>
    <watcher id="w2" status="waiting" event="timeout">sip:carol@example.test</watcher>
  </watcher-list>
  <watcher-list resource="sip:alice@example.test" package="message-summary"/>
</watcherinfo>`
	if got := string(w.Bytes()); got != want {
		t.Errorf("Bytes() =\n%s\nwant\n%s", got, want)
	}
	w2, err := ParseWatcherInfo(w.Bytes())
	if err != nil || !reflect.DeepEqual(w2, w) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, w2, w)
	}
	empty := (&WatcherInfo{}).Bytes()
	if got := string(empty); !strings.HasSuffix(got, `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full"/>`) {
		t.Errorf("empty: %s", got)
	}
	if _, err := ParseWatcherInfo(empty); err != nil {
		t.Error(err)
	}
}

func TestParseWatcherInfoErrors(t *testing.T) {
	wi := func(attrs, inner string) string {
		return `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" ` + attrs + `>` + inner + `</watcherinfo>`
	}
	list := func(w string) string {
		return wi(`version="1" state="full"`, `<watcher-list resource="sip:a@b" package="presence">`+w+`</watcher-list>`)
	}
	tests := []struct {
		name, in string
		want     error
		msg      string
	}{
		{"syntax", `<watcherinfo`, ErrSyntax, ""},
		{"doctype", `<!DOCTYPE watcherinfo>` + wi(`version="0" state="full"`, ""), ErrDoctype, ""},
		{"too large", wi(`version="0" state="full"`, strings.Repeat(" ", MaxSize)), ErrTooLarge, ""},
		{"wrong namespace", `<watcherinfo xmlns="urn:x" version="0" state="full"/>`, ErrNamespace, `"urn:x"`},
		{"wrong root", `<watcher-list xmlns="urn:ietf:params:xml:ns:watcherinfo"/>`, ErrInvalid, "want watcherinfo"},
		{"no version", wi(`state="full"`, ""), ErrInvalid, "version"},
		{"negative version", wi(`version="-1" state="full"`, ""), ErrInvalid, "version"},
		{"huge version", wi(`version="4294967296" state="full"`, ""), ErrInvalid, "version"},
		{"bad state", wi(`version="0" state="some"`, ""), ErrInvalid, `state "some"`},
		{"list without resource", wi(`version="0" state="full"`, `<watcher-list package="presence"/>`), ErrInvalid, "resource"},
		{"watcher without id", list(`<watcher status="active" event="approved">sip:x@y</watcher>`), ErrInvalid, "without id"},
		{"bad status", list(`<watcher id="1" status="happy" event="approved">sip:x@y</watcher>`), ErrInvalid, `status "happy"`},
		{"bad event", list(`<watcher id="1" status="active" event="party">sip:x@y</watcher>`), ErrInvalid, `event "party"`},
		{"bad duration", list(`<watcher id="1" status="active" event="approved" duration-subscribed="-5">sip:x@y</watcher>`), ErrInvalid, "duration-subscribed"},
		{"bad expiration", list(`<watcher id="1" status="active" event="approved" expiration="soon">sip:x@y</watcher>`), ErrInvalid, "expiration"},
		{"no URI", list(`<watcher id="1" status="active" event="approved"> </watcher>`), ErrInvalid, "without URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWatcherInfo([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseWatcherInfo() = %+v, %v; want %v", w, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}
