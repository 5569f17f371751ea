package redis_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
	"github.com/simpled/simpled/storage/storagetest"

	goredis "github.com/redis/go-redis/v9"
)

// offline builds a message for key, stored at now and expiring after age.
func offline(now time.Time, key string, body []byte, age time.Duration) storage.Message {
	return storage.Message{
		DedupKey: key, From: "<sip:bob@example.com>;tag=1", To: "<sip:alice@example.com>",
		ContentType: "text/plain", Body: body, StoredAt: now, ExpiresAt: now.Add(age),
	}
}

// indexShard returns the exp:{n} key holding member, or "" when none does.
func indexShard(t *testing.T, c goredis.UniversalClient, member string) string {
	t.Helper()
	found := ""
	for n := range 16 {
		k := fmt.Sprintf("exp:{%d}", n)
		_, err := c.ZScore(t.Context(), k, member).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			t.Fatalf("ZSCORE: %v", err)
		}
		if found != "" {
			t.Fatalf("member %s in %s and %s", member, found, k)
		}
		found = k
	}
	return found
}

// TestMessageKeys checks the documented layout of offline messages and known users, and the
// TTL backstops.
func TestMessageKeys(t *testing.T) { testMessageKeys(t, redistest.Start(t).URL()) }

func testMessageKeys(t *testing.T, url string) {
	grace := 10 * time.Minute
	s := connect(t, url, redis.Options{KeyGrace: grace})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "bob@example.com"
	body := []byte("\x00bin\nary\xff")
	m1 := offline(now, "imdn-1", body, 60*time.Second)
	m2 := offline(now, "imdn-2", []byte("hi"), 600*time.Second)
	id1, _, err := s.StoreMessage(ctx, aor, m1, storage.MailboxLimits{}, now)
	if err != nil {
		t.Fatalf("StoreMessage: %v", err)
	}
	id2, _, err := s.StoreMessage(ctx, aor, m2, storage.MailboxLimits{}, now)
	if err != nil {
		t.Fatalf("StoreMessage: %v", err)
	}
	if len(id1) != 16 || strings.Trim(id1, "0123456789") != "" || id2 <= id1 {
		t.Errorf("IDs %q, %q: want 16 digits, increasing", id1, id2)
	}

	// msg:{aor}: id → JSON header (unix-second times), newline, the raw body.
	v, err := c.HGet(ctx, "msg:{"+aor+"}", id1).Result()
	if err != nil {
		t.Fatalf("HGET msg: %v", err)
	}
	header, rest, _ := strings.Cut(v, "\n")
	if rest != string(body) || !strings.Contains(header, fmt.Sprintf(`"expires_at":%d`, now.Unix()+60)) || !strings.Contains(header, `"dedup_key":"imdn-1"`) {
		t.Errorf("stored message = %q", v)
	}
	// msgid:{aor}: dedup key → "<id> <expires_at> <size> <foreign> <sender>".
	if v, err := c.HGet(ctx, "msgid:{"+aor+"}", "imdn-1").Result(); err != nil || v != fmt.Sprintf("%s %d %d 0 %s", id1, now.Unix()+60, m1.Size(), m1.Sender) {
		t.Errorf("HGET msgid = %q, %v", v, err)
	}
	// Both keys: TTL = latest expiry + grace.
	want := 600*time.Second + grace
	for _, k := range []string{"msg:{" + aor + "}", "msgid:{" + aor + "}"} {
		if pttl, err := c.PTTL(ctx, k).Result(); err != nil || pttl > want || pttl < want-5*time.Second {
			t.Errorf("PTTL %s = %v, %v; want about %v", k, pttl, err, want)
		}
	}
	// exp:{n}: one member per message, score = expiry, in the shard of the AOR's bindings.
	if _, err := s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{
		Key: "k", ExpiresAt: now.Add(time.Minute), CallID: "c", CSeq: 1, UpdatedAt: now,
	}}}}); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}
	shard := indexShard(t, c, "msg|"+aor+"|"+id1)
	if shard == "" || shard != indexShard(t, c, "reg|"+aor+"|k") {
		t.Errorf("message entry in shard %q, binding entry elsewhere", shard)
	}
	if score, err := c.ZScore(ctx, shard, "msg|"+aor+"|"+id2).Result(); err != nil || int64(score) != now.Unix()+600 {
		t.Errorf("exp score = %v, %v; want %d", score, err, now.Unix()+600)
	}

	// DeleteMessage removes the index entry too; the last one deletes both keys.
	if err := s.DeleteMessage(ctx, aor, id1); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	if got := indexShard(t, c, "msg|"+aor+"|"+id1); got != "" {
		t.Errorf("index entry of a deleted message left in %s", got)
	}
	if n, err := c.HLen(ctx, "msgid:{"+aor+"}").Result(); err != nil || n != 1 {
		t.Errorf("HLEN msgid after one delete = %d, %v", n, err)
	}
	if err := s.DeleteMessage(ctx, aor, id2); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	if n, err := c.Exists(ctx, "msg:{"+aor+"}", "msgid:{"+aor+"}").Result(); err != nil || n != 0 {
		t.Errorf("keys of an empty mailbox: exists=%d, %v", n, err)
	}
	// DeleteMessages removes the index entries as well.
	id3, _, err := s.StoreMessage(ctx, aor, m1, storage.MailboxLimits{}, now)
	if err != nil {
		t.Fatalf("StoreMessage: %v", err)
	}
	if n, err := s.DeleteMessages(ctx, aor); err != nil || n != 1 {
		t.Fatalf("DeleteMessages = %d, %v", n, err)
	}
	if got := indexShard(t, c, "msg|"+aor+"|"+id3); got != "" {
		t.Errorf("index entry left by DeleteMessages in %s", got)
	}
	if n, err := c.Exists(ctx, "msg:{"+aor+"}", "msgid:{"+aor+"}").Result(); err != nil || n != 0 {
		t.Errorf("keys after DeleteMessages: exists=%d, %v", n, err)
	}

	checkKnownKey(t, s, aor, now, grace)
}

