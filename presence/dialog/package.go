package dialog

import (
	"context"
	"errors"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Package is the dialog event package the presence agent serves (presence.Package,
// presence.Publisher and presence.Lenient). Create it with New and add it with
// presence.Presence.Serve.
type Package struct {
	p     *presence.Presence
	store Store
	cfg   Config
	now   func() time.Time
	log   *zap.Logger
}

// New builds the package on the agent p and the tracker's store.
func New(p *presence.Presence, store Store, cfg Config, log *zap.Logger) *Package {
	if log == nil {
		log = zap.NewNop()
	}
	return &Package{p: p, store: store, cfg: cfg, now: time.Now, log: log}
}

// Event implements presence.Package.
func (*Package) Event() string { return Event }

// Type implements presence.Package.
func (*Package) Type() string { return Type }

// KeepOnTimeout implements presence.Lenient: a BLF key that missed one NOTIFY (the phone
// was busy, a packet was lost) must not stay dark until the phone subscribes again
// (opensips issue 380); the next change sends the whole document.
func (*Package) KeepOnTimeout() bool { return true }

// Authorize implements presence.Package: a user's calls are shown to whom the user's
// presence is (its rules for the watcher, else the policy): a blocked watcher gets 403, a
// politely blocked one is accepted and sees the user idle.
func (pk *Package) Authorize(ctx context.Context, s *presence.Subscribe) (presence.Decision, error) {
	d, _, err := pk.p.DecideAsPresence(ctx, s)
	return d, err
}

// MayPublish implements presence.Publisher: only a trusted peer (a PBX reporting the calls it
// handles) publishes dialog state; a user's phone does not, simpled sees its calls.
func (*Package) MayPublish(_ context.Context, st *sipx.State, _ *sip.Request, _ string) bool {
	return st.Rule == sipx.RulePeer
}

// Check implements presence.Publisher: a dialog-info document (415 for another type, 413 too
// large, 400 naming the fault).
func (pk *Package) Check(_ context.Context, req *sip.Request, body []byte) (int, string, []sip.Header) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != Type {
		return 415, "", []sip.Header{sip.NewHeader("Accept", Type)}
	}
	if _, err := pidf.ParseDialogInfo(body); err != nil {
		if errors.Is(err, pidf.ErrTooLarge) {
			return 413, "", nil
		}
		return 400, err.Error(), nil
	}
	return 0, "", nil
}

// entry is one dialog as a document shows it, from the tracker or a publication.
type entry struct {
	x       pidf.DialogEntry
	updated time.Time
	rank    int
}

// Document implements presence.Package: the watcher's document with the dialogs of sub.AOR
// (tracked and published): full when sent is nil, else only the dialogs that changed (RFC
// 4235 §3.7.2: partial). known maps each dialog ID to what the watcher was told of it.
func (pk *Package) Document(ctx context.Context, sub *storage.Subscription, version uint32, sent map[string]string) ([]byte, map[string]string, error) {
	entity := "sip:" + sub.AOR
	visible := sub.State == storage.SubActive
	if visible {
		rule, err := pk.p.Decide(ctx, sub.AOR, sub.Watcher)
		if err != nil {
			return nil, nil, err
		}
		visible = rule == storage.RuleAllow
	}
	var entries []entry
	if visible {
		var err error
		if entries, err = pk.dialogs(ctx, sub.AOR); err != nil {
			return nil, nil, err
		}
	}
	show := pk.showRemote(sub)
	known := make(map[string]string, len(entries))
	doc := pidf.DialogInfo{Version: version, State: "full", Entity: entity}
	now := pk.now()
	for _, e := range entries {
		x := e.x
		if !show {
			x.CallID, x.LocalTag, x.RemoteTag, x.Remote = "", "", "", nil
			if x.Local != nil {
				x.Local = &pidf.Participant{Identity: x.Local.Identity, Display: x.Local.Display}
			}
		}
		fp := fingerprint(&x)
		known[x.ID] = fp
		if sent != nil && sent[x.ID] == fp {
			continue
		}
		if x.Duration >= 0 && x.State == storage.DialogConfirmed {
			x.Duration = int(now.Sub(e.updated).Seconds())
		}
		doc.Dialogs = append(doc.Dialogs, x)
	}
	if sent != nil {
		doc.State = "partial"
		for id, fp := range sent {
			// Gone without the watcher being told it ended (its bound, a publication that
			// expired): it ends now.
			if _, ok := known[id]; !ok && !strings.HasPrefix(fp, storage.DialogTerminated+"|") {
				doc.Dialogs = append(doc.Dialogs, pidf.DialogEntry{ID: id, State: storage.DialogTerminated, Event: "timeout", Duration: -1})
			}
		}
		if len(doc.Dialogs) == 0 {
			return nil, known, nil
		}
	} else if len(doc.Dialogs) == 0 {
		// An idle user: one terminated dummy dialog, never an empty document (Bria, Astra
		// and Yealink phones expect a <dialog>; Kamailio's force_dummy_dialog).
		doc.Dialogs = []pidf.DialogEntry{idle(sub.AOR)}
	}
	return doc.Bytes(), known, nil
}

// idle is the dummy dialog of an idle user.
func idle(aor string) pidf.DialogEntry {
	return pidf.DialogEntry{ID: dialogID(aor, "", "idle"), Direction: "recipient", State: storage.DialogTerminated, Duration: -1}
}

// fingerprint is what a watcher knows of a dialog: its state first (Document reads it back).
func fingerprint(x *pidf.DialogEntry) string {
	var b strings.Builder
	b.WriteString(x.State)
	b.WriteByte('|')
	b.WriteString(x.Event)
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(x.Code))
	for _, s := range []string{x.CallID, x.LocalTag, x.RemoteTag, x.Direction} {
		b.WriteByte('|')
		b.WriteString(s)
	}
	for _, p := range []*pidf.Participant{x.Local, x.Remote} {
		if p != nil {
			b.WriteString("|" + p.Identity + "|" + p.Display + "|" + p.Target)
		}
	}
	return b.String()
}

