package redis_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
	"github.com/simpled/simpled/storage/storagetest"

	goredis "github.com/redis/go-redis/v9"
)

// TestRealCluster runs the conformance suite and the Redis-specific tests on a real Redis
// Cluster of three masters: one user's keys on one node, the sweep index shards on all
// three, pipelines that the client splits by node, scripts cached on one node and not on
// another. One cluster serves every subtest (each starts from empty masters): starting one
// takes about two seconds.
func TestRealCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	url := c.URL()
	t.Run("Conformance", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storagetest.Store {
			s := connect(t, url, redis.Options{})
			flush(t, s)
			return s
		})
	})
	tests := []struct {
		name string
		run  func(t *testing.T, url string)
	}{
		{"Keys", testKeys},
		{"Corrupt", testCorrupt},
		{"NonceEpochFlush", testNonceEpochFlush},
		{"SweepAcrossNodes", testSweepAcrossNodes},
		{"IndexRepair", testIndexRepair},
		{"ScriptCacheFlushed", testScriptCacheFlushed},
		{"ConcurrentUpdatesShareAndKeepResults", testConcurrentUpdatesShareAndKeepResults},
		{"MessageKeys", testMessageKeys},
		{"SweepKinds", testSweepKinds},
		{"ExpireMessagesAcrossNodes", testExpireMessagesAcrossNodes},
		{"MessagesCorrupt", testMessagesCorrupt},
		{"MessagesScriptCacheFlushed", testMessagesScriptCacheFlushed},
		{"PresenceKeys", testPresenceKeys},
		{"PresenceCorrupt", testPresenceCorrupt},
		{"ExpirePresenceAcrossNodes", testExpirePresenceAcrossNodes},
		{"PresenceScriptCacheFlushed", testPresenceScriptCacheFlushed},
		{"PresenceIndexRepair", testPresenceIndexRepair},
		{"Spread", testClusterSpread},
		{"CredentialsAcrossNodes", testCredentialsAcrossNodes},
		{"ScriptOnOneNodeOnly", testScriptOnOneNodeOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			flush(t, connect(t, url, redis.Options{}))
			tc.run(t, url)
		})
	}
}

// nodeKeys returns the keys of every master of the cluster behind s, by master address.
func nodeKeys(t *testing.T, s *redis.Store) map[string][]string {
	t.Helper()
	cc, ok := s.Client().(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("client %T is not a cluster client", s.Client())
	}
	var mu sync.Mutex
	out := map[string][]string{}
	err := cc.ForEachMaster(t.Context(), func(ctx context.Context, c *goredis.Client) error {
		keys, err := c.Keys(ctx, "*").Result()
		mu.Lock()
		defer mu.Unlock()
		out[c.Options().Addr] = keys
		return err
	})
	if err != nil {
		t.Fatalf("KEYS on every master: %v", err)
	}
	return out
}

