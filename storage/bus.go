package storage

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventKind names what happened to a binding (later: a presentity, a subscription).
type EventKind string

// Binding events, published by the registrar.
const (
	BindingAdded     EventKind = "binding.added"
	BindingRefreshed EventKind = "binding.refreshed"
	BindingRemoved   EventKind = "binding.removed" // by the client (Expires 0, *), or the admin API
	BindingExpired   EventKind = "binding.expired"
	BindingEvicted   EventKind = "binding.evicted" // to respect the per-AOR contact limit
)

// Event is one change published on a Bus.
type Event struct {
	Kind    EventKind
	AOR     string
	Binding Binding
	At      time.Time
	// Mailbox, for events of a registration (BindingAdded, BindingRefreshed, ...), is the
	// BindingResult.Mailbox of the update that caused them; MailboxUnknown otherwise.
	Mailbox Mailbox
}

// Bus carries events from the stage that caused them to the stages that react (presence from
// registration, offline delivery, reg event). Publish never blocks the publisher.
type Bus interface {
	Publish(ev Event)
	// Subscribe returns a channel of the events published from now on, buffered to buf, and a
	// function that ends the subscription and closes the channel.
	Subscribe(buf int) (<-chan Event, func())
}

// LocalBus is the in-process Bus. A subscriber whose buffer is full loses the event (counted
// by Dropped) rather than stalling the registrar; subscribers size their buffers for bursts.
type LocalBus struct {
	mu      sync.RWMutex
	subs    map[int]chan Event
	next    int
	dropped atomic.Uint64
}

var _ Bus = (*LocalBus)(nil)

// NewLocalBus returns an empty in-process bus.
func NewLocalBus() *LocalBus { return &LocalBus{subs: map[int]chan Event{}} }

// Publish delivers ev to every subscriber that has room for it.
func (b *LocalBus) Publish(ev Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, ch := range b.subs {
		select {
		case ch <- ev:
		default:
			b.dropped.Add(1)
		}
	}
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, buf)
	b.mu.Lock()
	id := b.next
	b.next++
	b.subs[id] = ch
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, id)
			b.mu.Unlock()
			close(ch)
		})
	}
}

// Dropped returns how many events were lost to full subscriber buffers.
func (b *LocalBus) Dropped() uint64 { return b.dropped.Load() }
