package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
	"github.com/simpled/simpled/storage/storagetest"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// The backend satisfies every contract of the conformance suite (the stages' own interfaces
// are checked where the backend is wired to them, in internal/server).
var (
	_ storage.Backend     = (*redis.Store)(nil)
	_ storage.Credentials = (*redis.Store)(nil)
	_ storagetest.Store   = (*redis.Store)(nil)
)

// connect opens a Store on url and closes it in t.Cleanup.
func connect(t testing.TB, url string, opts redis.Options) *redis.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := redis.New(ctx, url, opts)
	if err != nil {
		t.Fatalf("redis.New(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// connectNodes opens n Stores on url: n simpled nodes sharing one Redis.
func connectNodes(t testing.TB, url string, n int) []*redis.Store {
	t.Helper()
	stores := make([]*redis.Store, n)
	for i := range stores {
		stores[i] = connect(t, url, redis.Options{})
	}
	return stores
}

// flush empties every database of the server(s) behind s.
func flush(t testing.TB, s *redis.Store) {
	t.Helper()
	ctx := t.Context()
	var err error
	if cc, ok := s.Client().(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.FlushAll(ctx).Err()
		})
	} else {
		err = s.Client().FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

// TestMain silences go-redis's own logger (it prints every failed dial of the outage
// tests) unless SIMPLED_TEST_LOG is set.
func TestMain(m *testing.M) {
	if os.Getenv("SIMPLED_TEST_LOG") == "" {
		logging.Disable()
	}
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storagetest.Run(t, func(t *testing.T) storagetest.Store {
		s := connect(t, srv.URL(), redis.Options{})
		flush(t, s)
		return s
	})
}

// TestConformanceCluster runs the suite on a one-node Redis Cluster, where Redis refuses any
// command or script that mixes slots (CROSSSLOT): this checks the key layout's hash tags.
func TestConformanceCluster(t *testing.T) {
	srv := redistest.Start(t, redistest.WithCluster())
	storagetest.Run(t, func(t *testing.T) storagetest.Store {
		s := connect(t, srv.ClusterURL(), redis.Options{})
		flush(t, s)
		return s
	})
}

func TestNewErrors(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop(t) // a port nothing listens on
	// A server that accepts connections and never answers (a hung or partitioned Redis).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tests := []struct {
		name        string
		url         string
		unavailable bool
		noLeak      string // must not appear in the error
	}{
		{name: "unreachable", url: srv.URL(), unavailable: true},
		{name: "unreachable cluster", url: "redis+cluster://" + srv.Addr(), unavailable: true},
		{name: "silent", url: "redis://" + silent.Addr().String() + "/0", unavailable: true},
		{name: "no scheme", url: "127.0.0.1:6379"},
		{name: "bad scheme", url: "http://127.0.0.1:6379"},
		{name: "bad db", url: "redis://127.0.0.1:6379/x"},
		{name: "cluster db", url: "redis+cluster://127.0.0.1:1,127.0.0.1:2/3"},
		{name: "cluster node without port", url: "redis+cluster://127.0.0.1:1,127.0.0.1"},
		{name: "password not in error", url: "redis://u:s3cret@127.0.0.1:6379/%zz", noLeak: "s3cret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			s, err := redis.New(ctx, tc.url, redis.Options{DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
			if err == nil {
				_ = s.Close()
				t.Fatalf("New(%s) succeeded", tc.url)
			}
			if got := errors.Is(err, storage.ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tc.unavailable)
			}
			if !strings.HasPrefix(err.Error(), "redis: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if tc.noLeak != "" && strings.Contains(err.Error(), tc.noLeak) {
				t.Errorf("error %q leaks %q", err, tc.noLeak)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("New took %v", d)
			}
		})
	}
}

