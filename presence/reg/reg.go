// Package reg is the registration event package (RFC 3680): a watcher subscribes to
// "Event: reg" of an address-of-record and is told its registered contacts, then each change
// as it happens: a device registering, refreshing, unregistering, expiring, or losing its
// connection. Phones use it to show a line's registration, a PBX or a monitor to follow the
// registrations of a domain's users.
//
// The presence agent keeps the subscriptions (package presence, Package); this package
// decides who may watch (the AOR's own user, a trusted peer, or a user named in reg.watchers)
// and writes the documents (application/reginfo+xml, reginfo.go). Its state is the
// registrar's: the bindings, read through the location service when a document is built,
// and the binding events of the bus, which the agent hands it on every node
// (presence.BindingWatcher) before it notifies the watchers, so that a partial document can
// say why a contact went although the contact is no longer stored (reasons.go).
package reg

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/storage"
)

// Event is the package's name.
const Event = "reg"

// Deps are what the package needs: the bindings (registrar.Location) and a clock.
type Deps struct {
	Locator presence.Locator
	Now     func() time.Time // nil: time.Now
}

// Package is the reg event package; serve it with (*presence.Presence).Serve.
type Package struct {
	watchers map[string]bool
	loc      presence.Locator
	now      func() time.Time
	reasons  *reasons
}

var _ presence.BindingWatcher = (*Package)(nil)

// New returns the package. A watcher that is not user@domain is refused.
func New(cfg Config, deps Deps) (*Package, error) {
	if deps.Locator == nil {
		return nil, fmt.Errorf("reg: no locator")
	}
	p := &Package{watchers: map[string]bool{}, loc: deps.Locator, now: deps.Now, reasons: newReasons()}
	if p.now == nil {
		p.now = time.Now
	}
	for _, w := range cfg.Watchers {
		if err := CheckWatcher(w); err != nil {
			return nil, fmt.Errorf("reg.watchers: %w", err)
		}
		p.watchers[watcherAOR(w)] = true
	}
	return p, nil
}

// Event implements presence.Package.
func (*Package) Event() string { return Event }

// Type implements presence.Package.
func (*Package) Type() string { return ContentType }

// Authorize implements presence.Package: a user may watch its own registrations; a trusted
// peer, or a proven user named in reg.watchers, anyone's. Others get 403: where a user's
// devices are is not for everyone to see (RFC 3680 §6).
func (p *Package) Authorize(_ context.Context, s *presence.Subscribe) (presence.Decision, error) {
	switch {
	case s.State.Rule == sipx.RulePeer:
		return presence.Allow(), nil
	case !s.SelfProven():
		return presence.Refuse(403, "Not Your Registration"), nil
	case strings.EqualFold(s.Watcher, s.AOR), p.watchers[strings.ToLower(s.Watcher)]:
		return presence.Allow(), nil
	}
	return presence.Refuse(403, "Not Your Registration"), nil
}

// BindingChanged implements presence.BindingWatcher: it remembers why a contact went.
func (p *Package) BindingChanged(ev storage.Event) {
	id := contactID(ev.AOR, ev.Binding.Key)
	if e := removalEvent(ev); e != "" {
		p.reasons.put(ev.AOR, id, e, p.now())
		return
	}
	p.reasons.forget(ev.AOR, id)
}

// Document implements presence.Package. The watcher's knowledge (sent, known) maps each
// active contact's id to what was said of it (known); a partial document lists the
// contacts that are new, refreshed or shortened, and those that went, terminated with the
// event that says why.
func (p *Package) Document(ctx context.Context, sub *storage.Subscription, version uint32, sent map[string]string) ([]byte, map[string]string, error) {
	bindings, err := p.loc.Lookup(ctx, sub.AOR)
	if err != nil {
		return nil, nil, err
	}
	now := p.now()
	known := make(map[string]string, len(bindings))
	reg := Registration{AOR: "sip:" + sub.AOR, ID: registrationID(sub.AOR), State: RegActive}
	for i := range bindings {
		b := &bindings[i]
		if b.Expired(now) {
			continue
		}
		id := contactID(sub.AOR, b.Key)
		k := knownOf(b)
		known[id] = k.String()
		event := EvRegistered
		if sent != nil {
			old, had := sent[id]
			switch {
			case !had:
			case old == known[id]:
				continue
			case b.ExpiresAt.Unix() < parseKnown(old).expires:
				event = EvShortened
			default:
				event = EvRefreshed
			}
		}
		reg.Contacts = append(reg.Contacts, activeContact(id, event, b, now))
	}
	live := len(known)
	if sent != nil {
		reg.Contacts = append(reg.Contacts, p.gone(sub.AOR, sent, known, now)...)
	}
	info := Info{Version: version, State: Full, Registrations: []Registration{reg}}
	switch {
	case sent != nil && len(reg.Contacts) == 0:
		return nil, known, nil
	case sent != nil:
		info.State = Partial
		if live == 0 {
			info.Registrations[0].State = RegTerminated
		}
	case live == 0:
		info.Registrations[0].State = RegInit
	}
	body, err := Marshal(&info)
	return body, known, err
}

