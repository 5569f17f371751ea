// Package storagetest is the conformance suite every simpled storage backend must pass: Run
// checks the contracts of the stages' stores (contracts.go) and storage.Backend
// (storage.BindingUpdate rule by rule, expiry sweeps, concurrency, credentials, nonce counts,
// offline mailboxes, known users, publications, subscriptions, authorization rules and the
// call tracker's dialogs)
// against a fresh store per subtest. storage/memory and storage/redis call it from their
// tests, in the manner of nats-server's store tests that run
// each case on memstore and filestore.
//
// Benchmarks shared by the backends live here too (BenchmarkUpdateBindings,
// BenchmarkBindings, BenchmarkStoreMessage, BenchmarkPublish, BenchmarkSubscriptions), so
// their numbers compare like for like.
package storagetest

import (
	"context"
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

// Run runs the suite. newStore must return an empty store, ready to use, and arrange its own
// cleanup with t.Cleanup; it is called once per subtest. Subtests do not run in parallel, so
// newStore may reset one shared server.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("UpdateBindings", func(t *testing.T) { testUpdateBindings(t, newStore) })
	t.Run("Stale", func(t *testing.T) { testStale(t, newStore) })
	t.Run("RemoveAll", func(t *testing.T) { testRemoveAll(t, newStore) })
	t.Run("MaxBindings", func(t *testing.T) { testMaxBindings(t, newStore) })
	t.Run("Expired", func(t *testing.T) { testExpired(t, newStore) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore) })
	t.Run("Bindings", func(t *testing.T) { testBindings(t, newStore) })
	t.Run("RemoveBindings", func(t *testing.T) { testRemoveBindings(t, newStore) })
	t.Run("RemoveFlowBindings", func(t *testing.T) { testRemoveFlowBindings(t, newStore) })
	t.Run("SweepExpired", func(t *testing.T) { testSweepExpired(t, newStore) })
	t.Run("SweepConcurrent", func(t *testing.T) { testSweepConcurrent(t, newStore) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentUpdates(t, newStore) })
	t.Run("Credentials", func(t *testing.T) { testCredentials(t, newStore) })
	t.Run("CredentialAdmin", func(t *testing.T) { testCredentialAdmin(t, newStore) })
	t.Run("NonceCount", func(t *testing.T) { testNonceCount(t, newStore) })
	t.Run("NonceTTL", func(t *testing.T) { testNonceTTL(t, newStore) })
	t.Run("NonceEpoch", func(t *testing.T) { testNonceEpoch(t, newStore) })
	t.Run("Close", func(t *testing.T) { testClose(t, newStore) })
	t.Run("Messages", func(t *testing.T) { runMessages(t, newStore) })
	t.Run("Presence", func(t *testing.T) { runPresence(t, newStore) })
	t.Run("MessageSummaries", func(t *testing.T) { testMessageSummaries(t, newStore) })
	t.Run("Dialogs", func(t *testing.T) { runDialogs(t, newStore) })
}

// base is the suite's clock origin: whole seconds near the real time, so a backend that
// derives key TTLs from it (Redis) keeps the data for the length of a test.
func base() time.Time { return time.Now().Add(time.Hour).Truncate(time.Second).UTC() }

// at returns t0 + s seconds.
func at(t0 time.Time, s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// bnd builds a binding for key registered at upd (seconds after t0) for exp seconds.
func bnd(t0 time.Time, key, callID string, cseq uint32, upd, exp int) storage.Binding {
	return storage.Binding{
		Key:       key,
		Contact:   "<" + key + ">",
		URI:       key,
		ExpiresAt: at(t0, upd+exp),
		Q:         -1,
		CallID:    callID,
		CSeq:      cseq,
		UpdatedAt: at(t0, upd),
	}
}

func change(b storage.Binding) storage.BindingChange { return storage.BindingChange{Binding: b} }

// update is one REGISTER at now carrying bs.
func update(now time.Time, bs ...storage.Binding) storage.BindingUpdate {
	u := storage.BindingUpdate{Now: now}
	for _, b := range bs {
		u.Changes = append(u.Changes, change(b))
	}
	return u
}

const aor = "alice@example.com"

func mustUpdate(t *testing.T, s Store, aor string, u storage.BindingUpdate) storage.BindingResult {
	t.Helper()
	res, err := s.UpdateBindings(t.Context(), aor, u)
	if err != nil {
		t.Fatalf("UpdateBindings(%s): %v", aor, err)
	}
	return res
}

func mustBindings(t *testing.T, s Store, aor string, now time.Time) []storage.Binding {
	t.Helper()
	bs, err := s.Bindings(t.Context(), aor, now)
	if err != nil {
		t.Fatalf("Bindings(%s): %v", aor, err)
	}
	return bs
}

// bindingKey names a binding in failures.
func bindingKey(b storage.Binding) string { return b.Key }

// keys returns the Keys of bs in order.
func keys(bs []storage.Binding) []string { return names(bs, bindingKey) }

// equalBindings compares two binding lists field by field (times with Equal).
func equalBindings(t *testing.T, what string, got, want []storage.Binding) {
	t.Helper()
	equalList(t, what, got, want, bindingKey, diffBinding)
}

func diffBinding(got, want storage.Binding) string {
	var d []string
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		d = append(d, fmt.Sprintf("ExpiresAt %v, want %v", got.ExpiresAt, want.ExpiresAt))
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		d = append(d, fmt.Sprintf("UpdatedAt %v, want %v", got.UpdatedAt, want.UpdatedAt))
	}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
	if len(want.Path) == 0 {
		want.Path = nil
	}
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s %#v, want %#v", gv.Type().Field(i).Name, g, w))
		}
	}
	return strings.Join(d, "; ")
}

// updateCase is one case of testUpdateBindings: setup is applied first (each must succeed),
// then u, whose result must list the bindings wanted.
type updateCase struct {
	name          string
	setup         []storage.BindingUpdate
	u             storage.BindingUpdate
	wantBindings  []storage.Binding
	wantAdded     []string
	wantRefreshed []string
	wantRemoved   []storage.Binding
}

