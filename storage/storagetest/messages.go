package storagetest

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// runMessages checks the offline.MessageStore contract: offline mailboxes (order, byte-exact
// bodies, dedup, limits, expiry, deletion, the expiry sweep) and known users.
func runMessages(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("StoreAndList", func(t *testing.T) { testStoreAndList(t, newStore) })
	t.Run("RoundTrip", func(t *testing.T) { testMessageRoundTrip(t, newStore) })
	t.Run("BinaryBody", func(t *testing.T) { testBinaryBody(t, newStore) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, newStore) })
	t.Run("Limits", func(t *testing.T) { testMailboxLimits(t, newStore) })
	t.Run("SenderQuota", func(t *testing.T) { testSenderQuota(t, newStore) })
	t.Run("ForeignShare", func(t *testing.T) { testForeignShare(t, newStore) })
	t.Run("ExpiredDropped", func(t *testing.T) { testExpiredDropped(t, newStore) })
	t.Run("DeleteMessage", func(t *testing.T) { testDeleteMessage(t, newStore) })
	t.Run("DeleteMessages", func(t *testing.T) { testDeleteMessages(t, newStore) })
	t.Run("HasMessages", func(t *testing.T) { testHasMessages(t, newStore) })
	t.Run("UpdateSeesMailbox", func(t *testing.T) { testUpdateSeesMailbox(t, newStore) })
	t.Run("ExpireMessages", func(t *testing.T) { testExpireMessages(t, newStore) })
	t.Run("ExpireConcurrent", func(t *testing.T) { testExpireConcurrent(t, newStore) })
	t.Run("ConcurrentStores", func(t *testing.T) { testConcurrentStores(t, newStore) })
	t.Run("Known", func(t *testing.T) { testKnown(t, newStore) })
	t.Run("Isolation", func(t *testing.T) { testMailboxIsolation(t, newStore) })
	t.Run("Close", func(t *testing.T) { testMessagesClose(t, newStore) })
}

// msg builds a message with dedup key key, stored at t0+stored and expiring age seconds
// later.
func msg(t0 time.Time, key, body string, stored, age int) storage.Message {
	return storage.Message{
		DedupKey:    key,
		CallID:      "call-" + key,
		CSeq:        1,
		From:        "<sip:bob@example.com>;tag=" + key,
		To:          "<sip:alice@example.com>",
		ContentType: "text/plain",
		Body:        []byte(body),
		StoredAt:    at(t0, stored),
		ExpiresAt:   at(t0, stored+age),
	}
}

// noLimits is a mailbox without limits.
var noLimits = storage.MailboxLimits{}

func mustStore(t *testing.T, s Store, aor string, m storage.Message, lim storage.MailboxLimits, now time.Time) string {
	t.Helper()
	id, dup, err := s.StoreMessage(t.Context(), aor, m, lim, now)
	if err != nil {
		t.Fatalf("StoreMessage(%s, %q): %v", aor, m.DedupKey, err)
	}
	if dup {
		t.Fatalf("StoreMessage(%s, %q): dup, want stored", aor, m.DedupKey)
	}
	if id == "" {
		t.Fatalf("StoreMessage(%s, %q): empty ID", aor, m.DedupKey)
	}
	return id
}

func mustMessages(t *testing.T, s Store, aor string, now time.Time) []storage.Message {
	t.Helper()
	ms, err := s.Messages(t.Context(), aor, now)
	if err != nil {
		t.Fatalf("Messages(%s): %v", aor, err)
	}
	return ms
}

func mustHas(t *testing.T, s Store, aor string, want bool) {
	t.Helper()
	got, err := s.HasMessages(t.Context(), aor)
	if err != nil {
		t.Fatalf("HasMessages(%s): %v", aor, err)
	}
	if got != want {
		t.Fatalf("HasMessages(%s) = %v, want %v", aor, got, want)
	}
}

// dedupKeys returns the DedupKeys of ms in order.
func dedupKeys(ms []storage.Message) []string { return names(ms, dedupKey) }

// dedupKey names a message in failures.
func dedupKey(m storage.Message) string { return m.DedupKey }

// stored returns m as a store returns it: with id, times in whole seconds UTC.
func stored(m storage.Message, id string) storage.Message {
	m.ID = id
	m.StoredAt = time.Unix(m.StoredAt.Unix(), 0).UTC()
	m.ExpiresAt = time.Unix(m.ExpiresAt.Unix(), 0).UTC()
	return m
}

// equalMessages compares two message lists field by field (times with Equal, bodies byte
// by byte, an empty body equal to nil).
func equalMessages(t *testing.T, what string, got, want []storage.Message) {
	t.Helper()
	equalList(t, what, got, want, dedupKey, diffMessage)
}

