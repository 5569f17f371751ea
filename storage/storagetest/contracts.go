package storagetest

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// The contracts Run checks, written with storage types only. Each stage owns the interface it
// uses and documents its semantics there (registrar.Store, auth.Store, offline.MessageStore,
// presence.PublicationStore, SubscriptionStore and RuleStore; the rules of an update on
// storage.BindingUpdate and storage.PublishOp). Go interfaces are structural, so the method
// sets below are the same contracts without an import of any stage: storage stays a floor
// below the stages, and the wiring (internal/server) checks at compile time that each backend
// is every stage's store.

// Store is everything a backend offers: every contract below plus health check, Close and
// the admin API's credential calls.
type Store interface {
	BindingStore
	AuthStore
	MessageStore
	PublicationStore
	SubscriptionStore
	RuleStore
	MailboxStore
	DialogStore
	storage.Backend
	storage.Credentials
}

// BindingStore is the method set of registrar.Store.
type BindingStore interface {
	UpdateBindings(ctx context.Context, aor string, u storage.BindingUpdate) (storage.BindingResult, error)
	Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error)
	RemoveBindings(ctx context.Context, aor string) ([]storage.Binding, error)
	RemoveFlowBindings(ctx context.Context, aor, flow string, now time.Time) ([]storage.Binding, error)
	SweepExpired(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredBinding, error)
}

// AuthStore is the method set of auth.Store: credentials and the nonce-count guard.
type AuthStore interface {
	Credential(ctx context.Context, aor, realm string) (storage.Credential, error)
	SetCredential(ctx context.Context, aor, realm string, c storage.Credential) error
	HasCredentials(ctx context.Context) (bool, error)
	NonceEpoch(ctx context.Context) (uint64, error)
	UseNonceCount(ctx context.Context, epoch uint64, nonce string, nc uint32, ttl time.Duration) (fresh bool, current uint64, err error)
}

// MessageStore is the method set of offline.MessageStore: offline mailboxes and known users.
type MessageStore interface {
	StoreMessage(ctx context.Context, aor string, m storage.Message, lim storage.MailboxLimits, now time.Time) (id string, dup bool, err error)
	Messages(ctx context.Context, aor string, now time.Time) ([]storage.Message, error)
	HasMessages(ctx context.Context, aor string) (bool, error)
	DeleteMessage(ctx context.Context, aor, id string) error
	DeleteMessages(ctx context.Context, aor string) (int, error)
	ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredMessage, error)
	MarkKnown(ctx context.Context, aor string, until time.Time) error
	Known(ctx context.Context, aor string, now time.Time) (bool, error)
}

// PublicationStore is the method set of presence.PublicationStore.
type PublicationStore interface {
	Publish(ctx context.Context, aor string, op storage.PublishOp) (storage.Publication, error)
	Publications(ctx context.Context, aor string, now time.Time) ([]storage.Publication, error)
	ExpirePublications(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredPublication, error)
}

// SubscriptionStore is the method set of presence.SubscriptionStore.
type SubscriptionStore interface {
	PutSubscription(ctx context.Context, s storage.Subscription, minCSeq uint32) error
	Subscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error)
	Subscriptions(ctx context.Context, aor string, now time.Time) ([]storage.Subscription, error)
	ClaimSubscription(ctx context.Context, aor, id, expect, node string, block uint32, now time.Time) (storage.Subscription, error)
	DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error)
	ExpireSubscriptions(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredSubscription, error)
}

// DialogStore is the method set of presence/dialog.Store: the call tracker's dialogs.
type DialogStore interface {
	PutDialog(ctx context.Context, aor string, d storage.Dialog, now time.Time, limit int) (bool, error)
	Dialogs(ctx context.Context, aor string, now time.Time) ([]storage.Dialog, error)
}

// RuleStore is the method set of presence.RuleStore.
type RuleStore interface {
	SetRule(ctx context.Context, aor, watcher, rule string) error
	DeleteRule(ctx context.Context, aor, watcher string) error
	Rules(ctx context.Context, aor string) (map[string]string, error)
}

// MailboxStore is the method set of mwi.MailboxStore (presence/mwi): one message summary per
// AOR.
type MailboxStore interface {
	PutMessageSummary(ctx context.Context, aor string, s storage.MessageSummary) error
	MessageSummary(ctx context.Context, aor string) (storage.MessageSummary, error)
	DeleteMessageSummary(ctx context.Context, aor string) error
}