// TestOutage stops Redis under a working store: every call must fail quickly with an error
// matching storage.ErrUnavailable, and work again once Redis is back.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{}) // the defaults must fail fast
	now := time.Now().Truncate(time.Second)
	b := storage.Binding{Key: "sip:a@h", ExpiresAt: now.Add(time.Hour), CallID: "c", CSeq: 1, UpdatedAt: now}
	ctx := t.Context()
	if _, err := s.UpdateBindings(ctx, "a@example.com", storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}

	srv.Stop(t)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Ping", s.Ping},
		{"UpdateBindings", func(ctx context.Context) error {
			b.CSeq = 2
			_, err := s.UpdateBindings(ctx, "a@example.com", storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}})
			return err
		}},
		{"Bindings", func(ctx context.Context) error { _, err := s.Bindings(ctx, "a@example.com", now); return err }},
		{"RemoveBindings", func(ctx context.Context) error { _, err := s.RemoveBindings(ctx, "a@example.com"); return err }},
		{"SweepExpired", func(ctx context.Context) error { _, err := s.SweepExpired(ctx, now, 10); return err }},
		{"Credential", func(ctx context.Context) error { _, err := s.Credential(ctx, "a@example.com", "r"); return err }},
		{"SetCredential", func(ctx context.Context) error {
			return s.SetCredential(ctx, "a@example.com", "r", storage.Credential{})
		}},
		{"HasCredentials", func(ctx context.Context) error { _, err := s.HasCredentials(ctx); return err }},
		{"UseNonceCount", func(ctx context.Context) error { _, _, err := s.UseNonceCount(ctx, 1, "n", 1, time.Second); return err }},
		{"NonceEpoch", func(ctx context.Context) error { _, err := s.NonceEpoch(ctx); return err }},
		{"StoreMessage", func(ctx context.Context) error {
			_, _, err := s.StoreMessage(ctx, "a@example.com", storage.Message{DedupKey: "k", ExpiresAt: now.Add(time.Hour)}, storage.MailboxLimits{}, now)
			return err
		}},
		{"Messages", func(ctx context.Context) error { _, err := s.Messages(ctx, "a@example.com", now); return err }},
		{"HasMessages", func(ctx context.Context) error { _, err := s.HasMessages(ctx, "a@example.com"); return err }},
		{"DeleteMessage", func(ctx context.Context) error { return s.DeleteMessage(ctx, "a@example.com", "1") }},
		{"DeleteMessages", func(ctx context.Context) error { _, err := s.DeleteMessages(ctx, "a@example.com"); return err }},
		{"ExpireMessages", func(ctx context.Context) error { _, err := s.ExpireMessages(ctx, now, 10); return err }},
		{"MarkKnown", func(ctx context.Context) error { return s.MarkKnown(ctx, "a@example.com", now) }},
		{"Known", func(ctx context.Context) error { _, err := s.Known(ctx, "a@example.com", now); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call(ctx) // no deadline: the store's own timeouts must bound it
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("took %v with Redis down", d)
			}
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if !strings.HasPrefix(err.Error(), "redis: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}

	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("store did not reconnect after Restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartPersistence: with AOF on, bindings, credentials and the sweep index survive a
// restart, and the store reconnects by itself.
func TestRestartPersistence(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	s := connect(t, srv.URL(), redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	bs := []storage.Binding{
		{Key: "sip:a@h", Contact: "<sip:a@h>", URI: "sip:a@h", ExpiresAt: now.Add(10 * time.Second), Q: -1, CallID: "c", CSeq: 1, Path: []string{"<sip:p@h;lr>"}, UpdatedAt: now},
		{Key: "sip:b@h", Contact: "<sip:b@h>", URI: "sip:b@h", ExpiresAt: now.Add(time.Hour), Q: 500, CallID: "c", CSeq: 1, UpdatedAt: now},
	}
	u := storage.BindingUpdate{Now: now}
	for _, b := range bs {
		u.Changes = append(u.Changes, storage.BindingChange{Binding: b})
	}
	if _, err := s.UpdateBindings(ctx, "a@example.com", u); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}
	cred := storage.Credential{HA1MD5: "00112233445566778899aabbccddeeff"}
	if err := s.SetCredential(ctx, "a@example.com", "example.com", cred); err != nil {
		t.Fatalf("SetCredential: %v", err)
	}

	srv.Restart(t)

	var got []storage.Binding
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = s.Bindings(ctx, "a@example.com", now)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Bindings after restart: %v", err)
	}
	if len(got) != 2 || got[0].Key != "sip:a@h" || got[1].Key != "sip:b@h" || len(got[0].Path) != 1 || got[1].Q != 500 || !got[1].ExpiresAt.Equal(bs[1].ExpiresAt) {
		t.Fatalf("Bindings after restart = %+v", got)
	}
	if c, err := s.Credential(ctx, "a@example.com", "example.com"); err != nil || c != cred {
		t.Fatalf("Credential after restart = %+v, %v", c, err)
	}
	sw, err := s.SweepExpired(ctx, now.Add(20*time.Second), 10)
	if err != nil || len(sw) != 1 || sw[0].Binding.Key != "sip:a@h" {
		t.Fatalf("SweepExpired after restart = %+v, %v", sw, err)
	}
}

// TestKeys checks the documented key layout and the TTL backstops.
func TestKeys(t *testing.T) { testKeys(t, redistest.Start(t).URL()) }

func testKeys(t *testing.T, url string) {
	grace := 10 * time.Minute
	s := connect(t, url, redis.Options{KeyGrace: grace})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "bob@example.com"
	u := storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{
		{Binding: storage.Binding{Key: "k1", ExpiresAt: now.Add(60 * time.Second), CallID: "c", CSeq: 1, UpdatedAt: now}},
		{Binding: storage.Binding{Key: "k2", ExpiresAt: now.Add(600 * time.Second), CallID: "c", CSeq: 1, UpdatedAt: now}},
	}}
	if _, err := s.UpdateBindings(ctx, aor, u); err != nil {
		t.Fatalf("UpdateBindings: %v", err)
	}

	// reg:{aor}: a hash of JSON with unix-second times; TTL = latest expiry + grace.
	js, err := c.HGet(ctx, "reg:{"+aor+"}", "k2").Result()
	if err != nil {
		t.Fatalf("HGET reg: %v", err)
	}
	if !strings.Contains(js, fmt.Sprintf(`"expires_at":%d`, now.Unix()+600)) || !strings.Contains(js, `"key":"k2"`) {
		t.Errorf("stored binding JSON = %s", js)
	}
	pttl, err := c.PTTL(ctx, "reg:{"+aor+"}").Result()
	if err != nil {
		t.Fatalf("PTTL: %v", err)
	}
	want := 600*time.Second + grace
	if pttl > want || pttl < want-5*time.Second {
		t.Errorf("PTTL reg = %v, want about %v", pttl, want)
	}

	// exp:{n}: one member per binding, score = expiry, in exactly one shard.
	found := 0
	for n := range 16 {
		score, err := c.ZScore(ctx, fmt.Sprintf("exp:{%d}", n), "reg|"+aor+"|k1").Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			t.Fatalf("ZSCORE: %v", err)
		}
		found++
		if int64(score) != now.Unix()+60 {
			t.Errorf("exp score = %v, want %d", score, now.Unix()+60)
		}
	}
	if found != 1 {
		t.Errorf("index member found in %d shards, want 1", found)
	}

	// Removing the last binding deletes the key.
	u = storage.BindingUpdate{Now: now, RemoveAll: true, CallID: "other", CSeq: 1}
	if _, err := s.UpdateBindings(ctx, aor, u); err != nil {
		t.Fatalf("UpdateBindings(*): %v", err)
	}
	if n, err := c.Exists(ctx, "reg:{"+aor+"}").Result(); err != nil || n != 0 {
		t.Errorf("reg key after removing all: exists=%d, %v", n, err)
	}

	// cred:{aor} and creds.
	if err := s.SetCredential(ctx, aor, "example.com", storage.Credential{HA1MD5: "x"}); err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	if ok, err := c.SIsMember(ctx, "creds", aor).Result(); err != nil || !ok {
		t.Errorf("SISMEMBER creds = %v, %v", ok, err)
	}
	if v, err := c.HGet(ctx, "cred:{"+aor+"}", "example.com").Result(); err != nil || v != `{"ha1_md5":"x"}` {
		t.Errorf("HGET cred = %q, %v", v, err)
	}
	if pttl, err := c.PTTL(ctx, "cred:{"+aor+"}").Result(); err != nil || pttl != -1 {
		t.Errorf("credentials must not expire: PTTL = %v, %v", pttl, err)
	}

	// nonce-epoch: created by the first use, the decimal epoch, no TTL.
	epoch, err := s.NonceEpoch(ctx)
	if err != nil {
		t.Fatalf("NonceEpoch: %v", err)
	}
	if v, err := c.Get(ctx, "nonce-epoch").Result(); err != nil || v != strconv.FormatUint(epoch, 10) {
		t.Errorf("GET nonce-epoch = %q, %v; want %d", v, err, epoch)
	}
	if pttl, err := c.PTTL(ctx, "nonce-epoch").Result(); err != nil || pttl != -1 {
		t.Errorf("the nonce epoch must not expire: PTTL = %v, %v", pttl, err)
	}
	// nonce:{n}: the count with the TTL of the last accepted use.
	if ok, _, err := s.UseNonceCount(ctx, epoch, "abc", 7, 30*time.Second); err != nil || !ok {
		t.Fatalf("UseNonceCount = %v, %v", ok, err)
	}
	if v, err := c.Get(ctx, "nonce:{abc}").Result(); err != nil || v != "7" {
		t.Errorf("GET nonce = %q, %v", v, err)
	}
	if pttl, err := c.PTTL(ctx, "nonce:{abc}").Result(); err != nil || pttl > 30*time.Second || pttl < 25*time.Second {
		t.Errorf("PTTL nonce = %v, %v; want about 30s", pttl, err)
	}
}

