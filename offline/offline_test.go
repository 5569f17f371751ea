package offline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"
)

// gatedStore is a memory store whose HasMessages for "blocker" waits until release is
// closed: it holds the offline worker while the test fills the bus.
type gatedStore struct {
	*memory.Store
	entered chan struct{}
	release chan struct{}
}

func (s *gatedStore) HasMessages(ctx context.Context, aor string) (bool, error) {
	if aor == "blocker" {
		s.entered <- struct{}{}
		<-s.release
		return false, nil
	}
	return s.Store.HasMessages(ctx, aor)
}

// mapLocator serves fixed bindings.
type mapLocator map[string][]storage.Binding

func (l mapLocator) Lookup(_ context.Context, aor string) ([]storage.Binding, error) {
	return l[aor], nil
}

// offlineHarness is store-and-forward on store, events from bus, one worker, sending through
// a Delivery on a sipgo user agent listening on loopback UDP, with carol@example.test
// registered at a UDP socket the test reads (returned).
func offlineHarness(t *testing.T, store MessageStore, bus storage.Bus) (*Offline, net.PacketConn) {
	t.Helper()
	a := sipgoxtest.NewAgent(t)
	dev := sipgoxtest.Listen(t)
	uri := fmt.Sprintf("sip:carol@%s", dev.LocalAddr())
	now := time.Now()
	loc := mapLocator{"carol@example.test": {{Key: uri, Contact: "<" + uri + ">", URI: uri, Q: -1,
		Transport: "udp", ExpiresAt: now.Add(time.Hour), UpdatedAt: now}}}
	flows := transport.NewFlows(nil, func() []transport.Listener { return []transport.Listener{{Transport: "udp", Addr: a.Addr()}} })
	domains := []string{"example.test"}
	d, err := delivery.New(delivery.Options{Domains: domains, Flows: flows, Locator: loc, Client: a.Client, Seals: sipx.NewSeals(nil), UDPMTU: 1300})
	if err != nil {
		t.Fatal(err)
	}
	a.Strays.Handle(d.ClientTxs().Deliver)
	o, err := New(Options{
		Store:   store,
		Sender:  d,
		Domains: domains,
		Rules: msgcheck.New(msgcheck.Options{Domains: domains, IsOurs: func(h string) bool { return h == "example.test" },
			MaxBodySize: 64 << 10}),
		Bus:         bus,
		Workers:     1,
		MaxCount:    100,
		MaxBytes:    1 << 20,
		MaxAge:      time.Hour,
		MaxBodySize: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(); o.Wait() })
	return o, dev
}

