package presence

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// limitsPresence is a presence agent with the given limits, policy allow, and a counter of
// what they refused.
func limitsPresence(t *testing.T, mod func(*options)) (*Presence, func(limit string) float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	lim, err := sipx.NewLimited(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := options{Config: withPolicy(PolicyAllow), Deps: testDeps(Deps{
		Domains: []string{"example.test"}, Store: memory.New(), Locator: noBindings{}, Sender: noSender{},
		Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
		IsOurs:  func(h string) bool { return h == "127.0.0.1" },
		Limited: lim,
	})}
	if mod != nil {
		mod(&opts)
	}
	p, err := Setup(opts.Config, opts.Deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.notifier.close)
	return p, func(limit string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "limit" && l.GetValue() == limit {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
}

// subscribeFrom sends p an initial SUBSCRIBE from watcher (user@domain) to aor, over UDP
// from source (host:port), and returns the status.
func subscribeFrom(t *testing.T, p *Presence, watcher, aor, source, callID string) int {
	t.Helper()
	return subscribeFromEvent(t, p, watcher, aor, source, callID, EventPresence)
}

// subscribeFromEvent is subscribeFrom for event.
func subscribeFromEvent(t *testing.T, p *Presence, watcher, aor, source, callID, event string) int {
	t.Helper()
	raw := "SUBSCRIBE sip:" + aor + " SIP/2.0\r\nVia: SIP/2.0/UDP " + source + ";branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:" + watcher + ">;tag=f" + callID + "\r\nTo: <sip:" + aor + ">\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 SUBSCRIBE\r\nEvent: " + event + "\r\nExpires: 600\r\nContact: <sip:w@" + source + ">\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	st := sipx.NewState(req, zap.NewNop())
	st.Source, st.Transport, st.Rule = source, "udp", sipx.RuleOpen
	status, err := p.ServeSIP(sipx.WithState(context.Background(), st), siptest.NewServerTxRecorder(req), req)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// TestWatchersBounded: a presentity takes at most MaxWatchers presence subscriptions and at
// most MaxWatchersPerDomain from one other domain (403 beyond, counted by limit); local
// watchers still get in when a foreign domain has used its share, and a watcher that leaves
// frees its slot.
func TestWatchersBounded(t *testing.T) {
	p, lim := limitsPresence(t, func(o *options) { o.MaxWatchers = 6; o.MaxWatchersPerDomain = 2 })
	for i := range 4 {
		want := 200
		if i >= 2 {
			want = 403
		}
		if got := subscribeFrom(t, p, fmt.Sprintf("spam%d@evil.example", i), "bob@example.test", "192.0.2.1:5060", fmt.Sprint("e", i)); got != want {
			t.Errorf("foreign watcher %d: %d, want %d", i, got, want)
		}
	}
	if got := subscribeFrom(t, p, "x@other.example", "bob@example.test", "192.0.2.1:5060", "o1"); got != 200 {
		t.Errorf("a watcher of another foreign domain: %d, want 200", got)
	}
	for i := range 5 {
		want := 200
		if i >= 3 {
			want = 403
		}
		if got := subscribeFrom(t, p, fmt.Sprintf("carol%d@example.test", i), "bob@example.test", "192.0.2.2:5060", fmt.Sprint("l", i)); got != want {
			t.Errorf("local watcher %d: %d, want %d", i, got, want)
		}
	}
	if got := subscribeFrom(t, p, "carol@example.test", "dave@example.test", "192.0.2.2:5060", "d1"); got != 200 {
		t.Errorf("another presentity's watcher: %d, want 200", got)
	}
	if w, d := lim("watchers"), lim("watchers_per_domain"); w != 2 || d != 2 {
		t.Errorf("limited watchers %v, watchers_per_domain %v; want 2, 2", w, d)
	}
	// A watcher leaves: its slot is free again.
	subs, err := p.opts.Store.Subscriptions(t.Context(), "bob@example.test", time.Now())
	if err != nil || len(subs) != 6 {
		t.Fatalf("%d subscriptions stored (%v), want 6", len(subs), err)
	}
	old, err := p.opts.Store.DeleteSubscription(t.Context(), "bob@example.test", subs[0].ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.ended(&old, "timeout", false)
	if got := subscribeFrom(t, p, "carol9@example.test", "bob@example.test", "192.0.2.2:5060", "l9"); got != 200 {
		t.Errorf("after a watcher left: %d, want 200", got)
	}
}

// TestSubscriptionsPerSourceIPv6: the per-source subscription cap counts an IPv6 source by its
// /64, so one host cannot take a fresh quota per address of its prefix.
func TestSubscriptionsPerSourceIPv6(t *testing.T) {
	p, lim := limitsPresence(t, func(o *options) { o.MaxSubscriptionsPerSource = 3 })
	for i := range 4 {
		want := 200
		if i == 3 {
			want = 503
		}
		src := fmt.Sprintf("[2001:db8:1:2::%x]:5060", i+1)
		if got := subscribeFrom(t, p, "carol@example.test", fmt.Sprintf("u%d@example.test", i), src, fmt.Sprint("v6-", i)); got != want {
			t.Errorf("SUBSCRIBE from %s: %d, want %d", src, got, want)
		}
	}
	if got := subscribeFrom(t, p, "carol@example.test", "u9@example.test", "[2001:db8:1:3::1]:5060", "v6-other"); got != 200 {
		t.Errorf("from another /64: %d, want 200", got)
	}
	if n := lim("subscriptions_per_source"); n != 1 {
		t.Errorf("limited subscriptions_per_source = %v, want 1", n)
	}
}

// TestWatcherInfoBounded: a presentity with many watchers gets a watcherinfo document within
// the bound, which parses, keeps the pending watchers and then the newest.
func TestWatcherInfoBounded(t *testing.T) {
	p, _ := limitsPresence(t, nil)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Second)
	long := strings.Repeat("w", 200)
	for i := range 600 {
		state := storage.SubActive
		if i%100 == 7 {
			state = storage.SubPending
		}
		sub := storage.Subscription{
			ID: fmt.Sprintf("s%04d", i), AOR: "bob@example.test", Event: EventPresence,
			Watcher: fmt.Sprintf("%s%d@example.test", long, i), WatcherURI: "sip:x@example.test", CallID: fmt.Sprint(i),
			FromTag: "f", RemoteTarget: "sip:x@192.0.2.1", State: state,
			CreatedAt: t0.Add(time.Duration(i) * time.Second), ExpiresAt: t0.Add(time.Hour),
		}
		if err := p.opts.Store.PutSubscription(ctx, sub, 0); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := p.watcherInfo(ctx, "bob@example.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc) > maxWinfoDoc {
		t.Fatalf("watcherinfo document of %d bytes, want at most %d", len(doc), maxWinfoDoc)
	}
	w, err := pidf.ParseWatcherInfo(doc)
	if err != nil {
		t.Fatalf("document does not parse: %v", err)
	}
	ids := map[string]bool{}
	for _, x := range w.Lists[0].Watchers {
		ids[x.ID] = true
	}
	if len(ids) < 100 || len(ids) >= 600 {
		t.Fatalf("%d watchers listed, want a bounded share of 600", len(ids))
	}
	for i := 7; i < 600; i += 100 {
		if !ids[fmt.Sprintf("s%04d", i)] {
			t.Errorf("pending watcher s%04d left out", i)
		}
	}
	if !ids["s0599"] || ids["s0000"] {
		t.Errorf("the newest watcher listed %v, the oldest %v; want the newest kept", ids["s0599"], ids["s0000"])
	}
}

// recordSender answers 200 to every NOTIFY and hands the winfo ones on.
type recordSender struct{ winfo chan []byte }

func (r *recordSender) SendInDialog(_ context.Context, req *sip.Request, _ *storage.Subscription) (int, error) {
	if h := req.GetHeader("Event"); h != nil && h.Value() == EventWinfo {
		r.winfo <- req.Body()
	}
	return 200, nil
}

// TestWatcherInfoPartial: after the first full watcherinfo document, the presentity gets
// partial ones (RFC 3858 §4.4, when smaller than the full one) listing only the watchers that changed — a new one, one that
// left as terminated — with versions rising one by one.
func TestWatcherInfoPartial(t *testing.T) {
	rec := &recordSender{winfo: make(chan []byte, 16)}
	p, _ := limitsPresence(t, func(o *options) { o.Sender = rec; o.MinNotifyInterval = time.Millisecond })
	next := func(what string) *pidf.WatcherInfo {
		t.Helper()
		select {
		case b := <-rec.winfo:
			w, err := pidf.ParseWatcherInfo(b)
			if err != nil {
				t.Fatalf("%s: %v\n%s", what, err, b)
			}
			return w
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no winfo NOTIFY", what)
			return nil
		}
	}
	ids := func(w *pidf.WatcherInfo) (out []string) {
		for _, x := range w.Lists[0].Watchers {
			out = append(out, x.URI+" "+x.Status)
		}
		return out
	}
	subscribeFrom(t, p, "ann@example.test", "bob@example.test", "192.0.2.2:5060", "a1")
	if got := subscribeFromEvent(t, p, "bob@example.test", "bob@example.test", "192.0.2.1:5060", "bw", EventWinfo); got != 200 {
		t.Fatalf("winfo SUBSCRIBE: %d", got)
	}
	first := next("first")
	if first.State != "full" || fmt.Sprint(ids(first)) != "[sip:ann@example.test active]" {
		t.Fatalf("first document: %s %v, want full [ann active]", first.State, ids(first))
	}
	subscribeFrom(t, p, "carol@example.test", "bob@example.test", "192.0.2.2:5060", "c1")
	w := next("carol subscribed")
	if w.State != "partial" || w.Version != first.Version+1 || fmt.Sprint(ids(w)) != "[sip:carol@example.test active]" {
		t.Fatalf("after carol: %s v%d %v, want partial v%d [carol active]", w.State, w.Version, ids(w), first.Version+1)
	}
	subscribeFrom(t, p, "dave@example.test", "bob@example.test", "192.0.2.2:5060", "d1")
	w = next("dave subscribed")
	if w.State != "partial" || w.Version != first.Version+2 || fmt.Sprint(ids(w)) != "[sip:dave@example.test active]" {
		t.Fatalf("after dave: %s v%d %v, want partial v%d [dave active]", w.State, w.Version, ids(w), first.Version+2)
	}
	subs, _ := p.opts.Store.Subscriptions(t.Context(), "bob@example.test", time.Now())
	for _, s := range subs {
		if s.Watcher == "carol@example.test" {
			old, err := p.opts.Store.DeleteSubscription(t.Context(), s.AOR, s.ID, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			p.ended(&old, "timeout", false)
			p.changed(s.AOR, storage.WatchersChanged, time.Now())
		}
	}
	w = next("carol left")
	if w.State != "partial" || w.Version != first.Version+3 || fmt.Sprint(ids(w)) != "[sip:carol@example.test terminated]" {
		t.Fatalf("after carol left: %s v%d %v, want partial v%d [carol terminated]", w.State, w.Version, ids(w), first.Version+3)
	}
}