func diffMessage(got, want storage.Message) string {
	var d []string
	if !got.StoredAt.Equal(want.StoredAt) {
		d = append(d, fmt.Sprintf("StoredAt %v, want %v", got.StoredAt, want.StoredAt))
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		d = append(d, fmt.Sprintf("ExpiresAt %v, want %v", got.ExpiresAt, want.ExpiresAt))
	}
	if got.StoredAt.Location() != time.UTC || got.ExpiresAt.Location() != time.UTC {
		d = append(d, fmt.Sprintf("times not in UTC: %v %v", got.StoredAt, got.ExpiresAt))
	}
	if !bytes.Equal(got.Body, want.Body) {
		d = append(d, fmt.Sprintf("Body %q, want %q", shorten(got.Body), shorten(want.Body)))
	}
	got.StoredAt, want.StoredAt = time.Time{}, time.Time{}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	got.Body, want.Body = nil, nil
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s %#v, want %#v", gv.Type().Field(i).Name, g, w))
		}
	}
	return strings.Join(d, "; ")
}

// shorten keeps failure messages about large bodies readable.
func shorten(b []byte) []byte {
	if len(b) > 64 {
		return append(slices.Clone(b[:64]), "..."...)
	}
	return b
}

// testStoreAndList: messages come back oldest first, with the IDs StoreMessage gave them;
// IDs are distinct and their string order is store order.
func testStoreAndList(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	if got := mustMessages(t, s, aor, t0); got == nil || len(got) != 0 {
		t.Fatalf("Messages(empty) = %#v, want an empty slice", got)
	}
	var want []storage.Message
	// Later messages expire earlier: order is store order, not expiry order.
	for i, key := range []string{"m-c", "m-a", "m-b", "m-10", "m-9"} {
		m := msg(t0, key, "hello "+key, i, 600-i*10)
		id := mustStore(t, s, aor, m, noLimits, at(t0, i))
		if len(want) > 0 && id <= want[len(want)-1].ID {
			t.Fatalf("ID %q of message %d does not sort after %q", id, i, want[len(want)-1].ID)
		}
		want = append(want, stored(m, id))
	}
	equalMessages(t, "Messages", mustMessages(t, s, aor, at(t0, 5)), want)

	// Mutating a returned message, or the one given, must not change the store.
	got := mustMessages(t, s, aor, at(t0, 5))
	got[0].Body[0] = 'X'
	m := msg(t0, "m-mut", "mutable", 6, 600)
	id := mustStore(t, s, aor, m, noLimits, at(t0, 6))
	want = append(want, stored(msg(t0, "m-mut", "mutable", 6, 600), id))
	m.Body[0] = 'X'
	equalMessages(t, "after mutating copies", mustMessages(t, s, aor, at(t0, 6)), want)
}

// testMessageRoundTrip stores a message with every field set and odd values.
func testMessageRoundTrip(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	full := storage.Message{
		ID:              "ignored",
		DedupKey:        `imdn-<id> "quoted" \ back|pipe {tag} ÄÖÜ 日本`,
		CallID:          `a84b4c76e66710@pc33.atlanta.com "q" \ |`,
		CSeq:            1<<32 - 1,
		From:            `"Bob \"B\"" <sip:bob@example.com>;tag=a|b`,
		To:              "<sip:alice@exämple.com>",
		Date:            "Sat, 13 Nov 2010 23:29:00 GMT",
		ContentType:     "message/cpim",
		ContentEncoding: "deflate",
		Body:            []byte("From: <sip:bob@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\r\nContent-Type: text/plain\r\n\r\nhi\n"),
		StoredAt:        t0.Add(400 * time.Millisecond).In(time.FixedZone("X", 3600)),
		ExpiresAt:       at(t0, 3600).Add(900 * time.Millisecond),
	}
	zero := storage.Message{StoredAt: time.Unix(0, 0), ExpiresAt: at(t0, 60)}
	for _, aor := range []string{aor, "we|ird}{@exämple.com", "{}", "100%|%7C@x"} {
		t.Run(aor, func(t *testing.T) {
			s := newStore(t)
			id1 := mustStore(t, s, aor, full, noLimits, t0)
			id2 := mustStore(t, s, aor, zero, noLimits, t0)
			want := []storage.Message{stored(full, id1), stored(zero, id2)}
			equalMessages(t, "Messages", mustMessages(t, s, aor, t0), want)
			// The sweep returns the same fields.
			got, err := s.ExpireMessages(t.Context(), at(t0, 4000), 10)
			if err != nil {
				t.Fatalf("ExpireMessages: %v", err)
			}
			slices.SortFunc(got, func(a, b storage.ExpiredMessage) int { return strings.Compare(a.Message.ID, b.Message.ID) })
			if len(got) != 2 || got[0].AOR != aor || got[1].AOR != aor {
				t.Fatalf("ExpireMessages = %+v, want both messages of %s", got, aor)
			}
			equalMessages(t, "ExpireMessages", []storage.Message{got[0].Message, got[1].Message}, want)
		})
	}
}

