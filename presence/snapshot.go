package presence

import (
	"context"
	"time"
)

// Snapshot is a presentity as the admin API shows it: the document its watchers get, its
// publications, its subscriptions (watchers and its own winfo subscriptions) and its rules.
type Snapshot struct {
	AOR           string             `json:"aor"`
	Document      string             `json:"document"`
	Publications  []PublicationInfo  `json:"publications"`
	Subscriptions []SubscriptionInfo `json:"watchers"`
	Rules         map[string]string  `json:"rules"`
	Policy        string             `json:"policy"`
}

// PublicationInfo describes one publication (its body is in the composed document).
type PublicationInfo struct {
	ETag      string    `json:"etag"`
	ExpiresAt time.Time `json:"expires_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Source    string    `json:"source,omitempty"`
}

// SubscriptionInfo describes one subscription to the presentity.
type SubscriptionInfo struct {
	ID        string    `json:"id"`
	Watcher   string    `json:"watcher"`
	Event     string    `json:"event"`
	State     string    `json:"state"`
	Rule      string    `json:"rule,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// State returns aor's snapshot; aor is "user@domain" (or a SIP URI) of a local domain
// (ErrBadRule otherwise).
func (p *Presence) State(ctx context.Context, aor string) (Snapshot, error) {
	aor, err := p.localAOR(aor)
	if err != nil {
		return Snapshot{}, err
	}
	now := p.opts.Now()
	snap := Snapshot{AOR: aor, Policy: p.opts.Policy, Publications: []PublicationInfo{}, Subscriptions: []SubscriptionInfo{}}
	doc, err := p.compose(ctx, aor)
	if err != nil {
		return Snapshot{}, err
	}
	snap.Document = string(doc)
	pubs, err := p.opts.Store.Publications(ctx, aor, now)
	if err != nil {
		return Snapshot{}, err
	}
	for _, pub := range pubs {
		snap.Publications = append(snap.Publications, PublicationInfo{ETag: pub.ETag, ExpiresAt: pub.ExpiresAt, UpdatedAt: pub.UpdatedAt, Source: pub.Source})
	}
	subs, err := p.opts.Store.Subscriptions(ctx, aor, now)
	if err != nil {
		return Snapshot{}, err
	}
	for _, s := range subs {
		info := SubscriptionInfo{ID: s.ID, Watcher: s.Watcher, Event: s.Event, State: s.State, ExpiresAt: s.ExpiresAt, CreatedAt: s.CreatedAt}
		if s.Event == EventPresence {
			if info.Rule, err = p.decide(ctx, aor, s.Watcher); err != nil {
				return Snapshot{}, err
			}
		}
		snap.Subscriptions = append(snap.Subscriptions, info)
	}
	if snap.Rules, err = p.opts.Store.Rules(ctx, aor); err != nil {
		return Snapshot{}, err
	}
	if snap.Rules == nil {
		snap.Rules = map[string]string{}
	}
	return snap, nil
}