// TestCorrupt: values that do not decode give errors, never panics, and do not wedge the
// sweep.
func TestCorrupt(t *testing.T) { testCorrupt(t, redistest.Start(t).URL()) }

func testCorrupt(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "eve@example.com"
	for _, v := range []string{"not json", `{"key":"k","expires_at":"soon"}`, `[]`, `{"call_id":1}`} {
		t.Run(v, func(t *testing.T) {
			flush(t, s)
			if err := c.HSet(ctx, "reg:{"+aor+"}", "k", v).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Bindings(ctx, aor, now); err == nil {
				t.Errorf("Bindings succeeded on %q", v)
			}
			u := storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{Key: "k2", ExpiresAt: now.Add(time.Minute), CallID: "c", CSeq: 1, UpdatedAt: now}}}}
			_, err := s.UpdateBindings(ctx, aor, u)
			if err == nil || errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrStale) {
				t.Errorf("UpdateBindings on %q: err = %v, want a corruption error", v, err)
			}
			// The sweep drops a corrupt value it is pointed at and goes on.
			if err := c.ZAdd(ctx, "exp:{0}", goredis.Z{Score: float64(now.Unix() - 1), Member: "reg|" + aor + "|k"}, goredis.Z{Score: 1, Member: "garbage"}).Err(); err != nil {
				t.Fatal(err)
			}
			if sw, err := s.SweepExpired(ctx, now, 10); err != nil || len(sw) != 0 {
				t.Errorf("SweepExpired = %+v, %v", sw, err)
			}
			removed, err := s.RemoveBindings(ctx, aor)
			if len(removed) != 0 {
				t.Errorf("RemoveBindings = %+v, %v", removed, err)
			}
		})
	}
	if err := c.HSet(ctx, "cred:{"+aor+"}", "r", "{").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credential(ctx, aor, "r"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Credential on corrupt JSON: err = %v", err)
	}
	if err := c.Set(ctx, "nonce:{n}", "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	epoch, err := s.NonceEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UseNonceCount(ctx, epoch, "n", 1, time.Minute); err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("UseNonceCount on corrupt count: err = %v", err)
	}
	if err := c.Set(ctx, "nonce-epoch", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NonceEpoch(ctx); err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("NonceEpoch on corrupt epoch: err = %v", err)
	}
}

