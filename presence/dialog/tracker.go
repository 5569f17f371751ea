package dialog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/proxy"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Tracker is the proxy's call observer: it turns the calls simpled routes into the dialogs
// of their parties that are users of ours. Create it with NewTracker; it is safe for
// concurrent use. Store writes run off the proxy's goroutine (the INVITE path does not wait
// for them); their order does not matter, since the store only moves a dialog forward.
//
// A call nobody watches costs no store write until it is answered: a party's trying,
// proceeding and early states are stored only while the party has a dialog watcher (asked
// at each change, so a watcher who subscribes while the phone rings sees the call from its
// next change on), a confirmed call always (a phone that subscribes during a call, or
// boots, sees it), and once a party's dialog is stored every later state of it is too.
// A call declined or cancelled while nobody watched leaves no trace.
type Tracker struct {
	store   Store
	cfg     Config
	ringing time.Duration
	changed func(aor string)
	watched Watched
	now     func() time.Time
	log     *zap.Logger

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	// calls remembers, for the BYEs of answered calls, the AORs whose dialogs a Call-ID
	// names: the callee's AOR is the Request-URI's, which a BYE does not carry. A BYE that
	// comes through another node finds the dialogs by its From and To instead.
	calls map[string]answered
}

type answered struct {
	aors  []string
	until time.Time
}

// maxRemembered bounds Tracker.calls; beyond it, expired entries are swept first.
const maxRemembered = 100000

// Watched reports whether anyone watches aor's dialog state (presence.Presence.Watched).
type Watched func(ctx context.Context, aor string) (bool, error)

// NewTracker builds the tracker. ringing bounds a call that is not answered (the proxy's
// Timer C plus a margin: its own end is reported before); changed announces that aor's
// dialog state changed (presence.Presence.Changed); watched tells whether a party's early
// states are worth storing (nil: always).
func NewTracker(store Store, cfg Config, ringing time.Duration, changed func(aor string), watched Watched, log *zap.Logger) *Tracker {
	if log == nil {
		log = zap.NewNop()
	}
	return &Tracker{store: store, cfg: cfg, ringing: ringing, changed: changed, watched: watched, now: time.Now, log: log,
		calls: map[string]answered{}}
}

// Close waits for the writes under way; later changes are dropped.
func (t *Tracker) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// call follows one INVITE (proxy.CallWatcher). Its parties' dialogs are built from the
// INVITE only when one is stored: a call nobody watches costs no more than this struct.
type call struct {
	t *Tracker
	// aors are the caller's (initiator) and the callee's (recipient), "" when not ours.
	aors            [2]string
	callID, fromTag string
	from            *sip.FromHeader
	to              *sip.ToHeader
	contact         *sip.ContactHeader
	startedAt       time.Time
	next            uint64 // the sequence number of the last change (set runs on the call's goroutine)

	// mu orders the writes of the call's changes, which run on goroutines of their own:
	// done is the last change handled per party (an older one that comes later is dropped),
	// stored whether the party's dialog is in the store (its later changes must follow),
	// dialogs the parties' dialogs as the INVITE made them (built once, when first stored).
	mu      sync.Mutex
	done    [2]uint64
	stored  [2]bool
	built   bool
	dialogs [2]storage.Dialog
}

// change is one state a call moved to.
type change struct {
	seq          uint64
	state, event string
	code         int
	at           time.Time
	calleeTag    string
	target       *sip.ContactHeader // the callee's Contact, from its response
}

// dialogID names the dialog of one call (Call-ID and the caller's tag) for one party: the
// same on every node, and unique per AOR.
func dialogID(callID, fromTag, direction string) string {
	h := sha256.Sum256([]byte(callID + "\x00" + fromTag + "\x00" + direction))
	return hex.EncodeToString(h[:10])
}

// Invite implements proxy.CallObserver.
func (t *Tracker) Invite(_ context.Context, c proxy.Call) proxy.CallWatcher {
	if c.Caller == "" && c.Callee == "" {
		return nil
	}
	req := c.Request
	k := &call{t: t, aors: [2]string{c.Caller, c.Callee}, callID: req.CallID().Value(),
		from: req.From(), to: req.To(), contact: req.Contact(), startedAt: t.now()}
	k.fromTag = tag(k.from.Params)
	k.set(storage.DialogTrying, nil, "", 0)
	return k
}