// testClusterSpread: users' data lands on every master, each user's keys of every kind
// together on one, and the sweep index shards on more than one; each master holds the keys of
// the slots it owns (a key on a master that does not own its slot would be unreachable).
func testClusterSpread(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const users = 30
	for i := range users {
		aor := fmt.Sprintf("u%d@example.com", i)
		b := storage.Binding{Key: "k", URI: "sip:" + aor, ExpiresAt: now.Add(time.Hour), CallID: "c", CSeq: 1, UpdatedAt: now}
		if _, err := s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
			t.Fatalf("UpdateBindings %s: %v", aor, err)
		}
		m := storage.Message{DedupKey: "d", Body: []byte("hi"), StoredAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, _, err := s.StoreMessage(ctx, aor, m, storage.MailboxLimits{}, now); err != nil {
			t.Fatalf("StoreMessage %s: %v", aor, err)
		}
		if _, err := s.Publish(ctx, aor, publication(now, "e", []byte("x"), time.Hour)); err != nil {
			t.Fatalf("Publish %s: %v", aor, err)
		}
		if err := s.PutSubscription(ctx, dialog(aor, "s", now, time.Hour), 0); err != nil {
			t.Fatalf("PutSubscription %s: %v", aor, err)
		}
		if err := s.MarkKnown(ctx, aor, now.Add(time.Hour)); err != nil {
			t.Fatalf("MarkKnown %s: %v", aor, err)
		}
	}
	cc := s.Client().(*goredis.ClusterClient)
	where := map[string]string{} // hash tag → master
	indexNodes := map[string]bool{}
	for addr, keys := range nodeKeys(t, s) {
		if len(keys) == 0 {
			t.Errorf("master %s holds no key", addr)
		}
		for _, k := range keys {
			slot, err := cc.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if owner := slotOwner(t, cc, slot); owner != addr {
				t.Errorf("key %s (slot %d) on %s, owned by %s", k, slot, addr, owner)
			}
			tag := k // a key without a hash tag is its own
			if i, j := strings.IndexByte(k, '{'), strings.IndexByte(k, '}'); i >= 0 && j > i {
				tag = k[i+1 : j]
			}
			if strings.HasPrefix(k, "exp:") {
				indexNodes[addr] = true
				continue
			}
			if prev, ok := where[tag]; ok && prev != addr {
				t.Errorf("keys of %s on %s and %s", tag, prev, addr)
			}
			where[tag] = addr
		}
	}
	if len(where) != users {
		t.Errorf("keys of %d users found, want %d", len(where), users)
	}
	if len(indexNodes) < 2 {
		t.Errorf("the 16 index shards all on %v", indexNodes)
	}
}

// slotOwner returns the address of the master that serves slot.
func slotOwner(t *testing.T, cc *goredis.ClusterClient, slot int64) string {
	t.Helper()
	shards, err := cc.ClusterShards(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start > slot || slot > r.End {
				continue
			}
			for _, n := range sh.Nodes {
				if n.Role == "master" {
					return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
		}
	}
	t.Fatalf("slot %d has no master", slot)
	return ""
}

// testCredentialsAcrossNodes: credentials written through one Store are read through the
// others (cred:{aor} on the users' masters, creds on its own), and a nonce count used at
// once from three Stores is accepted by exactly one.
func testCredentialsAcrossNodes(t *testing.T, url string) {
	stores := connectNodes(t, url, 3)
	ctx := t.Context()
	var want []string
	for i := range 20 {
		aor := fmt.Sprintf("c%d@example.com", i)
		want = append(want, aor)
		cred := storage.Credential{HA1MD5: strconv.Itoa(i)}
		if err := stores[i%3].SetCredential(ctx, aor, "example.com", cred); err != nil {
			t.Fatalf("SetCredential: %v", err)
		}
	}
	slices.Sort(want)
	for n, s := range stores {
		if has, err := s.HasCredentials(ctx); err != nil || !has {
			t.Errorf("node %d: HasCredentials = %v, %v", n, has, err)
		}
		if got, err := s.ListCredentials(ctx); err != nil || !slices.Equal(got, want) {
			t.Errorf("node %d: ListCredentials = %v, %v; want %v", n, got, err, want)
		}
		for i := range 20 {
			c, err := s.Credential(ctx, fmt.Sprintf("c%d@example.com", i), "example.com")
			if err != nil || c.HA1MD5 != strconv.Itoa(i) {
				t.Errorf("node %d: Credential c%d = %+v, %v", n, i, c, err)
			}
		}
	}
	if ok, err := stores[2].DeleteCredential(ctx, "c0@example.com"); err != nil || !ok {
		t.Fatalf("DeleteCredential = %v, %v", ok, err)
	}
	if got, err := stores[0].ListCredentials(ctx); err != nil || slices.Contains(got, "c0@example.com") || len(got) != 19 {
		t.Errorf("ListCredentials after delete = %v, %v", got, err)
	}

	epoch, err := stores[0].NonceEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if e, err := s.NonceEpoch(ctx); err != nil || e != epoch {
			t.Fatalf("node %d: NonceEpoch = %d, %v; want %d", i, e, err, epoch)
		}
	}
	for round := range 20 {
		nonce := fmt.Sprintf("n%d", round)
		var wg sync.WaitGroup
		accepted := make(chan bool, len(stores))
		for _, s := range stores {
			wg.Go(func() {
				ok, _, err := s.UseNonceCount(ctx, epoch, nonce, 1, time.Minute)
				if err != nil {
					t.Error(err)
				}
				accepted <- ok
			})
		}
		wg.Wait()
		close(accepted)
		n := 0
		for ok := range accepted {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("nonce %s, count 1: accepted %d times, want once", nonce, n)
		}
	}
}