// updateCases are rules 1 to 3 of storage.BindingUpdate without errors, on one AOR.
func updateCases(t0 time.Time) []updateCase {
	a1 := bnd(t0, "sip:a@10.0.0.1", "c1", 1, 0, 3600)
	b1 := bnd(t0, "sip:b@10.0.0.2", "c2", 7, 0, 3600)
	return []updateCase{
		{
			name:         "add two, result ordered by key",
			u:            update(t0, b1, a1),
			wantBindings: []storage.Binding{a1, b1},
			wantAdded:    []string{a1.Key, b1.Key},
		},
		{
			name:          "same Call-ID higher CSeq replaces",
			setup:         []storage.BindingUpdate{update(t0, a1)},
			u:             update(at(t0, 10), bnd(t0, a1.Key, "c1", 2, 10, 60)),
			wantBindings:  []storage.Binding{bnd(t0, a1.Key, "c1", 2, 10, 60)},
			wantRefreshed: []string{a1.Key},
		},
		{
			name:          "different Call-ID lower CSeq replaces",
			setup:         []storage.BindingUpdate{update(t0, b1)},
			u:             update(at(t0, 5), bnd(t0, b1.Key, "other", 1, 5, 120)),
			wantBindings:  []storage.Binding{bnd(t0, b1.Key, "other", 1, 5, 120)},
			wantRefreshed: []string{b1.Key},
		},
		{
			name:         "expires 0 removes and reports the stored binding",
			setup:        []storage.BindingUpdate{update(t0, a1, b1)},
			u:            update(at(t0, 5), bnd(t0, a1.Key, "c1", 2, 5, 0)),
			wantBindings: []storage.Binding{b1},
			wantRemoved:  []storage.Binding{a1},
		},
		{
			name:         "expires 0 of an unknown key is no error",
			setup:        []storage.BindingUpdate{update(t0, b1)},
			u:            update(at(t0, 5), bnd(t0, "sip:nobody@x", "c9", 1, 5, 0)),
			wantBindings: []storage.Binding{b1},
		},
		{
			name:         "expires in the past removes",
			setup:        []storage.BindingUpdate{update(t0, a1)},
			u:            update(at(t0, 5), bnd(t0, a1.Key, "c1", 2, 5, -3)),
			wantBindings: nil,
			wantRemoved:  []storage.Binding{a1},
		},
		{
			name:  "add, refresh and remove in one update",
			setup: []storage.BindingUpdate{update(t0, a1, b1)},
			u: update(at(t0, 5),
				bnd(t0, "sip:c@10.0.0.3", "c1", 9, 5, 60),
				bnd(t0, b1.Key, "c2", 8, 5, 60),
				bnd(t0, a1.Key, "c1", 2, 5, 0)),
			wantBindings:  []storage.Binding{bnd(t0, b1.Key, "c2", 8, 5, 60), bnd(t0, "sip:c@10.0.0.3", "c1", 9, 5, 60)},
			wantAdded:     []string{"sip:c@10.0.0.3"},
			wantRefreshed: []string{b1.Key},
			wantRemoved:   []storage.Binding{a1},
		},
		{
			name:          "same key twice: the last change wins",
			u:             update(t0, bnd(t0, a1.Key, "c1", 1, 0, 60), bnd(t0, a1.Key, "c1", 1, 0, 90)),
			wantBindings:  []storage.Binding{bnd(t0, a1.Key, "c1", 1, 0, 90)},
			wantAdded:     []string{a1.Key},
			wantRefreshed: nil,
		},
		{
			name:          "same key twice, the last one removes",
			setup:         []storage.BindingUpdate{update(t0, a1)},
			u:             update(t0, bnd(t0, a1.Key, "c9", 1, 0, 60), bnd(t0, a1.Key, "c9", 1, 0, 0)),
			wantBindings:  nil,
			wantRemoved:   []storage.Binding{a1},
			wantRefreshed: nil,
		},
		manyChanges(t0, a1, b1),
		{
			name:         "empty update changes nothing",
			setup:        []storage.BindingUpdate{update(t0, a1)},
			u:            update(at(t0, 1)),
			wantBindings: []storage.Binding{a1},
		},
	}
}

// manyChanges is one update with more contacts than a phone sends: ten new keys, one of them
// changed twice (the last change wins), a refresh and a removal, so a backend that keeps small
// updates apart from large ones is checked on both.
func manyChanges(t0 time.Time, a1, b1 storage.Binding) updateCase {
	var changes, want []storage.Binding
	var added []string
	for i := range 10 {
		b := bnd(t0, fmt.Sprintf("sip:d%d@10.0.1.%d", i, i), "c3", uint32(i+1), 5, 60)
		changes = append(changes, b)
		want = append(want, b)
		added = append(added, b.Key)
	}
	last := bnd(t0, changes[3].Key, "c3", 20, 5, 90)
	want[3] = last
	refreshed := bnd(t0, b1.Key, "c2", 8, 5, 60)
	changes = append(changes, last, refreshed, bnd(t0, a1.Key, "c1", 2, 5, 0))
	want = append(want, refreshed)
	slices.SortFunc(want, storage.CompareBindings)
	slices.Sort(added)
	return updateCase{
		name:          "many contacts in one update: adds, a key changed twice, a refresh and a removal",
		setup:         []storage.BindingUpdate{update(t0, a1, b1)},
		u:             update(at(t0, 5), changes...),
		wantBindings:  want,
		wantAdded:     added,
		wantRefreshed: []string{b1.Key},
		wantRemoved:   []storage.Binding{a1},
	}
}

func testUpdateBindings(t *testing.T, newStore func(t *testing.T) Store) {
	for _, tc := range updateCases(base()) {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			for _, u := range tc.setup {
				mustUpdate(t, s, aor, u)
			}
			checkUpdate(t, s, tc, mustUpdate(t, s, aor, tc.u))
		})
	}
}

