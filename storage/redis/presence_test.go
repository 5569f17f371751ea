package redis_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/redistest"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
	"github.com/simpled/simpled/storage/storagetest"

	goredis "github.com/redis/go-redis/v9"
)

var _ presence.Store = (*redis.Store)(nil)

// publication is a new publication of body under etag at now for age.
func publication(now time.Time, etag string, body []byte, age time.Duration) storage.PublishOp {
	return storage.PublishOp{Now: now, NewETag: etag, ContentType: "application/pidf+xml", Body: body, ExpiresAt: now.Add(age), Source: "sip:a@h"}
}

// dialog is a subscription id of aor created at now for age.
func dialog(aor, id string, now time.Time, age time.Duration) storage.Subscription {
	return storage.Subscription{ID: id, AOR: aor, Event: "presence", Watcher: "w@example.com", RemoteCSeq: 1, State: storage.SubActive, ExpiresAt: now.Add(age), CreatedAt: now}
}

// TestPresenceKeys checks the documented layout of publications, subscriptions and rules,
// their index entries and the TTL backstops.
func TestPresenceKeys(t *testing.T) {
	srv := redistest.Start(t)
	grace := 10 * time.Minute
	s := connect(t, srv.URL(), redis.Options{KeyGrace: grace})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "bob@example.com"
	pttl := func(key string, want time.Duration) {
		t.Helper()
		if got, err := c.PTTL(ctx, key).Result(); err != nil || got > want+time.Second || got < want-5*time.Second {
			t.Errorf("PTTL %s = %v, %v; want about %v", key, got, err, want)
		}
	}
	// The index shard of the AOR's bindings.
	if _, err := s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{
		Key: "k", ExpiresAt: now.Add(time.Minute), CallID: "c", CSeq: 1, UpdatedAt: now,
	}}}}); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}
	shard := indexShard(t, c, "reg|"+aor+"|k")

	// pub:{aor}: etag → JSON header starting with expires_at, newline, the raw body.
	body := []byte("\x00<presence/>\n")
	if _, err := s.Publish(ctx, aor, publication(now, "e1", body, 60*time.Second)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, err := s.Publish(ctx, aor, publication(now, "e2", []byte("x"), 600*time.Second)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	v, err := c.HGet(ctx, "pub:{"+aor+"}", "e1").Result()
	if err != nil {
		t.Fatalf("HGET pub: %v", err)
	}
	header, rest, _ := strings.Cut(v, "\n")
	if wantHeader := fmt.Sprintf(`{"expires_at":%d,"content_type":"application/pidf+xml","updated_at":%d,"source":"sip:a@h"}`, now.Unix()+60, now.Unix()); header != wantHeader || rest != string(body) {
		t.Errorf("stored publication = %q, want header %s", v, wantHeader)
	}
	pttl("pub:{"+aor+"}", 600*time.Second+grace)
	if got := indexShard(t, c, "pub|"+aor+"|e1"); got != shard {
		t.Errorf("publication entry in shard %q, binding entry in %s", got, shard)
	}
	// A refresh rewrites the expiry in place and moves the index entry to the new tag.
	if _, err := s.Publish(ctx, aor, storage.PublishOp{Now: now, IfMatch: "e1", NewETag: "e3", ExpiresAt: now.Add(900 * time.Second)}); err != nil {
		t.Fatalf("Publish(refresh): %v", err)
	}
	if v, err := c.HGet(ctx, "pub:{"+aor+"}", "e3").Result(); err != nil || !strings.HasPrefix(v, fmt.Sprintf(`{"expires_at":%d,"content_type"`, now.Unix()+900)) || !strings.HasSuffix(v, "}\n"+string(body)) {
		t.Errorf("refreshed publication = %q, %v", v, err)
	}
	if got := indexShard(t, c, "pub|"+aor+"|e1"); got != "" {
		t.Errorf("index entry of the old tag left in %s", got)
	}
	if score, err := c.ZScore(ctx, shard, "pub|"+aor+"|e3").Result(); err != nil || int64(score) != now.Unix()+900 {
		t.Errorf("exp score = %v, %v; want %d", score, err, now.Unix()+900)
	}
	pttl("pub:{"+aor+"}", 900*time.Second+grace)
	// Removing the last publications deletes the key and the entries.
	for _, e := range []string{"e2", "e3"} {
		if _, err := s.Publish(ctx, aor, storage.PublishOp{Now: now, IfMatch: e, Remove: true}); err != nil {
			t.Fatalf("Publish(remove): %v", err)
		}
		if got := indexShard(t, c, "pub|"+aor+"|"+e); got != "" {
			t.Errorf("index entry of removed %s left in %s", e, got)
		}
	}
	if n, err := c.Exists(ctx, "pub:{"+aor+"}").Result(); err != nil || n != 0 {
		t.Errorf("pub key after removing all: exists=%d, %v", n, err)
	}

	// sub:{aor}: id → JSON starting with expires_at; TTL from the latest expiry written.
	if err := s.PutSubscription(ctx, dialog(aor, "s1", now, 600*time.Second), 0); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if err := s.PutSubscription(ctx, dialog(aor, "s2", now, 60*time.Second), 0); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if v, err := c.HGet(ctx, "sub:{"+aor+"}", "s1").Result(); err != nil || !strings.HasPrefix(v, fmt.Sprintf(`{"expires_at":%d,"id":"s1","aor":"bob@example.com"`, now.Unix()+600)) {
		t.Errorf("stored subscription = %q, %v", v, err)
	}
	pttl("sub:{"+aor+"}", 600*time.Second+grace)
	if score, err := c.ZScore(ctx, shard, "sub|"+aor+"|s2").Result(); err != nil || int64(score) != now.Unix()+60 {
		t.Errorf("exp score = %v, %v; want %d", score, err, now.Unix()+60)
	}
	if _, err := s.DeleteSubscription(ctx, aor, "s2", now); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	if got := indexShard(t, c, "sub|"+aor+"|s2"); got != "" {
		t.Errorf("index entry of a deleted subscription left in %s", got)
	}

	// rules:{aor}: watcher → rule, no TTL.
	if err := s.SetRule(ctx, aor, "example.org", storage.RuleBlock); err != nil {
		t.Fatalf("SetRule: %v", err)
	}
	if v, err := c.HGet(ctx, "rules:{"+aor+"}", "example.org").Result(); err != nil || v != "block" {
		t.Errorf("HGET rules = %q, %v", v, err)
	}
	if got, err := c.PTTL(ctx, "rules:{"+aor+"}").Result(); err != nil || got != -1 {
		t.Errorf("rules must not expire: PTTL = %v, %v", got, err)
	}
}

// TestPresenceCorrupt: stored values that do not decode give errors, never panics, do not
// wedge the sweeps, and do not block the AOR.
func TestPresenceCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "eve@example.com"
	for _, v := range []string{"no header", "not json\nbody", `{"expires_at":"soon"}` + "\n", "[]\n", `{"expires_at":` + fmt.Sprint(now.Unix()+60) + `,"x":` + "\n"} {
		t.Run("publication "+v, func(t *testing.T) {
			flush(t, s)
			if err := c.HSet(ctx, "pub:{"+aor+"}", "bad", v).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Publications(ctx, aor, now); err == nil || errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("Publications on %q: err = %v, want a corruption error", v, err)
			}
			// The sweep drops a corrupt value it is pointed at and goes on.
			if err := c.ZAdd(ctx, "exp:{0}", goredis.Z{Score: float64(now.Unix() - 1), Member: "pub|" + aor + "|bad"}).Err(); err != nil {
				t.Fatal(err)
			}
			ex, err := s.ExpirePublications(ctx, now, 10)
			if err != nil || len(ex) != 0 {
				t.Errorf("ExpirePublications = %+v, %v", ex, err)
			}
			// A value left there (one that parses up to its expiry) does not block Publish.
			if _, err := s.Publish(ctx, aor, publication(now, "good", []byte("x"), time.Minute)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		})
	}
	t.Run("publish drops what does not parse", func(t *testing.T) {
		flush(t, s)
		if err := c.HSet(ctx, "pub:{"+aor+"}", "bad", "garbage").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Publish(ctx, aor, storage.PublishOp{Now: now, IfMatch: "bad", NewETag: "x", ExpiresAt: now.Add(time.Minute)}); !errors.Is(err, storage.ErrETagMismatch) {
			t.Fatalf("refresh of a corrupt value: err = %v, want ErrETagMismatch", err)
		}
		if _, err := s.Publish(ctx, aor, publication(now, "good", []byte("x"), time.Minute)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if ps, err := s.Publications(ctx, aor, now); err != nil || len(ps) != 1 || ps[0].ETag != "good" {
			t.Fatalf("Publications = %+v, %v; want only good", ps, err)
		}
	})
	for _, v := range []string{"not json", `{"expires_at":"soon"}`, `[]`, `{"id":1}`} {
		t.Run("subscription "+v, func(t *testing.T) {
			flush(t, s)
			if err := c.HSet(ctx, "sub:{"+aor+"}", "s", v).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Subscription(ctx, aor, "s", now); err == nil || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("Subscription on %q: err = %v, want a corruption error", v, err)
			}
			if _, err := s.Subscriptions(ctx, aor, now); err == nil || errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("Subscriptions on %q: err = %v, want a corruption error", v, err)
			}
			if err := c.ZAdd(ctx, "exp:{0}", goredis.Z{Score: float64(now.Unix() - 1), Member: "sub|" + aor + "|s"}).Err(); err != nil {
				t.Fatal(err)
			}
			if ex, err := s.ExpireSubscriptions(ctx, now, 10); err != nil || len(ex) != 0 {
				t.Errorf("ExpireSubscriptions = %+v, %v", ex, err)
			}
			if n, err := c.Exists(ctx, "sub:{"+aor+"}").Result(); err != nil || n != 0 {
				t.Errorf("corrupt subscription left after the sweep: exists=%d, %v", n, err)
			}
			// DeleteSubscription removes one and says so; a conditional put replaces one.
			if err := c.HSet(ctx, "sub:{"+aor+"}", "s", v).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DeleteSubscription(ctx, aor, "s", now); err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("DeleteSubscription on %q: err = %v, want a corruption error", v, err)
			}
			if err := c.HSet(ctx, "sub:{"+aor+"}", "s", v).Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.PutSubscription(ctx, dialog(aor, "s", now, time.Minute), 5); err != nil {
				t.Fatalf("PutSubscription over %q: %v", v, err)
			}
			if _, err := s.Subscription(ctx, aor, "s", now); err != nil {
				t.Fatalf("Subscription after the put: %v", err)
			}
		})
	}
}