// testBinaryBody: bodies are bytes, returned exactly (linphone's IMDNs are deflate blobs).
func testBinaryBody(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	var deflated bytes.Buffer
	w, err := flate.NewWriter(&deflated, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(strings.Repeat(`<imdn><message-id>abc</message-id><delivery-notification><status><delivered/></status></delivery-notification></imdn>`, 3)))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 512)
	for i := range all {
		all[i] = byte(i)
	}
	large := bytes.Repeat([]byte("\x00\xff\n\r{\"}\x80"), 20000)
	bodies := []struct {
		name string
		body []byte
	}{
		{name: "deflate", body: deflated.Bytes()},
		{name: "NUL bytes", body: []byte("\x00\x00a\x00")},
		{name: "every byte value", body: all},
		{name: "invalid UTF-8", body: []byte("\xff\xfe\xc3\x28 \xed\xa0\x80")},
		{name: "leading newline and JSON", body: []byte("\n{\"dedup_key\":\"x\"}\n\n")},
		{name: "CRLF only", body: []byte("\r\n")},
		{name: "large", body: large},
		{name: "empty", body: nil},
	}
	s := newStore(t)
	var want []storage.Message
	for i, b := range bodies {
		m := msg(t0, b.name, "", 0, 600)
		m.Body = b.body
		m.ContentType = "application/im-iscomposing+xml"
		m.ContentEncoding = "deflate"
		want = append(want, stored(m, mustStore(t, s, aor, m, noLimits, at(t0, i))))
	}
	got := mustMessages(t, s, aor, t0)
	equalMessages(t, "Messages", got, want)
	for i := range got {
		if len(got[i].Body) != len(bodies[i].body) {
			t.Errorf("%s: %d body bytes, want %d", bodies[i].name, len(got[i].Body), len(bodies[i].body))
		}
	}
	r := flate.NewReader(bytes.NewReader(got[0].Body))
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil || !strings.HasPrefix(out.String(), "<imdn>") {
		t.Errorf("stored deflate body does not inflate: %v", err)
	}
}

// testDedup: a second message with a stored DedupKey stores nothing and returns the first's
// ID, even when the mailbox is full; once the first is gone the key is free again.
func testDedup(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	first := msg(t0, "imdn-1", "first", 0, 600)
	id := mustStore(t, s, aor, first, noLimits, t0)
	other := mustStore(t, s, aor, msg(t0, "imdn-2", "other", 1, 600), noLimits, at(t0, 1))

	again := msg(t0, "imdn-1", "second body", 2, 900)
	for _, lim := range []storage.MailboxLimits{noLimits, {MaxCount: 2}, {MaxCount: 1, MaxBytes: 1}} {
		gotID, dup, err := s.StoreMessage(ctx, aor, again, lim, at(t0, 2))
		if err != nil || !dup || gotID != id {
			t.Fatalf("StoreMessage(duplicate, %+v) = %q, %v, %v; want %q, true, nil", lim, gotID, dup, err, id)
		}
	}
	want := []storage.Message{stored(first, id), stored(msg(t0, "imdn-2", "other", 1, 600), other)}
	equalMessages(t, "after duplicates", mustMessages(t, s, aor, at(t0, 2)), want)

	// The same key for another AOR is another message.
	mustStore(t, s, "bob@example.com", again, noLimits, at(t0, 2))

	// Deleted: the key is free again.
	if err := s.DeleteMessage(ctx, aor, id); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	id3 := mustStore(t, s, aor, again, noLimits, at(t0, 3))
	if id3 == id {
		t.Errorf("new message got the deleted message's ID %q", id)
	}
	equalMessages(t, "after re-store", mustMessages(t, s, aor, at(t0, 3)), []storage.Message{want[1], stored(again, id3)})

	// Expired: dropped first, so the key is free again too.
	short := msg(t0, "imdn-short", "short", 3, 10) // expires at t0+13
	mustStore(t, s, aor, short, noLimits, at(t0, 3))
	later := msg(t0, "imdn-short", "later", 13, 600)
	id4, dup, err := s.StoreMessage(ctx, aor, later, noLimits, at(t0, 13))
	if err != nil || dup {
		t.Fatalf("StoreMessage(key of an expired message) = %q, %v, %v; want stored", id4, dup, err)
	}
	equalMessages(t, "after expired key", mustMessages(t, s, aor, at(t0, 13)), []storage.Message{want[1], stored(again, id3), stored(later, id4)})
}

// testMailboxLimits: MaxCount and MaxBytes (storage.Message.Size) refuse the message that
// would exceed them, with ErrMailboxFull and nothing written.
func testMailboxLimits(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	// sized is a message of size bytes, all body.
	sized := func(key string, size int) storage.Message {
		m := msg(t0, key, "", 0, 600)
		m.From, m.To, m.ContentType = "", "", ""
		m.Body = bytes.Repeat([]byte{'x'}, size)
		return m
	}
	tests := []struct {
		name    string
		lim     storage.MailboxLimits
		size    int
		wantErr bool
	}{
		{name: "no limits", lim: noLimits, size: 1000},
		{name: "count at the limit", lim: storage.MailboxLimits{MaxCount: 4}, size: 100},
		{name: "count over the limit", lim: storage.MailboxLimits{MaxCount: 3}, size: 100, wantErr: true},
		{name: "bytes at the limit", lim: storage.MailboxLimits{MaxBytes: 400}, size: 100},
		{name: "bytes over the limit", lim: storage.MailboxLimits{MaxBytes: 400}, size: 101, wantErr: true},
		{name: "both, bytes refuse", lim: storage.MailboxLimits{MaxCount: 10, MaxBytes: 350}, size: 51, wantErr: true},
		{name: "both, count refuses", lim: storage.MailboxLimits{MaxCount: 3, MaxBytes: 10000}, size: 10, wantErr: true},
		{name: "both fine", lim: storage.MailboxLimits{MaxCount: 4, MaxBytes: 350}, size: 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			var before []storage.Message
			for i := range 3 {
				m := sized(fmt.Sprintf("k%d", i), 100)
				before = append(before, stored(m, mustStore(t, s, aor, m, noLimits, t0)))
			}
			m := sized("new", tc.size)
			id, dup, err := s.StoreMessage(t.Context(), aor, m, tc.lim, t0)
			if tc.wantErr {
				if !errors.Is(err, storage.ErrMailboxFull) || dup || id != "" {
					t.Fatalf("StoreMessage = %q, %v, %v; want ErrMailboxFull", id, dup, err)
				}
				equalMessages(t, "after ErrMailboxFull", mustMessages(t, s, aor, t0), before)
				return
			}
			if err != nil || dup {
				t.Fatalf("StoreMessage = %q, %v, %v; want stored", id, dup, err)
			}
			equalMessages(t, "Messages", mustMessages(t, s, aor, t0), append(before, stored(m, id)))
		})
	}

	t.Run("one message above MaxBytes", func(t *testing.T) {
		s := newStore(t)
		m := sized("big", 200)
		if _, _, err := s.StoreMessage(t.Context(), aor, m, storage.MailboxLimits{MaxBytes: 199}, t0); !errors.Is(err, storage.ErrMailboxFull) {
			t.Fatalf("err = %v, want ErrMailboxFull", err)
		}
		mustHas(t, s, aor, false)
	})
}

