package auth

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// Store is what digest authentication needs from a storage backend.
type Store interface {
	// Credential returns the secrets of aor ("user@domain") for realm, or storage.ErrNotFound.
	Credential(ctx context.Context, aor, realm string) (storage.Credential, error)
	// SetCredential stores (replaces) the secrets of aor for realm.
	SetCredential(ctx context.Context, aor, realm string, c storage.Credential) error
	// HasCredentials reports whether any credential is stored.
	HasCredentials(ctx context.Context) (bool, error)
	// NonceEpoch returns the store's nonce epoch, a random non-zero number that stays the same
	// as long as the store keeps its nonce records, creating it when the store has none. A
	// store that lost its state (Redis FLUSHALL, a restart without persistence; the memory
	// backend: a new process) has a new epoch.
	NonceEpoch(ctx context.Context) (uint64, error)
	// UseNonceCount is the nonce-count replay guard (RFC 7616 §3.4): it records nc for nonce
	// and reports true when nc is higher than every count recorded for that nonce before,
	// false for a replay. A record is forgotten ttl after the last count it accepted (a
	// replay does not extend it); ttl must be positive. epoch is the store epoch the nonce
	// was issued under: when it is not the store's current epoch (which UseNonceCount creates
	// when missing, as NonceEpoch does) the answer is false, since records older than the
	// epoch are lost; the count may be recorded all the same. current is the store's epoch,
	// so that the caller issues new nonces under it.
	UseNonceCount(ctx context.Context, epoch uint64, nonce string, nc uint32, ttl time.Duration) (fresh bool, current uint64, err error)
}