// checkUpdate checks the result of tc's update, and that Bindings reads what it stored.
func checkUpdate(t *testing.T, s Store, tc updateCase, res storage.BindingResult) {
	t.Helper()
	equalBindings(t, "Result.Bindings", res.Bindings, tc.wantBindings)
	equalBindings(t, "Bindings()", mustBindings(t, s, aor, tc.u.Now), tc.wantBindings)
	if got := keys(res.Added); !slices.Equal(got, orEmpty(tc.wantAdded)) {
		t.Errorf("Added = %v, want %v", got, tc.wantAdded)
	}
	if got := keys(res.Refreshed); !slices.Equal(got, orEmpty(tc.wantRefreshed)) {
		t.Errorf("Refreshed = %v, want %v", got, tc.wantRefreshed)
	}
	equalBindings(t, "Removed", res.Removed, tc.wantRemoved)
	equalBindings(t, "Expired", res.Expired, nil)
	equalBindings(t, "Evicted", res.Evicted, nil)
	// Added and Refreshed carry the new state, equal to what is stored.
	for _, b := range append(slices.Clone(res.Added), res.Refreshed...) {
		i := slices.IndexFunc(tc.wantBindings, func(w storage.Binding) bool { return w.Key == b.Key })
		if i < 0 {
			t.Errorf("Added/Refreshed %s not among the bindings", b.Key)
			continue
		}
		if d := diffBinding(b, tc.wantBindings[i]); d != "" {
			t.Errorf("Added/Refreshed %s: %s", b.Key, d)
		}
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// testStale covers rule 3: a change for an existing binding with the same Call-ID and a CSeq
// not higher fails the whole update, and nothing is written.
func testStale(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	a := bnd(t0, "sip:a@h", "c1", 10, 0, 600)
	b := bnd(t0, "sip:b@h", "c2", 20, 0, 600)
	tests := []struct {
		name string
		u    storage.BindingUpdate
	}{
		{"equal CSeq", update(at(t0, 1), bnd(t0, a.Key, "c1", 10, 1, 900))},
		{"lower CSeq", update(at(t0, 1), bnd(t0, a.Key, "c1", 9, 1, 900))},
		{"lower CSeq removal", update(at(t0, 1), bnd(t0, a.Key, "c1", 9, 1, 0))},
		{"max uint32 stored, equal", update(at(t0, 1), bnd(t0, "sip:max@h", "cm", 1<<32-1, 1, 900))},
		{"one stale among good changes", update(at(t0, 1),
			bnd(t0, "sip:new@h", "c3", 1, 1, 900), // would be added
			bnd(t0, a.Key, "c1", 11, 1, 900),      // would be refreshed
			bnd(t0, b.Key, "c2", 20, 1, 0),        // stale removal
		)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			max := bnd(t0, "sip:max@h", "cm", 1<<32-1, 0, 600)
			mustUpdate(t, s, aor, update(t0, a, b, max))
			before := mustBindings(t, s, aor, at(t0, 1))
			_, err := s.UpdateBindings(t.Context(), aor, tc.u)
			if !errors.Is(err, storage.ErrStale) {
				t.Fatalf("err = %v, want ErrStale", err)
			}
			equalBindings(t, "after ErrStale", mustBindings(t, s, aor, at(t0, 1)), before)
		})
	}

	t.Run("max uint32 then accepted with new Call-ID", func(t *testing.T) {
		s := newStore(t)
		mustUpdate(t, s, aor, update(t0, bnd(t0, a.Key, "c1", 1<<32-1, 0, 600)))
		got := mustBindings(t, s, aor, t0)
		if len(got) != 1 || got[0].CSeq != 1<<32-1 {
			t.Fatalf("CSeq round trip: %+v", got)
		}
		res := mustUpdate(t, s, aor, update(at(t0, 1), bnd(t0, a.Key, "c2", 1, 1, 600)))
		if len(res.Refreshed) != 1 || res.Refreshed[0].CSeq != 1 {
			t.Fatalf("Refreshed = %+v", res.Refreshed)
		}
	})
}

// testRemoveAll covers rule 2 (Contact: *).
func testRemoveAll(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	a := bnd(t0, "sip:a@h", "c1", 5, 0, 600)
	b := bnd(t0, "sip:b@h", "c2", 5, 0, 600)
	old := bnd(t0, "sip:old@h", "c3", 9, 0, 10) // expired at t0+10
	tests := []struct {
		name        string
		callID      string
		cseq        uint32
		wantErr     error
		wantRemoved []storage.Binding
	}{
		{name: "different Call-ID removes all", callID: "c9", cseq: 1, wantRemoved: []storage.Binding{a, b}},
		{name: "same Call-ID higher CSeq removes all", callID: "c1", cseq: 6, wantRemoved: []storage.Binding{a, b}},
		{name: "same Call-ID equal CSeq is stale", callID: "c1", cseq: 5, wantErr: storage.ErrStale},
		{name: "same Call-ID lower CSeq is stale", callID: "c2", cseq: 4, wantErr: storage.ErrStale},
		// The expired binding has Call-ID c3 and CSeq 9: it is dropped first (rule 1), so it
		// cannot make the request stale.
		{name: "expired binding does not count", callID: "c3", cseq: 6, wantRemoved: []storage.Binding{a, b}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			mustUpdate(t, s, aor, update(t0, a, b, old))
			now := at(t0, 20)
			res, err := s.UpdateBindings(t.Context(), aor, storage.BindingUpdate{Now: now, RemoveAll: true, CallID: tc.callID, CSeq: tc.cseq})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				equalBindings(t, "after error", mustBindings(t, s, aor, now), []storage.Binding{a, b})
				// Nothing was written: the expired binding is still there for the sweep.
				sw, err := s.SweepExpired(t.Context(), now, 10)
				if err != nil || len(sw) != 1 || sw[0].Binding.Key != old.Key {
					t.Fatalf("sweep after error = %+v, %v; want %s", sw, err, old.Key)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateBindings: %v", err)
			}
			equalBindings(t, "Removed", res.Removed, tc.wantRemoved)
			equalBindings(t, "Expired", res.Expired, []storage.Binding{old})
			equalBindings(t, "Bindings", res.Bindings, nil)
			equalBindings(t, "Bindings()", mustBindings(t, s, aor, now), nil)
			equalBindings(t, "Added", res.Added, nil)
		})
	}

	t.Run("empty AOR", func(t *testing.T) {
		s := newStore(t)
		res := mustUpdate(t, s, aor, storage.BindingUpdate{Now: t0, RemoveAll: true, CallID: "x", CSeq: 1})
		if len(res.Bindings)+len(res.Removed)+len(res.Expired) != 0 {
			t.Fatalf("result = %+v, want empty", res)
		}
	})
}