// gone returns the contacts the watcher knows that are no longer registered, terminated,
// with the event the bus said (expired, unregistered, deactivated, rejected), or, when that
// is forgotten, expired or deactivated as their expiry time says.
func (p *Package) gone(aor string, sent, known map[string]string, now time.Time) []Contact {
	var ids []string
	for id := range sent {
		if _, ok := known[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]Contact, 0, len(ids))
	for _, id := range ids {
		k := parseKnown(sent[id])
		event := p.reasons.get(aor, id, now)
		if event == "" {
			event = EvDeactivated
			if k.expires <= now.Unix() {
				event = EvExpired
			}
		}
		out = append(out, Contact{ID: id, State: ContactTerminated, Event: event, URI: k.uri})
	}
	return out
}

// activeContact is binding b as an active contact.
func activeContact(id, event string, b *storage.Binding, now time.Time) Contact {
	secs := uint32(max(0, (b.ExpiresAt.Sub(now)+time.Second-1)/time.Second))
	c := Contact{ID: id, State: ContactActive, Event: event, Expires: &secs, CallID: b.CallID, URI: b.URI}
	if b.CSeq > 0 {
		cseq := b.CSeq
		c.CSeq = &cseq
	}
	if b.Q >= 0 {
		c.Q = strconv.FormatFloat(float64(b.Q)/1000, 'f', -1, 64)
	}
	if b.InstanceID != "" {
		c.Params = append(c.Params, Param{Name: "+sip.instance", Value: `"` + b.InstanceID + `"`})
		if b.RegID > 0 {
			c.Params = append(c.Params, Param{Name: "reg-id", Value: strconv.Itoa(b.RegID)})
		}
	}
	return c
}

// registrationID and contactID are the documents' ids: stable (the same on every node and
// across refreshes), short, and free of anything the network chose.
func registrationID(aor string) string { return id('r', aor) }
func contactID(aor, key string) string { return id('c', aor, "\x00", key) }

// id is prefix and the base-36 FNV-1a hash of parts, joined, built with one allocation.
func id(prefix byte, parts ...string) string {
	var buf [16]byte
	return string(strconv.AppendUint(append(buf[:0], prefix), fnv64a(parts...), 36))
}

func hash64(s string) string { return strconv.FormatUint(fnv64a(s), 36) }

// fnv64a is the FNV-1a hash of parts, joined (hash/fnv's, without its allocation).
func fnv64a(parts ...string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, s := range parts {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
	}
	return h
}

// known is what a watcher was told of an active contact: its expiry time, CSeq and Call-ID
// (a refresh changes one of them) and its URI (to name it when it goes).
type known struct {
	expires int64
	cseq    uint32
	callID  string
	uri     string
}

func knownOf(b *storage.Binding) known {
	return known{expires: b.ExpiresAt.Unix(), cseq: b.CSeq, callID: hash64(b.CallID), uri: b.URI}
}

func (k known) String() string {
	return strconv.FormatInt(k.expires, 10) + " " + strconv.FormatUint(uint64(k.cseq), 10) + " " + k.callID + " " + k.uri
}

// parseKnown reads known.String; what it cannot read is zero.
func parseKnown(s string) known {
	f := strings.SplitN(s, " ", 4)
	var k known
	if len(f) == 4 {
		k.expires, _ = strconv.ParseInt(f[0], 10, 64)
		c, _ := strconv.ParseUint(f[1], 10, 32)
		k.cseq, k.callID, k.uri = uint32(c), f[2], f[3]
	}
	return k
}