// TestOfflineDeliveryWhenBusFull: while the offline worker is busy, registrations flood the
// bus beyond the subscriber's buffer (16384 events); carol's registration, whose update saw
// her mailbox hold a message, comes last. It is not lost: once the worker is free, the message
// is delivered to her device. Events nothing depends on are dropped, and counted.
func TestOfflineDeliveryWhenBusFull(t *testing.T) {
	store := &gatedStore{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	bus := storage.NewLocalBus()
	o, dev := offlineHarness(t, store, bus)
	const carol = "carol@example.test"
	now := time.Now()
	storeFromBob(t, store, carol, "off-1", "while you were out", now)
	runUntilCleanup(t, o)

	bus.Publish(storage.Event{Kind: storage.BindingAdded, AOR: "blocker"})
	select {
	case <-store.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the offline worker never took the first event")
	}
	for i := range 16384 + 100 {
		bus.Publish(storage.Event{Kind: storage.BindingAdded, AOR: fmt.Sprint("noise", i), Mailbox: storage.MailboxEmpty})
	}
	bus.Publish(storage.Event{Kind: storage.BindingAdded, AOR: carol, Mailbox: storage.MailboxHasMessages})
	if bus.Dropped() == 0 {
		t.Fatal("the bus never filled: the test proves nothing")
	}
	close(store.release)

	buf := make([]byte, 65535)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = dev.SetReadDeadline(deadline)
		n, from, err := dev.ReadFrom(buf)
		if err != nil {
			t.Fatalf("carol's message never delivered: %v", err)
		}
		req := string(buf[:n])
		if !strings.HasPrefix(req, "MESSAGE ") || !strings.Contains(req, "Call-ID: off-1") {
			continue
		}
		if _, err := dev.WriteTo([]byte(sipgoxtest.Response(req, "200 OK")), from); err != nil {
			t.Fatal(err)
		}
		break
	}
	for {
		msgs, err := store.Messages(t.Context(), carol, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still stored after the 200", len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSend: a message simpled originates goes to the user's device (its answer returned), is
// checked first as a relayed one is (415 for a type not allowed, 413 over the size bound), is
// refused for a user nobody knows (404), and is stored (202) for a known user whose device does
// not answer — not for one with a bad address (ErrBadMessage).
func TestSend(t *testing.T) {
	store := memory.New()
	o, dev := offlineHarness(t, store, nil)
	answering := make(chan bool, 1)
	answering <- true
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := dev.ReadFrom(buf)
			if err != nil {
				return
			}
			code := "200 OK"
			if ok := <-answering; !ok {
				code = "480 Temporarily Unavailable"
			}
			answering <- false
			_, _ = dev.WriteTo([]byte(sipgoxtest.Response(string(buf[:n]), code)), from)
		}
	}()
	ctx := t.Context()
	if status, err := o.Send(ctx, "", "carol@example.test", "text/plain", []byte("hi")); err != nil || status != 200 {
		t.Errorf("to carol's device: %d, %v", status, err)
	}
	if status, err := o.Send(ctx, "", "carol@example.test", "application/x-nope", []byte("hi")); err != nil || status != 415 {
		t.Errorf("type not allowed: %d, %v", status, err)
	}
	if status, _ := o.Send(ctx, "", "carol@example.test", "text/plain", make([]byte, 65<<10)); status != 413 {
		t.Errorf("too big: %d", status)
	}
	if status, err := o.Send(ctx, "", "nobody@example.test", "text/plain", []byte("hi")); err != nil || status != 404 {
		t.Errorf("unknown user: %d, %v", status, err)
	}
	if _, err := o.Send(ctx, "not a uri", "carol@example.test", "text/plain", []byte("hi")); !errors.Is(err, ErrBadMessage) {
		t.Errorf("bad From: %v", err)
	}
	// carol's device now answers 480: the message is kept for her.
	if status, err := o.Send(ctx, "sip:bob@example.test", "carol@example.test", "text/plain", []byte("later")); err != nil || status != 202 {
		t.Errorf("device unavailable: %d, %v", status, err)
	}
	if msgs, _ := store.Messages(ctx, "carol@example.test", time.Now()); len(msgs) != 1 || string(msgs[0].Body) != "later" {
		t.Errorf("stored %+v", msgs)
	}
}

// TestOfflineActsOnThisNodesRegistrations: on a bus shared by the nodes of a deployment,
// the registration of carol on another node does not make this node deliver her stored
// message (that node does, so she gets it once), nor mark her known; her registration here
// does.
func TestOfflineActsOnThisNodesRegistrations(t *testing.T) {
	store := memory.New()
	bus := storage.NewLocalBus()
	bus.SetNode("n1")
	o, dev := offlineHarness(t, store, bus)
	const carol = "carol@example.test"
	now := time.Now()
	storeFromBob(t, store, carol, "here-1", "once", now)
	runUntilCleanup(t, o)

	bus.Publish(storage.Event{Kind: storage.BindingAdded, AOR: carol, Mailbox: storage.MailboxHasMessages, Node: "n2"})
	bus.Publish(storage.Event{Kind: storage.BindingExpired, AOR: "dave@example.test", Node: "n2"})
	buf := make([]byte, 65535)
	_ = dev.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _, err := dev.ReadFrom(buf); err == nil {
		t.Fatalf("another node's registration made this node deliver:\n%s", buf[:n])
	}
	if known, _ := store.Known(t.Context(), "dave@example.test", time.Now()); known {
		t.Error("another node's binding expiry marked dave known here")
	}

	bus.Publish(storage.Event{Kind: storage.BindingAdded, AOR: carol, Mailbox: storage.MailboxHasMessages})
	_ = dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := dev.ReadFrom(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "Call-ID: here-1") {
		t.Fatalf("carol's registration here delivered nothing: %v %q", err, buf[:n])
	}
	_, _ = dev.WriteTo([]byte(sipgoxtest.Response(string(buf[:n]), "200 OK")), from)
}

// storeFromBob stores a text message from bob for aor, as the proxy does for a user offline.
func storeFromBob(t *testing.T, store MessageStore, aor, callID, body string, now time.Time) {
	t.Helper()
	m := storage.Message{DedupKey: "k", CallID: callID, CSeq: 1, From: "<sip:bob@example.test>;tag=1",
		To: "<sip:" + aor + ">", ContentType: "text/plain", Body: []byte(body),
		StoredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, _, err := store.StoreMessage(t.Context(), aor, m, storage.MailboxLimits{}, now); err != nil {
		t.Fatal(err)
	}
}

// runUntilCleanup runs o until the test ends, then waits for its deliveries.
func runUntilCleanup(t *testing.T, o *Offline) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		o.Wait()
	})
}
