package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	"go.uber.org/zap"
)

// outgoing is one event to send: to one node, or to every other live node (to ""). The event
// is the one this node's subscribers got, shared and never changed: a queue slot is three
// words, not an Event.
type outgoing struct {
	to string
	ev *storage.Event
}

// forwarded reports whether other nodes need events of kind: registrations (presence derived
// from them, reg event) and changes of presence state, rules and watchers. NotifyRequested is
// addressed to one node (PublishTo), never broadcast.
func forwarded(kind storage.EventKind) bool {
	switch kind {
	case storage.PresenceChanged, storage.RulesChanged, storage.WatchersChanged, storage.StateChanged:
		return true
	}
	return strings.HasPrefix(string(kind), "binding.")
}

// Publish implements storage.Bus: ev goes to this node's subscribers now and, when other
// nodes need its kind, into the send queue for every other live node (but the one it came
// from). An empty ev.Node becomes this node.
func (c *Cluster) Publish(ev storage.Event) {
	if ev.Node == "" {
		ev.Node = c.self
	}
	c.local.PublishShared(&ev)
	if c.opts.Store != nil && forwarded(ev.Kind) {
		c.enqueue(outgoing{ev: &ev})
	}
}

// PublishTo implements storage.Bus: ev goes to this node's subscribers when node is this node
// (or ""), else into the send queue for node. An event for another node in a cluster of one
// is dropped and counted.
func (c *Cluster) PublishTo(node string, ev storage.Event) {
	if ev.Node == "" {
		ev.Node = c.self
	}
	switch {
	case node == "" || node == c.self:
		c.local.PublishShared(&ev)
	case c.opts.Store == nil:
		c.m.dropped.Inc()
	default:
		c.enqueue(outgoing{to: node, ev: &ev})
	}
}

// Subscribe implements storage.Bus: the events published on this node and those other nodes
// sent it.
func (c *Cluster) Subscribe(buf int, opts ...storage.SubscribeOption) (<-chan *storage.Event, func()) {
	return c.local.Subscribe(buf, opts...)
}

// enqueue puts o in the send queue, or drops and counts it when the queue is full.
func (c *Cluster) enqueue(o outgoing) {
	select {
	case c.queue <- o:
	default:
		c.m.dropped.Inc()
	}
}

// sendTimeout bounds one batch's round trip.
const sendTimeout = 2 * time.Second

// send appends what is queued to the inboxes of its targets, a batch at a time, until ctx
// ends; then it sends what is still queued, once.
func (c *Cluster) send(ctx context.Context) {
	batch := make([]outgoing, 0, BatchSize)
	for {
		select {
		case <-ctx.Done():
			c.flush(batch)
			return
		case o := <-c.queue:
			batch = c.gather(append(batch[:0], o))
		}
		c.sendBatch(ctx, batch)
	}
}

