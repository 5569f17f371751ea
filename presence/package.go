package presence

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// Event packages beside presence. The presence agent is simpled's notifier (RFC 6665): it
// keeps every subscription dialog whatever its event package, with one set of rules for
// expiry, refresh, ownership across nodes, NOTIFY CSeqs, rate control and the end of a
// subscription. What differs from one package to the next — who may subscribe, what the
// document says, who may publish the state — is a Package's: dialog (BLF, RFC 4235),
// message-summary (MWI, RFC 3842) and reg (RFC 3680) are served that way, and the packages
// still to come (resource lists, chat rooms) plug in the same way.
//
// A package's state lives in its own records (a call tracker's dialogs, a mailbox summary,
// the registrar's bindings) or in publications stored under storage.PublicationKey; when it
// changes, the package calls Presence.Changed and every subscription to that state, on any
// node, gets a NOTIFY from its owner with the document as it is when the NOTIFY is sent. So
// NOTIFYs of one subscription go out one at a time in CSeq order and each tells the state
// then: a stale state never overtakes a newer one, whichever node saw which change.

// Package is an event package the presence agent serves besides presence and presence.winfo.
type Package interface {
	// Event is the package's name in the Event header ("dialog").
	Event() string
	// Type is the media type of its documents (Accept, Content-Type).
	Type() string
	// Authorize decides a new subscription to s.AOR (which exists: the agent answered 404
	// otherwise).
	Authorize(ctx context.Context, s *Subscribe) (Decision, error)
	// Document builds the next document of sub. version is the document's version (0 for a
	// subscription's first, then one more for each document sent); sent is what the
	// watcher knows from the documents it accepted so far, as Document returned it, or nil
	// for a full document (the first, a refresh, the last, and after a NOTIFY that was
	// lost). It returns the body, nil when the watcher knows everything already (no NOTIFY
	// is sent), and what the watcher knows once it accepts this one.
	Document(ctx context.Context, sub *storage.Subscription, version uint32, sent map[string]string) (body []byte, known map[string]string, err error)
}

// Subscribe is a new subscription a Package decides on.
type Subscribe struct {
	State   *sipx.State
	Request *sip.Request
	// AOR is the resource (the Request-URI's user@domain); Watcher the subscriber: its
	// authenticated user, or its From AOR when it did not authenticate.
	AOR, Watcher string
}

// SelfProven reports whether the subscriber stands for its From: it authenticated, is a
// trusted peer, or auth.mode is off.
func (s *Subscribe) SelfProven() bool {
	switch s.State.Rule {
	case sipx.RuleUser, sipx.RulePeer, sipx.RuleOpen:
		return true
	}
	return false
}

// Decision is a Package's answer to a new subscription: State is storage.SubActive or
// SubPending, or "" to refuse it with Status (403, 404, 489) and Reason.
type Decision struct {
	State  string
	Status int
	Reason string
}

// Allow is the decision that makes a subscription active.
func Allow() Decision { return Decision{State: storage.SubActive} }

// Pending is the decision that makes a subscription pending (a decision awaited).
func Pending() Decision { return Decision{State: storage.SubPending} }

// Refuse is the decision that refuses a subscription with status and reason.
func Refuse(status int, reason string) Decision {
	return Decision{Status: status, Reason: reason}
}

// Publisher is a Package whose state may also be published (RFC 3903): the agent applies the
// entity-tag rules and stores the publication under storage.PublicationKey(Event(), aor); the
// package says who may publish and what a valid document is, and reads the publications when
// it builds its documents.
type Publisher interface {
	Package
	// MayPublish reports whether the sender of req (as st tells) may publish aor's state.
	MayPublish(ctx context.Context, st *sipx.State, req *sip.Request, aor string) bool
	// Check validates a published document: status 0 accepts it, else the answer (415, 413,
	// 400 with a reason naming the fault).
	Check(ctx context.Context, req *sip.Request, body []byte) (status int, reason string, hdrs []sip.Header)
}

// Receiver is a Package that takes out-of-dialog NOTIFYs of its event to a user of ours (a
// PBX's unsolicited message-summary NOTIFY): the agent hands them to it whole.
type Receiver interface {
	Package
	Receive(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error)
}

// Forgetter is a Package that caches a presentity's state: the agent calls Forget on every
// node when the state of aor in this package changed, before any NOTIFY reads it again.
type Forgetter interface {
	Forget(aor string)
}

// Lenient is a Package whose subscriptions outlive a lost NOTIFY: a NOTIFY that times out
// (408) or gets another answer that would end the subscription does not end it at once; the
// next change sends the full document again, and only a 481 (RFC 6665 §4.1.2.3: the dialog
// is gone) or maxFailures failed NOTIFYs in a row end it. A desk phone's voicemail lamp
// (message-summary) and a BLF key (dialog) that missed one NOTIFY would otherwise never
// update again until the phone subscribes anew (opensips issue 380). presence and
// presence.winfo are not lenient.
type Lenient interface {
	KeepOnTimeout() bool
}

