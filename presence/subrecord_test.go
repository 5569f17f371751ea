package presence

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

func recordSample() storage.Subscription {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return storage.Subscription{ID: "x7Yq2", AOR: "bob@example.test", Event: EventPresence, Watcher: "carol@example.test",
		WatcherURI: "sip:carol@example.test", WatcherName: `Carol "C" Doe`, CallID: "c-1@10.0.0.1", FromTag: "ft-9",
		Accept: []string{TypePIDF, "application/xpidf+xml"}, RouteSet: []string{"<sip:p1.example.test;lr>", "<sip:p2;lr>"},
		RemoteTarget: "sip:carol@10.0.0.1:5062;transport=tcp", RemoteCSeq: 4, Transport: "tcp", Source: "10.0.0.1:5062",
		State: storage.SubActive, ExpiresAt: at.Add(time.Hour), CreatedAt: at, Node: "n1", NotifyCSeq: 2000}
}

// What the notifier keeps of a subscription is the subscription: every field comes back as
// it was, empty and long strings included, and what it hands out is the caller's to change.
func TestSubRecordKeepsTheSubscription(t *testing.T) {
	long := strings.Repeat("r", 70000) // lengths past one and two varint bytes
	for name, sub := range map[string]storage.Subscription{
		"full":  recordSample(),
		"empty": {},
		"long":  {ID: "1", AOR: long, RouteSet: []string{long, "", "x"}, Accept: []string{""}},
	} {
		r := packSub(&sub)
		if got := r.sub(); !reflect.DeepEqual(got, sub) {
			t.Errorf("%s: unpacked\n %+v\nwant\n %+v", name, got, sub)
		}
		if r.field(recAOR) != sub.AOR || r.field(recNode) != sub.Node || r.field(recEvent) != sub.Event {
			t.Errorf("%s: fields read in place differ", name)
		}
		if !r.sameText(&sub) {
			t.Errorf("%s: a record differs from the subscription it was made of", name)
		}
	}
	sub := recordSample()
	r := packSub(&sub)
	got := r.sub()
	got.RouteSet[0] = "<sip:evil;lr>"
	if again := r.sub(); again.RouteSet[0] != sub.RouteSet[0] {
		t.Errorf("changing an unpacked route set changed the record: %q", again.RouteSet[0])
	}
}

// A record follows every change of its subscription: its strings (a refresh from another
// flow, a new owner) and what is not text (expiry, CSeqs).
func TestSubRecordSet(t *testing.T) {
	sub := recordSample()
	r := packSub(&sub)
	sub.ExpiresAt = sub.ExpiresAt.Add(time.Minute)
	sub.NotifyCSeq = 3000
	r.set(&sub)
	if got := r.sub(); !reflect.DeepEqual(got, sub) {
		t.Errorf("after a new expiry: %+v", got)
	}
	sub.Source, sub.RouteSet = "10.0.0.2:5070", sub.RouteSet[:1]
	r.set(&sub)
	if got := r.sub(); !reflect.DeepEqual(got, sub) {
		t.Errorf("after a new source and route set: %+v", got)
	}
	r.setNode("n2", 4000)
	sub.Node, sub.NotifyCSeq = "n2", 4000
	if got := r.sub(); !reflect.DeepEqual(got, sub) {
		t.Errorf("after a takeover: %+v", got)
	}
	if !r.expired(sub.ExpiresAt) || r.expired(sub.ExpiresAt.Add(-time.Nanosecond)) {
		t.Errorf("expired disagrees with storage.Subscription.Expired")
	}
}

// Whatever strings a SUBSCRIBE brought, the record gives them back.
func FuzzSubRecord(f *testing.F) {
	s := recordSample()
	f.Add(s.ID, s.AOR, s.WatcherName, s.RemoteTarget, s.RouteSet[0], s.Accept[0], uint8(2))
	f.Add("", "", "", "", "", "", uint8(0))
	f.Add("\x80\x80\x80", "\xff", "a\x00b", strings.Repeat("\x81", 200), "\x01", "", uint8(5))
	f.Fuzz(func(t *testing.T, id, aor, name, target, route, accept string, n uint8) {
		sub := storage.Subscription{ID: id, AOR: aor, WatcherName: name, RemoteTarget: target, Node: route + accept}
		for i := range int(n % 8) {
			sub.RouteSet = append(sub.RouteSet, route[:min(i, len(route))])
			sub.Accept = append(sub.Accept, accept)
		}
		r := packSub(&sub)
		if got := r.sub(); !reflect.DeepEqual(got, sub) {
			t.Fatalf("unpacked %+v, want %+v", got, sub)
		}
		if !r.sameText(&sub) {
			t.Fatal("a record differs from its subscription")
		}
	})
}
