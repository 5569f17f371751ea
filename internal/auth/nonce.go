package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Errors of Nonces.Check.
var (
	// ErrNonceInvalid: the nonce is not one we issued (bad encoding, forged or for another
	// realm). Answer with a fresh challenge.
	ErrNonceInvalid = errors.New("auth: invalid nonce")
	// ErrNonceStale: the nonce is ours but older than its lifetime. Answer with stale=true.
	ErrNonceStale = errors.New("auth: stale nonce")
)

const (
	nonceTimeLen   = 8  // big-endian Unix seconds
	nonceRandomLen = 12 // crypto/rand
	nonceMACLen    = sha256.Size
	nonceLen       = nonceTimeLen + nonceRandomLen + nonceMACLen
	// maxNonceText bounds what Check decodes.
	maxNonceText = 128
)

// Nonces issues and checks stateless nonces (no store round trip to issue or check):
//
//	base64url( timestamp(8) || random(12) || HMAC-SHA256(secret, timestamp || random || realm) )
//
// Any node holding the same secret accepts a nonce another node issued. A nonce is bound to the
// realm it was issued for. Replays within the lifetime are caught by the nonce-count guard
// (Store.UseNonceCount) when the client uses qop; without qop (RFC 2069 clients) a nonce may
// be reused until it expires.
type Nonces struct {
	secret   []byte
	lifetime time.Duration
}

// NewNonces returns a nonce issuer keyed by secret (at least 16 bytes; the caller keeps it
// secret) whose nonces expire after lifetime.
func NewNonces(secret []byte, lifetime time.Duration) (*Nonces, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("auth: nonce secret: %d bytes, want at least 16", len(secret))
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("auth: nonce lifetime %v: must be positive", lifetime)
	}
	return &Nonces{secret: append([]byte(nil), secret...), lifetime: lifetime}, nil
}

// Lifetime returns how long a nonce stays fresh.
func (n *Nonces) Lifetime() time.Duration { return n.lifetime }

// Issue returns a new nonce for realm, stamped with now.
func (n *Nonces) Issue(realm string, now time.Time) (string, error) {
	var raw [nonceLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(now.Unix()))
	if _, err := rand.Read(raw[nonceTimeLen : nonceTimeLen+nonceRandomLen]); err != nil {
		return "", fmt.Errorf("auth: issue nonce: %w", err)
	}
	copy(raw[nonceTimeLen+nonceRandomLen:], n.mac(raw[:nonceTimeLen+nonceRandomLen], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// Check verifies that nonce was issued by a holder of the secret for realm and is fresh at now.
// It returns nil, ErrNonceInvalid, or ErrNonceStale (authentic but older than the lifetime).
// A timestamp more than one lifetime in the future is invalid.
func (n *Nonces) Check(nonce, realm string, now time.Time) error {
	if len(nonce) > maxNonceText {
		return ErrNonceInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceLen {
		return ErrNonceInvalid
	}
	if !hmac.Equal(raw[nonceTimeLen+nonceRandomLen:], n.mac(raw[:nonceTimeLen+nonceRandomLen], realm)) {
		return ErrNonceInvalid
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[:nonceTimeLen])), 0)
	age := now.Sub(issued)
	switch {
	case age < -n.lifetime:
		return ErrNonceInvalid
	case age > n.lifetime:
		return ErrNonceStale
	}
	return nil
}

func (n *Nonces) mac(stampRandom []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(stampRandom)
	m.Write([]byte(realm))
	return m.Sum(nil)
}