// testMaxBindings covers rule 4.
func testMaxBindings(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	// Three bindings registered at t0+1, t0+2, t0+3 (UpdatedAt), all live until t0+1000.
	b1 := bnd(t0, "sip:1@h", "c1", 1, 3, 997) // newest despite its key
	b2 := bnd(t0, "sip:2@h", "c2", 1, 1, 999) // oldest
	b3 := bnd(t0, "sip:3@h", "c3", 1, 2, 998)
	n1 := bnd(t0, "sip:n1@h", "n1", 1, 10, 600)
	n2 := bnd(t0, "sip:n2@h", "n2", 1, 10, 600)
	now := at(t0, 10)
	tests := []struct {
		name        string
		u           storage.BindingUpdate
		wantErr     error
		wantKeys    []string
		wantEvicted []string
	}{
		{name: "unlimited", u: limit(update(now, n1, n2), 0, false), wantKeys: []string{b1.Key, b2.Key, b3.Key, n1.Key, n2.Key}},
		{name: "at the limit is fine", u: limit(update(now, n1), 4, false), wantKeys: []string{b1.Key, b2.Key, b3.Key, n1.Key}},
		{name: "over the limit refused", u: limit(update(now, n1), 3, false), wantErr: storage.ErrTooManyBindings},
		{name: "refresh at the limit", u: limit(update(now, bnd(t0, b2.Key, "c2", 2, 10, 60)), 3, false), wantKeys: []string{b1.Key, b2.Key, b3.Key}},
		{name: "removal and add at the limit", u: limit(update(now, n1, bnd(t0, b3.Key, "c3", 2, 10, 0)), 3, false), wantKeys: []string{b1.Key, b2.Key, n1.Key}},
		{name: "evict the oldest", u: limit(update(now, n1), 3, true), wantKeys: []string{b1.Key, b3.Key, n1.Key}, wantEvicted: []string{b2.Key}},
		{name: "evict two oldest", u: limit(update(now, n1, n2), 3, true), wantKeys: []string{b1.Key, n1.Key, n2.Key}, wantEvicted: []string{b2.Key, b3.Key}},
		{
			name: "touched bindings are not evicted",
			// b2 (the oldest) is refreshed, so b3 is the oldest untouched one.
			u:           limit(update(now, n1, bnd(t0, b2.Key, "c2", 2, 10, 60)), 3, true),
			wantKeys:    []string{b1.Key, b2.Key, n1.Key},
			wantEvicted: []string{b3.Key},
		},
		{name: "not enough to evict", u: limit(update(now, n1, n2), 1, true), wantErr: storage.ErrTooManyBindings},
		{name: "limit below the untouched count", u: limit(update(now), 1, true), wantKeys: []string{b1.Key}, wantEvicted: []string{b2.Key, b3.Key}},
		{name: "already above the limit without eviction", u: limit(update(now, bnd(t0, b1.Key, "c1", 2, 10, 60)), 2, false), wantErr: storage.ErrTooManyBindings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			mustUpdate(t, s, aor, update(t0, b1, b2, b3))
			before := mustBindings(t, s, aor, now)
			res, err := s.UpdateBindings(t.Context(), aor, tc.u)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				equalBindings(t, "after error", mustBindings(t, s, aor, now), before)
				return
			}
			if err != nil {
				t.Fatalf("UpdateBindings: %v", err)
			}
			if got := keys(res.Bindings); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("Bindings = %v, want %v", got, tc.wantKeys)
			}
			if got := keys(mustBindings(t, s, aor, now)); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("Bindings() = %v, want %v", got, tc.wantKeys)
			}
			if got := keys(res.Evicted); !slices.Equal(got, orEmpty(tc.wantEvicted)) {
				t.Errorf("Evicted = %v, want %v", got, tc.wantEvicted)
			}
			for _, e := range res.Evicted {
				i := slices.IndexFunc(before, func(b storage.Binding) bool { return b.Key == e.Key })
				if i < 0 || diffBinding(e, before[i]) != "" {
					t.Errorf("Evicted %s is not the stored binding", e.Key)
				}
			}
		})
	}

	t.Run("eviction ties broken by key", func(t *testing.T) {
		s := newStore(t)
		x := bnd(t0, "sip:x@h", "cx", 1, 1, 999)
		y := bnd(t0, "sip:y@h", "cy", 1, 1, 999)
		mustUpdate(t, s, aor, update(t0, y, x))
		res := mustUpdate(t, s, aor, limit(update(now, n1), 2, true))
		if got := keys(res.Evicted); !slices.Equal(got, []string{x.Key}) {
			t.Fatalf("Evicted = %v, want [%s]", got, x.Key)
		}
	})
}

func limit(u storage.BindingUpdate, max int, evict bool) storage.BindingUpdate {
	u.MaxBindings, u.EvictOldest = max, evict
	return u
}

// testExpired covers rule 1.
func testExpired(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	short := bnd(t0, "sip:short@h", "c1", 5, 0, 10)
	long := bnd(t0, "sip:long@h", "c2", 1, 0, 600)
	mustUpdate(t, s, aor, update(t0, short, long))

	// At exactly ExpiresAt the binding has expired.
	if got := keys(mustBindings(t, s, aor, at(t0, 9))); !slices.Equal(got, []string{long.Key, short.Key}) {
		t.Fatalf("Bindings at +9 = %v", got)
	}
	if got := keys(mustBindings(t, s, aor, at(t0, 10))); !slices.Equal(got, []string{long.Key}) {
		t.Fatalf("Bindings at +10 = %v, want only %s", got, long.Key)
	}

	// A new REGISTER for the expired key with the same Call-ID and a lower CSeq is not stale:
	// the expired binding is dropped first and reported; the change adds.
	again := bnd(t0, short.Key, "c1", 2, 20, 60)
	res := mustUpdate(t, s, aor, update(at(t0, 20), again))
	equalBindings(t, "Expired", res.Expired, []storage.Binding{short})
	equalBindings(t, "Added", res.Added, []storage.Binding{again})
	equalBindings(t, "Refreshed", res.Refreshed, nil)
	equalBindings(t, "Bindings", res.Bindings, []storage.Binding{long, again})

	// Reported once: the next update and the sweep do not report it again.
	res = mustUpdate(t, s, aor, update(at(t0, 21)))
	equalBindings(t, "Expired again", res.Expired, nil)
	sw, err := s.SweepExpired(t.Context(), at(t0, 21), 100)
	if err != nil || len(sw) != 0 {
		t.Fatalf("SweepExpired = %+v, %v; want none", sw, err)
	}
}

