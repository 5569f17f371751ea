package memory

import (
	"context"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/simpled/simpled/storage"
)

// source stands for a request's header section that parsed values are sub-strings of
// (sipx.LeanParser): nothing the store keeps may point into it, or each stored binding would
// hold a whole request alive.
type source struct {
	text string
	next int
}

func newSource() *source { return &source{text: strings.Repeat("abcdefghij", 2000)} }

// s returns a sub-string of the source's text holding v.
func (src *source) s(v string) string {
	start := src.next
	text := []byte(src.text)
	copy(text[start:], v)
	// Rebuilding the text would move it; write v into a fresh copy and keep that as the text
	// every earlier value was cut from as well.
	src.text = string(text)
	src.next += len(v) + 1
	return src.text[start : start+len(v)]
}

// inside reports whether s's bytes lie in one of the texts the source had.
func inside(s string, texts []string) bool {
	if s == "" {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	for _, t := range texts {
		b := uintptr(unsafe.Pointer(unsafe.StringData(t)))
		if p >= b && p < b+uintptr(len(t)) {
			return true
		}
	}
	return false
}

// Every string the memory store keeps for a binding, subscription, publication, message,
// rule and nonce count is its own: none shares memory with the request text it came from.
func TestStoreKeepsNoRequestText(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	st := New()
	src := newSource()
	var texts []string
	cut := func(v string) string {
		s := src.s(v)
		texts = append(texts, src.text)
		return s
	}
	aor := cut("sip:alice@example.test")
	b := storage.Binding{Key: cut("<urn:uuid:1>"), Contact: cut("<sip:alice@192.0.2.1>"), URI: cut("sip:alice@192.0.2.1"),
		ExpiresAt: now.Add(time.Hour), CallID: cut("call-1"), CSeq: 1, Path: []string{cut("<sip:edge>")},
		InstanceID: cut("<urn:uuid:1>"), Received: cut("192.0.2.1:5060"), Transport: cut("udp"), Flow: cut("flow"),
		Node: cut("n1"), UserAgent: cut("phone/1.0"), UpdatedAt: now}
	if _, err := st.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
		t.Fatal(err)
	}
	b.CSeq, b.CallID = 2, cut("call-1") // a refresh, its strings cut from a new request
	if _, err := st.UpdateBindings(ctx, cut("sip:alice@example.test"), storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
		t.Fatal(err)
	}
	sub := storage.Subscription{ID: cut("sub-1"), AOR: aor, Event: cut("presence"), Watcher: cut("sip:bob@example.test"),
		WatcherURI: cut("sip:bob@example.test"), WatcherName: cut("Bob"), CallID: cut("call-2"), FromTag: cut("ft"),
		Accept: []string{cut("application/pidf+xml")}, RouteSet: []string{cut("<sip:edge;lr>")}, RemoteTarget: cut("sip:bob@192.0.2.2"),
		RemoteCSeq: 1, Transport: cut("udp"), Source: cut("192.0.2.2:5060"), State: cut("active"), ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := st.PutSubscription(ctx, sub, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, cut("sip:alice@example.test"), storage.PublishOp{Now: now, NewETag: cut("etag-1"),
		ContentType: cut("application/pidf+xml"), Body: []byte("<presence/>"), ExpiresAt: now.Add(time.Hour), Source: cut("192.0.2.1:5060")}); err != nil {
		t.Fatal(err)
	}
	msg := storage.Message{DedupKey: cut("dk"), Sender: cut("sip:bob@example.test"), CallID: cut("call-3"), CSeq: 1,
		From: cut("<sip:bob@example.test>"), To: cut("<sip:alice@example.test>"), ContentType: cut("text/plain"),
		Body: []byte("hi"), StoredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, _, err := st.StoreMessage(ctx, cut("sip:alice@example.test"), msg, storage.MailboxLimits{}, now); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRule(ctx, cut("sip:alice@example.test"), cut("sip:bob@example.test"), cut(storage.RuleAllow)); err != nil {
		t.Fatal(err)
	}
	epoch, err := st.NonceEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.UseNonceCount(ctx, epoch, cut("nonce-1"), 1, time.Minute); err != nil {
		t.Fatal(err)
	}

	var kept []string
	for k, m := range st.aors {
		kept = append(kept, k)
		for k2, e := range m {
			eb := e.b
			kept = append(kept, k2, e.aor, eb.Key, eb.Contact, eb.URI, eb.CallID, eb.InstanceID, eb.Received,
				eb.Transport, eb.Flow, eb.Node, eb.UserAgent)
			kept = append(kept, eb.Path...)
		}
	}
	for k, m := range st.subs.aors {
		kept = append(kept, k)
		for k2, e := range m {
			v := e.v
			kept = append(kept, k2, e.aor, e.key, v.ID, v.AOR, v.Event, v.Watcher, v.WatcherURI, v.WatcherName,
				v.CallID, v.FromTag, v.RemoteTarget, v.Transport, v.Source, v.State)
			kept = append(kept, v.Accept...)
			kept = append(kept, v.RouteSet...)
		}
	}
	for k, m := range st.pubs.aors {
		kept = append(kept, k)
		for k2, e := range m {
			kept = append(kept, k2, e.aor, e.key, e.v.ETag, e.v.ContentType, e.v.Source)
		}
	}
	for k, box := range st.boxes {
		kept = append(kept, k)
		for k2, e := range box.byKey {
			m := e.m
			kept = append(kept, k2, e.aor, m.DedupKey, m.Sender, m.CallID, m.From, m.To, m.ContentType)
		}
	}
	for k, m := range st.rules {
		kept = append(kept, k)
		for w, r := range m {
			kept = append(kept, w, r)
		}
	}
	for k, r := range st.nonces {
		kept = append(kept, k, r.nonce)
	}
	if len(kept) < 50 {
		t.Fatalf("only %d strings found in the store: the test no longer sees what it stores", len(kept))
	}
	for _, s := range kept {
		if inside(s, texts) {
			t.Errorf("the store keeps %q in the memory of the request text it came from", s)
		}
	}
}
