// Package mwi is the message-summary event package (message waiting indication, RFC 3842):
// the voicemail lamp of desk phones and softphones. The presence agent serves it (a
// presence.Package, Publisher, Receiver, Lenient and Originator); this package decides who
// may subscribe, publish and notify, keeps the state, and writes the documents.
//
// State comes from the PBX, in each of the ways PBXs send it: a PUBLISH from a trusted peer
// (stored by the agent as a publication), an out-of-dialog NOTIFY from a trusted peer
// (Asterisk's unsolicited MWI: Receive stores it), or the admin API (Set, Delete). A NOTIFY
// and the admin API write one record per AOR (MailboxStore: storage/memory or Redis, so it
// survives a restart and every node sees it). The state of an AOR is the newest of that
// record and its live publications: a publication whose body changed after the record was
// written wins, and a NOTIFY or admin change after the publication wins over it (publications
// keep their time in whole seconds: at a tie in the same second the record wins). An expired
// or removed publication no longer counts. With none of them the state is
// "Messages-Waiting: no".
//
// Every change notifies every subscription of the AOR (presence.Changed), and with
// Options.Unsolicited also sends an out-of-dialog NOTIFY to every registered device of the
// AOR, as Asterisk does for phones that never subscribe.
package mwi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Event is the package's name in the Event header.
const Event = "message-summary"

// MailboxStore keeps one message summary per AOR (storage/memory, storage/redis; the
// conformance suite storage/storagetest checks it).
type MailboxStore interface {
	// PutMessageSummary stores aor's summary, replacing the one before.
	PutMessageSummary(ctx context.Context, aor string, s storage.MessageSummary) error
	// MessageSummary returns aor's summary, or fails with storage.ErrNotFound.
	MessageSummary(ctx context.Context, aor string) (storage.MessageSummary, error)
	// DeleteMessageSummary removes aor's summary, or fails with storage.ErrNotFound.
	DeleteMessageSummary(ctx context.Context, aor string) error
}

// Devices reaches a user's registered devices (delivery.Delivery).
type Devices interface {
	Reach(ctx context.Context, aor string) (delivery.Devices, error)
	Send(ctx context.Context, req *sip.Request, to delivery.Devices) int
}

// Options configure the package. Presence and Store are required, Devices too with
// Unsolicited.
type Options struct {
	Presence    *presence.Presence
	Store       MailboxStore
	Devices     Devices
	Unsolicited bool
	// MaxBodySize bounds a NOTIFY's body (limits.max_body_size; 413 above).
	MaxBodySize int
	Now         func() time.Time
	Log         *zap.Logger
}

// MWI is the message-summary package.
type MWI struct {
	o Options
	// sending bounds the unsolicited NOTIFY rounds under way; a change that finds it full is
	// logged and not sent (the next change carries the state).
	sending chan struct{}
	wg      sync.WaitGroup
	ctx     context.Context
	stop    context.CancelFunc
}

// maxSending bounds the unsolicited NOTIFY rounds under way at once.
const maxSending = 256

// ErrUnknownUser is the error for an AOR that is not a user of ours (admin API: 404).
var ErrUnknownUser = errors.New("mwi: unknown user")

