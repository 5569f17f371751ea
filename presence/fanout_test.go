package presence

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// fanoutSender answers every NOTIFY and records, per watcher (the NOTIFY's To), the CSeqs and
// bodies it got; a watcher of silent never answers (its NOTIFY waits until it is abandoned).
type fanoutSender struct {
	mu     sync.Mutex
	got    map[string][]sentNotify
	silent string
	wake   chan struct{}
}

type sentNotify struct {
	cseq uint32
	body string
}

func newFanoutSender(silent string) *fanoutSender {
	return &fanoutSender{got: map[string][]sentNotify{}, silent: silent, wake: make(chan struct{}, 1)}
}

func (f *fanoutSender) SendInDialog(ctx context.Context, req *sip.Request, sub *storage.Subscription) (int, error) {
	if f.silent != "" && strings.HasPrefix(sub.Watcher, f.silent) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	f.mu.Lock()
	f.got[sub.Watcher] = append(f.got[sub.Watcher], sentNotify{req.CSeq().SeqNo, string(req.Body())})
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return 200, nil
}

// await waits until every watcher has at least n NOTIFYs (or fails after 10 s) and returns
// what each got.
func (f *fanoutSender) await(t *testing.T, watchers []string, n int) map[string][]sentNotify {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		done := true
		for _, w := range watchers {
			done = done && len(f.got[w]) >= n
		}
		out := map[string][]sentNotify{}
		for w, s := range f.got {
			out[w] = append([]sentNotify(nil), s...)
		}
		f.mu.Unlock()
		if done {
			return out
		}
		select {
		case <-f.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("watchers' NOTIFYs: %v, want %d each", out, n)
		}
	}
}

// publishNote publishes a one-tuple document of aor with note and announces the change.
func publishNote(t *testing.T, p *Presence, aor, etag, note string) {
	t.Helper()
	body := `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + aor + `">` +
		`<tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`
	now := time.Now()
	op := storage.PublishOp{Now: now, NewETag: etag, Body: []byte(body), ContentType: TypePIDF, ExpiresAt: now.Add(time.Hour)}
	if _, err := p.opts.Store.Publish(t.Context(), aor, op); err != nil {
		t.Fatal(err)
	}
	p.changed(aor, storage.PresenceChanged, now)
}

// TestFanoutViews: after a change of a presentity with many watchers, every allowed watcher
// gets the same new document, a politely blocked one only ever the neutral closed document
// (never the note), and each watcher's CSeqs rise.
func TestFanoutViews(t *testing.T) {
	rec := newFanoutSender("")
	p, _ := limitsPresence(t, func(o *options) { o.Sender = rec; o.MinNotifyInterval = time.Millisecond })
	const aor = "bob@example.test"
	if err := p.SetRule(t.Context(), aor, "eve@example.test", storage.RulePoliteBlock); err != nil {
		t.Fatal(err)
	}
	publishNote(t, p, aor, "e1", "first")
	watchers := []string{"eve@example.test"}
	for i := range 40 {
		watchers = append(watchers, fmt.Sprintf("w%d@example.test", i))
	}
	for i, w := range watchers {
		if got := subscribeFrom(t, p, w, aor, fmt.Sprintf("192.0.2.%d:5060", 1+i), "c"+w); got != 200 {
			t.Fatalf("%s: SUBSCRIBE answered %d", w, got)
		}
	}
	rec.await(t, watchers, 1)
	publishNote(t, p, aor, "e2", "second")
	// The politely blocked watcher's document does not change, so no NOTIFY tells her of it.
	got := rec.await(t, watchers[1:], 2)
	var shared string
	for _, w := range watchers {
		ns := got[w]
		for i := 1; i < len(ns); i++ {
			if ns[i].cseq <= ns[i-1].cseq {
				t.Errorf("%s: CSeqs %d then %d, want rising", w, ns[i-1].cseq, ns[i].cseq)
			}
		}
		last := ns[len(ns)-1].body
		if w == "eve@example.test" {
			for _, n := range ns {
				if strings.Contains(n.body, "<note>") || !strings.Contains(n.body, "<basic>closed</basic>") {
					t.Errorf("politely blocked watcher got %s, want the closed document without the note", n.body)
				}
			}
			continue
		}
		if !strings.Contains(last, "<note>second</note>") {
			t.Errorf("%s got %s, want the note of the change", w, last)
		}
		if shared == "" {
			shared = last
		} else if last != shared {
			t.Errorf("%s got %s, another allowed watcher %s; want one document", w, last, shared)
		}
	}
}

// TestFanoutSilentWatchersHoldNobodyBack: watchers that never answer, more than the send
// window holds, do not keep a change from the watchers that do answer: their NOTIFYs leave the
// window after windowHold, not when their transactions time out.
func TestFanoutSilentWatchersHoldNobodyBack(t *testing.T) {
	rec := newFanoutSender("silent")
	p, _ := limitsPresence(t, func(o *options) {
		o.Sender = rec
		o.MinNotifyInterval = time.Millisecond
		o.MaxSubscriptionsPerSource = 10 * sendWindow
	})
	const aor = "bob@example.test"
	publishNote(t, p, aor, "e1", "first")
	for i := range sendWindow + 20 {
		w := fmt.Sprintf("silent%d@example.test", i)
		if got := subscribeFrom(t, p, w, aor, "192.0.2.9:5060", "c"+w); got != 200 {
			t.Fatalf("%s: SUBSCRIBE answered %d", w, got)
		}
	}
	if got := subscribeFrom(t, p, "ann@example.test", aor, "192.0.2.1:5060", "cann"); got != 200 {
		t.Fatalf("ann: SUBSCRIBE answered %d", got)
	}
	rec.await(t, []string{"ann@example.test"}, 1)
	publishNote(t, p, aor, "e2", "second")
	got := rec.await(t, []string{"ann@example.test"}, 2)
	if last := got["ann@example.test"][1].body; !strings.Contains(last, "<note>second</note>") {
		t.Errorf("ann got %s, want the change", last)
	}
}
