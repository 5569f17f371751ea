package presence

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// changeOnPut is a store under which the presentity changes at the worst moment: right after a
// new subscription is stored, before its 200 is sent (an event worker running at that instant).
type changeOnPut struct {
	Store
	p *Presence
}

func (s *changeOnPut) PutSubscription(ctx context.Context, sub storage.Subscription, minCSeq uint32) error {
	err := s.Store.PutSubscription(ctx, sub, minCSeq)
	s.p.notifier.presentity(ctx, sub.AOR, sub.Event, time.Now(), true)
	time.Sleep(50 * time.Millisecond) // time for a NOTIFY started now to go out
	return err
}

// orderSender notes whether a NOTIFY went out before the SUBSCRIBE's 200.
type orderSender struct {
	tx    *siptest.ServerTxRecorder
	early atomic.Bool
	sent  chan struct{}
}

func (o *orderSender) SendInDialog(context.Context, *sip.Request, *storage.Subscription) (int, error) {
	if len(o.tx.Result()) == 0 {
		o.early.Store(true)
	}
	select {
	case o.sent <- struct{}{}:
	default:
	}
	return 200, nil
}

// The first NOTIFY follows the 200 even when the presentity changes between the subscription
// being stored and answered: JsSIP answers 481 to a NOTIFY that comes before the 200.
func TestFirstNotifyAfterTheAnswer(t *testing.T) {
	req := request(t, "Event: presence", "Expires: 600", "Contact: <sip:carol@127.0.0.1:5070>")
	tx := siptest.NewServerTxRecorder(req)
	sender := &orderSender{tx: tx, sent: make(chan struct{}, 4)}
	store := &changeOnPut{Store: memory.New()}
	p, err := Setup(withPolicy("allow"), testDeps(Deps{
		Domains: []string{"example.test"}, Store: store, Locator: noBindings{}, Sender: sender,
		Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
		IsOurs:  func(h string) bool { return h == "127.0.0.1" },
	}))
	if err != nil {
		t.Fatal(err)
	}
	store.p = p
	if status, err := p.ServeSIP(context.Background(), tx, req); status != 200 || err != nil {
		t.Fatalf("SUBSCRIBE: %d, %v", status, err)
	}
	select {
	case <-sender.sent:
	case <-time.After(3 * time.Second):
		t.Fatal("no NOTIFY after the 200")
	}
	if sender.early.Load() {
		t.Fatal("a NOTIFY went out before the SUBSCRIBE's 200")
	}
	p.notifier.close()
}

// countSender counts NOTIFYs.
type countSender struct{ n atomic.Int32 }

func (c *countSender) SendInDialog(context.Context, *sip.Request, *storage.Subscription) (int, error) {
	c.n.Add(1)
	return 200, nil
}

// A subscription this node stopped notifying (its watcher answered 481) is not brought back
// by a change whose store read still returned it.
func TestEndedSubscriptionStaysEnded(t *testing.T) {
	sender := &countSender{}
	store := memory.New()
	p, err := Setup(DefaultConfig(), testDeps(Deps{
		Domains: []string{"example.test"}, Store: store, Locator: noBindings{}, Sender: sender,
		Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
		IsOurs:  func(h string) bool { return h == "127.0.0.1" },
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.notifier.close()
	now := time.Now()
	sub := storage.Subscription{ID: "s1", AOR: "bob@example.test", Event: EventPresence, Watcher: "carol@example.test",
		WatcherURI: "sip:carol@example.test", CallID: "c1", FromTag: "f1", RemoteTarget: "sip:carol@127.0.0.1:5070",
		Transport: "udp", Source: "127.0.0.1:5070", State: "active", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	ctx := context.Background()
	if err := store.PutSubscription(ctx, sub, 0); err != nil {
		t.Fatal(err)
	}
	p.notifier.track(&sub, now)
	deadline := time.Now().Add(3 * time.Second)
	for sender.n.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if sender.n.Load() != 1 {
		t.Fatalf("%d NOTIFYs after track, want 1", sender.n.Load())
	}
	p.notifier.forget(sub.AOR, sub.ID) // as a 481 does, before the store delete lands
	p.notifier.presentity(ctx, sub.AOR, EventPresence, time.Now(), true)
	time.Sleep(100 * time.Millisecond)
	if got := sender.n.Load(); got != 1 {
		t.Fatalf("%d NOTIFYs, want 1: the ended subscription was notified again", got)
	}
}

// A client that published twice and kept one ETag (baresip under load, fixtures quirk 11):
// the forgotten duplicate is dropped from the store when composed, so removing the
// publication the client knows will leave nothing "open" behind. The same tuple id from
// another source is kept.
func TestStaleDuplicatePublicationDropped(t *testing.T) {
	p := newTestPresence(t, "allow")
	ctx := context.Background()
	const aor = "alice@example.test"
	now := time.Now()
	doc := func(basic string) []byte {
		return []byte(`<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">` +
			`<tuple id="t4109"><status><basic>` + basic + `</basic></status></tuple></presence>`)
	}
	put := func(etag, source, basic string, at time.Time) {
		t.Helper()
		if _, err := p.opts.Store.Publish(ctx, aor, storage.PublishOp{Now: at, NewETag: etag, Body: doc(basic),
			ContentType: "application/pidf+xml", ExpiresAt: at.Add(time.Hour), Source: source}); err != nil {
			t.Fatal(err)
		}
	}
	put("forgotten", "udp:127.0.0.1:20380", "open", now.Add(-2*time.Second))
	put("other-device", "udp:127.0.0.1:20390", "open", now.Add(-2*time.Second))
	put("known", "udp:127.0.0.1:20380", "open", now.Add(-time.Second))
	if _, err := p.compose(ctx, aor); err != nil {
		t.Fatal(err)
	}
	pubs, err := p.opts.Store.Publications(ctx, aor, now)
	if err != nil {
		t.Fatal(err)
	}
	var etags []string
	for _, pub := range pubs {
		etags = append(etags, pub.ETag)
	}
	if strings.Join(etags, ",") != "other-device,known" && strings.Join(etags, ",") != "known,other-device" {
		t.Fatalf("publications after composing: %v, want the other device's and the known one", etags)
	}
}
