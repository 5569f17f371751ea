package offline

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// MessageStore keeps offline messages (Redis key msg:{aor}) and remembers which AORs are
// known users of a local domain. storage/memory and storage/redis implement it;
// storage/storagetest checks both against this contract.
type MessageStore interface {
	// StoreMessage appends m to aor's mailbox and returns the ID it was given. Messages of aor
	// that expired at now are dropped first (they count for nothing). If a message with the
	// same DedupKey is already stored it stores nothing and returns that message's ID with
	// dup true. Otherwise it stores nothing and fails, checking in this order, when the
	// mailbox would then hold more than lim.MaxPerSender messages of m.Sender
	// (storage.ErrSenderQuota); when m is Foreign and the mailbox would hold more than
	// lim.MaxForeignCount foreign messages or lim.MaxForeignBytes bytes of them
	// (storage.ErrForeignShare); when it would hold more than lim.MaxCount messages or more
	// than lim.MaxBytes bytes (storage.Message.Size) in all (storage.ErrMailboxFull, which
	// the other two errors also match). m.ID is ignored; m.StoredAt and m.ExpiresAt are kept
	// as given (whole seconds); m.Sender and m.Foreign come back from Messages.
	StoreMessage(ctx context.Context, aor string, m storage.Message, lim storage.MailboxLimits, now time.Time) (id string, dup bool, err error)
	// Messages returns aor's messages not expired at now, oldest first; none is an empty
	// result, not an error.
	Messages(ctx context.Context, aor string, now time.Time) ([]storage.Message, error)
	// HasMessages reports whether aor's mailbox holds any message (expired ones included):
	// the cheap check made on every registration.
	HasMessages(ctx context.Context, aor string) (bool, error)
	// DeleteMessage removes one message of aor (after a 2xx, or by the admin API); a message
	// that is not there is storage.ErrNotFound.
	DeleteMessage(ctx context.Context, aor, id string) error
	// DeleteMessages removes every message of aor and reports how many there were.
	DeleteMessages(ctx context.Context, aor string) (int, error)
	// ExpireMessages removes at most limit messages, over all AORs, whose ExpiresAt is at or
	// before now and returns them; each is returned once in total even when several nodes
	// call it on one Redis. It returns fewer than limit only when no more are left. limit
	// must be positive.
	ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredMessage, error)
	// MarkKnown remembers aor as a known user until the given time (later calls extend it,
	// never shorten it): a user who registered stays known, so a MESSAGE for them is stored
	// rather than refused with 404, for the offline max age after their last binding ends.
	MarkKnown(ctx context.Context, aor string, until time.Time) error
	// Known reports whether aor was marked known with an until after now.
	Known(ctx context.Context, aor string, now time.Time) (bool, error)
}
