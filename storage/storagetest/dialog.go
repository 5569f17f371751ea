package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// runDialogs checks the call tracker's dialog store: states only move forward (kamailio
// #3192: an early after a terminated is ignored), concurrently too; expiry; the bound per AOR
// evicts the oldest terminated dialog, never a live call.
func runDialogs(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	dlg := func(id, state string, exp int) storage.Dialog {
		return storage.Dialog{ID: id, State: state, CallID: "call-" + id, LocalTag: "l", Direction: "recipient",
			Local: "sip:bob@example.com", Remote: "sip:alice@example.com", StartedAt: t0,
			UpdatedAt: at(t0, exp/10), ExpiresAt: at(t0, exp)}
	}
	put := func(t *testing.T, s Store, aor string, d storage.Dialog, now time.Time, limit int) bool {
		t.Helper()
		ok, err := s.PutDialog(t.Context(), aor, d, now, limit)
		if err != nil {
			t.Fatalf("PutDialog(%s %s): %v", d.ID, d.State, err)
		}
		return ok
	}
	states := func(t *testing.T, s Store, aor string, now time.Time) string {
		t.Helper()
		ds, err := s.Dialogs(t.Context(), aor, now)
		if err != nil {
			t.Fatalf("Dialogs: %v", err)
		}
		out := ""
		for _, d := range ds {
			out += fmt.Sprintf("%s=%s/%d ", d.ID, d.State, d.Rank)
		}
		return out
	}

	t.Run("forward only", func(t *testing.T) {
		s := newStore(t)
		const aor = "bob@example.com"
		for _, st := range []string{storage.DialogTrying, storage.DialogEarly, storage.DialogConfirmed} {
			if !put(t, s, aor, dlg("d1", st, 3600), t0, 0) {
				t.Fatalf("%s after a lower state was not stored", st)
			}
		}
		if put(t, s, aor, dlg("d1", storage.DialogEarly, 3600), t0, 0) || put(t, s, aor, dlg("d1", storage.DialogConfirmed, 3600), t0, 0) {
			t.Fatal("a state not above the stored one was stored")
		}
		term := dlg("d1", storage.DialogTerminated, 60)
		term.Event, term.Code = "remote-bye", 200
		if !put(t, s, aor, term, t0, 0) {
			t.Fatal("terminated after confirmed was not stored")
		}
		if put(t, s, aor, dlg("d1", storage.DialogEarly, 3600), t0, 0) {
			t.Fatal("early after terminated was stored")
		}
		ds, _ := s.Dialogs(t.Context(), aor, t0)
		if len(ds) != 1 || ds[0].State != storage.DialogTerminated || ds[0].Event != "remote-bye" || ds[0].Code != 200 ||
			ds[0].CallID != "call-d1" || !ds[0].ExpiresAt.Equal(at(t0, 60)) || !ds[0].StartedAt.Equal(t0) {
			t.Fatalf("stored dialog: %+v", ds)
		}
		if got := states(t, s, aor, at(t0, 60)); got != "" {
			t.Fatalf("expired dialog still listed: %s", got)
		}
		if got := states(t, s, "alice@example.com", t0); got != "" {
			t.Fatalf("another AOR sees %s", got)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		// Every order of a call's states, applied at once from several goroutines, leaves the
		// highest.
		s := newStore(t)
		const aor = "carol@example.com"
		for round := range 5 {
			id := fmt.Sprintf("c%d", round)
			var wg sync.WaitGroup
			for _, st := range []string{storage.DialogTerminated, storage.DialogEarly, storage.DialogTrying, storage.DialogConfirmed, storage.DialogProceeding} {
				wg.Go(func() { put(t, s, aor, dlg(id, st, 3600), t0, 0) })
			}
			wg.Wait()
		}
		if got := states(t, s, aor, t0); got != "c0=terminated/5 c1=terminated/5 c2=terminated/5 c3=terminated/5 c4=terminated/5 " {
			t.Fatalf("after concurrent updates: %s", got)
		}
	})

	t.Run("limit", func(t *testing.T) {
		s := newStore(t)
		const aor = "dave@example.com"
		put(t, s, aor, dlg("a", storage.DialogConfirmed, 3600), t0, 2)
		put(t, s, aor, dlg("b", storage.DialogEarly, 3600), t0, 2)
		if put(t, s, aor, dlg("c", storage.DialogTrying, 3600), t0, 2) {
			t.Fatal("a third call was stored over two live ones with limit 2")
		}
		if !put(t, s, aor, dlg("b", storage.DialogConfirmed, 3600), t0, 2) {
			t.Fatal("a stored call's change was refused by the limit")
		}
		put(t, s, aor, dlg("b", storage.DialogTerminated, 300), t0, 2)
		if !put(t, s, aor, dlg("c", storage.DialogTrying, 3600), t0, 2) {
			t.Fatal("a new call did not evict the terminated one")
		}
		if got := states(t, s, aor, t0); got != "a=confirmed/4 c=trying/1 " {
			t.Fatalf("after eviction: %s", got)
		}
		if !put(t, s, aor, dlg("d", storage.DialogTrying, 3600), at(t0, 3600), 2) {
			t.Fatal("expired dialogs still count against the limit")
		}
	})
}
