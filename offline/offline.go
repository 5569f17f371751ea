// Package offline is store-and-forward for MESSAGE (RFC 3428 leaves a proxy free to keep a
// request for a user who cannot take it now): the proxy hands it a MESSAGE for a known user of
// ours with no reachable device (Store answers 202 Accepted), it keeps the message in its
// MessageStore within the mailbox limits, and when the registrar's bus reports that the user
// registered again on this node (the node that accepted the REGISTER delivers, so that with
// a bus spanning several nodes a message is sent once) it sends every stored message to the
// new devices through package delivery, oldest first, deleting each once a device answered
// 2xx. It also sends the messages the admin
// API originates (Send: delivered now, or stored like any other), tells known users (Known:
// credentials, or a registration within the max age), and sweeps expired messages.
package offline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Options configure store-and-forward. Store and Sender are required; zero limits take the
// defaults shown.
type Options struct {
	// Store keeps the mailboxes and the known users.
	Store MessageStore
	// Sender reaches a user's registered devices: package delivery.
	Sender delivery.Sender
	// Domains are the local domains: the admin API sends only to their users, from the first
	// one by default.
	Domains []string
	// Rules check the messages simpled sends itself (Send) and name a MESSAGE's sender
	// (msgcheck.Rules.FromAOR). Required.
	Rules *msgcheck.Rules
	// HasCredentials reports whether aor has digest credentials (a known user); may be nil.
	HasCredentials func(ctx context.Context, aor string) (bool, error)
	// Bus carries the registrar's binding events; nil delivers nothing on registration.
	// Only the events of registrations on this node count (Event.Node is Bus.Self() or ""):
	// with a bus that spans the nodes of a deployment, the node that accepted a REGISTER is
	// the one that delivers the stored messages, so each is sent once.
	Bus storage.Bus
	// Limited counts the offline messages refused by a mailbox limit
	// (simpled_limited_total{limit="mailbox"|"mailbox_sender"|"mailbox_foreign"}); nil counts
	// nothing.
	Limited *sipx.Limited
	// Count counts a MESSAGE's outcome (simpled_messages_total: stored, delivered, expired,
	// refused, rejected, failed); nil counts nothing.
	Count func(outcome string)
	// MaxBodySize bounds the bodies of messages simpled sends itself (Send; limits.max_body_size).
	MaxBodySize int

	MaxCount int // messages kept per user (messages.offline_max_count)
	MaxBytes int // bytes kept per user (messages.offline_max_bytes)
	// MaxPerSender bounds the messages one sender may have waiting in one user's mailbox;
	// 0 means no bound (config: messages.offline_max_per_sender).
	MaxPerSender int
	// ForeignShare is the share of MaxCount and MaxBytes that foreign senders (inbound
	// federation, in-dialog requests) may fill together, so the rest stays for local
	// senders: authenticated users, trusted peers, simpled itself, and with auth.mode off
	// whoever claims a local identity; 0 or 1 and above mean no reservation (config:
	// messages.offline_foreign_share).
	ForeignShare float64
	MaxAge       time.Duration // a message undelivered this long is dropped (messages.offline_max_age)
	// RetryMin and RetryMax bound the backoff between delivery attempts to a registered user
	// whose devices do not answer (2 s, 5 min).
	RetryMin, RetryMax time.Duration
	// SweepInterval is how often expired messages are dropped (30 s).
	SweepInterval time.Duration
	// Workers handle registration events (8): each may cost a store round trip.
	Workers int

	Log *zap.Logger
	Now func() time.Time
}

func (o *Options) defaults() {
	o.RetryMin = cmp.Or(o.RetryMin, 2*time.Second)
	o.RetryMax = cmp.Or(o.RetryMax, 5*time.Minute)
	o.SweepInterval = cmp.Or(o.SweepInterval, 30*time.Second)
	o.Workers = cmp.Or(o.Workers, 8)
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Count == nil {
		o.Count = func(string) {}
	}
}