// from returns m sent by sender, foreign or not.
func from(m storage.Message, sender string, foreign bool) storage.Message {
	m.Sender, m.Foreign = sender, foreign
	return m
}

// testSenderQuota: MaxPerSender counts the live messages of one Sender, refuses the one
// beyond with ErrSenderQuota (also ErrMailboxFull) and writes nothing; other senders still
// store; expired messages do not count; Sender and Foreign come back from Messages.
func testSenderQuota(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	lim := storage.MailboxLimits{MaxCount: 10, MaxPerSender: 2}
	var want []storage.Message
	// One of spam's messages expires at t0+5: gone at t0+5, it leaves room for one more.
	short := from(msg(t0, "spam-0", "short", 0, 5), "spam@evil.example", true)
	want = append(want, stored(short, mustStore(t, s, aor, short, lim, t0)))
	m := from(msg(t0, "spam-1", "one", 1, 600), "spam@evil.example", true)
	want = append(want, stored(m, mustStore(t, s, aor, m, lim, at(t0, 1))))
	over := from(msg(t0, "spam-2", "two", 2, 600), "spam@evil.example", true)
	id, dup, err := s.StoreMessage(ctx, aor, over, lim, at(t0, 2))
	if !errors.Is(err, storage.ErrSenderQuota) || !errors.Is(err, storage.ErrMailboxFull) || dup || id != "" {
		t.Fatalf("third message of one sender = %q, %v, %v; want ErrSenderQuota", id, dup, err)
	}
	equalMessages(t, "after ErrSenderQuota", mustMessages(t, s, aor, at(t0, 2)), want)

	// Another sender, local or foreign, has its own quota.
	for i, sender := range []string{"bob@example.com", "eve@evil.example"} {
		m := from(msg(t0, fmt.Sprintf("other-%d", i), "hi", 3, 600), sender, i == 1)
		want = append(want, stored(m, mustStore(t, s, aor, m, lim, at(t0, 3))))
	}
	// The same sender's messages to another AOR count there.
	mustStore(t, s, "bob@example.com", over, lim, at(t0, 3))

	// Once the short message expired, spam may store one more.
	id = mustStore(t, s, aor, over, lim, at(t0, 5))
	want = append(want[1:], stored(over, id))
	equalMessages(t, "after expiry", mustMessages(t, s, aor, at(t0, 5)), want)
	if _, _, err := s.StoreMessage(ctx, aor, from(msg(t0, "spam-3", "x", 5, 600), "spam@evil.example", true), lim, at(t0, 5)); !errors.Is(err, storage.ErrSenderQuota) {
		t.Fatalf("spam beyond its quota again: err = %v, want ErrSenderQuota", err)
	}
	// A duplicate is found before the quota is checked.
	if gotID, dup, err := s.StoreMessage(ctx, aor, over, lim, at(t0, 5)); err != nil || !dup || gotID != id {
		t.Fatalf("duplicate at the quota = %q, %v, %v; want %q, dup", gotID, dup, err, id)
	}
}

