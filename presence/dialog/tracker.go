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
type Tracker struct {
	store   Store
	cfg     Config
	ringing time.Duration
	changed func(aor string)
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

// NewTracker builds the tracker. ringing bounds a call that is not answered (the proxy's
// Timer C plus a margin: its own end is reported before); changed announces that aor's
// dialog state changed (presence.Presence.Changed).
func NewTracker(store Store, cfg Config, ringing time.Duration, changed func(aor string), log *zap.Logger) *Tracker {
	if log == nil {
		log = zap.NewNop()
	}
	return &Tracker{store: store, cfg: cfg, ringing: ringing, changed: changed, now: time.Now, log: log,
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

// side is one party's dialog of a call: the template every change starts from.
type side struct {
	aor string
	d   storage.Dialog
}

// call follows one INVITE (proxy.CallWatcher).
type call struct {
	t     *Tracker
	sides []side
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
	from, to := req.From(), req.To()
	callID, fromTag := req.CallID().Value(), tag(from.Params)
	contact := ""
	if h := req.Contact(); h != nil {
		contact = h.Address.String()
	}
	now := t.now()
	k := &call{t: t}
	if c.Caller != "" {
		k.sides = append(k.sides, side{aor: c.Caller, d: storage.Dialog{
			ID: dialogID(callID, fromTag, "initiator"), CallID: callID, LocalTag: fromTag, Direction: "initiator",
			Local: from.Address.String(), LocalName: from.DisplayName, LocalTarget: contact,
			Remote: to.Address.String(), RemoteName: to.DisplayName, StartedAt: now}})
	}
	if c.Callee != "" {
		k.sides = append(k.sides, side{aor: c.Callee, d: storage.Dialog{
			ID: dialogID(callID, fromTag, "recipient"), CallID: callID, RemoteTag: fromTag, Direction: "recipient",
			Local: "sip:" + c.Callee, LocalName: to.DisplayName,
			Remote: from.Address.String(), RemoteName: from.DisplayName, RemoteTarget: contact, StartedAt: now}})
	}
	k.set(storage.DialogTrying, nil, "", 0)
	return k
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

// set moves every side of the call to state: res gives the callee's tag and target.
func (k *call) set(state string, res *sip.Response, event string, code int) {
	now := k.t.now()
	var aors []string
	for _, s := range k.sides {
		d := s.d
		d.State, d.Event, d.Code, d.UpdatedAt = state, event, code, now
		d.ExpiresAt = now.Add(k.t.ringing)
		if res != nil {
			calleeTag, target := tag(res.To().Params), ""
			if h := res.Contact(); h != nil {
				target = h.Address.String()
			}
			if d.Direction == "initiator" {
				d.RemoteTag, d.RemoteTarget = calleeTag, target
			} else {
				d.LocalTag, d.LocalTarget = calleeTag, target
			}
		}
		switch state {
		case storage.DialogConfirmed:
			d.ConfirmedAt, d.ExpiresAt = now, now.Add(k.t.cfg.MaxDuration)
			aors = append(aors, s.aor)
		case storage.DialogTerminated:
			d.ExpiresAt = now.Add(TerminatedLinger)
		}
		k.t.apply(s.aor, d)
	}
	if len(aors) > 0 {
		k.t.remember(k.sides[0].d.CallID, aors, now.Add(k.t.cfg.MaxDuration))
	}
}

// apply stores d under aor and announces the change, off the caller's goroutine.
func (t *Tracker) apply(aor string, d storage.Dialog) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		t.put(context.Background(), aor, d)
	}()
}

// put stores d and announces it when it was applied.
func (t *Tracker) put(ctx context.Context, aor string, d storage.Dialog) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := t.store.PutDialog(ctx, aor, d, t.now(), t.cfg.MaxDialogs)
	if err != nil {
		t.log.Warn("dialog state not stored", zap.String("aor", aor), zap.String("state", d.State), zap.Error(err))
		return
	}
	if ok {
		t.changed(aor)
	}
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