// Offline is store-and-forward for MESSAGE: a MESSAGE for a known user with no reachable
// device is stored (202 Accepted); when the user registers again every stored message is sent
// to the new bindings with its original From, To, Call-ID, CSeq, Date, Content-Type and body,
// oldest first, and removed only once a device answered 2xx. Failed attempts are retried with
// backoff while the user stays registered; a device that refuses a message for good (4xx
// other than 408/480, 6xx) drops it. All state is in the MessageStore, so with Redis nothing is
// lost across restarts: the next registration refresh resumes delivery.
type Offline struct {
	messages MessageStore
	sender   delivery.Sender
	rules    *msgcheck.Rules
	domains  map[string]bool
	opts     Options
	log      *zap.Logger
	refusals *sipx.LogGate[string] // mailbox refusals logged once per source and limit a minute

	events      <-chan *storage.Event // registration events, subscribed at construction
	unsubscribe func()
	self        string // the bus's node: events of other nodes are theirs to act on
	// stop ends the context deliveries started before Run live in (Close).
	stop context.CancelFunc

	mu     sync.Mutex
	active map[string]bool // AORs with a delivery running
	again  map[string]bool // AORs registered again while their delivery ran
	wg     sync.WaitGroup
	ctx    context.Context
}

// New builds store-and-forward from opts. It subscribes to opts.Bus at once, so no
// registration between start-up and Run is missed.
func New(opts Options) (*Offline, error) {
	if opts.Store == nil || opts.Sender == nil || opts.Rules == nil || len(opts.Domains) == 0 {
		return nil, errors.New("offline: Store, Sender, Rules and Domains are required")
	}
	// The limits are configuration (messages.offline_max_*, limits.max_body_size), defaulted
	// in config.Default only.
	if opts.MaxCount <= 0 || opts.MaxBytes <= 0 || opts.MaxAge <= 0 || opts.MaxBodySize <= 0 {
		return nil, errors.New("offline: MaxCount, MaxBytes, MaxAge and MaxBodySize must be positive")
	}
	opts.defaults()
	o := &Offline{messages: opts.Store, sender: opts.Sender, rules: opts.Rules, domains: map[string]bool{},
		opts: opts, log: opts.Log, refusals: sipx.NewLogGate[string](time.Minute),
		active: map[string]bool{}, again: map[string]bool{}}
	// Until Run, deliveries (of messages Send stored) live until Close.
	o.ctx, o.stop = context.WithCancel(context.Background())
	for _, d := range opts.Domains {
		o.domains[strings.ToLower(d)] = true
	}
	opts.Limited.Declare("mailbox", "mailbox_sender", "mailbox_foreign")
	if opts.Bus != nil {
		// Coalesced: a registration that may start a delivery, and the end of one (which
		// keeps the user known), is never dropped when the workers fall behind.
		var stop func()
		o.self = opts.Bus.Self()
		o.events, stop = opts.Bus.Subscribe(16384, storage.Coalesce(func(ev *storage.Event) string {
			if !o.here(ev) {
				return "" // another node's: that node acts on it
			}
			return offlineKey(ev)
		}))
		o.unsubscribe = sync.OnceFunc(stop)
	}
	return o, nil
}

// Close ends what New started for an Offline whose Run never ran (Run ends it itself): the
// subscription to the registration bus, and deliveries of messages Send stored. It may be
// called more than once.
func (o *Offline) Close() error {
	if o.unsubscribe != nil {
		o.unsubscribe()
	}
	o.stop()
	return nil
}

func (o *Offline) limits() storage.MailboxLimits {
	lim := storage.MailboxLimits{MaxCount: o.opts.MaxCount, MaxBytes: o.opts.MaxBytes, MaxPerSender: o.opts.MaxPerSender}
	if f := o.opts.ForeignShare; f > 0 && f < 1 {
		// At least one: 0 would mean no bound.
		lim.MaxForeignCount = max(int(f*float64(o.opts.MaxCount)), 1)
		lim.MaxForeignBytes = max(int(f*float64(o.opts.MaxBytes)), 1)
	}
	return lim
}

// sender is who a MESSAGE is stored from: the identity it proved (an authenticated user),
// else its From AOR; foreign when no local identity stands behind it.
type sender struct {
	id      string
	foreign bool
}

// senderOf is the sender of req accepted under st's rule: an authenticated user is
// st.AuthUser; otherwise its From AOR, local when a trusted peer vouches for it or auth.mode
// off takes a local claim at its word (RuleOpen: nobody proves anything there, and every
// user of such a server would otherwise get half a mailbox), foreign for inbound federation
// and anything else (in-dialog requests).
func (o *Offline) senderOf(st *sipx.State, req *sip.Request) sender {
	switch st.Rule {
	case sipx.RuleUser:
		if st.AuthUser != "" {
			return sender{id: st.AuthUser}
		}
	case sipx.RulePeer, sipx.RuleOpen:
		return sender{id: o.rules.FromAOR(req)}
	}
	return sender{id: o.rules.FromAOR(req), foreign: true}
}

