package presence

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"go.uber.org/zap"
)

// Authorization of watchers (RFC 3856 §6.6, the sub-handling values of RFC 5025): each
// presentity has rules keyed by a watcher AOR ("bob@example.com") or a whole domain
// ("example.com"), valued allow, block, polite-block or pending. The most specific rule
// decides; without one the configured policy does, and a presentity may always watch
// itself.
//
//	allow         active, the full document
//	polite-block  active, but the document is a neutral "closed" one: the watcher cannot
//	              tell it from an offline presentity
//	pending       Subscription-State pending, no document; listed in the presentity's winfo
//	block         403 to the SUBSCRIBE; an existing subscription ends (reason=rejected)
//
// Rules come from the admin API (PUT/DELETE /api/v1/presence/{aor}/rules/{watcher}); a
// change re-decides every current subscription to the presentity at once: a pending watcher
// that is allowed becomes active and gets the full state.

// ErrBadRule means a rule value or watcher key that is not valid.
var ErrBadRule = errors.New("presence: bad rule")

// decide returns the rule that applies to watcher's subscription to aor.
func (p *Presence) decide(ctx context.Context, aor, watcher string) (string, error) {
	if watcher == aor {
		return storage.RuleAllow, nil
	}
	rules, err := p.rules(ctx, aor)
	if err != nil {
		return "", err
	}
	if r, ok := rules[watcher]; ok {
		return r, nil
	}
	_, wdom := splitAOR(watcher)
	if r, ok := rules[wdom]; ok {
		return r, nil
	}
	switch p.opts.Policy {
	case PolicyAllow:
		return storage.RuleAllow, nil
	case PolicySameDomain:
		if _, pdom := splitAOR(aor); strings.EqualFold(pdom, wdom) {
			return storage.RuleAllow, nil
		}
	}
	return storage.RulePending, nil
}

// stateFor is the subscription state a rule gives ("" for block: no subscription).
func stateFor(rule string) string {
	switch rule {
	case storage.RuleAllow, storage.RulePoliteBlock:
		return storage.SubActive
	case storage.RulePending:
		return storage.SubPending
	}
	return ""
}

// reauthorize applies aor's changed rules to its current presence subscriptions.
func (p *Presence) reauthorize(ctx context.Context, aor string) {
	p.docs.invalidateRules(aor)
	now := p.opts.Now()
	subs, err := p.opts.Store.Subscriptions(ctx, aor, now)
	if err != nil {
		p.log.Warn("rules not applied", zap.String(logging.KeyAOR, aor), zap.Error(err))
		return
	}
	changed := false
	for i := range subs {
		sub := &subs[i]
		if sub.Event != EventPresence {
			continue
		}
		rule, err := p.decide(ctx, aor, sub.Watcher)
		if err != nil {
			p.log.Warn("rules not applied", zap.String(logging.KeyAOR, aor), zap.Error(err))
			return
		}
		switch state := stateFor(rule); {
		case state == "":
			if _, err := p.opts.Store.DeleteSubscription(ctx, aor, sub.ID, now); err == nil {
				p.endOwned(ctx, sub, "rejected")
				changed = true
			}
		case state != sub.State:
			sub.State = state
			if err := p.opts.Store.PutSubscription(ctx, *sub, 0); err != nil {
				p.log.Warn("subscription state not stored", zap.String(logging.KeyAOR, aor), zap.Error(err))
				continue
			}
			p.notifyOwner(ctx, sub, true, now)
			changed = true
		default:
			// Same state, maybe another document (allow ↔ polite-block): sent if it differs.
			p.notifyOwner(ctx, sub, false, now)
		}
	}
	if changed {
		p.changed(aor, storage.WatchersChanged, now)
	}
}

// SetRule sets presentity aor's rule for watcher (an AOR or a domain) and applies it to the
// current subscriptions.
func (p *Presence) SetRule(ctx context.Context, aor, watcher, rule string) error {
	aor, watcher, err := p.ruleKey(aor, watcher)
	if err != nil {
		return err
	}
	switch rule {
	case storage.RuleAllow, storage.RuleBlock, storage.RulePoliteBlock, storage.RulePending:
	default:
		return fmt.Errorf("%w: %q is not allow, block, polite-block or pending", ErrBadRule, rule)
	}
	if err := p.opts.Store.SetRule(ctx, aor, watcher, rule); err != nil {
		return err
	}
	p.changed(aor, storage.RulesChanged, p.opts.Now())
	return nil
}

// DeleteRule removes presentity aor's rule for watcher (storage.ErrNotFound if none); the
// policy then decides for that watcher.
func (p *Presence) DeleteRule(ctx context.Context, aor, watcher string) error {
	aor, watcher, err := p.ruleKey(aor, watcher)
	if err != nil {
		return err
	}
	if err := p.opts.Store.DeleteRule(ctx, aor, watcher); err != nil {
		return err
	}
	p.changed(aor, storage.RulesChanged, p.opts.Now())
	return nil
}

// ruleKey normalises a presentity AOR and a watcher key (AOR or domain; a sip: prefix is
// dropped, the domain lower-cased).
func (p *Presence) ruleKey(aor, watcher string) (string, string, error) {
	aor, err := p.localAOR(aor)
	if err != nil {
		return "", "", err
	}
	w := strings.TrimPrefix(strings.TrimPrefix(watcher, "sip:"), "sips:")
	user, dom := splitAOR(w)
	if dom == "" || !sipx.ValidHost(dom) || !sipx.Sanitize(w) || strings.ContainsAny(w, " <>;") {
		return "", "", fmt.Errorf("%w: watcher %q is not user@domain or a domain", ErrBadRule, watcher)
	}
	if user == "" && strings.Contains(w, "@") {
		return "", "", fmt.Errorf("%w: watcher %q has an empty user", ErrBadRule, watcher)
	}
	if user == "" {
		return aor, strings.ToLower(dom), nil
	}
	return aor, user + "@" + strings.ToLower(dom), nil
}

// localAOR normalises "user@domain" (or a SIP URI) of a local domain.
func (p *Presence) localAOR(aor string) (string, error) {
	a := strings.TrimPrefix(strings.TrimPrefix(aor, "sip:"), "sips:")
	user, dom := splitAOR(a)
	if user == "" || !p.domains[strings.ToLower(dom)] || !sipx.Sanitize(a) {
		return "", fmt.Errorf("%w: %q is not user@domain of a local domain", ErrBadRule, aor)
	}
	return user + "@" + strings.ToLower(dom), nil
}