// TestNonceEpochFlush: a Redis that lost its state (FLUSHALL) gets a new epoch at the next
// nonce use, and that use is refused: a nonce whose count was recorded before the flush is
// not accepted again.
func TestNonceEpochFlush(t *testing.T) { testNonceEpochFlush(t, redistest.Start(t).URL()) }

func testNonceEpochFlush(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	ctx := t.Context()
	epoch, err := s.NonceEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, cur, err := s.UseNonceCount(ctx, epoch, "n", 1, time.Minute); err != nil || !ok || cur != epoch {
		t.Fatalf("UseNonceCount = %v, %d, %v", ok, cur, err)
	}
	flush(t, s) // every master of a cluster
	ok, cur, err := s.UseNonceCount(ctx, epoch, "n", 1, time.Minute)
	if err != nil || ok || cur == epoch || cur == 0 {
		t.Fatalf("replay after FLUSHALL = %v, epoch %d, %v; want false and a new epoch (old %d)", ok, cur, err, epoch)
	}
	if e, err := s.NonceEpoch(ctx); err != nil || e != cur {
		t.Fatalf("NonceEpoch after the flush = %d, %v; want %d", e, err, cur)
	}
	if ok, _, err := s.UseNonceCount(ctx, cur, "n2", 1, time.Minute); err != nil || !ok {
		t.Fatalf("UseNonceCount under the new epoch = %v, %v", ok, err)
	}
}

// TestSweepAcrossNodes: several Stores (nodes) sweeping one Redis at once return each expired
// binding exactly once in total.
func TestSweepAcrossNodes(t *testing.T) { testSweepAcrossNodes(t, redistest.Start(t).URL()) }