// gather adds to batch what is waiting in the queue, up to BatchSize events, without waiting.
func (c *Cluster) gather(batch []outgoing) []outgoing {
	for len(batch) < BatchSize {
		select {
		case o := <-c.queue:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// flush sends, at shutdown, what is left in the queue.
func (c *Cluster) flush(batch []outgoing) {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	for {
		batch = c.gather(batch[:0])
		if len(batch) == 0 {
			return
		}
		c.sendBatch(ctx, batch)
	}
}

// sendBatch appends one entry per target node holding the batch's events for it, in one
// round trip. Broadcast events go to every other node alive in the view.
func (c *Cluster) sendBatch(ctx context.Context, batch []outgoing) {
	var others []string
	for _, r := range c.view.Load().nodes {
		if r.ID != c.self && c.Alive(r.ID) {
			others = append(others, r.ID)
		}
	}
	var order []string
	per := map[string][][]byte{} // target node → encoded events
	add := func(node string, ev []byte) {
		if _, ok := per[node]; !ok {
			order = append(order, node)
		}
		per[node] = append(per[node], ev)
	}
	for _, o := range batch {
		enc, err := encodeEvent(o.ev, c.self)
		if err != nil {
			c.m.dropped.Inc()
			c.log.Warn("cluster: event does not encode", zap.String("kind", string(o.ev.Kind)), zap.Error(err))
			continue
		}
		if o.to != "" {
			add(o.to, enc)
			continue
		}
		for _, n := range others {
			if n != o.ev.Node {
				add(n, enc)
			}
		}
	}
	if len(order) == 0 {
		return
	}
	entries := make([]storage.InboxAppend, len(order))
	for i, n := range order {
		entries[i] = storage.InboxAppend{Node: n, From: c.self, Data: joinEvents(per[n])}
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	ok, err := c.opts.Store.AppendInbox(ctx, entries, InboxMaxLen)
	for i, n := range order {
		if i < len(ok) && ok[i] {
			c.m.events.WithLabelValues("sent").Add(float64(len(per[n])))
		} else {
			c.m.dropped.Add(float64(len(per[n])))
		}
	}
	if err != nil {
		c.log.Debug("cluster: events not sent", zap.Int("events", len(batch)), zap.Error(err))
	}
}

// readBlock is how long one inbox read waits for an entry; readSlack is how much longer
// its context lets it take (a Redis that does not answer).
const (
	readBlock = 5 * time.Second
	readSlack = 2 * time.Second
)

// startReader starts the inbox reader under ctx.
func (c *Cluster) startReader(ctx context.Context) {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	c.mu.Lock()
	c.readerStop, c.readerDone = stop, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		c.read(ctx)
	}()
}

// stopReader ends the inbox reader and waits for it: the reader, blocked in XREAD, is woken
// by an empty entry in its own inbox (or its read's deadline when the store cannot take it).
func (c *Cluster) stopReader() {
	c.mu.Lock()
	stop, done := c.readerStop, c.readerDone
	c.readerStop, c.readerDone = nil, nil
	c.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	_, _ = c.opts.Store.AppendInbox(ctx, []storage.InboxAppend{{Node: c.self, From: c.self}}, InboxMaxLen)
	cancel()
	<-done
}

// read delivers the entries of this node's inbox to the local subscribers, from the entry
// after the last one it read (the tail of the inbox on the first start), until ctx ends. A
// failed read is retried with backoff from the same entry, so what arrived meanwhile is
// caught up.
func (c *Cluster) read(ctx context.Context) {
	backoff := newBackoff()
	failing := false
	for ctx.Err() == nil {
		if c.after == "" {
			rctx, cancel := context.WithTimeout(ctx, sendTimeout)
			tail, err := c.opts.Store.InboxTail(rctx, c.self)
			cancel()
			if err != nil {
				failing = c.readFailed(ctx, err, failing, backoff)
				continue
			}
			c.after = tail
		}
		rctx, cancel := context.WithTimeout(ctx, readBlock+readSlack)
		entries, err := c.opts.Store.ReadInbox(rctx, c.self, c.after, BatchSize, readBlock)
		cancel()
		if err != nil {
			failing = c.readFailed(ctx, err, failing, backoff)
			continue
		}
		if failing {
			c.log.Info("cluster: inbox readable again", zap.String("after", c.after))
			failing = false
		}
		backoff.reset()
		for _, e := range entries {
			c.after = e.ID
			c.deliver(e)
		}
	}
}

// readFailed logs a failed read (once until reads succeed again) and waits out the backoff.
func (c *Cluster) readFailed(ctx context.Context, err error, failing bool, b *backoff) bool {
	if ctx.Err() != nil {
		return failing
	}
	if !failing {
		c.log.Warn("cluster: inbox read failed; retrying from the last entry read", zap.String("after", c.after), zap.Error(err))
	}
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return true
}

// deliver publishes the events of one inbox entry to the local subscribers, each with the
// node it came from.
func (c *Cluster) deliver(e storage.InboxEntry) {
	if len(e.Data) == 0 {
		return // a wake-up or the inbox's first entry
	}
	if e.From == "" || e.From == c.self {
		c.log.Warn("cluster: inbox entry without a sender, or from this node; skipped", zap.String("entry", e.ID), zap.String("from", e.From))
		return
	}
	evs, err := decodeEvents(e.Data, e.From)
	if err != nil {
		c.log.Warn("cluster: inbox entry does not decode; skipped", zap.String("entry", e.ID), zap.String("from", e.From), zap.Error(err))
	}
	c.m.events.WithLabelValues("received").Add(float64(len(evs)))
	for i := range evs {
		c.local.PublishShared(&evs[i])
	}
}

// backoff doubles from 100 ms to 2 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, 100*time.Millisecond), 2*time.Second)
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// wireEvent is one event as the inbox carries it: short names, the binding only for binding
// events, the node only when it is not the entry's sender.
type wireEvent struct {
	Kind    storage.EventKind `json:"k"`
	AOR     string            `json:"a,omitempty"`
	At      int64             `json:"t,omitempty"` // unix ms
	Node    string            `json:"n,omitempty"`
	Binding *storage.Binding  `json:"b,omitempty"`
	Mailbox storage.Mailbox   `json:"m,omitempty"`
	IDs     []string          `json:"i,omitempty"`
	Full    bool              `json:"f,omitempty"`
	Package string            `json:"p,omitempty"`
	Reason  string            `json:"r,omitempty"`
}

// encodeEvent encodes ev for an entry sent by from.
func encodeEvent(ev *storage.Event, from string) ([]byte, error) {
	w := wireEvent{Kind: ev.Kind, AOR: ev.AOR, Mailbox: ev.Mailbox, IDs: ev.IDs, Full: ev.Full,
		Package: ev.Package, Reason: ev.Reason}
	if !ev.At.IsZero() {
		w.At = ev.At.UnixMilli()
	}
	if ev.Node != from {
		w.Node = ev.Node
	}
	if strings.HasPrefix(string(ev.Kind), "binding.") {
		w.Binding = &ev.Binding
	}
	return json.Marshal(w)
}

// joinEvents makes one entry's data: a JSON array of encoded events.
func joinEvents(evs [][]byte) []byte {
	return append(append([]byte{'['}, bytes.Join(evs, []byte{','})...), ']')
}

// decodeEvents reads an entry sent by from. An event without a kind is left out; an entry
// that is not an array of events is an error.
func decodeEvents(data []byte, from string) ([]storage.Event, error) {
	var ws []wireEvent
	if err := json.Unmarshal(data, &ws); err != nil {
		return nil, err
	}
	out := make([]storage.Event, 0, len(ws))
	for _, w := range ws {
		if w.Kind == "" {
			continue
		}
		ev := storage.Event{Kind: w.Kind, AOR: w.AOR, Node: w.Node, Mailbox: w.Mailbox, IDs: w.IDs, Full: w.Full,
			Package: w.Package, Reason: w.Reason}
		if ev.Node == "" {
			ev.Node = from
		}
		if w.At != 0 {
			ev.At = time.UnixMilli(w.At)
		}
		if w.Binding != nil {
			ev.Binding = *w.Binding
		}
		out = append(out, ev)
	}
	return out, nil
}