// Originator is a Package that acts once on each change of its state, on the node where the
// change happened (MWI's unsolicited NOTIFYs to the devices of a user that never subscribe):
// the agent calls ChangedHere there, after Changed, from its event loop, so it must not
// block.
type Originator interface {
	ChangedHere(aor string)
}

// BindingWatcher is a Package whose state is the registrar's bindings (reg, RFC 3680). The
// agent hands it every binding event (storage.BindingAdded, ...), on every node, before it has
// the package's subscriptions to ev.AOR notified (by the node the event comes from, as for
// Changed): so what the package learns from the event (why a contact went) is known on the
// node that builds the next document, whichever node owns the subscription.
type BindingWatcher interface {
	Package
	BindingChanged(ev storage.Event)
}

// Serve adds an event package. Call it before Run; its Event must not be served already.
func (p *Presence) Serve(pkg Package) error {
	ev := strings.ToLower(pkg.Event())
	if ev == EventPresence || ev == EventWinfo || p.packages[ev] != nil {
		return fmt.Errorf("presence: event package %q served twice", ev)
	}
	p.packages[ev] = pkg
	p.allowEvents = baseEvents + ", " + strings.Join(p.Events()[2:], ", ")
	return nil
}

// bindingChanged hands a binding event to the packages that watch bindings and, on the node
// it comes from (here), has their subscriptions to ev.AOR notified.
func (p *Presence) bindingChanged(ctx context.Context, ev *storage.Event, here bool) {
	for name, pkg := range p.packages {
		if w, ok := pkg.(BindingWatcher); ok {
			w.BindingChanged(*ev)
			if here {
				p.notifier.presentity(ctx, ev.AOR, name, ev.At, true)
			}
		}
	}
}

// Events lists the event packages served: presence, presence.winfo, then the others in
// alphabetical order (Allow-Events).
func (p *Presence) Events() []string {
	evs := make([]string, 0, len(p.packages))
	for ev := range p.packages {
		evs = append(evs, ev)
	}
	slices.Sort(evs)
	return append([]string{EventPresence, EventWinfo}, evs...)
}

// Changed announces that aor's state in event package event changed: every subscription to
// it, on every node, is notified by its owner.
func (p *Presence) Changed(aor, event string) {
	ev := storage.Event{Kind: storage.StateChanged, AOR: aor, Package: event, At: p.opts.Now()}
	if p.opts.Bus != nil {
		p.opts.Bus.Publish(ev)
		return
	}
	p.onEvent(context.Background(), &ev)
}

// Decide is the presence rule for watcher of aor: the presentity's rule for the watcher or
// its domain, else the policy (storage.RuleAllow, RuleBlock, RulePoliteBlock, RulePending).
// Packages whose watchers are authorized as presence watchers are (dialog) use it.
func (p *Presence) Decide(ctx context.Context, aor, watcher string) (string, error) {
	return p.decide(ctx, aor, watcher)
}

// DecideAsPresence is the Decision the presence rules give watcher s.Watcher: active, pending,
// or 403 for a blocked one (a polite block is active: the package's document must then show
// nothing, which the package decides).
func (p *Presence) DecideAsPresence(ctx context.Context, s *Subscribe) (Decision, string, error) {
	rule, err := p.decide(ctx, s.AOR, s.Watcher)
	if err != nil {
		return Decision{}, "", err
	}
	switch rule {
	case storage.RuleBlock:
		return Refuse(403, ""), rule, nil
	case storage.RulePending:
		return Pending(), rule, nil
	}
	return Allow(), rule, nil
}

// PublicationsOf returns aor's live publications in event package event (see Publisher).
func (p *Presence) PublicationsOf(ctx context.Context, event, aor string) ([]storage.Publication, error) {
	return p.opts.Store.Publications(ctx, storage.PublicationKey(event, aor), p.opts.Now())
}

// Watched reports whether aor has a live subscription in event package event, on any node.
func (p *Presence) Watched(ctx context.Context, event, aor string) (bool, error) {
	subs, err := p.opts.Store.Subscriptions(ctx, aor, p.opts.Now())
	if err != nil {
		return false, err
	}
	for i := range subs {
		if subs[i].Event == event {
			return true, nil
		}
	}
	return false, nil
}

// Exists reports whether aor is a user of ours (registered, publishing, or known).
func (p *Presence) Exists(ctx context.Context, aor string) (bool, error) { return p.exists(ctx, aor) }