// testRoundTrip stores a binding with every field set and odd values.
func testRoundTrip(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	full := storage.Binding{
		Key:        `<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>;reg-id=1`,
		Contact:    `<sip:alice@192.0.2.4:5060;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1`,
		URI:        "sip:alice@192.0.2.4:5060;transport=tcp;ob",
		ExpiresAt:  at(t0, 3600),
		Q:          1000,
		CallID:     `a84b4c76e66710@pc33.atlanta.com "quoted" \ back|pipe`,
		CSeq:       1<<32 - 1,
		Path:       []string{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr;ob>"},
		InstanceID: "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>",
		RegID:      1,
		Received:   "[2001:db8::1]:50000",
		Transport:  "wss",
		Flow:       "flow-token-ÄÖÜ-日本",
		Node:       "node-1",
		UserAgent:  "Linphone/5.2 (\"x\")\t{}[]",
		UpdatedAt:  t0,
	}
	zero := storage.Binding{
		Key:       "sip:zero@h|with|pipes",
		ExpiresAt: at(t0, 60),
		Q:         -1,
		Path:      []string{},
		UpdatedAt: time.Unix(0, 0).UTC(),
	}
	subsecond := bnd(t0, "sip:frac@h", "cf", 1, 0, 60)
	subsecond.ExpiresAt = subsecond.ExpiresAt.Add(900 * time.Millisecond).In(time.FixedZone("X", 3600))
	subsecond.UpdatedAt = subsecond.UpdatedAt.Add(400 * time.Millisecond)

	for _, aor := range []string{aor, "we|ird}{@exämple.com", "{}"} {
		t.Run(aor, func(t *testing.T) {
			s := newStore(t)
			res := mustUpdate(t, s, aor, update(t0, full, zero, subsecond))
			wantSub := subsecond
			wantSub.ExpiresAt = at(t0, 60)
			wantSub.UpdatedAt = t0
			want := []storage.Binding{wantSub, zero, full}
			slices.SortFunc(want, func(a, b storage.Binding) int { return strings.Compare(a.Key, b.Key) })
			equalBindings(t, "Result.Bindings", res.Bindings, want)
			got := mustBindings(t, s, aor, t0)
			equalBindings(t, "Bindings()", got, want)
			for _, b := range got {
				if b.ExpiresAt.Location() != time.UTC || b.UpdatedAt.Location() != time.UTC {
					t.Errorf("%s: times not in UTC: %v %v", b.Key, b.ExpiresAt, b.UpdatedAt)
				}
				if b.Path != nil && len(b.Path) == 0 {
					t.Errorf("%s: empty Path not returned as nil", b.Key)
				}
			}
			// Mutating a returned binding must not change the store.
			for _, l := range [][]storage.Binding{got, res.Bindings, res.Added} {
				for i := range l {
					if l[i].Key == full.Key {
						l[i].Path[0] = "mutated"
					}
				}
			}
			equalBindings(t, "after mutating a copy", mustBindings(t, s, aor, t0), want)
		})
	}
}

func testBindings(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	got, err := s.Bindings(t.Context(), "nobody@example.com", t0)
	if err != nil || len(got) != 0 {
		t.Fatalf("Bindings(unknown) = %v, %v; want empty, nil", got, err)
	}
	// Keys inserted in reverse order come back ordered.
	var bs []storage.Binding
	for i := 9; i >= 0; i-- {
		bs = append(bs, bnd(t0, fmt.Sprintf("sip:%d@h", i), "c", 1, 0, 100+i))
	}
	mustUpdate(t, s, aor, update(t0, bs...))
	mustUpdate(t, s, "bob@example.com", update(t0, bnd(t0, "sip:bob@h", "c", 1, 0, 100)))
	want := make([]string, 0, 10)
	for i := range 10 {
		want = append(want, fmt.Sprintf("sip:%d@h", i))
	}
	if got := keys(mustBindings(t, s, aor, t0)); !slices.Equal(got, want) {
		t.Fatalf("Bindings = %v, want %v", got, want)
	}
	// At t0+105 the bindings with exp <= 105 (i <= 5) are gone.
	if got := keys(mustBindings(t, s, aor, at(t0, 105))); !slices.Equal(got, want[6:]) {
		t.Fatalf("Bindings at +105 = %v, want %v", got, want[6:])
	}
	if got := keys(mustBindings(t, s, "bob@example.com", t0)); !slices.Equal(got, []string{"sip:bob@h"}) {
		t.Fatalf("bob's Bindings = %v", got)
	}
}

func testRemoveBindings(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	ctx := t.Context()
	got, err := s.RemoveBindings(ctx, "nobody@example.com")
	if err != nil || len(got) != 0 {
		t.Fatalf("RemoveBindings(unknown) = %v, %v", got, err)
	}
	b := bnd(t0, "sip:b@h", "c", 1, 0, 100)
	a := bnd(t0, "sip:a@h", "c", 1, 0, 5) // expired at the time of removal
	bob := bnd(t0, "sip:bob@h", "c", 1, 0, 5)
	mustUpdate(t, s, aor, update(t0, b, a))
	mustUpdate(t, s, "bob@example.com", update(t0, bob))
	got, err = s.RemoveBindings(ctx, aor)
	if err != nil {
		t.Fatalf("RemoveBindings: %v", err)
	}
	equalBindings(t, "removed", got, []storage.Binding{a, b})
	equalBindings(t, "after", mustBindings(t, s, aor, t0), nil)
	// The removed expired binding is not swept later; bob's is.
	sw, err := s.SweepExpired(ctx, at(t0, 200), 100)
	if err != nil {
		t.Fatalf("SweepExpired: %v", err)
	}
	if len(sw) != 1 || sw[0].AOR != "bob@example.com" {
		t.Fatalf("SweepExpired = %+v, want only bob's", sw)
	}
	// The AOR can register again.
	mustUpdate(t, s, aor, update(t0, bnd(t0, "sip:a@h", "c", 1, 0, 100)))
}

// onFlow is b bound to flow.
func onFlow(b storage.Binding, flow string) storage.Binding {
	b.Flow, b.Node = flow, "node-1"
	return b
}

// testRemoveFlowBindings: a flow's end removes the AOR's live bindings of that flow and no
// other: not another flow's, not one without a flow, not another AOR's, not one the same
// device registered again over a new flow; expired ones are left to the sweep, once.
func testRemoveFlowBindings(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	ctx := t.Context()
	// A token is opaque to the store: odd bytes must match as they were stored.
	const f1, f2 = `tok1 "Ä<>&\`, "tok2"
	if _, err := s.RemoveFlowBindings(ctx, aor, "", t0); err == nil {
		t.Fatal("RemoveFlowBindings with an empty flow succeeded")
	}
	if got, err := s.RemoveFlowBindings(ctx, "nobody@example.com", f1, t0); err != nil || len(got) != 0 {
		t.Fatalf("RemoveFlowBindings(unknown) = %v, %v", got, err)
	}
	a := onFlow(bnd(t0, "sip:a@h", "c", 1, 0, 100), f1)
	b := onFlow(bnd(t0, "sip:b@h", "c", 1, 0, 100), f1)
	other := onFlow(bnd(t0, "sip:c@h", "c", 1, 0, 100), f2)
	none := bnd(t0, "sip:d@h", "c", 1, 0, 100)
	expired := onFlow(bnd(t0, "sip:e@h", "c", 1, 0, 5), f1)
	moved := onFlow(bnd(t0, "sip:m@h", "c", 1, 0, 100), f1)
	bob := onFlow(bnd(t0, "sip:bob@h", "c", 1, 0, 100), f1)
	mustUpdate(t, s, aor, update(t0, a, b, other, none, expired, moved))
	mustUpdate(t, s, "bob@example.com", update(t0, bob))
	// The device of "moved" registers again over flow 2 before flow 1 closes.
	moved2 := onFlow(bnd(t0, moved.Key, "c", 2, 2, 100), f2)
	mustUpdate(t, s, aor, update(at(t0, 2), moved2))

	got, err := s.RemoveFlowBindings(ctx, aor, f1, at(t0, 10))
	if err != nil {
		t.Fatalf("RemoveFlowBindings: %v", err)
	}
	equalBindings(t, "removed", got, []storage.Binding{a, b})
	equalBindings(t, "left", mustBindings(t, s, aor, at(t0, 10)), []storage.Binding{other, none, moved2})
	equalBindings(t, "bob's", mustBindings(t, s, "bob@example.com", at(t0, 10)), []storage.Binding{bob})
	if got, err := s.RemoveFlowBindings(ctx, aor, f1, at(t0, 10)); err != nil || len(got) != 0 {
		t.Fatalf("RemoveFlowBindings again = %v, %v; want none", got, err)
	}

	// The sweep reports the expired binding once, and never the removed ones.
	var swept []string
	for _, now := range []time.Time{at(t0, 10), at(t0, 200)} {
		sw, err := s.SweepExpired(ctx, now, 100)
		if err != nil {
			t.Fatalf("SweepExpired: %v", err)
		}
		for _, e := range sw {
			swept = append(swept, e.AOR+" "+e.Binding.Key)
		}
	}
	slices.Sort(swept)
	want := []string{aor + " " + expired.Key, aor + " " + moved2.Key, aor + " " + none.Key, aor + " " + other.Key,
		"bob@example.com " + bob.Key}
	slices.Sort(want)
	if !slices.Equal(swept, want) {
		t.Fatalf("swept %q, want %q", swept, want)
	}

	// Removing the last binding of an AOR leaves nothing behind: it registers again.
	c := onFlow(bnd(t0, "sip:a@h", "c2", 1, 300, 100), f1)
	mustUpdate(t, s, aor, update(at(t0, 300), c))
	got, err = s.RemoveFlowBindings(ctx, aor, f1, at(t0, 301))
	if err != nil {
		t.Fatalf("RemoveFlowBindings: %v", err)
	}
	equalBindings(t, "removed last", got, []storage.Binding{c})
	equalBindings(t, "after the last", mustBindings(t, s, aor, at(t0, 301)), nil)
	mustUpdate(t, s, aor, update(at(t0, 302), bnd(t0, "sip:a@h", "c3", 1, 302, 100)))
}

// testSweepExpired: each expired binding once, limit respected, refreshed and removed
// bindings not returned.
func testSweepExpired(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.SweepExpired(ctx, t0, 0); err == nil {
		t.Errorf("SweepExpired(limit 0) succeeded")
	}

	want := map[string]storage.Binding{} // aor|key → binding expected from the sweep
	for i := range 12 {
		a := fmt.Sprintf("user%d@example.com", i%5)
		b := bnd(t0, fmt.Sprintf("sip:%d@h", i), "c", 1, 0, 10+i) // expire t0+10..t0+21
		mustUpdate(t, s, a, update(t0, b))
		want[a+"|"+b.Key] = b
	}
	live := bnd(t0, "sip:live@h", "c", 1, 0, 1000)
	mustUpdate(t, s, "user0@example.com", update(t0, live))
	// Refreshed before expiry: not swept.
	refreshed := bnd(t0, "sip:0@h", "c", 2, 5, 1000)
	mustUpdate(t, s, "user0@example.com", update(at(t0, 5), refreshed))
	delete(want, "user0@example.com|sip:0@h")
	// Removed with Expires 0: not swept.
	mustUpdate(t, s, "user1@example.com", update(at(t0, 5), bnd(t0, "sip:1@h", "c", 2, 5, 0)))
	delete(want, "user1@example.com|sip:1@h")
	// Shortened by a refresh: swept at its new time.
	short := bnd(t0, "sip:11@h", "c", 2, 5, 1)
	mustUpdate(t, s, "user1@example.com", update(at(t0, 5), short))
	want["user1@example.com|sip:11@h"] = short

	// Nothing expired yet at t0+5 (the shortened one expires at t0+6).
	if sw, err := s.SweepExpired(ctx, at(t0, 5), 100); err != nil || len(sw) != 0 {
		t.Fatalf("SweepExpired(+5) = %+v, %v; want none", sw, err)
	}
	// At t0+6 only the shortened one.
	sw, err := s.SweepExpired(ctx, at(t0, 6), 100)
	if err != nil || len(sw) != 1 || sw[0].Binding.Key != short.Key {
		t.Fatalf("SweepExpired(+6) = %+v, %v; want %s", sw, err, short.Key)
	}
	delete(want, "user1@example.com|sip:11@h")

	// At t0+15: the ones expiring at t0+10..t0+15 not refreshed/removed, in batches of 2.
	seen := map[string]bool{}
	collect := func(now time.Time, limit int) int {
		t.Helper()
		sw, err := s.SweepExpired(ctx, now, limit)
		if err != nil {
			t.Fatalf("SweepExpired: %v", err)
		}
		if len(sw) > limit {
			t.Fatalf("SweepExpired returned %d > limit %d", len(sw), limit)
		}
		for _, e := range sw {
			id := e.AOR + "|" + e.Binding.Key
			if seen[id] {
				t.Fatalf("%s returned twice", id)
			}
			seen[id] = true
			w, ok := want[id]
			if !ok {
				t.Fatalf("SweepExpired returned %s, which is not expected", id)
			}
			if !e.Binding.Expired(now) {
				t.Fatalf("%s returned at %v but expires %v", id, now, e.Binding.ExpiresAt)
			}
			if d := diffBinding(e.Binding, w); d != "" {
				t.Fatalf("%s: %s", id, d)
			}
		}
		return len(sw)
	}
	n := 0
	for {
		got := collect(at(t0, 15), 2)
		n += got
		if got < 2 {
			break
		}
	}
	if n != 4 { // keys 2..5 (0 refreshed, 1 removed)
		t.Fatalf("swept %d at +15, want 4 (%v)", n, seen)
	}
	for {
		if collect(at(t0, 100), 3) < 3 {
			break
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("swept %d bindings, want %d", len(seen), len(want))
	}
	// The live and refreshed bindings are still there.
	if got := keys(mustBindings(t, s, "user0@example.com", at(t0, 100))); !slices.Equal(got, []string{refreshed.Key, live.Key}) {
		t.Fatalf("user0 after sweeps = %v", got)
	}
	if sw, err := s.SweepExpired(ctx, at(t0, 100), 100); err != nil || len(sw) != 0 {
		t.Fatalf("final SweepExpired = %+v, %v", sw, err)
	}
}

// testSweepConcurrent: sweepers racing on one store return each binding once in total.
func testSweepConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const aors, per = 20, 5
	for i := range aors {
		var bs []storage.Binding
		for j := range per {
			bs = append(bs, bnd(t0, fmt.Sprintf("sip:%d@h", j), "c", 1, 0, 1+j))
		}
		mustUpdate(t, s, fmt.Sprintf("u%d@example.com", i), update(t0, bs...))
	}
	SweptOnce(t, at(t0, 10), 7, aors*per, slices.Repeat([]Sweep{BindingSweep(s)}, 8)...)
}

// testConcurrentUpdates: 8 goroutines update one AOR, each its own Key, many times; no
// binding is lost (a non-atomic read-modify-write would drop some).
func testConcurrentUpdates(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("sip:w%d@h", w)
			for r := range rounds {
				b := bnd(t0, key, fmt.Sprintf("call-%d", w), uint32(r+1), r, 600)
				if _, err := s.UpdateBindings(t.Context(), aor, update(at(t0, r), b)); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
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
	got := mustBindings(t, s, aor, at(t0, rounds))
	if len(got) != workers {
		t.Fatalf("%d bindings after concurrent updates, want %d: %v", len(got), workers, keys(got))
	}
	for _, b := range got {
		if b.CSeq != rounds {
			t.Errorf("%s: CSeq %d, want %d (a later update was lost)", b.Key, b.CSeq, rounds)
		}
	}
}

func testCredentials(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	has, err := s.HasCredentials(ctx)
	if err != nil || has {
		t.Fatalf("HasCredentials(empty) = %v, %v", has, err)
	}
	if _, err := s.Credential(ctx, aor, "example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Credential(missing) err = %v, want ErrNotFound", err)
	}
	c1 := storage.Credential{HA1MD5: "939e7578ed9e3c518a452acee763bce9", HA1SHA256: strings.Repeat("ab", 32)}
	if err := s.SetCredential(ctx, aor, "example.com", c1); err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	has, err = s.HasCredentials(ctx)
	if err != nil || !has {
		t.Fatalf("HasCredentials = %v, %v; want true", has, err)
	}
	tests := []struct {
		name    string
		aor     string
		realm   string
		want    storage.Credential
		wantErr error
	}{
		{name: "stored", aor: aor, realm: "example.com", want: c1},
		{name: "other realm", aor: aor, realm: "other.com", wantErr: storage.ErrNotFound},
		{name: "other user", aor: "bob@example.com", realm: "example.com", wantErr: storage.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Credential(ctx, tc.aor, tc.realm)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Credential = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	// Replace, and a second realm, MD5 only.
	c2 := storage.Credential{HA1SHA256: strings.Repeat("cd", 32)}
	c3 := storage.Credential{HA1MD5: "00112233445566778899aabbccddeeff"}
	if err := s.SetCredential(ctx, aor, "example.com", c2); err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	if err := s.SetCredential(ctx, aor, "other.com", c3); err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	for realm, want := range map[string]storage.Credential{"example.com": c2, "other.com": c3} {
		if got, err := s.Credential(ctx, aor, realm); err != nil || got != want {
			t.Errorf("Credential(%s) = %+v, %v; want %+v", realm, got, err, want)
		}
	}
}

// testCredentialAdmin: the admin API's view of credentials. A deleted user's secrets are
// gone in every realm, HasCredentials follows the last deletion, and the list holds AORs only.
func testCredentialAdmin(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	if got, err := s.ListCredentials(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListCredentials(empty) = %v, %v", got, err)
	}
	if had, err := s.DeleteCredential(ctx, aor); err != nil || had {
		t.Fatalf("DeleteCredential(missing) = %v, %v; want false", had, err)
	}
	c := storage.Credential{HA1MD5: "939e7578ed9e3c518a452acee763bce9"}
	for _, set := range []struct{ aor, realm string }{
		{"carol@example.com", "example.com"}, {aor, "example.com"}, {aor, "other.com"}, {"bob@example.com", "example.com"},
	} {
		if err := s.SetCredential(ctx, set.aor, set.realm, c); err != nil {
			t.Fatalf("SetCredential(%s): %v", set.aor, err)
		}
	}
	want := []string{aor, "bob@example.com", "carol@example.com"}
	slices.Sort(want)
	if got, err := s.ListCredentials(ctx); err != nil || !slices.Equal(got, want) {
		t.Fatalf("ListCredentials = %v, %v; want %v", got, err, want)
	}
	if had, err := s.DeleteCredential(ctx, aor); err != nil || !had {
		t.Fatalf("DeleteCredential = %v, %v; want true", had, err)
	}
	for _, realm := range []string{"example.com", "other.com"} {
		if _, err := s.Credential(ctx, aor, realm); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Credential(%s) after delete: err = %v, want ErrNotFound", realm, err)
		}
	}
	if got, err := s.ListCredentials(ctx); err != nil || !slices.Equal(got, []string{"bob@example.com", "carol@example.com"}) {
		t.Fatalf("ListCredentials after delete = %v, %v", got, err)
	}
	if got, err := s.Credential(ctx, "bob@example.com", "example.com"); err != nil || got != c {
		t.Fatalf("bob's credential after alice's delete = %+v, %v", got, err)
	}
	for _, a := range []string{"bob@example.com", "carol@example.com"} {
		if _, err := s.DeleteCredential(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if has, err := s.HasCredentials(ctx); err != nil || has {
		t.Fatalf("HasCredentials after deleting every user = %v, %v; want false", has, err)
	}
}

func testNonceCount(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	const ttl = time.Minute
	steps := []struct {
		nonce string
		nc    uint32
		want  bool
	}{
		{"n1", 1, true},
		{"n1", 1, false}, // replay
		{"n1", 3, true},  // gaps are fine
		{"n1", 2, false}, // lower
		{"n1", 3, false},
		{"n2", 1, true}, // independent nonce
		{"n1", 4, true},
		{"n2", 1, false},
		{"n1", 1<<32 - 1, true},
		{"n1", 1<<32 - 1, false},
		{"n3", 0, true},
		{"n3", 0, false},
	}
	for i, st := range steps {
		got, err := useNonce(ctx, s, st.nonce, st.nc, ttl)
		if err != nil {
			t.Fatalf("step %d UseNonceCount(%s, %d): %v", i, st.nonce, st.nc, err)
		}
		if got != st.want {
			t.Fatalf("step %d UseNonceCount(%s, %d) = %v, want %v", i, st.nonce, st.nc, got, st.want)
		}
	}
	e, err := s.NonceEpoch(ctx)
	if err != nil {
		t.Fatalf("NonceEpoch: %v", err)
	}
	if _, _, err := s.UseNonceCount(ctx, e, "n4", 1, 0); err == nil {
		t.Errorf("UseNonceCount with ttl 0 succeeded")
	}
}

func testNonceTTL(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	const ttl = 150 * time.Millisecond
	if ok, err := useNonce(ctx, s, "short", 5, ttl); err != nil || !ok {
		t.Fatalf("first use = %v, %v", ok, err)
	}
	if ok, err := useNonce(ctx, s, "long", 5, time.Minute); err != nil || !ok {
		t.Fatalf("first use = %v, %v", ok, err)
	}
	start := time.Now()
	if ok, err := useNonce(ctx, s, "short", 1, ttl); err != nil || ok {
		t.Fatalf("replay within ttl = %v, %v; want false", ok, err)
	}
	// Poll until the record is forgotten; a replay (false) does not extend it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := useNonce(ctx, s, "short", 1, ttl)
		if err != nil {
			t.Fatalf("UseNonceCount: %v", err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nonce record not forgotten %v after its ttl %v", time.Since(start), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(start); d < ttl/2 {
		t.Fatalf("nonce record forgotten after %v, ttl %v", d, ttl)
	}
	// The long-lived record is still there.
	if ok, err := useNonce(ctx, s, "long", 5, time.Minute); err != nil || ok {
		t.Fatalf("long record replay = %v, %v; want false", ok, err)
	}

	// An accepted count restarts the ttl: the record outlives the first count's ttl. The
	// check needs the sleeps to land in a window; a slow machine retries with a new nonce.
	const ttl2 = 300 * time.Millisecond
	for attempt := 0; ; attempt++ {
		nonce := fmt.Sprintf("extend%d", attempt)
		if ok, err := useNonce(ctx, s, nonce, 1, ttl2); err != nil || !ok {
			t.Fatalf("first use = %v, %v", ok, err)
		}
		firstDone := time.Now()
		time.Sleep(ttl2 * 2 / 3)
		secondStart := time.Now()
		if ok, err := useNonce(ctx, s, nonce, 2, ttl2); err != nil || !ok {
			t.Fatalf("second use = %v, %v", ok, err)
		}
		time.Sleep(time.Until(firstDone.Add(ttl2 + ttl2/6)))
		replayStart := time.Now()
		ok, err := useNonce(ctx, s, nonce, 2, ttl2)
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		if replayStart.Sub(secondStart) >= ttl2-20*time.Millisecond {
			if attempt < 3 {
				continue // too slow to tell
			}
			t.Skip("machine too slow to check the ttl restart")
		}
		if ok {
			t.Fatalf("replay %v after the second use (ttl %v) accepted: the accepted count did not restart the ttl", replayStart.Sub(secondStart), ttl2)
		}
		break
	}
}

// useNonce calls UseNonceCount with the store's current epoch.
func useNonce(ctx context.Context, s Store, nonce string, nc uint32, ttl time.Duration) (bool, error) {
	e, err := s.NonceEpoch(ctx)
	if err != nil {
		return false, err
	}
	ok, cur, err := s.UseNonceCount(ctx, e, nonce, nc, ttl)
	if err == nil && cur != e {
		return false, fmt.Errorf("UseNonceCount: epoch %d, NonceEpoch said %d", cur, e)
	}
	return ok, err
}

// testNonceEpoch: the epoch is stable and non-zero, and a nonce of another epoch is refused
// (nonces issued before the store lost its records must not get a second life), the reply
// naming the current epoch. (The refused nonce may be recorded all the same: the Redis
// backend records the count and reads the epoch in one pipeline.)
func testNonceEpoch(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	e, err := s.NonceEpoch(ctx)
	if err != nil || e == 0 {
		t.Fatalf("NonceEpoch = %d, %v; want non-zero", e, err)
	}
	if e2, err := s.NonceEpoch(ctx); err != nil || e2 != e {
		t.Fatalf("NonceEpoch again = %d, %v; want %d", e2, err, e)
	}
	for _, other := range []uint64{0, e + 1} {
		ok, cur, err := s.UseNonceCount(ctx, other, "n", 1, time.Minute)
		if err != nil || ok || cur != e {
			t.Fatalf("UseNonceCount(epoch %d) = %v, %d, %v; want false, %d", other, ok, cur, err, e)
		}
	}
	ok, cur, err := s.UseNonceCount(ctx, e, "n2", 1, time.Minute)
	if err != nil || !ok || cur != e {
		t.Fatalf("UseNonceCount(current epoch) = %v, %d, %v; want true, %d", ok, cur, err, e)
	}
}

func testClose(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Bindings(ctx, aor, base()); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Bindings after Close = %v, want ErrUnavailable", err)
	}
}