// testScriptOnOneNodeOnly: a master that lost its script cache (restarted, failed over) while
// the others kept theirs: the commands routed to it fall back to EVAL inside pipelines whose
// other commands ran as EVALSHA.
func testScriptOnOneNodeOnly(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	cc := s.Client().(*goredis.ClusterClient)
	ctx := t.Context()
	now := time.Now().Truncate(time.Second).UTC()
	const users = 20
	register := func(cseq uint32) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range users {
			wg.Go(func() {
				b := storage.Binding{Key: "k", ExpiresAt: now.Add(time.Second), CallID: "c", CSeq: cseq, UpdatedAt: now}
				if _, err := s.UpdateBindings(ctx, fmt.Sprintf("s%d@example.com", i), storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: b}}}); err != nil {
					t.Errorf("UpdateBindings: %v", err)
				}
			})
		}
		wg.Wait()
	}
	register(1) // every master knows the scripts now
	flushed := slotOwner(t, cc, 0)
	flushOne := func() {
		t.Helper()
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			if c.Options().Addr == flushed {
				return c.ScriptFlush(ctx).Err()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("SCRIPT FLUSH on %s: %v", flushed, err)
		}
	}
	flushOne()
	register(2)
	if t.Failed() {
		return
	}
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return c.ScriptFlush(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	register(3) // loads the scripts again on every master
	flushOne()
	sw, err := s.SweepExpired(ctx, now.Add(time.Second), 100)
	if err != nil || len(sw) != users {
		t.Fatalf("SweepExpired = %d bindings, %v; want %d", len(sw), err, users)
	}
}

// BenchmarkTopology runs the hot operations on one redis-server (single), a one-node Redis
// Cluster (cluster1: the cluster client, one master) and a Redis Cluster of three masters
// (cluster3) in one run, one after the other per operation, so their ns/op compare:
//
//	go test -run '^$' -bench Topology ./storage/redis
//
// single against cluster1 is the cost of the cluster client; cluster1 against cluster3 that of
// calls whose pipelines reach two masters (an item's script and its index entry) and of
// shared pipelines split three ways. On one machine the three masters share its cores with
// the client, so cluster3 shows that cost, not the capacity three machines would add.
func BenchmarkTopology(b *testing.B) {
	single := redistest.Start(b)
	one := redistest.Start(b, redistest.WithCluster())
	three := redistest.StartCluster(b)
	topologies := []struct{ name, url string }{{"single", single.URL()}, {"cluster1", one.ClusterURL()}, {"cluster3", three.URL()}}
	ops := []struct {
		name string
		run  func(b *testing.B, s *redis.Store)
	}{
		{"UpdateBindings", func(b *testing.B, s *redis.Store) { storagetest.BenchmarkUpdateBindings(b, s) }},
		{"Publish", func(b *testing.B, s *redis.Store) { storagetest.BenchmarkPublish(b, s) }},
		{"PublishParallel", func(b *testing.B, s *redis.Store) { storagetest.BenchmarkPublishParallel(b, s) }},
		{"Subscriptions", func(b *testing.B, s *redis.Store) { storagetest.BenchmarkSubscriptions(b, s) }},
		{"StoreMessage", func(b *testing.B, s *redis.Store) { storagetest.BenchmarkStoreMessage(b, s) }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			for _, top := range topologies {
				b.Run(top.name, func(b *testing.B) {
					s := connect(b, top.url, redis.Options{})
					flush(b, s)
					op.run(b, s)
				})
			}
		})
	}
}