func testSweepAcrossNodes(t *testing.T, url string) {
	const nodes, aors, per = 4, 50, 4
	stores := connectNodes(t, url, nodes)
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	for i := range aors {
		u := storage.BindingUpdate{Now: now}
		for j := range per {
			u.Changes = append(u.Changes, storage.BindingChange{Binding: storage.Binding{
				Key: fmt.Sprintf("k%d", j), ExpiresAt: now.Add(time.Duration(1+j) * time.Second), CallID: "c", CSeq: 1, UpdatedAt: now,
			}})
		}
		if _, err := stores[i%nodes].UpdateBindings(ctx, fmt.Sprintf("u%d@example.com", i), u); err != nil {
			t.Fatal(err)
		}
	}
	var sweeps []storagetest.Sweep
	for _, s := range stores {
		sweeps = append(sweeps, storagetest.BindingSweep(s), storagetest.BindingSweep(s))
	}
	storagetest.SweptOnce(t, now.Add(10*time.Second), 9, aors*per, sweeps...)
}

// TestIndexRepair: the index may be early (the sweep verifies and puts the entry back) but a
// refused update must not leave it late.
func TestIndexRepair(t *testing.T) { testIndexRepair(t, redistest.Start(t).URL()) }

func testIndexRepair(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const aor = "carol@example.com"
	mem := "reg|" + aor + "|k"
	shard := func() string {
		for n := range 16 {
			if _, err := c.ZScore(ctx, fmt.Sprintf("exp:{%d}", n), mem).Result(); err == nil {
				return fmt.Sprintf("exp:{%d}", n)
			}
		}
		t.Fatalf("member %s in no shard", mem)
		return ""
	}
	reg := func(cseq uint32, exp time.Duration) error {
		_, err := s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{
			Key: "k", ExpiresAt: now.Add(exp), CallID: "c", CSeq: cseq, UpdatedAt: now,
		}}}})
		return err
	}
	if err := reg(5, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	ex := shard()
	// A stale REGISTER asking for a later expiry: refused, and the index keeps 60 s.
	if err := reg(4, 3600*time.Second); !errors.Is(err, storage.ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
	if score, err := c.ZScore(ctx, ex, mem).Result(); err != nil || int64(score) != now.Unix()+60 {
		t.Errorf("index after ErrStale = %v, %v; want %d", score, err, now.Unix()+60)
	}
	// An early entry: the sweep finds the binding live and puts the entry back at its expiry.
	if err := c.ZAdd(ctx, ex, goredis.Z{Score: float64(now.Unix() + 1), Member: mem}).Err(); err != nil {
		t.Fatal(err)
	}
	if sw, err := s.SweepExpired(ctx, now.Add(2*time.Second), 10); err != nil || len(sw) != 0 {
		t.Fatalf("SweepExpired = %+v, %v; want none", sw, err)
	}
	if score, err := c.ZScore(ctx, ex, mem).Result(); err != nil || int64(score) != now.Unix()+60 {
		t.Errorf("index after sweep = %v, %v; want %d", score, err, now.Unix()+60)
	}
	if sw, err := s.SweepExpired(ctx, now.Add(60*time.Second), 10); err != nil || len(sw) != 1 {
		t.Fatalf("SweepExpired at expiry = %+v, %v; want the binding", sw, err)
	}
}

// TestScriptCacheFlushed: after SCRIPT FLUSH (as after a restart without persistence of the
// script cache) every script falls back to EVAL.
func TestScriptCacheFlushed(t *testing.T) { testScriptCacheFlushed(t, redistest.Start(t).URL()) }

func testScriptCacheFlushed(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	c := s.Client()
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	for i := range 2 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		b := storage.Binding{Key: "k", ExpiresAt: now.Add(time.Second), CallID: "c", CSeq: uint32(i + 1), UpdatedAt: now}
		if _, err := s.UpdateBindings(ctx, "d@example.com", storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
			t.Fatalf("UpdateBindings: %v", err)
		}
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if sw, err := s.SweepExpired(ctx, now.Add(time.Second), 10); err != nil || len(sw) != 1 {
		t.Fatalf("SweepExpired = %+v, %v", sw, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	epoch, err := s.NonceEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.UseNonceCount(ctx, epoch, "n", 1, time.Minute); err != nil || !ok {
		t.Fatalf("UseNonceCount = %v, %v", ok, err)
	}
}

func BenchmarkUpdateBindings(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkUpdateBindings(b, connect(b, srv.URL(), redis.Options{}))
}

func BenchmarkBindings(b *testing.B) {
	srv := redistest.Start(b)
	storagetest.BenchmarkBindings(b, connect(b, srv.URL(), redis.Options{}))
}
