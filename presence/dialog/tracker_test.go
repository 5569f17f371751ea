package dialog

import (
	"context"
	"strings"
	"sync"
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
	tr := NewTracker(store, DefaultConfig(), time.Minute, func(string) { mu.Lock(); changes++; mu.Unlock() }, nil)
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
	tr := NewTracker(memory.New(), DefaultConfig(), time.Minute, func(string) {}, nil)
	defer tr.Close()
	if w := tr.Invite(context.Background(), proxy.Call{Request: parse(t, invite).(*sip.Request)}); w != nil {
		t.Fatal("a call of nobody of ours is followed")
	}
}