// build makes the parties' dialogs from the INVITE (k.mu held).
func (k *call) build() {
	if k.built {
		return
	}
	k.built = true
	contact := ""
	if k.contact != nil {
		contact = k.contact.Address.String()
	}
	from, to := k.from.Address.String(), k.to.Address.String()
	if k.aors[0] != "" {
		k.dialogs[0] = storage.Dialog{
			ID: dialogID(k.callID, k.fromTag, "initiator"), CallID: k.callID, LocalTag: k.fromTag, Direction: "initiator",
			Local: from, LocalName: k.from.DisplayName, LocalTarget: contact,
			Remote: to, RemoteName: k.to.DisplayName, StartedAt: k.startedAt}
	}
	if k.aors[1] != "" {
		k.dialogs[1] = storage.Dialog{
			ID: dialogID(k.callID, k.fromTag, "recipient"), CallID: k.callID, RemoteTag: k.fromTag, Direction: "recipient",
			Local: "sip:" + k.aors[1], LocalName: k.to.DisplayName,
			Remote: from, RemoteName: k.from.DisplayName, RemoteTarget: contact, StartedAt: k.startedAt}
	}
}

// Response implements proxy.CallWatcher: a provisional response is proceeding, or early with
// the callee's tag; a 2xx confirms the call.
func (k *call) Response(res *sip.Response) {
	switch {
	case res.IsSuccess():
		k.set(storage.DialogConfirmed, res, "", 0)
	case res.StatusCode > 100 && res.StatusCode < 200:
		state := storage.DialogProceeding
		if tag(res.To().Params) != "" {
			state = storage.DialogEarly
		}
		k.set(state, res, "", 0)
	}
}

// Failed implements proxy.CallWatcher (RFC 4235 §4.1.2's events).
func (k *call) Failed(status int, cause string) {
	event := "rejected"
	switch {
	case cause == proxy.CallCancelled:
		event = "cancelled"
	case cause == proxy.CallTimeout || status == 408:
		event = "timeout"
	case status == 0 || status >= 500 && status < 600:
		event = "error"
	}
	k.set(storage.DialogTerminated, nil, event, status)
}

// set moves every party of the call to state: res gives the callee's tag and target.
func (k *call) set(state string, res *sip.Response, event string, code int) {
	k.next++
	ch := change{seq: k.next, state: state, event: event, code: code, at: k.t.now()}
	if res != nil {
		ch.calleeTag, ch.target = tag(res.To().Params), res.Contact()
	}
	if state == storage.DialogConfirmed {
		var aors []string
		for _, aor := range k.aors {
			if aor != "" {
				aors = append(aors, aor)
			}
		}
		k.t.remember(k.callID, aors, ch.at.Add(k.t.cfg.MaxDuration))
	}
	k.t.apply(k, ch)
}

// dialog is party i's dialog in change ch (k.mu held).
func (k *call) dialog(i int, ch change) storage.Dialog {
	k.build()
	d := k.dialogs[i]
	d.State, d.Event, d.Code, d.UpdatedAt = ch.state, ch.event, ch.code, ch.at
	d.ExpiresAt = ch.at.Add(k.t.ringing)
	if ch.calleeTag != "" || ch.target != nil {
		target := ""
		if ch.target != nil {
			target = ch.target.Address.String()
		}
		if d.Direction == "initiator" {
			d.RemoteTag, d.RemoteTarget = ch.calleeTag, target
		} else {
			d.LocalTag, d.LocalTarget = ch.calleeTag, target
		}
	}
	switch ch.state {
	case storage.DialogConfirmed:
		d.ConfirmedAt, d.ExpiresAt = ch.at, ch.at.Add(k.t.cfg.MaxDuration)
	case storage.DialogTerminated:
		d.ExpiresAt = ch.at.Add(TerminatedLinger)
	}
	return d
}