// New returns the package; serve it with (*presence.Presence).Serve.
func New(o Options) (*MWI, error) {
	if o.Presence == nil || o.Store == nil || o.Unsolicited && o.Devices == nil || o.MaxBodySize <= 0 {
		return nil, fmt.Errorf("mwi: want a presence agent, a store, a body size limit and, for unsolicited NOTIFYs, the devices")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	ctx, stop := context.WithCancel(context.Background())
	return &MWI{o: o, sending: make(chan struct{}, maxSending), ctx: ctx, stop: stop}, nil
}

// Close stops the unsolicited NOTIFYs under way and waits for them.
func (m *MWI) Close() error {
	m.stop()
	m.wg.Wait()
	return nil
}

// Event implements presence.Package.
func (*MWI) Event() string { return Event }

// Type implements presence.Package.
func (*MWI) Type() string { return Type }

// KeepOnTimeout implements presence.Lenient: a lost NOTIFY must not leave a lamp that never
// updates again.
func (*MWI) KeepOnTimeout() bool { return true }

// Authorize lets a user watch its own mailbox (the watcher is the AOR, and proven: it
// authenticated, or auth is off), and a trusted peer watch any; everyone else gets 403.
func (*MWI) Authorize(_ context.Context, s *presence.Subscribe) (presence.Decision, error) {
	if s.State.Rule == sipx.RulePeer || s.Watcher == s.AOR && s.SelfProven() {
		return presence.Allow(), nil
	}
	return presence.Refuse(403, "Only the mailbox owner may subscribe"), nil
}

// Document implements presence.Package: the whole summary each time (RFC 3842 has no partial
// documents), nil when the watcher has it already.
func (m *MWI) Document(ctx context.Context, sub *storage.Subscription, _ uint32, sent map[string]string) ([]byte, map[string]string, error) {
	s, err := m.State(ctx, sub.AOR)
	if err != nil {
		return nil, nil, err
	}
	body := s.Format()
	if sent != nil && sent["summary"] == string(body) {
		return nil, sent, nil
	}
	return body, map[string]string{"summary": string(body)}, nil
}

// State is aor's message summary: the newest of the stored record and the live
// publications (see the package doc); "Messages-Waiting: no" when there is none.
func (m *MWI) State(ctx context.Context, aor string) (Summary, error) {
	var (
		body []byte
		at   time.Time
	)
	rec, err := m.o.Store.MessageSummary(ctx, aor)
	switch {
	case err == nil:
		body, at = rec.Body, rec.UpdatedAt.Truncate(time.Second)
	case !errors.Is(err, storage.ErrNotFound):
		return Summary{}, err
	}
	pubs, err := m.o.Presence.PublicationsOf(ctx, Event, aor)
	if err != nil {
		return Summary{}, err
	}
	if n := len(pubs); n > 0 && (body == nil || pubs[n-1].UpdatedAt.After(at)) {
		body = pubs[n-1].Body // the newest: Publications lists them oldest first
	}
	if body == nil {
		return Summary{Counts: map[string]Counts{}}, nil
	}
	s, err := Parse(body)
	if err != nil {
		// Checked before it was stored: a record another version wrote, or corruption.
		m.o.Log.Warn("stored message summary unreadable", zap.String(logging.KeyAOR, aor), zap.Error(err))
		return Summary{Counts: map[string]Counts{}}, nil
	}
	return s, nil
}

// MayPublish implements presence.Publisher: only a trusted peer (the PBX) publishes a
// mailbox's state.
func (*MWI) MayPublish(_ context.Context, st *sipx.State, _ *sip.Request, _ string) bool {
	return st.Rule == sipx.RulePeer
}

// Check implements presence.Publisher (the agent checked the size): the type (415) and the
// document (400 naming the faulty line).
func (*MWI) Check(_ context.Context, req *sip.Request, body []byte) (int, string, []sip.Header) {
	if status, reason, hdrs := checkType(req); status != 0 {
		return status, reason, hdrs
	}
	if _, err := Parse(body); err != nil {
		return 400, "Invalid message summary: " + sipx.ReasonText(err.Error()), nil
	}
	return 0, "", nil
}

// checkType refuses a body that is not application/simple-message-summary (415 with Accept).
func checkType(req *sip.Request) (int, string, []sip.Header) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, Type) {
		return 415, "", []sip.Header{sip.NewHeader("Accept", Type)}
	}
	return 0, "", nil
}

// Receive implements presence.Receiver: an out-of-dialog NOTIFY of a user's message summary
// (Asterisk's unsolicited MWI). Only a trusted peer may send one (403); its body must be a
// summary (413 over limits.max_body_size, 415, 400 naming the line) of a user of ours (404).
// It is stored, answered 200, and every subscription of the user notified.
func (m *MWI) Receive(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	aor := sipx.AOR(&req.Recipient)
	if st.Rule != sipx.RulePeer {
		st.Logger().Info("message-summary NOTIFY refused: not a trusted peer", zap.String(logging.KeyAOR, aor))
		return sipx.Respond(tx, req, 403, "Only a trusted peer may notify message-summary")
	}
	body := req.Body()
	if len(body) > m.o.MaxBodySize {
		return sipx.Respond(tx, req, 413, "")
	}
	if status, reason, hdrs := checkType(req); status != 0 {
		return sipx.Respond(tx, req, status, reason, hdrs...)
	}
	s, err := Parse(body)
	if err != nil {
		st.Logger().Info("message-summary NOTIFY refused", zap.String(logging.KeyAOR, aor), zap.Error(err))
		return sipx.Respond(tx, req, 400, "Invalid message summary: "+sipx.ReasonText(err.Error()))
	}
	if err := m.Set(ctx, aor, s); errors.Is(err, ErrUnknownUser) {
		return sipx.Respond(tx, req, 404, "")
	} else if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	return sipx.Respond(tx, req, 200, "")
}