// Known reports whether aor is a user of ours: one with credentials, or one who registered
// within the offline max age (a MESSAGE for them is stored rather than refused with 404).
func (o *Offline) Known(ctx context.Context, aor string) (bool, error) {
	if o.opts.HasCredentials != nil {
		ok, err := o.opts.HasCredentials(ctx, aor)
		if err != nil || ok {
			return ok, err
		}
	}
	return o.messages.Known(ctx, aor, o.opts.Now())
}

// Store keeps req, a MESSAGE the proxy received, for aor and answers it: 202, or 480 when the
// mailbox (or the sender's share of it) is full, or the store's error (503) — never 202 for a
// message that was not stored. registered says aor has bindings whose devices did not answer:
// delivery is then retried after a backoff.
func (o *Offline) Store(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, aor string, registered bool) (int, error) {
	st := sipx.StateFrom(ctx)
	code, reason, err := o.keep(ctx, req, aor, o.senderOf(st, req), st.SourceIP(), registered, st.Logger())
	if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	return sipx.Respond(tx, req, code, reason)
}

// keep stores req from from for aor: 202, 480 when the mailbox or from's share of it is
// full, or the store's error. source (an IP, or "") keys the refusal log.
func (o *Offline) keep(ctx context.Context, req *sip.Request, aor string, from sender, source string, registered bool, log *zap.Logger) (int, string, error) {
	now := o.opts.Now()
	m := messageOf(req, now, o.opts.MaxAge)
	// Scoped by sender: nobody can pre-empt another sender's message by sending its id first.
	m.DedupKey = from.id + " " + m.DedupKey
	m.Sender, m.Foreign = from.id, from.foreign
	id, dup, err := o.messages.StoreMessage(ctx, aor, m, o.limits(), now)
	if errors.Is(err, storage.ErrMailboxFull) {
		limit, reason := "mailbox", "Mailbox Full"
		switch {
		case errors.Is(err, storage.ErrSenderQuota):
			limit, reason = "mailbox_sender", "Mailbox Full For This Sender"
		case errors.Is(err, storage.ErrForeignShare):
			limit, reason = "mailbox_foreign", "Mailbox Full For Unauthenticated Senders"
		}
		o.opts.Count("refused")
		o.opts.Limited.Inc(limit)
		if o.refusals.Allow(limit+" "+cmp.Or(source, from.id), now) {
			log.Info("offline message refused: "+reason, zap.String(logging.KeyAOR, aor), zap.String("sender", from.id),
				zap.Bool("foreign", from.foreign), zap.String("limit", limit), zap.Error(err))
		}
		return 480, reason, nil
	}
	switch {
	case err != nil:
		o.opts.Count("failed")
		return 0, "", fmt.Errorf("offline: store message for %s: %w", aor, err)
	}
	if !dup {
		o.opts.Count("stored")
	}
	log.Info("message stored for offline delivery", zap.String(logging.KeyAOR, aor), zap.String("message_id", id), zap.Bool("duplicate", dup))
	if registered {
		o.kick(aor, o.opts.RetryMin) // devices that did not answer now may later
	}
	return 202, "", nil
}

// messageOf is what is kept of a MESSAGE to re-send it later.
func messageOf(req *sip.Request, now time.Time, maxAge time.Duration) storage.Message {
	now = now.Truncate(time.Second).UTC()
	m := storage.Message{
		DedupKey:    msgcheck.DedupKey(req),
		ContentType: msgcheck.ContentType(req),
		Body:        append([]byte(nil), req.Body()...),
		StoredAt:    now,
		ExpiresAt:   now.Add(maxAge),
	}
	if h := req.From(); h != nil {
		m.From = h.Value()
	}
	if h := req.To(); h != nil {
		m.To = h.Value()
	}
	if h := req.CallID(); h != nil {
		m.CallID = h.Value()
	}
	if h := req.CSeq(); h != nil {
		m.CSeq = h.SeqNo
	}
	if h := sipx.Header(req, "Date"); h != nil {
		m.Date = h.Value()
	} else {
		m.Date = now.Format(http.TimeFormat) // RFC 3261 §20.17: RFC 1123 in GMT
	}
	if h := sipx.Header(req, "Content-Encoding"); h != nil {
		m.ContentEncoding = h.Value()
	}
	return m
}