// apply stores change ch of call k for each party and announces it, off the caller's
// goroutine, unless nobody needs it (see Tracker).
func (t *Tracker) apply(k *call, ch change) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		k.mu.Lock()
		defer k.mu.Unlock()
		for i, aor := range k.aors {
			if aor == "" || ch.seq <= k.done[i] {
				continue // not ours, or a later change of this party was handled first: it decided
			}
			k.done[i] = ch.seq
			if !k.stored[i] && ch.state != storage.DialogConfirmed && !t.isWatched(ctx, aor) {
				continue
			}
			if t.put(ctx, aor, k.dialog(i, ch)) {
				k.stored[i] = true
			}
		}
	}()
}

// isWatched asks whether aor has a dialog watcher; when that cannot be told, it has.
func (t *Tracker) isWatched(ctx context.Context, aor string) bool {
	if t.watched == nil {
		return true
	}
	ok, err := t.watched(ctx, aor)
	if err != nil {
		t.log.Warn("dialog watchers not read: the state is stored", zap.String("aor", aor), zap.Error(err))
		return true
	}
	return ok
}

// put stores d and announces it when it was applied, which it reports.
func (t *Tracker) put(ctx context.Context, aor string, d storage.Dialog) bool {
	ok, err := t.store.PutDialog(ctx, aor, d, t.now(), t.cfg.MaxDialogs)
	if err != nil {
		t.log.Warn("dialog state not stored", zap.String("aor", aor), zap.String("state", d.State), zap.Error(err))
		return false
	}
	if ok {
		t.changed(aor)
	}
	return ok
}

// remember notes the AORs of an answered call for its BYE.
func (t *Tracker) remember(callID string, aors []string, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.calls) >= maxRemembered {
		now := t.now()
		for id, a := range t.calls {
			if now.After(a.until) {
				delete(t.calls, id)
			}
		}
		if len(t.calls) >= maxRemembered {
			return // the BYE finds the dialogs by its From and To
		}
	}
	t.calls[callID] = answered{aors: aors, until: until}
}

// Bye implements proxy.CallObserver: the dialogs of the call the BYE ends are terminated,
// local-bye for the party that sent it and remote-bye for the other. A BYE answered 401 or
// 407 is sent again with credentials: it ends nothing yet.
func (t *Tracker) Bye(ctx context.Context, req *sip.Request, status int) {
	if status == 401 || status == 407 {
		return
	}
	callID := req.CallID().Value()
	t.mu.Lock()
	a, ok := t.calls[callID]
	delete(t.calls, callID)
	closed := t.closed
	if !closed {
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if closed {
		return
	}
	from, to := req.From(), req.To()
	aors := []string{sipx.AOR(&from.Address), sipx.AOR(&to.Address)}
	if ok {
		aors = append(a.aors, aors...)
	}
	fromTag, toTag := tag(from.Params), tag(to.Params)
	go func() {
		defer t.wg.Done()
		t.bye(context.WithoutCancel(ctx), dedupe(aors), callID, fromTag, toTag, status)
	}()
}

func (t *Tracker) bye(ctx context.Context, aors []string, callID, fromTag, toTag string, status int) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := t.now()
	for _, aor := range aors {
		ds, err := t.store.Dialogs(ctx, aor, now)
		if err != nil {
			t.log.Warn("dialogs not read for a BYE", zap.String("aor", aor), zap.Error(err))
			continue
		}
		for _, d := range ds {
			// The dialog the BYE belongs to: its Call-ID and both tags (a second device
			// that answered a forked call has another tag, and its BYE ends only its own).
			if d.CallID != callID || d.State == storage.DialogTerminated ||
				!(d.LocalTag == fromTag && d.RemoteTag == toTag || d.LocalTag == toTag && d.RemoteTag == fromTag) {
				continue
			}
			d.State, d.Event, d.Code, d.UpdatedAt = storage.DialogTerminated, "remote-bye", 0, now
			if d.LocalTag == fromTag {
				d.Event = "local-bye"
			}
			if status >= 300 && status != 481 {
				d.Code = status
			}
			d.ExpiresAt = now.Add(TerminatedLinger)
			t.put(ctx, aor, d)
		}
	}
}

func dedupe(ss []string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" && !strings.HasPrefix(s, "@") && !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func tag(p sip.HeaderParams) string {
	v, _ := p.Get("tag")
	return v
}