// TestExpirePresenceAcrossNodes: several Stores (nodes) expiring publications and
// subscriptions on one Redis at once return each exactly once in total.
func TestExpirePresenceAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	const nodes, aors, per = 4, 50, 4
	stores := make([]*redis.Store, nodes)
	for i := range stores {
		stores[i] = connect(t, srv.URL(), redis.Options{})
	}
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	for i := range aors {
		s, a := stores[i%nodes], fmt.Sprintf("u%d@example.com", i)
		for j := range per {
			age := time.Duration(1+j) * time.Second
			if _, err := s.Publish(ctx, a, publication(now, fmt.Sprintf("e%d", j), []byte("x"), age)); err != nil {
				t.Fatal(err)
			}
			if err := s.PutSubscription(ctx, dialog(a, fmt.Sprintf("s%d", j), now, age), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, s := range stores {
		for range 2 {
			wg.Go(func() {
				for {
					ps, err := s.ExpirePublications(ctx, now.Add(10*time.Second), 9)
					if err != nil {
						t.Errorf("ExpirePublications: %v", err)
						return
					}
					subs, err := s.ExpireSubscriptions(ctx, now.Add(10*time.Second), 9)
					if err != nil {
						t.Errorf("ExpireSubscriptions: %v", err)
						return
					}
					mu.Lock()
					for _, e := range ps {
						seen["pub|"+e.AOR+"|"+e.Publication.ETag]++
					}
					for _, e := range subs {
						seen["sub|"+e.AOR+"|"+e.Subscription.ID]++
					}
					mu.Unlock()
					if len(ps)+len(subs) == 0 {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if len(seen) != 2*aors*per {
		t.Errorf("expired %d distinct items, want %d", len(seen), 2*aors*per)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s returned %d times", id, n)
		}
	}
}

// TestPresenceScriptCacheFlushed: after SCRIPT FLUSH every presence script falls back to
// EVAL.
func TestPresenceScriptCacheFlushed(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
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
	scriptFlush()
	if _, err := s.Publish(ctx, aor, publication(now, "e1", []byte("x"), time.Second)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	scriptFlush()
	if err := s.PutSubscription(ctx, dialog(aor, "s1", now, time.Second), 1); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if err := s.PutSubscription(ctx, dialog(aor, "s2", now, time.Minute), 0); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	scriptFlush()
	if _, err := s.DeleteSubscription(ctx, aor, "s2", now); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	scriptFlush()
	if ex, err := s.ExpirePublications(ctx, now.Add(time.Second), 10); err != nil || len(ex) != 1 {
		t.Fatalf("ExpirePublications = %+v, %v", ex, err)
	}
	scriptFlush()
	if ex, err := s.ExpireSubscriptions(ctx, now.Add(time.Second), 10); err != nil || len(ex) != 1 {
		t.Fatalf("ExpireSubscriptions = %+v, %v", ex, err)
	}
}

// TestPresenceRestartPersistence: with AOF on, publications (bodies byte-exact),
// subscriptions, rules and their index entries survive a restart.
func TestPresenceRestartPersistence(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	s := connect(t, srv.URL(), redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "p@example.com"
	body := []byte("\x00\xff\n<presence/>")
	if _, err := s.Publish(ctx, aor, publication(now, "e1", body, 10*time.Second)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := s.PutSubscription(ctx, dialog(aor, "s1", now, 10*time.Second), 0); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if err := s.SetRule(ctx, aor, "w@example.com", storage.RuleAllow); err != nil {
		t.Fatalf("SetRule: %v", err)
	}

	srv.Restart(t)

	var ps []storage.Publication
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps, err = s.Publications(ctx, aor, now)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || len(ps) != 1 || string(ps[0].Body) != string(body) {
		t.Fatalf("Publications after restart = %+v, %v", ps, err)
	}
	if rules, err := s.Rules(ctx, aor); err != nil || rules["w@example.com"] != storage.RuleAllow {
		t.Fatalf("Rules after restart = %v, %v", rules, err)
	}
	if ex, err := s.ExpirePublications(ctx, now.Add(20*time.Second), 10); err != nil || len(ex) != 1 {
		t.Fatalf("ExpirePublications after restart = %+v, %v", ex, err)
	}
	if ex, err := s.ExpireSubscriptions(ctx, now.Add(20*time.Second), 10); err != nil || len(ex) != 1 || ex[0].Subscription.ID != "s1" {
		t.Fatalf("ExpireSubscriptions after restart = %+v, %v", ex, err)
	}
}

func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkPublish(b, connect(b, srv.URL(), redis.Options{}))
}

func BenchmarkSubscriptions(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkSubscriptions(b, connect(b, srv.URL(), redis.Options{}))
}