// Run reacts to registrations and sweeps expired messages until ctx ends.
func (o *Offline) Run(ctx context.Context) {
	o.mu.Lock()
	o.ctx = ctx
	o.mu.Unlock()
	if o.events != nil {
		defer o.unsubscribe()
		for range o.opts.Workers {
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case ev, ok := <-o.events:
						if !ok {
							return
						}
						o.onEvent(ctx, ev)
					}
				}
			}()
		}
	}
	t := time.NewTicker(o.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.sweep(ctx)
		}
	}
}

// Wait returns when background deliveries have ended (after Run's ctx is done).
func (o *Offline) Wait() { o.wg.Wait() }

// offlineKey names the events onEvent must see, by what they make it do and for whom; ""
// for those it may miss (a registration whose update saw an empty mailbox).
func offlineKey(ev *storage.Event) string {
	switch ev.Kind {
	case storage.BindingAdded, storage.BindingRefreshed:
		if ev.Mailbox != storage.MailboxEmpty {
			return "deliver " + ev.AOR
		}
	case storage.BindingRemoved, storage.BindingExpired, storage.BindingEvicted:
		return "known " + ev.AOR
	}
	return ""
}

// here reports whether ev happened on this node.
func (o *Offline) here(ev *storage.Event) bool { return ev.Node == "" || ev.Node == o.self }

// ev is shared with the bus's other subscribers: it is read, never changed.
func (o *Offline) onEvent(ctx context.Context, ev *storage.Event) {
	if !o.here(ev) {
		return
	}
	switch ev.Kind {
	case storage.BindingAdded, storage.BindingRefreshed:
		// The registration's own update read the mailbox (Event.Mailbox); only when it
		// could not is the store asked again.
		has := ev.Mailbox == storage.MailboxHasMessages
		if ev.Mailbox == storage.MailboxUnknown {
			var err error
			if has, err = o.messages.HasMessages(ctx, ev.AOR); err != nil {
				o.log.Warn("offline check failed", zap.String(logging.KeyAOR, ev.AOR), zap.Error(err))
				return
			}
		}
		if has {
			o.kick(ev.AOR, 0)
		}
	case storage.BindingRemoved, storage.BindingExpired, storage.BindingEvicted:
		if err := o.messages.MarkKnown(ctx, ev.AOR, o.opts.Now().Add(o.opts.MaxAge)); err != nil {
			o.log.Warn("known-user mark failed", zap.String(logging.KeyAOR, ev.AOR), zap.Error(err))
		}
	}
}

// kick starts delivering aor's messages after delay, unless a delivery is running (which then
// makes one more pass).
func (o *Offline) kick(aor string, delay time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.active[aor] {
		o.again[aor] = true
		return
	}
	ctx := o.ctx
	if ctx.Err() != nil {
		return
	}
	o.active[aor] = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.deliverLoop(ctx, aor, delay)
	}()
}

// deliverLoop delivers aor's messages, retrying with backoff while aor stays registered.
func (o *Offline) deliverLoop(ctx context.Context, aor string, delay time.Duration) {
	backoff := o.opts.RetryMin
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				o.done(aor)
				return
			case <-t.C:
			}
		}
		retry, err := o.deliver(ctx, aor)
		if err != nil {
			o.log.Warn("offline delivery failed", zap.String(logging.KeyAOR, aor), zap.Error(err))
			retry = true
		}
		o.mu.Lock()
		again := o.again[aor]
		delete(o.again, aor)
		if !retry && !again {
			delete(o.active, aor)
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		if again && !retry {
			delay, backoff = 0, o.opts.RetryMin
			continue
		}
		delay = backoff
		backoff = min(backoff*2, o.opts.RetryMax)
	}
}

func (o *Offline) done(aor string) {
	o.mu.Lock()
	delete(o.active, aor)
	delete(o.again, aor)
	o.mu.Unlock()
}

