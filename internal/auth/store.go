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
	// UseNonceCount is the nonce-count replay guard (RFC 7616 §3.4): it records nc for nonce
	// and reports true when nc is higher than every count recorded for that nonce before,
	// false for a replay. A record is forgotten ttl after the last count it accepted (a
	// replay does not extend it); ttl must be positive.
	UseNonceCount(ctx context.Context, nonce string, nc uint32, ttl time.Duration) (bool, error)
}