// checkKnownKey checks known:{aor}: until in unix seconds; the key expires grace after until,
// and a mark with an earlier until changes neither.
func checkKnownKey(t *testing.T, s *redis.Store, aor string, now time.Time, grace time.Duration) {
	t.Helper()
	ctx, c := t.Context(), s.Client()
	until := now.Add(time.Hour)
	if err := s.MarkKnown(ctx, aor, until); err != nil {
		t.Fatalf("MarkKnown: %v", err)
	}
	if err := s.MarkKnown(ctx, aor, now.Add(time.Minute)); err != nil {
		t.Fatalf("MarkKnown: %v", err)
	}
	if v, err := c.Get(ctx, "known:{"+aor+"}").Result(); err != nil || v != fmt.Sprint(until.Unix()) {
		t.Errorf("GET known = %q, %v; want %d", v, err, until.Unix())
	}
	want := time.Until(until.Add(grace))
	if pttl, err := c.PTTL(ctx, "known:{"+aor+"}").Result(); err != nil || pttl > want+time.Second || pttl < want-5*time.Second {
		t.Errorf("PTTL known = %v, %v; want about %v", pttl, err, want)
	}
}

// TestSweepKinds: the binding sweep and the message sweep share the index, each takes only
// its own entries, and a backlog of one kind's due entries does not hide the other's.
func TestSweepKinds(t *testing.T) { testSweepKinds(t, redistest.Start(t).URL()) }

func testSweepKinds(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "kinds@example.com"
	if _, err := s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{
		Key: "k", ExpiresAt: now.Add(10 * time.Second), CallID: "c", CSeq: 1, UpdatedAt: now,
	}}}}); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}
	id, _, err := s.StoreMessage(ctx, aor, offline(now, "m", []byte("x"), 10*time.Second), storage.MailboxLimits{}, now)
	if err != nil {
		t.Fatalf("StoreMessage: %v", err)
	}
	shard := indexShard(t, c, "reg|"+aor+"|k")
	// A backlog of other kinds' due entries, earlier than both, in the same shard: a
	// presence sweep that never ran, say.
	var backlog []goredis.Z
	for i := range 300 {
		backlog = append(backlog, goredis.Z{Score: float64(now.Unix() - 100), Member: fmt.Sprintf("pub|x%d@example.com|e", i)})
	}
	if err := c.ZAdd(ctx, shard, backlog...).Err(); err != nil {
		t.Fatal(err)
	}
	late := now.Add(time.Minute)
	sw, err := s.SweepExpired(ctx, late, 1)
	if err != nil || len(sw) != 1 || sw[0].Binding.Key != "k" {
		t.Fatalf("SweepExpired = %+v, %v; want the binding", sw, err)
	}
	if sw, err := s.SweepExpired(ctx, late, 10); err != nil || len(sw) != 0 {
		t.Fatalf("SweepExpired again = %+v, %v; want none", sw, err)
	}
	// The message's entry is still there for its own sweep.
	if got := indexShard(t, c, "msg|"+aor+"|"+id); got != shard {
		t.Fatalf("message entry in %q after the binding sweep, want %s", got, shard)
	}
	ex, err := s.ExpireMessages(ctx, late, 1)
	if err != nil || len(ex) != 1 || ex[0].Message.ID != id {
		t.Fatalf("ExpireMessages = %+v, %v; want the message", ex, err)
	}
	if ex, err := s.ExpireMessages(ctx, late, 10); err != nil || len(ex) != 0 {
		t.Fatalf("ExpireMessages again = %+v, %v; want none", ex, err)
	}
	// The other kind's entries are untouched.
	if n, err := c.ZCard(ctx, shard).Result(); err != nil || n != 300 {
		t.Errorf("ZCARD %s = %d, %v; want the 300 foreign entries", shard, n, err)
	}
}

