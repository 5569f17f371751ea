package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
	"github.com/simpled/simpled/storage/storagetest"

	goredis "github.com/redis/go-redis/v9"
)

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
func TestPresenceKeys(t *testing.T) { testPresenceKeys(t, redistest.Start(t).URL()) }

func testPresenceKeys(t *testing.T, url string) {
	grace := 10 * time.Minute
	s := connect(t, url, redis.Options{KeyGrace: grace})
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
	if wantHeader := fmt.Sprintf(`{"expires_at":%d,"content_type":"application/pidf+xml","source":"sip:a@h","updated_at":%d}`, now.Unix()+60, now.Unix()); header != wantHeader || rest != string(body) {
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

	checkRuleKey(t, s, aor)
}

// checkRuleKey checks rules:{aor}: watcher → rule, no TTL.
func checkRuleKey(t *testing.T, s *redis.Store, aor string) {
	t.Helper()
	ctx, c := t.Context(), s.Client()
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
func TestPresenceCorrupt(t *testing.T) { testPresenceCorrupt(t, redistest.Start(t).URL()) }

func testPresenceCorrupt(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
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
	testExpirePresenceAcrossNodes(t, redistest.Start(t).URL())
}

func testExpirePresenceAcrossNodes(t *testing.T, url string) {
	const nodes, aors, per = 4, 50, 4
	stores := connectNodes(t, url, nodes)
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
	var sweeps []storagetest.Sweep
	for _, s := range stores {
		sweeps = append(sweeps, storagetest.PublicationSweep(s), storagetest.SubscriptionSweep(s))
	}
	storagetest.SweptOnce(t, now.Add(10*time.Second), 9, 2*aors*per, sweeps...)
}

// TestPresenceScriptCacheFlushed: after SCRIPT FLUSH every presence script falls back to
// EVAL.
func TestPresenceScriptCacheFlushed(t *testing.T) {
	testPresenceScriptCacheFlushed(t, redistest.Start(t).URL())
}

func testPresenceScriptCacheFlushed(t *testing.T, url string) {
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

// roundTrips counts the commands and pipelines a client sends: one each is a round trip.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestPresenceRoundTrips: every presence operation is one round trip (its index commands
// travel with its script); a refusal takes a second to set the index entries back.
func TestPresenceRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "rt@example.com"
	h := &roundTrips{}
	c.AddHook(h)
	n := 0
	step := func(name string, want int64, f func() error, wantErr error) {
		t.Helper()
		for run := range 2 { // the first run loads the scripts and dials
			h.n.Store(0)
			if err := f(); !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
				t.Fatalf("%s: err = %v, want %v", name, err, wantErr)
			}
			if got := h.n.Load(); run == 1 && got != want {
				t.Errorf("%s: %d round trips, want %d", name, got, want)
			}
		}
	}
	etag := func() string { n++; return fmt.Sprintf("e%d", n) }
	cur := ""
	publish := func(op storage.PublishOp) error {
		p, err := s.Publish(ctx, aor, op)
		if err == nil && !op.Remove {
			cur = p.ETag
		}
		return err
	}
	step("new publication", 1, func() error { return publish(publication(now, etag(), []byte("x"), time.Minute)) }, nil)
	step("modification", 1, func() error {
		return publish(storage.PublishOp{Now: now, IfMatch: cur, NewETag: etag(), Body: []byte("y"), ExpiresAt: now.Add(time.Minute)})
	}, nil)
	step("refresh", 1, func() error {
		return publish(storage.PublishOp{Now: now, IfMatch: cur, NewETag: etag(), ExpiresAt: now.Add(time.Minute)})
	}, nil)
	step("removal", 1, func() error {
		if err := publish(publication(now, etag(), []byte("x"), time.Minute)); err != nil {
			return err
		}
		h.n.Store(0)
		return publish(storage.PublishOp{Now: now, IfMatch: cur, Remove: true})
	}, nil)
	step("Publications", 1, func() error { _, err := s.Publications(ctx, aor, now); return err }, nil)
	step("ErrETagMismatch", 2, func() error {
		return publish(storage.PublishOp{Now: now, IfMatch: "nope", NewETag: etag(), ExpiresAt: now.Add(time.Minute)})
	}, storage.ErrETagMismatch)
	step("ErrTooManyPublications", 2, func() error {
		op := publication(now, etag(), []byte("x"), time.Minute)
		op.MaxPublications = 1
		return publish(op)
	}, storage.ErrTooManyPublications)
	step("PutSubscription", 1, func() error { return s.PutSubscription(ctx, dialog(aor, "s1", now, time.Minute), 0) }, nil)
	step("Subscription", 1, func() error { _, err := s.Subscription(ctx, aor, "s1", now); return err }, nil)
	step("Subscriptions", 1, func() error { _, err := s.Subscriptions(ctx, aor, now); return err }, nil)
	step("DeleteSubscription", 1, func() error {
		if err := s.PutSubscription(ctx, dialog(aor, "s1", now, time.Minute), 0); err != nil {
			return err
		}
		h.n.Store(0)
		_, err := s.DeleteSubscription(ctx, aor, "s1", now)
		return err
	}, nil)
	step("SetRule", 1, func() error { return s.SetRule(ctx, aor, "w", storage.RuleAllow) }, nil)
	step("Rules", 1, func() error { _, err := s.Rules(ctx, aor); return err }, nil)
	step("DeleteRule", 1, func() error {
		if err := s.SetRule(ctx, aor, "w", storage.RuleAllow); err != nil {
			return err
		}
		h.n.Store(0)
		return s.DeleteRule(ctx, aor, "w")
	}, nil)
}

// TestPresenceIndexRepair: the index entries a refused op sent early are set back, and never
// left later than the item's expiry.
func TestPresenceIndexRepair(t *testing.T) { testPresenceIndexRepair(t, redistest.Start(t).URL()) }

func testPresenceIndexRepair(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "ix@example.com"
	score := func(m string) int64 {
		t.Helper()
		ex := indexShard(t, c, m)
		if ex == "" {
			return -1
		}
		v, err := c.ZScore(ctx, ex, m).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int64(v)
	}
	mustPublish := func(op storage.PublishOp) {
		t.Helper()
		if _, err := s.Publish(ctx, aor, op); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	mustPublish(publication(now, "live", []byte("x"), time.Minute))
	mustPublish(publication(now.Add(-10*time.Second), "old", []byte("x"), 5*time.Second)) // expired at now
	for _, op := range []storage.PublishOp{
		{Now: now, IfMatch: "old", NewETag: "new", ExpiresAt: now.Add(time.Hour)},
		{Now: now, IfMatch: "old", NewETag: "old", ExpiresAt: now.Add(time.Hour)},
		{Now: now, IfMatch: "old", Remove: true},
		{Now: now, IfMatch: "nope", NewETag: "new", ExpiresAt: now.Add(time.Hour)},
	} {
		if _, err := s.Publish(ctx, aor, op); !errors.Is(err, storage.ErrETagMismatch) {
			t.Fatalf("Publish(IfMatch %s, NewETag %s) = %v, want ErrETagMismatch", op.IfMatch, op.NewETag, err)
		}
		if got := score("pub|" + aor + "|old"); got != now.Unix()-5 {
			t.Errorf("IfMatch %s, NewETag %s: entry of the expired tag = %d, want %d", op.IfMatch, op.NewETag, got, now.Unix()-5)
		}
		for _, m := range []string{"new", "nope"} {
			if got := score("pub|" + aor + "|" + m); got != -1 {
				t.Errorf("IfMatch %s, NewETag %s: entry of %s left at %d", op.IfMatch, op.NewETag, m, got)
			}
		}
	}
	over := publication(now, "new", []byte("x"), time.Hour)
	over.MaxPublications = 1
	if _, err := s.Publish(ctx, aor, over); !errors.Is(err, storage.ErrTooManyPublications) {
		t.Fatalf("Publish over the limit = %v, want ErrTooManyPublications", err)
	}
	if got := score("pub|" + aor + "|new"); got != -1 {
		t.Errorf("entry of a refused publication left at %d", got)
	}
	if got := score("pub|" + aor + "|live"); got != now.Unix()+60 {
		t.Errorf("entry of live = %d, want %d", got, now.Unix()+60)
	}

	// A stale PutSubscription asking for a later expiry: the entry keeps the stored one.
	if err := s.PutSubscription(ctx, dialog(aor, "s", now, time.Minute), 0); err != nil {
		t.Fatal(err)
	}
	stale := dialog(aor, "s", now, time.Hour)
	if err := s.PutSubscription(ctx, stale, 1); !errors.Is(err, storage.ErrStale) {
		t.Fatalf("PutSubscription = %v, want ErrStale", err)
	}
	if got := score("sub|" + aor + "|s"); got != now.Unix()+60 {
		t.Errorf("entry after ErrStale = %d, want %d", got, now.Unix()+60)
	}
	// Deleting an expired subscription leaves it, and its entry, for the sweep.
	if _, err := s.DeleteSubscription(ctx, aor, "s", now.Add(time.Minute)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteSubscription(expired) = %v, want ErrNotFound", err)
	}
	if got := score("sub|" + aor + "|s"); got != now.Unix()+60 {
		t.Errorf("entry of an expired subscription after DeleteSubscription = %d, want %d", got, now.Unix()+60)
	}
}

// TestPresenceOutage stops Redis under a working store: every presence call fails quickly
// with storage.ErrUnavailable (the index repair after an unknown outcome does not add to the
// wait), and works again once Redis is back.
func TestPresenceOutage(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "down@example.com"
	if _, err := s.Publish(ctx, aor, publication(now, "e1", []byte("x"), time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSubscription(ctx, dialog(aor, "s1", now, time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	calls := map[string]func() error{
		"Publish(new)": func() error {
			_, err := s.Publish(ctx, aor, publication(now, "e2", []byte("x"), time.Hour))
			return err
		},
		"Publish(refresh)": func() error {
			_, err := s.Publish(ctx, aor, storage.PublishOp{Now: now, IfMatch: "e1", NewETag: "e3", ExpiresAt: now.Add(time.Hour)})
			return err
		},
		"Publications":       func() error { _, err := s.Publications(ctx, aor, now); return err },
		"PutSubscription":    func() error { return s.PutSubscription(ctx, dialog(aor, "s2", now, time.Hour), 0) },
		"Subscription":       func() error { _, err := s.Subscription(ctx, aor, "s1", now); return err },
		"Subscriptions":      func() error { _, err := s.Subscriptions(ctx, aor, now); return err },
		"DeleteSubscription": func() error { _, err := s.DeleteSubscription(ctx, aor, "s1", now); return err },
		"SetRule":            func() error { return s.SetRule(ctx, aor, "w", storage.RuleAllow) },
		"DeleteRule":         func() error { return s.DeleteRule(ctx, aor, "w") },
		"Rules":              func() error { _, err := s.Rules(ctx, aor); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("%s took %v with Redis down", name, d)
		}
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
		}
	}
	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Publish(ctx, aor, publication(now, "e4", []byte("x"), time.Hour))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not reconnect: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkPublish(b, connect(b, srv.URL(), redis.Options{}))
}

func BenchmarkPublishParallel(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkPublishParallel(b, connect(b, srv.URL(), redis.Options{}))
}

func BenchmarkSubscriptions(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkSubscriptions(b, connect(b, srv.URL(), redis.Options{}))
}

// TestClaimRewritesInPlace: a claim rewrites the owner and the reservation inside the stored
// JSON, which still starts with expires_at (the sweep reads it there), leaves a string field
// that looks like those fields alone, and adds the fields to a value stored without them.
func TestClaimRewritesInPlace(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "bob@example.com"
	sub := dialog(aor, "s1", now, time.Hour)
	sub.WatcherName = `x","node":"evil","notify_cseq":9`
	if err := s.PutSubscription(ctx, sub, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimSubscription(ctx, aor, "s1", "", "n1", 1000, now)
	if err != nil || got.Node != "n1" || got.NotifyCSeq != 1000 || got.WatcherName != sub.WatcherName {
		t.Fatalf("claim of a value without the fields: %+v, %v", got, err)
	}
	if got, err = s.ClaimSubscription(ctx, aor, "s1", "n1", "n2", 1000, now); err != nil || got.Node != "n2" || got.NotifyCSeq != 2000 {
		t.Fatalf("second claim: %+v, %v", got, err)
	}
	v, err := s.Client().HGet(ctx, "sub:{"+aor+"}", "s1").Result()
	if err != nil || !strings.HasPrefix(v, `{"expires_at":`) || strings.Count(v, `,"node":`) != 1 {
		t.Fatalf("stored after the claims: %q, %v", v, err)
	}
	stored, err := s.Subscription(ctx, aor, "s1", now)
	if err != nil || stored.Node != "n2" || stored.NotifyCSeq != 2000 || stored.WatcherName != sub.WatcherName {
		t.Fatalf("read back: %+v, %v", stored, err)
	}
}
