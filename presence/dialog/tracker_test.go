package dialog

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/proxy"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
)

func parse(t *testing.T, raw string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const invite = "INVITE sip:bob@example.test SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n" +
	"From: \"Alice\" <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>\nCall-ID: c1\nCSeq: 1 INVITE\n" +
	"Contact: <sip:alice@192.0.2.1>\nContent-Length: 0\n\n"

func ringing(t *testing.T) *sip.Response {
	return parse(t, "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n"+
		"From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\nCall-ID: c1\nCSeq: 1 INVITE\n"+
		"Contact: <sip:bob@192.0.2.2>\nContent-Length: 0\n\n").(*sip.Response)
}

// TestStatesOnlyMoveForward: a call's early that arrives after its end (kamailio #3192: a
// late 180 applied after the CANCEL) changes nothing: the lamp stays off and no watcher is
// told of it.
func TestStatesOnlyMoveForward(t *testing.T) {
	store := memory.New()
	var mu sync.Mutex
	changes := 0
	tr := NewTracker(store, DefaultConfig(), time.Minute, func(string) { mu.Lock(); changes++; mu.Unlock() }, nil, nil)
	req := parse(t, invite).(*sip.Request)
	w := tr.Invite(context.Background(), proxy.Call{Request: req, Caller: "alice@example.test", Callee: "bob@example.test"})
	tr.wg.Wait()
	w.Failed(487, proxy.CallCancelled)
	tr.wg.Wait()
	mu.Lock()
	before := changes
	mu.Unlock()
	w.Response(ringing(t)) // late
	tr.wg.Wait()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for _, aor := range []string{"alice@example.test", "bob@example.test"} {
		ds, err := store.Dialogs(context.Background(), aor, time.Now())
		if err != nil || len(ds) != 1 || ds[0].State != storage.DialogTerminated || ds[0].Event != "cancelled" || ds[0].Code != 487 {
			t.Fatalf("%s: after a late early: %+v %v", aor, ds, err)
		}
	}
	if changes != before {
		t.Fatalf("the ignored early was announced (%d changes, %d before)", changes, before)
	}
}

// TestNoObserverWithoutParties: a call between two foreign parties is not followed.
func TestNoObserverWithoutParties(t *testing.T) {
	tr := NewTracker(memory.New(), DefaultConfig(), time.Minute, func(string) {}, nil, nil)
	defer tr.Close()
	if w := tr.Invite(context.Background(), proxy.Call{Request: parse(t, invite).(*sip.Request)}); w != nil {
		t.Fatal("a call of nobody of ours is followed")
	}
}

func answer200(t *testing.T) *sip.Response {
	return parse(t, "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n"+
		"From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\nCall-ID: c1\nCSeq: 1 INVITE\n"+
		"Contact: <sip:bob@192.0.2.2>\nContent-Length: 0\n\n").(*sip.Response)
}

// watchers is a Watched whose answer the test sets per AOR.
type watchers struct {
	mu    sync.Mutex
	aors  map[string]bool
	asked int
}

func (w *watchers) watched(_ context.Context, aor string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asked++
	return w.aors[aor], nil
}

func (w *watchers) set(aor string, on bool) {
	w.mu.Lock()
	w.aors[aor] = on
	w.mu.Unlock()
}

func dialogsOf(t *testing.T, store Store, aor string) []storage.Dialog {
	t.Helper()
	ds, err := store.Dialogs(context.Background(), aor, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestUnwatchedCallsCostNoWrite: a call declined while nobody watches either party is not
// stored nor announced; a watched party's states are, from the change after its watcher
// came; an answered call is stored watched or not, and so is its end.
func TestUnwatchedCallsCostNoWrite(t *testing.T) {
	ctx := context.Background()
	req := parse(t, invite).(*sip.Request)
	parties := proxy.Call{Request: req, Caller: "alice@example.test", Callee: "bob@example.test"}

	t.Run("declined", func(t *testing.T) {
		store, w := memory.New(), &watchers{aors: map[string]bool{}}
		var changes atomic.Int32
		tr := NewTracker(store, DefaultConfig(), time.Minute, func(string) { changes.Add(1) }, w.watched, nil)
		k := tr.Invite(ctx, parties)
		k.Response(ringing(t))
		k.Failed(486, "")
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if w.asked == 0 {
			t.Fatal("the tracker never asked whether anyone watches")
		}
		for _, aor := range []string{"alice@example.test", "bob@example.test"} {
			if ds := dialogsOf(t, store, aor); len(ds) != 0 {
				t.Fatalf("%s: an unwatched declined call was stored: %+v", aor, ds)
			}
		}
		if n := changes.Load(); n != 0 {
			t.Fatalf("%d changes announced for a call nobody watched", n)
		}
	})

	t.Run("watcher comes while ringing", func(t *testing.T) {
		store, w := memory.New(), &watchers{aors: map[string]bool{}}
		tr := NewTracker(store, DefaultConfig(), time.Minute, func(string) {}, w.watched, nil)
		k := tr.Invite(ctx, parties)
		tr.wg.Wait()
		if ds := dialogsOf(t, store, "bob@example.test"); len(ds) != 0 {
			t.Fatalf("trying stored while nobody watched: %+v", ds)
		}
		w.set("bob@example.test", true)
		k.Response(ringing(t))
		tr.wg.Wait()
		if ds := dialogsOf(t, store, "bob@example.test"); len(ds) != 1 || ds[0].State != storage.DialogEarly {
			t.Fatalf("the watched callee's ringing: %+v", ds)
		}
		if ds := dialogsOf(t, store, "alice@example.test"); len(ds) != 0 {
			t.Fatalf("the unwatched caller's ringing was stored: %+v", ds)
		}
		w.set("bob@example.test", false) // the watcher leaves: the stored dialog still ends
		k.Failed(487, proxy.CallCancelled)
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if ds := dialogsOf(t, store, "bob@example.test"); len(ds) != 1 || ds[0].State != storage.DialogTerminated {
			t.Fatalf("the stored dialog did not end: %+v", ds)
		}
	})

	t.Run("answered", func(t *testing.T) {
		store, w := memory.New(), &watchers{aors: map[string]bool{}}
		tr := NewTracker(store, DefaultConfig(), time.Minute, func(string) {}, w.watched, nil)
		k := tr.Invite(ctx, parties)
		k.Response(answer200(t))
		tr.wg.Wait()
		for _, aor := range []string{"alice@example.test", "bob@example.test"} {
			if ds := dialogsOf(t, store, aor); len(ds) != 1 || ds[0].State != storage.DialogConfirmed {
				t.Fatalf("%s: an answered call nobody watched is not stored: %+v", aor, ds)
			}
		}
		bye := parse(t, "BYE sip:bob@192.0.2.2 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2\n"+
			"From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\nCall-ID: c1\nCSeq: 2 BYE\nContent-Length: 0\n\n").(*sip.Request)
		tr.Bye(ctx, bye, 200)
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		for _, aor := range []string{"alice@example.test", "bob@example.test"} {
			if ds := dialogsOf(t, store, aor); len(ds) != 1 || ds[0].State != storage.DialogTerminated {
				t.Fatalf("%s: the BYE did not end the call: %+v", aor, ds)
			}
		}
	})
}