// TestExpireMessagesAcrossNodes: several Stores (nodes) expiring messages on one Redis at
// once return each message exactly once in total.
func TestExpireMessagesAcrossNodes(t *testing.T) {
	testExpireMessagesAcrossNodes(t, redistest.Start(t).URL())
}

func testExpireMessagesAcrossNodes(t *testing.T, url string) {
	const nodes, aors, per = 4, 50, 4
	stores := connectNodes(t, url, nodes)
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	for i := range aors {
		for j := range per {
			m := offline(now, fmt.Sprintf("m%d", j), []byte("x"), time.Duration(1+j)*time.Second)
			if _, _, err := stores[i%nodes].StoreMessage(ctx, fmt.Sprintf("u%d@example.com", i), m, storage.MailboxLimits{}, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	var sweeps []storagetest.Sweep
	for _, s := range stores {
		sweeps = append(sweeps, storagetest.MessageSweep(s), storagetest.MessageSweep(s))
	}
	storagetest.SweptOnce(t, now.Add(10*time.Second), 9, aors*per, sweeps...)
}

// TestMessagesCorrupt: stored values that do not decode give errors, never panics, do not
// wedge the sweep, and do not block the mailbox.
func TestMessagesCorrupt(t *testing.T) { testMessagesCorrupt(t, redistest.Start(t).URL()) }

func testMessagesCorrupt(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "eve@example.com"
	for _, v := range []string{"no header", "not json\nbody", `{"expires_at":"soon"}` + "\n", "[]\n"} {
		t.Run(v, func(t *testing.T) {
			flush(t, s)
			const id = "0000000000000001"
			if err := c.HSet(ctx, "msg:{"+aor+"}", id, v).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Messages(ctx, aor, now); err == nil || errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("Messages on %q: err = %v, want a corruption error", v, err)
			}
			// The sweep drops a corrupt value it is pointed at and goes on.
			if err := c.ZAdd(ctx, "exp:{0}", goredis.Z{Score: float64(now.Unix() - 1), Member: "msg|" + aor + "|" + id}).Err(); err != nil {
				t.Fatal(err)
			}
			if ex, err := s.ExpireMessages(ctx, now, 10); err != nil || len(ex) != 0 {
				t.Errorf("ExpireMessages = %+v, %v", ex, err)
			}
			if has, err := s.HasMessages(ctx, aor); err != nil || has {
				t.Errorf("HasMessages after the sweep = %v, %v; want false", has, err)
			}
		})
	}

	t.Run("dedup entries", func(t *testing.T) {
		flush(t, s)
		// A dedup entry that does not parse cannot be counted: it is dropped when a message
		// is stored, and never makes the mailbox full.
		if err := c.HSet(ctx, "msgid:{"+aor+"}", "bad", "garbage", "k", "0000000000000009 x 1").Err(); err != nil {
			t.Fatal(err)
		}
		id, dup, err := s.StoreMessage(ctx, aor, offline(now, "k", []byte("x"), time.Minute), storage.MailboxLimits{MaxCount: 1}, now)
		if err != nil || dup {
			t.Fatalf("StoreMessage = %q, %v, %v", id, dup, err)
		}
		if n, err := c.HLen(ctx, "msgid:{"+aor+"}").Result(); err != nil || n != 1 {
			t.Errorf("HLEN msgid = %d, %v; want 1", n, err)
		}
	})

	t.Run("dedup entries without a sender", func(t *testing.T) {
		flush(t, s)
		// Entries written before senders were kept ("<id> <expires_at> <size>") still count
		// towards the mailbox, as a local sender's: they are neither dropped nor foreign.
		entry := fmt.Sprintf("0000000000000009 %d 1", now.Unix()+60)
		if err := c.HSet(ctx, "msgid:{"+aor+"}", "old", entry).Err(); err != nil {
			t.Fatal(err)
		}
		m := offline(now, "k", []byte("x"), time.Minute)
		m.Sender, m.Foreign = "spam@evil.example", true
		if _, _, err := s.StoreMessage(ctx, aor, m, storage.MailboxLimits{MaxCount: 1}, now); !errors.Is(err, storage.ErrMailboxFull) {
			t.Fatalf("StoreMessage over an old entry: err = %v, want ErrMailboxFull", err)
		}
		if _, _, err := s.StoreMessage(ctx, aor, m, storage.MailboxLimits{MaxCount: 2, MaxForeignCount: 1, MaxPerSender: 1}, now); err != nil {
			t.Fatalf("StoreMessage beside an old entry: %v", err)
		}
		if v, err := c.HGet(ctx, "msgid:{"+aor+"}", "old").Result(); err != nil || v != entry {
			t.Errorf("old entry = %q, %v; want it kept", v, err)
		}
	})

	t.Run("known", func(t *testing.T) {
		if err := c.Set(ctx, "known:{"+aor+"}", "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Known(ctx, aor, now); err == nil || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("Known on a corrupt value: err = %v", err)
		}
		// MarkKnown replaces it.
		if err := s.MarkKnown(ctx, aor, now.Add(time.Minute)); err != nil {
			t.Fatalf("MarkKnown: %v", err)
		}
		if ok, err := s.Known(ctx, aor, now); err != nil || !ok {
			t.Errorf("Known = %v, %v; want true", ok, err)
		}
	})
}

// TestMessagesScriptCacheFlushed: after SCRIPT FLUSH every message script falls back to EVAL,
// including DeleteMessage's, which is pipelined with its ZREM.
func TestMessagesScriptCacheFlushed(t *testing.T) {
	testMessagesScriptCacheFlushed(t, redistest.Start(t).URL())
}

func testMessagesScriptCacheFlushed(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "f@example.com"
	scriptFlush := func() {
		t.Helper()
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 3 {
		scriptFlush()
		id, _, err := s.StoreMessage(ctx, aor, offline(now, fmt.Sprint(i), []byte("x"), time.Second), storage.MailboxLimits{}, now)
		if err != nil {
			t.Fatalf("StoreMessage: %v", err)
		}
		ids = append(ids, id)
	}
	scriptFlush()
	if err := s.DeleteMessage(ctx, aor, ids[0]); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	scriptFlush()
	if err := s.DeleteMessage(ctx, aor, ids[0]); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteMessage again: %v, want ErrNotFound", err)
	}
	scriptFlush()
	if ex, err := s.ExpireMessages(ctx, now.Add(time.Second), 10); err != nil || len(ex) != 2 {
		t.Fatalf("ExpireMessages = %+v, %v", ex, err)
	}
	scriptFlush()
	if err := s.MarkKnown(ctx, aor, now.Add(time.Minute)); err != nil {
		t.Fatalf("MarkKnown: %v", err)
	}
}

// TestMessagesRestartPersistence: with AOF on, messages (bodies byte-exact), their index
// entries and known users survive a restart.
func TestMessagesRestartPersistence(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	s := connect(t, srv.URL(), redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "p@example.com"
	body := []byte("\x78\x9c\x00\xff\n\r binary")
	id, _, err := s.StoreMessage(ctx, aor, offline(now, "k", body, 10*time.Second), storage.MailboxLimits{}, now)
	if err != nil {
		t.Fatalf("StoreMessage: %v", err)
	}
	if err := s.MarkKnown(ctx, aor, now.Add(time.Hour)); err != nil {
		t.Fatalf("MarkKnown: %v", err)
	}

	srv.Restart(t)

	var got []storage.Message
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = s.Messages(ctx, aor, now)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || len(got) != 1 || got[0].ID != id || !bytes.Equal(got[0].Body, body) {
		t.Fatalf("Messages after restart = %+v, %v", got, err)
	}
	if ok, err := s.Known(ctx, aor, now); err != nil || !ok {
		t.Fatalf("Known after restart = %v, %v", ok, err)
	}
	ex, err := s.ExpireMessages(ctx, now.Add(20*time.Second), 10)
	if err != nil || len(ex) != 1 || ex[0].Message.ID != id {
		t.Fatalf("ExpireMessages after restart = %+v, %v", ex, err)
	}
}

func BenchmarkStoreMessage(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkStoreMessage(b, connect(b, srv.URL(), redis.Options{}))
}