// Set stores s as aor's message summary and notifies its subscriptions; ErrUnknownUser when
// aor is not a user of ours.
func (m *MWI) Set(ctx context.Context, aor string, s Summary) error {
	if err := s.Check(); err != nil {
		return err
	}
	if err := m.known(ctx, aor); err != nil {
		return err
	}
	rec := storage.MessageSummary{Body: s.Format(), UpdatedAt: m.o.Now()}
	if err := m.o.Store.PutMessageSummary(ctx, aor, rec); err != nil {
		return err
	}
	m.o.Log.Info("message summary set", zap.String(logging.KeyAOR, aor), zap.Bool("waiting", s.Waiting))
	m.o.Presence.Changed(aor, Event)
	return nil
}

// Delete removes aor's stored message summary (publications stay until they expire) and
// notifies its subscriptions; storage.ErrNotFound when there is none.
func (m *MWI) Delete(ctx context.Context, aor string) error {
	if err := m.o.Store.DeleteMessageSummary(ctx, aor); err != nil {
		return err
	}
	m.o.Presence.Changed(aor, Event)
	return nil
}

// Get is aor's message summary (State) for the admin API; ErrUnknownUser when aor is not a
// user of ours.
func (m *MWI) Get(ctx context.Context, aor string) (Summary, error) {
	if err := m.known(ctx, aor); err != nil {
		return Summary{}, err
	}
	return m.State(ctx, aor)
}

// known fails with ErrUnknownUser unless aor is a user of ours.
func (m *MWI) known(ctx context.Context, aor string) error {
	ok, err := m.o.Presence.Exists(ctx, aor)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownUser, aor)
	}
	return nil
}

// ChangedHere implements presence.Originator: with Unsolicited, the summary goes to every
// registered device of aor.
func (m *MWI) ChangedHere(aor string) {
	if !m.o.Unsolicited || m.ctx.Err() != nil {
		return
	}
	select {
	case m.sending <- struct{}{}:
	default:
		m.o.Log.Warn("unsolicited message-summary NOTIFY not sent: too many under way", zap.String(logging.KeyAOR, aor))
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() { <-m.sending }()
		m.sendUnsolicited(aor)
	}()
}

// unsolicitedTimeout bounds one round of unsolicited NOTIFYs (Timer F is 32 s).
const unsolicitedTimeout = 40 * time.Second

// sendUnsolicited sends aor's summary in an out-of-dialog NOTIFY to each of its registered
// devices, all at once (not forked: every device's lamp must light).
func (m *MWI) sendUnsolicited(aor string) {
	ctx, cancel := context.WithTimeout(m.ctx, unsolicitedTimeout)
	defer cancel()
	log := m.o.Log.With(zap.String(logging.KeyAOR, aor))
	devs, err := m.o.Devices.Reach(ctx, aor)
	if err != nil || devs.Bindings == 0 {
		if err != nil {
			log.Warn("unsolicited message-summary NOTIFY: devices not found", zap.Error(err))
		}
		return
	}
	s, err := m.State(ctx, aor)
	if err != nil {
		log.Warn("unsolicited message-summary NOTIFY: state not read", zap.Error(err))
		return
	}
	req := unsolicitedRequest(aor, s.Format())
	var wg sync.WaitGroup
	for _, group := range devs.Groups {
		for _, t := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status := m.o.Devices.Send(ctx, req, delivery.Devices{Groups: [][]delivery.Target{{t}}, Bindings: 1})
				log.Debug("unsolicited message-summary NOTIFY", zap.String("target", t.Dest.String()), zap.Int(logging.KeyStatus, status))
			}()
		}
	}
	wg.Wait()
}

// unsolicitedRequest is the out-of-dialog NOTIFY of aor's summary: From and To the user (From
// with a tag), Event: message-summary and Subscription-State: active as Asterisk sends them.
// delivery sets the Request-URI and Via per device.
func unsolicitedRequest(aor string, body []byte) *sip.Request {
	user, host, _ := strings.Cut(aor, "@")
	uri := sip.Uri{Scheme: "sip", User: user, Host: host}
	var rnd [14]byte
	_, _ = rand.Read(rnd[:])
	req := sip.NewRequest(sip.NOTIFY, uri)
	req.AppendHeader(&sip.FromHeader{Address: uri, Params: sip.HeaderParams{{K: "tag", V: hex.EncodeToString(rnd[:4])}}})
	req.AppendHeader(&sip.ToHeader{Address: uri})
	callID := sip.CallIDHeader(hex.EncodeToString(rnd[4:]) + "@simpled")
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Event", Event))
	req.AppendHeader(sip.NewHeader("Subscription-State", "active"))
	ct := sip.ContentTypeHeader(Type)
	req.AppendHeader(&ct)
	req.SetBody(body)
	return req
}
