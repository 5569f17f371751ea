package redis

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// jsonNames returns the JSON names of T's fields that are stored ("-" is not).
func jsonNames[T any]() []string {
	var out []string
	t := reflect.TypeFor[T]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// storedNames decodes the JSON header of v and returns its names, sorted, checking that the
// names in times are numbers (unix seconds).
func storedNames(t *testing.T, v string, times ...string) []string {
	t.Helper()
	header, _, _ := strings.Cut(v, "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(header), &m); err != nil {
		t.Fatalf("stored %q: %v", v, err)
	}
	for _, name := range times {
		if _, ok := m[name].(float64); !ok {
			t.Errorf("stored %q: %s is %T, want a number of seconds", header, name, m[name])
		}
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRecordNames: each kind is stored under the JSON names of its storage type, every field
// set (a field added to a storage type is stored with no change to the codec), times as
// numbers, and the values the scripts match on start with expires_at.
func TestRecordNames(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	b := storage.Binding{Key: "k", Contact: "c", URI: "u", ExpiresAt: now, Q: 1, CallID: "i", CSeq: 1, Path: []string{"p"},
		InstanceID: "x", RegID: 1, Received: "r", Transport: "t", Flow: "f", Node: "n", UserAgent: "ua", UpdatedAt: now}
	js, err := encodeBinding(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedNames(t, js, "expires_at", "updated_at"), jsonNames[storage.Binding](); !slices.Equal(got, want) {
		t.Errorf("binding stored as %v, want %v", got, want)
	}

	p := storage.Publication{ETag: "e", ContentType: "ct", Body: []byte("b"), ExpiresAt: now, UpdatedAt: now, Source: "s"}
	v, err := encodePublication(&p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedNames(t, string(v), "expires_at", "updated_at"), jsonNames[storage.Publication](); !slices.Equal(got, want) {
		t.Errorf("publication stored as %v, want %v", got, want)
	}
	if !strings.HasPrefix(string(v), `{"expires_at":`) || !strings.HasSuffix(string(v), "}\nb") {
		t.Errorf("publication stored as %q", v)
	}

	sub := storage.Subscription{ID: "i", AOR: "a", Event: "e", Watcher: "w", WatcherURI: "wu", WatcherName: "wn", CallID: "c",
		FromTag: "f", Accept: []string{"x"}, RouteSet: []string{"r"}, RemoteTarget: "rt", RemoteCSeq: 1, Transport: "t",
		Source: "s", State: "active", ExpiresAt: now, CreatedAt: now, Node: "n", NotifyCSeq: 1000}
	if js, err = encodeSubscription(&sub); err != nil {
		t.Fatal(err)
	}
	if got, want := storedNames(t, js, "expires_at", "created_at"), jsonNames[storage.Subscription](); !slices.Equal(got, want) {
		t.Errorf("subscription stored as %v, want %v", got, want)
	}
	if !strings.HasPrefix(js, `{"expires_at":`) {
		t.Errorf("subscription stored as %q", js)
	}

	m := storage.Message{ID: "1", DedupKey: "d", Sender: "s", Foreign: true, CallID: "c", CSeq: 1, From: "f", To: "t", Date: "d",
		ContentType: "ct", ContentEncoding: "ce", Body: []byte("b"), StoredAt: now, ExpiresAt: now}
	if v, err = encodeMessage(&m); err != nil {
		t.Fatal(err)
	}
	if got, want := storedNames(t, string(v), "stored_at", "expires_at"), jsonNames[storage.Message](); !slices.Equal(got, want) {
		t.Errorf("message stored as %v, want %v", got, want)
	}
}

// TestRecordsWrittenBefore: values as the previous versions wrote them (their own field
// order, wire structs of their own) decode to the same records: a node upgraded over an
// existing Redis reads what the old one wrote.
func TestRecordsWrittenBefore(t *testing.T) {
	exp, upd := time.Unix(1893553445, 0).UTC(), time.Unix(1893549845, 0).UTC()

	b, err := decodeBinding(`{"key":"k","contact":"<sip:a@h>","uri":"sip:a@h","expires_at":1893553445,"q":-1,"call_id":"c","cseq":7,"path":["<sip:p;lr>"],"instance_id":"i","reg_id":2,"received":"1.2.3.4:5","transport":"tcp","flow":"f","node":"n","user_agent":"ua","updated_at":1893549845}`)
	if want := (storage.Binding{Key: "k", Contact: "<sip:a@h>", URI: "sip:a@h", ExpiresAt: exp, Q: -1, CallID: "c", CSeq: 7,
		Path: []string{"<sip:p;lr>"}, InstanceID: "i", RegID: 2, Received: "1.2.3.4:5", Transport: "tcp", Flow: "f", Node: "n",
		UserAgent: "ua", UpdatedAt: upd}); err != nil || !reflect.DeepEqual(b, want) {
		t.Errorf("old binding = %+v, %v\nwant %+v", b, err, want)
	}

	p, err := decodePublication("e1", `{"expires_at":1893553445,"content_type":"application/pidf+xml","updated_at":1893549845,"source":"sip:a@h"}`+"\n<presence/>")
	if want := (storage.Publication{ETag: "e1", ContentType: "application/pidf+xml", Body: []byte("<presence/>"), ExpiresAt: exp,
		UpdatedAt: upd, Source: "sip:a@h"}); err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("old publication = %+v, %v\nwant %+v", p, err, want)
	}

	sub, err := decodeSubscription(`{"expires_at":1893553445,"id":"s1","aor":"bob@example.com","event":"presence","watcher":"alice@example.com","watcher_uri":"sip:alice@example.com","watcher_name":"Alice","call_id":"c","from_tag":"ft","accept":["application/pidf+xml"],"route_set":["<sip:p;lr>"],"remote_target":"sip:alice@192.0.2.1","remote_cseq":3,"transport":"udp","source":"192.0.2.1:5060","state":"active","created_at":1893549845,"node":"n1"}`)
	if want := (storage.Subscription{ID: "s1", AOR: "bob@example.com", Event: "presence", Watcher: "alice@example.com",
		WatcherURI: "sip:alice@example.com", WatcherName: "Alice", CallID: "c", FromTag: "ft", Accept: []string{"application/pidf+xml"},
		RouteSet: []string{"<sip:p;lr>"}, RemoteTarget: "sip:alice@192.0.2.1", RemoteCSeq: 3, Transport: "udp", Source: "192.0.2.1:5060",
		State: "active", ExpiresAt: exp, CreatedAt: upd, Node: "n1"}); err != nil || !reflect.DeepEqual(sub, want) {
		t.Errorf("old subscription = %+v, %v\nwant %+v", sub, err, want)
	}

	m, err := decodeMessage("0001", `{"dedup_key":"k","sender":"s","foreign":true,"call_id":"c","cseq":1,"from":"<sip:a@h>","to":"<sip:b@h>","date":"d","content_type":"text/plain","content_encoding":"gzip","stored_at":1893549845,"expires_at":1893553445}`+"\nbody")
	if want := (storage.Message{ID: "0001", DedupKey: "k", Sender: "s", Foreign: true, CallID: "c", CSeq: 1, From: "<sip:a@h>",
		To: "<sip:b@h>", Date: "d", ContentType: "text/plain", ContentEncoding: "gzip", Body: []byte("body"), StoredAt: upd,
		ExpiresAt: exp}); err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("old message = %+v, %v\nwant %+v", m, err, want)
	}

	c, err := decodeCredential(`{"ha1_md5":"a","ha1_sha256":"b"}`)
	if want := (storage.Credential{HA1MD5: "a", HA1SHA256: "b"}); err != nil || c != want {
		t.Errorf("old credential = %+v, %v", c, err)
	}
}

// FuzzAsStored: a binding an update stores, taken as it was sent instead of decoded from the
// script's reply (asStored), is exactly what decoding the stored JSON gives — or asStored
// declines it. A field the JSON changes (a new Binding field encoded another way, a string
// that is not UTF-8) would otherwise make a REGISTER's answer differ from the next lookup.
func FuzzAsStored(f *testing.F) {
	f.Add("<urn:uuid:00000000-0000-0000-0000-000000000001>;reg-id=1", "<sip:alice@192.0.2.1:5060;transport=tcp>;+sip.instance=\"<urn:uuid:1>\"",
		"sip:alice@192.0.2.1:5060;transport=tcp", "call-1@host", "<sip:edge.example.test;lr>", "192.0.2.1:5060", "baresip v3.0 \u00e9", int64(1767225600123456789), 500, uint32(7), 1)
	f.Add("sip:bob@192.0.2.2", "<sip:bob@192.0.2.2>", "sip:bob@192.0.2.2", "c\xffid", "", "", "", int64(0), -1, uint32(0), 0)
	f.Add("k", "<sip:x@y>", "sip:x@y", "<>&\"\\\u2028", "a,b", "[::1]:5060", "ua\x00", int64(-5), 1000, uint32(1<<31), 9)
	f.Fuzz(func(t *testing.T, key, contact, uri, callID, path, received, ua string, nanos int64, q int, cseq uint32, regID int) {
		b := storage.Binding{Key: key, Contact: contact, URI: uri, CallID: callID, CSeq: cseq, Q: q, RegID: regID,
			Received: received, Transport: "udp", Flow: "f" + key, Node: "n1", UserAgent: ua, InstanceID: ua,
			ExpiresAt: time.Unix(0, nanos).In(time.FixedZone("x", 3600)), UpdatedAt: time.Unix(0, nanos/2)}
		if path != "" {
			b.Path = strings.Split(path, ",")
		}
		js, err := encodeBinding(&b)
		if err != nil {
			t.Skip()
		}
		got, ok := asStored(&b)
		if !ok {
			return
		}
		want, err := decodeBinding(js)
		if err != nil {
			t.Fatalf("stored JSON does not decode: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("taken as sent:\n%+v\ndecoded:\n%+v", got, want)
		}
		if len(b.Path) > 0 && &got.Path[0] == &b.Path[0] {
			t.Fatal("the result shares the update's Path")
		}
	})
}

// TestUpdatedReplyElements: the update script names a binding it just stored by the number of
// its change; a number out of range or an element of another type is a corrupt reply, never a
// binding taken from the wrong change.
func TestUpdatedReplyElements(t *testing.T) {
	s := &Store{}
	s.decoded.clone = cloneBinding
	a := storage.Binding{Key: "a", Contact: "<sip:a@h>", URI: "sip:a@h", CallID: "c", CSeq: 1, ExpiresAt: time.Unix(100, 0)}
	b := a
	b.Key, b.CSeq = "b", 2
	var sent []sentBinding
	for _, x := range []*storage.Binding{&a, &b} {
		js, err := encodeBinding(x)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, sentBinding{js: js, b: x})
	}
	dec := s.updated(sent)
	if got, err := dec(int64(1)); err != nil || got.Key != "b" || got.CSeq != 2 {
		t.Errorf("change 1 = %+v, %v; want binding b", got, err)
	}
	if got, err := dec(sent[0].js); err != nil || got.Key != "a" {
		t.Errorf("JSON of a = %+v, %v", got, err)
	}
	for _, bad := range []any{int64(2), int64(-1), []byte("x"), nil} {
		if got, err := dec(bad); err == nil {
			t.Errorf("element %#v decoded to %+v, want an error", bad, got)
		}
	}
}
