package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
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

// offlineHarness is a proxy with store-and-forward on store, events from bus, one offline
// worker, and carol@example.test registered at a UDP socket the test reads (returned).
func offlineHarness(t *testing.T, store MessageStore, bus storage.Bus) (*Proxy, net.PacketConn) {
	t.Helper()
	var p *Proxy
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(
		sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) { p.ServeStrayResponse(r) })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	client, _ := sipgo.NewClient(ua)
	ours, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ours.Close() }) // ends ServeUDP
	go func() { _ = srv.ServeUDP(ours) }()
	dev, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	uri := fmt.Sprintf("sip:carol@%s", dev.LocalAddr())
	now := time.Now()
	loc := mapLocator{"carol@example.test": {{Key: uri, Contact: "<" + uri + ">", URI: uri, Q: -1,
		Transport: "udp", ExpiresAt: now.Add(time.Hour), UpdatedAt: now}}}
	addr := ours.LocalAddr().(*net.UDPAddr).AddrPort()
	p, err = New(Options{
		Domains:   []string{"example.test"},
		IsOurs:    func(h string) bool { return h == "example.test" },
		Listeners: func() []Listener { return []Listener{{Transport: "udp", Addr: addr}} },
		Locator:   loc,
		Client:    client,
		Seals:     sipx.NewSeals(nil),
		Messages:  store,
		Bus:       bus,
		Offline:   OfflineOptions{Workers: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // ServeUDP registered the socket
	return p, dev
}

// TestOfflineDeliveryWhenBusFull: while the offline worker is busy, registrations flood the
// bus beyond the subscriber's buffer (16384 events); carol's registration, whose update saw
// her mailbox hold a message, comes last. It is not lost: once the worker is free, the message
// is delivered to her device. Events nothing depends on are dropped, and counted.
func TestOfflineDeliveryWhenBusFull(t *testing.T) {
	store := &gatedStore{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	bus := storage.NewLocalBus()
	p, dev := offlineHarness(t, store, bus)
	const carol = "carol@example.test"
	now := time.Now()
	m := storage.Message{DedupKey: "k", CallID: "off-1", CSeq: 1, From: "<sip:bob@example.test>;tag=1",
		To: "<sip:carol@example.test>", ContentType: "text/plain", Body: []byte("while you were out"),
		StoredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, _, err := store.StoreMessage(t.Context(), carol, m, storage.MailboxLimits{}, now); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Offline().Wait()
	})

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
		if _, err := dev.WriteTo([]byte(answer(req, "200 OK")), from); err != nil {
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