// showRemote reports whether sub's watcher sees the other party and the dialog identifiers.
func (pk *Package) showRemote(sub *storage.Subscription) bool {
	switch pk.cfg.RemoteIdentity {
	case RemoteAlways:
		return true
	case RemoteNever:
		return false
	}
	_, wdom, _ := strings.Cut(sub.Watcher, "@")
	_, pdom, _ := strings.Cut(sub.AOR, "@")
	return wdom != "" && strings.EqualFold(wdom, pdom)
}

// dialogs returns aor's dialogs from the tracker and the publications of trusted peers, one
// per ID: the state updated last wins, then the higher state.
func (pk *Package) dialogs(ctx context.Context, aor string) ([]entry, error) {
	now := pk.now()
	tracked, err := pk.store.Dialogs(ctx, aor, now)
	if err != nil {
		return nil, err
	}
	var out []entry
	index := map[string]int{}
	add := func(e entry) {
		if i, ok := index[e.x.ID]; ok {
			if o := out[i]; e.updated.After(o.updated) || e.updated.Equal(o.updated) && e.rank > o.rank {
				out[i] = e
			}
			return
		}
		index[e.x.ID] = len(out)
		out = append(out, e)
	}
	for i := range tracked {
		add(fromTracked(&tracked[i]))
	}
	pubs, err := pk.p.PublicationsOf(ctx, Event, aor)
	if err != nil {
		return nil, err
	}
	for _, pub := range pubs {
		doc, err := pidf.ParseDialogInfo(pub.Body)
		if err != nil {
			pk.log.Info("stored dialog publication does not parse", zap.String("aor", aor), zap.Error(err))
			continue
		}
		for _, x := range doc.Dialogs {
			if x.State == storage.DialogConfirmed && x.Duration >= 0 {
				x.Duration = 0 // counted from the publication
			}
			add(entry{x: x, updated: pub.UpdatedAt, rank: storage.DialogRank(x.State)})
		}
	}
	return out, nil
}

// fromTracked is a tracked dialog as a document shows it; updated is when it was confirmed
// for a confirmed one (its duration counts from then).
func fromTracked(d *storage.Dialog) entry {
	x := pidf.DialogEntry{ID: d.ID, CallID: d.CallID, LocalTag: d.LocalTag, RemoteTag: d.RemoteTag,
		Direction: d.Direction, State: d.State, Event: d.Event, Code: d.Code, Duration: -1,
		Local:  &pidf.Participant{Identity: d.Local, Display: d.LocalName, Target: d.LocalTarget},
		Remote: &pidf.Participant{Identity: d.Remote, Display: d.RemoteName, Target: d.RemoteTarget}}
	updated := d.UpdatedAt
	if d.State == storage.DialogConfirmed {
		x.Duration, updated = 0, d.ConfirmedAt
	}
	return entry{x: x, updated: updated, rank: d.Rank}
}
