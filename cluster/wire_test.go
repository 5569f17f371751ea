package cluster

import (
	"reflect"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// An event survives the wire whole (its time to the millisecond); the sender's own node is
// not repeated in each event, another node's is kept; only binding events carry a binding.
func TestWireRoundTrip(t *testing.T) {
	at := time.UnixMilli(1790000000123)
	evs := []storage.Event{
		{Kind: storage.BindingExpired, AOR: "sip:a@x", At: at, Node: "n1", Mailbox: storage.MailboxEmpty,
			Binding: storage.Binding{Key: "k", Contact: "<sip:a@h>", URI: "sip:a@h", Q: 500, CSeq: 3, Path: []string{"<sip:p;lr>"},
				ExpiresAt: time.Unix(1790000100, 0).UTC(), UpdatedAt: time.Unix(1790000000, 0).UTC()}},
		{Kind: storage.NotifyRequested, AOR: "sip:b@x", Node: "n2", IDs: []string{"1", "2"}, Full: true},
		{Kind: storage.PresenceChanged, AOR: "sip:c@x", Node: "n1", Binding: storage.Binding{Key: "dropped"}},
		{Kind: storage.StateChanged, AOR: "d@x", Node: "n1", Package: "dialog"},
		{Kind: storage.SubscriptionEnded, AOR: "e@x", Node: "n1", IDs: []string{"3"}, Reason: "deactivated"},
	}
	var parts [][]byte
	for _, ev := range evs {
		b, err := encodeEvent(&ev, "n1")
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	got, err := decodeEvents(joinEvents(parts), "n1")
	if err != nil {
		t.Fatal(err)
	}
	evs[2].Binding = storage.Binding{}
	if !reflect.DeepEqual(got, evs) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, evs)
	}
	if len(parts[1]) > 80 || len(parts[2]) > 40 {
		t.Errorf("presence events of %d and %d bytes: %s %s", len(parts[1]), len(parts[2]), parts[1], parts[2])
	}
}

// What does not decode is an error, not a panic; an event without a kind is left out.
func TestWireRefuses(t *testing.T) {
	for _, bad := range []string{"", "{", `{"k":"binding.added"}`, `[{"k":1}]`, `[{"b":"x"}]`} {
		if evs, err := decodeEvents([]byte(bad), "n1"); err == nil {
			t.Errorf("%q decoded to %+v", bad, evs)
		}
	}
	evs, err := decodeEvents([]byte(`[{"a":"sip:x@y"},{"k":"presence.rules","a":"sip:z@y"}]`), "n1")
	if err != nil || len(evs) != 1 || evs[0].AOR != "sip:z@y" || evs[0].Node != "n1" {
		t.Errorf("got %+v, %v", evs, err)
	}
}
