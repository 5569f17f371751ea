package presence

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// The presence agent keeps three kinds of records, each behind its own small interface:
// publications (Redis pub:{aor}), subscription dialogs (sub:{aor}) and authorization rules
// (rules:{aor}). storage/memory and storage/redis implement all three; storage/storagetest
// checks both against these contracts. AORs are "user@domain", lower-case domain; times are
// whole seconds (storage package doc).

// Store is what Options.Store takes: one backend holding all three kinds.
type Store interface {
	PublicationStore
	SubscriptionStore
	RuleStore
}

// PublicationStore keeps the event state published with PUBLISH (RFC 3903).
type PublicationStore interface {
	// Publish applies op to aor's publications atomically (storage.PublishOp) and returns the
	// publication as now stored (for a removal: as it was). ErrETagMismatch when op.IfMatch
	// names no live publication.
	Publish(ctx context.Context, aor string, op storage.PublishOp) (storage.Publication, error)
	// Publications returns aor's publications live at now, oldest UpdatedAt first (ties by
	// ETag); none is an empty result, not an error.
	Publications(ctx context.Context, aor string, now time.Time) ([]storage.Publication, error)
	// ExpirePublications removes at most limit publications, over all AORs, whose ExpiresAt is
	// at or before now and returns them; each is returned once in total even when several
	// nodes call it on one Redis. Fewer than limit only when no more are left; limit > 0.
	ExpirePublications(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredPublication, error)
}

// SubscriptionStore keeps the SUBSCRIBE dialogs the presence agent is the notifier of
// (RFC 6665).
type SubscriptionStore interface {
	// PutSubscription stores s (create or replace by s.AOR and s.ID) whole. If minCSeq > 0 the
	// write is conditional: when a subscription with that ID is stored (live at s.CreatedAt is
	// not checked) and its RemoteCSeq is >= minCSeq, it fails with storage.ErrStale and writes
	// nothing (an out-of-order in-dialog SUBSCRIBE).
	PutSubscription(ctx context.Context, s storage.Subscription, minCSeq uint32) error
	// Subscription returns one subscription of aor live at now; storage.ErrNotFound if it is
	// not stored or has expired.
	Subscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error)
	// Subscriptions returns every subscription to aor (both events) live at now, ordered by
	// ID; none is an empty result.
	Subscriptions(ctx context.Context, aor string, now time.Time) ([]storage.Subscription, error)
	// ClaimSubscription makes node the owner of aor's subscription id, live at now, and
	// reserves the next block of NOTIFY CSeqs for it, atomically: it fails with
	// storage.ErrStale, changing nothing, unless the stored owner is expect or node already
	// (another node claimed it first), and with storage.ErrNotFound when the subscription is
	// gone. It returns the subscription as now stored: Node = node, NotifyCSeq raised by block
	// (the new owner sends CSeqs above the old NotifyCSeq, up to the new one).
	ClaimSubscription(ctx context.Context, aor, id, expect, node string, block uint32, now time.Time) (storage.Subscription, error)
	// DeleteSubscription removes one subscription and returns it as it was;
	// storage.ErrNotFound if it was not there (expired ones count as not there).
	DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error)
	// ExpireSubscriptions removes at most limit subscriptions, over all AORs, whose ExpiresAt
	// is at or before now and returns them, each once in total across nodes (as
	// ExpirePublications).
	ExpireSubscriptions(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredSubscription, error)
}

// RuleStore keeps each presentity's authorization rules (RFC 5025 sub-handling).
type RuleStore interface {
	// SetRule sets aor's rule for watcher (a watcher AOR "user@domain" or a domain
	// "domain"): storage.RuleAllow, RuleBlock, RulePoliteBlock or RulePending.
	SetRule(ctx context.Context, aor, watcher, rule string) error
	// DeleteRule removes aor's rule for watcher; storage.ErrNotFound if there was none.
	DeleteRule(ctx context.Context, aor, watcher string) error
	// Rules returns aor's rules, watcher → rule; none is an empty map.
	Rules(ctx context.Context, aor string) (map[string]string, error)
}