// deliver makes one pass over aor's mailbox. It reports whether to try again later (a device
// did not answer, or the store failed).
func (o *Offline) deliver(ctx context.Context, aor string) (retry bool, err error) {
	now := o.opts.Now()
	msgs, err := o.messages.Messages(ctx, aor, now)
	if err != nil || len(msgs) == 0 {
		return false, err
	}
	devices, err := o.sender.Reach(ctx, aor)
	if err != nil {
		return true, err
	}
	if devices.Bindings == 0 {
		return false, nil // the next registration starts again
	}
	for i := range msgs {
		m := &msgs[i]
		req, err := requestOf(aor, m)
		if err != nil {
			o.log.Error("stored message unusable, dropped", zap.String(logging.KeyAOR, aor), zap.String("message_id", m.ID), zap.Error(err))
			_ = o.messages.DeleteMessage(ctx, aor, m.ID)
			continue
		}
		status := o.sender.Send(ctx, req, devices)
		switch {
		case status >= 200 && status < 300:
			if err := o.messages.DeleteMessage(ctx, aor, m.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return true, err
			}
			o.opts.Count("delivered")
			o.log.Info("offline message delivered", zap.String(logging.KeyAOR, aor), zap.String("message_id", m.ID), zap.Int(logging.KeyStatus, status))
		case status == 408 || status == 480 || status == 503 || status == 500 || status == 0:
			return true, nil // nobody answered: keep it, try later (in order)
		default:
			o.log.Info("offline message refused by the device, dropped", zap.String(logging.KeyAOR, aor), zap.String("message_id", m.ID), zap.Int(logging.KeyStatus, status))
			o.opts.Count("rejected")
			if err := o.messages.DeleteMessage(ctx, aor, m.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return true, err
			}
		}
	}
	return false, nil
}

// requestOf rebuilds the MESSAGE for a stored message, addressed to aor.
func requestOf(aor string, m *storage.Message) (*sip.Request, error) {
	var ruri sip.Uri
	if err := sip.ParseUri("sip:"+aor, &ruri); err != nil {
		return nil, err
	}
	req := sip.NewRequest(sip.MESSAGE, ruri)
	from := &sip.FromHeader{}
	name, err := sip.ParseAddressValue(m.From, &from.Address, &from.Params)
	if err != nil {
		return nil, fmt.Errorf("offline: From %q: %w", m.From, err)
	}
	// Through its text and back: the stored value is as the sender wrote it.
	from.DisplayName = sipx.QuoteDisplayName(sipx.DisplayNameText(name))
	to := &sip.ToHeader{}
	if _, err := sip.ParseAddressValue(m.To, &to.Address, &to.Params); err != nil {
		return nil, fmt.Errorf("offline: To %q: %w", m.To, err)
	}
	to.Params.Remove("tag")
	callID := sip.CallIDHeader(m.CallID)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: m.CSeq, MethodName: sip.MESSAGE})
	req.AppendHeader(&mf)
	if m.Date != "" {
		req.AppendHeader(sip.NewHeader("Date", m.Date))
	}
	if m.ContentType != "" {
		ct := sip.ContentTypeHeader(m.ContentType)
		req.AppendHeader(&ct)
	}
	if m.ContentEncoding != "" {
		req.AppendHeader(sip.NewHeader("Content-Encoding", m.ContentEncoding))
	}
	req.SetBody(m.Body)
	return req, nil
}

// sweep drops messages that reached their max age.
func (o *Offline) sweep(ctx context.Context) {
	for {
		expired, err := o.messages.ExpireMessages(ctx, o.opts.Now(), 256)
		if err != nil {
			o.log.Warn("offline expiry sweep failed", zap.Error(err))
			return
		}
		for _, e := range expired {
			o.opts.Count("expired")
			o.log.Info("offline message expired undelivered", zap.String(logging.KeyAOR, e.AOR), zap.String("message_id", e.Message.ID))
		}
		if len(expired) < 256 {
			return
		}
	}
}

// Pending lists aor's stored messages (admin API).
func (o *Offline) Pending(ctx context.Context, aor string) ([]storage.Message, error) {
	return o.messages.Messages(ctx, aor, o.opts.Now())
}

// Delete removes one stored message of aor, or all of them when id is "" (admin API); it
// reports how many were removed.
func (o *Offline) Delete(ctx context.Context, aor, id string) (int, error) {
	if id == "" {
		return o.messages.DeleteMessages(ctx, aor)
	}
	if err := o.messages.DeleteMessage(ctx, aor, id); err != nil {
		return 0, err
	}
	return 1, nil
}