// testForeignShare: MaxForeignCount and MaxForeignBytes bound the Foreign messages together
// (ErrForeignShare, also ErrMailboxFull, nothing written), while messages that are not
// foreign still fill the rest of the mailbox up to MaxCount and MaxBytes.
func testForeignShare(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	t.Run("count", func(t *testing.T) {
		s := newStore(t)
		lim := storage.MailboxLimits{MaxCount: 4, MaxForeignCount: 2, MaxPerSender: 10}
		var want []storage.Message
		for i := range 2 {
			m := from(msg(t0, fmt.Sprintf("f%d", i), "spam", 0, 600), fmt.Sprintf("spam%d@evil.example", i), true)
			want = append(want, stored(m, mustStore(t, s, aor, m, lim, t0)))
		}
		m := from(msg(t0, "f2", "spam", 0, 600), "spam2@evil.example", true)
		if id, dup, err := s.StoreMessage(ctx, aor, m, lim, t0); !errors.Is(err, storage.ErrForeignShare) || !errors.Is(err, storage.ErrMailboxFull) || dup || id != "" {
			t.Fatalf("third foreign message = %q, %v, %v; want ErrForeignShare", id, dup, err)
		}
		for i := range 2 {
			m := from(msg(t0, fmt.Sprintf("l%d", i), "hi", 0, 600), "bob@example.com", false)
			want = append(want, stored(m, mustStore(t, s, aor, m, lim, t0)))
		}
		equalMessages(t, "Messages", mustMessages(t, s, aor, t0), want)
		// The mailbox is full now, for everyone.
		if _, _, err := s.StoreMessage(ctx, aor, from(msg(t0, "l2", "hi", 0, 600), "carol@example.com", false), lim, t0); !errors.Is(err, storage.ErrMailboxFull) || errors.Is(err, storage.ErrForeignShare) {
			t.Fatalf("fifth message: err = %v, want ErrMailboxFull only", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s := newStore(t)
		lim := storage.MailboxLimits{MaxBytes: 1000, MaxForeignBytes: 300}
		sized := func(key string, size int, foreign bool) storage.Message {
			m := from(msg(t0, key, "", 0, 600), "s-"+key, foreign)
			m.From, m.To, m.ContentType = "", "", ""
			m.Body = bytes.Repeat([]byte{'x'}, size)
			return m
		}
		mustStore(t, s, aor, sized("f0", 200, true), lim, t0)
		if _, _, err := s.StoreMessage(ctx, aor, sized("f1", 101, true), lim, t0); !errors.Is(err, storage.ErrForeignShare) {
			t.Fatalf("foreign bytes beyond the share: err = %v, want ErrForeignShare", err)
		}
		mustStore(t, s, aor, sized("f1", 100, true), lim, t0)
		mustStore(t, s, aor, sized("l0", 700, false), lim, t0)
		if got := len(mustMessages(t, s, aor, t0)); got != 3 {
			t.Fatalf("%d messages, want 3", got)
		}
	})
	t.Run("sender quota first", func(t *testing.T) {
		s := newStore(t)
		lim := storage.MailboxLimits{MaxPerSender: 1, MaxForeignCount: 1}
		mustStore(t, s, aor, from(msg(t0, "a", "x", 0, 600), "spam@evil.example", true), lim, t0)
		if _, _, err := s.StoreMessage(ctx, aor, from(msg(t0, "b", "x", 0, 600), "spam@evil.example", true), lim, t0); !errors.Is(err, storage.ErrSenderQuota) {
			t.Fatalf("err = %v, want ErrSenderQuota", err)
		}
	})
}

// testExpiredDropped: messages expired at now are not listed, not counted against the
// limits, and dropped when the next message is stored.
func testExpiredDropped(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	a := msg(t0, "a", strings.Repeat("a", 100), 0, 10) // expires at t0+10
	b := msg(t0, "b", strings.Repeat("b", 100), 0, 20) // expires at t0+20
	ida := mustStore(t, s, aor, a, noLimits, t0)
	idb := mustStore(t, s, aor, b, noLimits, t0)

	// At exactly ExpiresAt the message has expired.
	equalMessages(t, "at +9", mustMessages(t, s, aor, at(t0, 9)), []storage.Message{stored(a, ida), stored(b, idb)})
	equalMessages(t, "at +10", mustMessages(t, s, aor, at(t0, 10)), []storage.Message{stored(b, idb)})

	// At +10 a is not counted: a limit of 2 messages and of b's bytes plus c's holds.
	c := msg(t0, "c", strings.Repeat("c", 100), 10, 600)
	lim := storage.MailboxLimits{MaxCount: 2, MaxBytes: b.Size() + c.Size()}
	idc := mustStore(t, s, aor, c, lim, at(t0, 10))
	// a was dropped: it is gone even at an earlier now.
	equalMessages(t, "after store at +10", mustMessages(t, s, aor, at(t0, 5)), []storage.Message{stored(b, idb), stored(c, idc)})
	// Now the limits are reached.
	if _, _, err := s.StoreMessage(t.Context(), aor, msg(t0, "d", "d", 10, 600), lim, at(t0, 10)); !errors.Is(err, storage.ErrMailboxFull) {
		t.Fatalf("StoreMessage over the limit: err = %v, want ErrMailboxFull", err)
	}
	// At +20 b has expired too, which makes room again.
	d := msg(t0, "d", "d", 20, 600)
	idd := mustStore(t, s, aor, d, lim, at(t0, 20))
	equalMessages(t, "at +20", mustMessages(t, s, aor, at(t0, 20)), []storage.Message{stored(c, idc), stored(d, idd)})
}

func testDeleteMessage(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	if err := s.DeleteMessage(ctx, aor, "0000000000000001"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteMessage(empty mailbox) = %v, want ErrNotFound", err)
	}
	var want []storage.Message
	for i := range 3 {
		m := msg(t0, fmt.Sprintf("k%d", i), fmt.Sprintf("body %d", i), 0, 10+i)
		want = append(want, stored(m, mustStore(t, s, aor, m, noLimits, t0)))
	}
	bobID := mustStore(t, s, "bob@example.com", msg(t0, "k0", "bob's", 0, 600), noLimits, t0)

	tests := []struct {
		name    string
		aor, id string
		wantErr error
		left    []storage.Message
	}{
		{name: "middle", aor: aor, id: want[1].ID, left: []storage.Message{want[0], want[2]}},
		{name: "again", aor: aor, id: want[1].ID, wantErr: storage.ErrNotFound, left: []storage.Message{want[0], want[2]}},
		{name: "unknown ID", aor: aor, id: "nope", wantErr: storage.ErrNotFound, left: []storage.Message{want[0], want[2]}},
		{name: "empty ID", aor: aor, id: "", wantErr: storage.ErrNotFound, left: []storage.Message{want[0], want[2]}},
		{name: "other AOR's ID", aor: "carol@example.com", id: bobID, wantErr: storage.ErrNotFound, left: []storage.Message{want[0], want[2]}},
		{name: "first", aor: aor, id: want[0].ID, left: []storage.Message{want[2]}},
		// Expired but not yet swept: it is still there to delete.
		{name: "expired", aor: aor, id: want[2].ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.DeleteMessage(ctx, tc.aor, tc.id)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
			equalMessages(t, "left", mustMessages(t, s, aor, t0), tc.left)
		})
	}
	mustHas(t, s, aor, false)
	// Deleted messages are not expired later; bob's is.
	got, err := s.ExpireMessages(ctx, at(t0, 1000), 100)
	if err != nil || len(got) != 1 || got[0].AOR != "bob@example.com" || got[0].Message.ID != bobID {
		t.Fatalf("ExpireMessages = %+v, %v; want only bob's", got, err)
	}
}

func testDeleteMessages(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	if n, err := s.DeleteMessages(ctx, aor); err != nil || n != 0 {
		t.Fatalf("DeleteMessages(empty) = %d, %v; want 0", n, err)
	}
	mustStore(t, s, aor, msg(t0, "a", "a", 0, 5), noLimits, t0) // expired at the deletion
	mustStore(t, s, aor, msg(t0, "b", "b", 0, 600), noLimits, t0)
	mustStore(t, s, aor, msg(t0, "c", "c", 0, 600), noLimits, t0)
	bob := mustStore(t, s, "bob@example.com", msg(t0, "a", "bob's", 0, 5), noLimits, t0)
	if n, err := s.DeleteMessages(ctx, aor); err != nil || n != 3 {
		t.Fatalf("DeleteMessages = %d, %v; want 3", n, err)
	}
	mustHas(t, s, aor, false)
	equalMessages(t, "after", mustMessages(t, s, aor, t0), nil)
	if n, err := s.DeleteMessages(ctx, aor); err != nil || n != 0 {
		t.Fatalf("DeleteMessages again = %d, %v; want 0", n, err)
	}
	// Bob's mailbox is untouched, and only his message expires later.
	if got := dedupKeys(mustMessages(t, s, "bob@example.com", t0)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("bob's messages = %v", got)
	}
	got, err := s.ExpireMessages(ctx, at(t0, 1000), 100)
	if err != nil || len(got) != 1 || got[0].Message.ID != bob {
		t.Fatalf("ExpireMessages = %+v, %v; want only bob's", got, err)
	}
	// The mailbox takes messages again.
	mustStore(t, s, aor, msg(t0, "a", "a", 0, 600), noLimits, t0)
}

// testHasMessages: expired messages count until they are swept or dropped.
func testHasMessages(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	mustHas(t, s, aor, false)
	mustStore(t, s, aor, msg(t0, "a", "a", 0, 10), noLimits, t0)
	mustHas(t, s, aor, true)
	mustHas(t, s, "bob@example.com", false)
	equalMessages(t, "Messages at +10", mustMessages(t, s, aor, at(t0, 10)), nil)
	mustHas(t, s, aor, true) // expired, not yet swept
	if got, err := s.ExpireMessages(t.Context(), at(t0, 10), 10); err != nil || len(got) != 1 {
		t.Fatalf("ExpireMessages = %+v, %v", got, err)
	}
	mustHas(t, s, aor, false)
}

// testUpdateSeesMailbox: a binding update reports whether the AOR's mailbox holds a message
// (what offline delivery after a registration needs), for that AOR only.
func testUpdateSeesMailbox(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	if res := mustUpdate(t, s, aor, update(t0, bnd(t0, "sip:a@192.0.2.1", "c1", 1, 0, 600))); res.Mailbox != storage.MailboxEmpty {
		t.Fatalf("Mailbox before any message = %v, want MailboxEmpty", res.Mailbox)
	}
	mustStore(t, s, aor, msg(t0, "a", "a", 0, 100), noLimits, t0)
	if res := mustUpdate(t, s, aor, update(at(t0, 1), bnd(t0, "sip:a@192.0.2.1", "c1", 2, 1, 600))); res.Mailbox != storage.MailboxHasMessages {
		t.Fatalf("Mailbox with a stored message = %v, want MailboxHasMessages", res.Mailbox)
	}
	if res := mustUpdate(t, s, "bob@example.com", update(at(t0, 1), bnd(t0, "sip:b@192.0.2.2", "c2", 1, 1, 600))); res.Mailbox != storage.MailboxEmpty {
		t.Fatalf("another AOR's Mailbox = %v, want MailboxEmpty", res.Mailbox)
	}
}

// testExpireMessages: each expired message once, limit respected, deleted messages and
// live ones not returned.
func testExpireMessages(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	if _, err := s.ExpireMessages(ctx, t0, 0); err == nil {
		t.Errorf("ExpireMessages(limit 0) succeeded")
	}
	if got, err := s.ExpireMessages(ctx, t0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ExpireMessages(empty) = %+v, %v", got, err)
	}

	want := map[string]storage.Message{} // aor|dedup key → message expected from the sweep
	for i := range 12 {
		a := fmt.Sprintf("user%d@example.com", i%5)
		m := msg(t0, fmt.Sprintf("m%d", i), fmt.Sprintf("body %d", i), 0, 10+i) // expire t0+10..t0+21
		want[a+"|"+m.DedupKey] = stored(m, mustStore(t, s, a, m, noLimits, t0))
	}
	mustStore(t, s, "user0@example.com", msg(t0, "live", "live", 0, 1000), noLimits, t0)
	// Delivered before expiry: not returned.
	if err := s.DeleteMessage(ctx, "user1@example.com", want["user1@example.com|m1"].ID); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	delete(want, "user1@example.com|m1")

	if got, err := s.ExpireMessages(ctx, at(t0, 9), 100); err != nil || len(got) != 0 {
		t.Fatalf("ExpireMessages(+9) = %+v, %v; want none", got, err)
	}
	seen := map[string]bool{}
	collect := func(now time.Time, limit int) int {
		t.Helper()
		got, err := s.ExpireMessages(ctx, now, limit)
		if err != nil {
			t.Fatalf("ExpireMessages: %v", err)
		}
		if len(got) > limit {
			t.Fatalf("ExpireMessages returned %d > limit %d", len(got), limit)
		}
		for _, e := range got {
			id := e.AOR + "|" + e.Message.DedupKey
			if seen[id] {
				t.Fatalf("%s returned twice", id)
			}
			seen[id] = true
			w, ok := want[id]
			if !ok {
				t.Fatalf("ExpireMessages returned %s, which is not expected", id)
			}
			if e.Message.ExpiresAt.After(now) {
				t.Fatalf("%s returned at %v but expires %v", id, now, e.Message.ExpiresAt)
			}
			if d := diffMessage(e.Message, w); d != "" {
				t.Fatalf("%s: %s", id, d)
			}
		}
		return len(got)
	}
	// At +15: m0 and m2..m5 (m1 was deleted), in batches of 2: 2, 2, 1.
	var counts []int
	for {
		n := collect(at(t0, 15), 2)
		counts = append(counts, n)
		if n < 2 {
			break
		}
	}
	if !slices.Equal(counts, []int{2, 2, 1}) {
		t.Fatalf("batches at +15 = %v, want [2 2 1] (%v)", counts, seen)
	}
	for {
		if collect(at(t0, 100), 3) < 3 {
			break
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("expired %d messages, want %d", len(seen), len(want))
	}
	if got := dedupKeys(mustMessages(t, s, "user0@example.com", at(t0, 100))); !slices.Equal(got, []string{"live"}) {
		t.Fatalf("user0 after the sweeps = %v, want [live]", got)
	}
	for i := range 5 {
		mustHas(t, s, fmt.Sprintf("user%d@example.com", i), i == 0)
	}
}

// testExpireConcurrent: sweepers racing on one store return each message once in total.
func testExpireConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const aors, per = 20, 5
	for i := range aors {
		for j := range per {
			mustStore(t, s, fmt.Sprintf("u%d@example.com", i), msg(t0, fmt.Sprintf("m%d", j), "x", 0, 1+j), noLimits, t0)
		}
	}
	SweptOnce(t, at(t0, 10), 7, aors*per, slices.Repeat([]Sweep{MessageSweep(s)}, 8)...)
}

// testConcurrentStores: StoreMessage is atomic: racing stores respect the limit exactly, get
// distinct IDs, and one DedupKey is stored once.
func testConcurrentStores(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const workers, rounds, maxCount = 8, 10, 25
	lim := storage.MailboxLimits{MaxCount: maxCount}
	var (
		mu        sync.Mutex
		ids       = map[string]bool{} // IDs of alice's stored messages
		full      int                 // alice's refused messages
		bobIDs    = map[string]bool{} // IDs returned for bob's one DedupKey
		bobStored int                 // of those, how many stored (not dup)
		wg        sync.WaitGroup
		errs      = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				id, dup, err := s.StoreMessage(t.Context(), aor, msg(t0, fmt.Sprintf("w%d-r%d", w, r), "x", 0, 600), lim, t0)
				bobID, bobDup, bobErr := s.StoreMessage(t.Context(), "bob@example.com", msg(t0, "same", "x", 0, 600), noLimits, t0)
				mu.Lock()
				switch {
				case bobErr != nil:
					errs <- fmt.Errorf("worker %d round %d: bob: %w", w, r, bobErr)
				case errors.Is(err, storage.ErrMailboxFull):
					full++
				case err != nil || dup:
					errs <- fmt.Errorf("worker %d round %d: %q, %v, %w", w, r, id, dup, err)
				case ids[id]:
					errs <- fmt.Errorf("ID %q handed out twice", id)
				default:
					ids[id] = true
				}
				bobIDs[bobID] = true
				if !bobDup {
					bobStored++
				}
				mu.Unlock()
				if len(errs) > 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(ids) != maxCount || full != workers*rounds-maxCount {
		t.Fatalf("%d stored, %d refused; want %d and %d", len(ids), full, maxCount, workers*rounds-maxCount)
	}
	if got := mustMessages(t, s, aor, t0); len(got) != maxCount {
		t.Fatalf("%d messages stored, want %d", len(got), maxCount)
	}
	if bobStored != 1 || len(bobIDs) != 1 {
		t.Fatalf("one DedupKey stored concurrently %d times under %d IDs; want once, one ID", bobStored, len(bobIDs))
	}
}

// testKnown: MarkKnown extends and never shortens; Known holds while until is after now.
func testKnown(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	mark := func(aor string, until time.Time) {
		t.Helper()
		if err := s.MarkKnown(ctx, aor, until); err != nil {
			t.Fatalf("MarkKnown(%s): %v", aor, err)
		}
	}
	check := func(step, aor string, now time.Time, want bool) {
		t.Helper()
		got, err := s.Known(ctx, aor, now)
		if err != nil {
			t.Fatalf("%s: Known(%s): %v", step, aor, err)
		}
		if got != want {
			t.Fatalf("%s: Known(%s, +%v) = %v, want %v", step, aor, now.Sub(t0), got, want)
		}
	}
	check("never marked", aor, t0, false)
	mark(aor, at(t0, 100).Add(900*time.Millisecond)) // whole seconds: until t0+100
	check("marked", aor, at(t0, 99), true)
	check("at until", aor, at(t0, 100), false)
	check("other AOR", "bob@example.com", t0, false)

	mark(aor, at(t0, 50)) // earlier: no change
	check("not shortened", aor, at(t0, 80), true)
	mark(aor, at(t0, 100)) // equal: no change
	check("equal", aor, at(t0, 99), true)
	mark(aor, at(t0, 200))
	check("extended", aor, at(t0, 150), true)
	check("extended, at until", aor, at(t0, 200), false)

	// Marked with an until already past: not known, and a later mark still extends.
	mark("bob@example.com", at(t0, -10))
	check("past until", "bob@example.com", t0, false)
	mark("bob@example.com", at(t0, 10))
	check("past until extended", "bob@example.com", t0, true)
}

// testMailboxIsolation: one AOR's mailbox, limits and IDs never touch another's, whatever
// the AOR's characters (hash-tag braces, the index's separators).
func testMailboxIsolation(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	aors := []string{aor, "bob@example.com", "{alice@example.com}", "alice@example.com|x", "al%7Cice@example.com"}
	lim := storage.MailboxLimits{MaxCount: 2}
	ids := map[string][]string{}
	for _, a := range aors {
		for i := range 2 {
			ids[a] = append(ids[a], mustStore(t, s, a, msg(t0, fmt.Sprintf("k%d", i), a, 0, 10+i), lim, t0))
		}
	}
	// Every mailbox is full on its own.
	for _, a := range aors {
		if _, _, err := s.StoreMessage(ctx, a, msg(t0, "k9", a, 0, 60), lim, t0); !errors.Is(err, storage.ErrMailboxFull) {
			t.Errorf("%s: third message: err = %v, want ErrMailboxFull", a, err)
		}
		got := mustMessages(t, s, a, t0)
		if len(got) != 2 || string(got[0].Body) != a || string(got[1].Body) != a {
			t.Errorf("%s: messages %+v", a, got)
		}
	}
	// Deleting one AOR's messages leaves the others.
	if err := s.DeleteMessage(ctx, aors[2], ids[aors[2]][0]); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	if n, err := s.DeleteMessages(ctx, aors[3]); err != nil || n != 2 {
		t.Fatalf("DeleteMessages = %d, %v", n, err)
	}
	for _, a := range aors {
		want := 2
		switch a {
		case aors[2]:
			want = 1
		case aors[3]:
			want = 0
		}
		if got := mustMessages(t, s, a, t0); len(got) != want {
			t.Errorf("%s: %d messages, want %d", a, len(got), want)
		}
	}
	// The sweep reports each message under its own AOR.
	got, err := s.ExpireMessages(ctx, at(t0, 100), 100)
	if err != nil {
		t.Fatalf("ExpireMessages: %v", err)
	}
	for _, e := range got {
		if string(e.Message.Body) != e.AOR {
			t.Errorf("message of %s reported for %s", e.Message.Body, e.AOR)
		}
	}
	if len(got) != 2*len(aors)-3 {
		t.Errorf("ExpireMessages returned %d messages, want %d", len(got), 2*len(aors)-3)
	}
}

func testMessagesClose(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t0 := base()
	if _, _, err := s.StoreMessage(ctx, aor, msg(t0, "k", "x", 0, 60), noLimits, t0); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("StoreMessage after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Messages(ctx, aor, t0); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Messages after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Known(ctx, aor, t0); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Known after Close = %v, want ErrUnavailable", err)
	}
}
