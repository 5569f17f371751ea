package presence

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// Store keeps publications (Redis pub:{aor}), subscription dialogs (sub:{aor}) and
// authorization rules (rules:{aor}). storage/memory and storage/redis implement it;
// storage/storagetest checks both against this contract. AORs are "user@domain", lower-case
// domain; times are whole seconds (storage package doc).
type Store interface {
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
	// DeleteSubscription removes one subscription and returns it as it was;
	// storage.ErrNotFound if it was not there (expired ones count as not there).
	DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error)
	// ExpireSubscriptions removes at most limit subscriptions, over all AORs, whose ExpiresAt
	// is at or before now and returns them, each once in total across nodes (as
	// ExpirePublications).
	ExpireSubscriptions(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredSubscription, error)

	// SetRule sets aor's rule for watcher (a watcher AOR "user@domain" or a domain
	// "domain"): storage.RuleAllow, RuleBlock, RulePoliteBlock or RulePending.
	SetRule(ctx context.Context, aor, watcher, rule string) error
	// DeleteRule removes aor's rule for watcher; storage.ErrNotFound if there was none.
	DeleteRule(ctx context.Context, aor, watcher string) error
	// Rules returns aor's rules, watcher → rule; none is an empty map.
	Rules(ctx context.Context, aor string) (map[string]string, error)
}
