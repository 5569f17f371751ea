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
	nonceEpochLen  = 8  // big-endian store epoch
	nonceRandomLen = 12 // crypto/rand
	nonceMACLen    = sha256.Size
	nonceDataLen   = nonceTimeLen + nonceEpochLen + nonceRandomLen
	nonceLen       = nonceDataLen + nonceMACLen
	// maxNonceText bounds what Check decodes.
	maxNonceText = 128
)

// Nonces issues and checks stateless nonces (no store round trip to issue or check):
//
//	base64url( timestamp(8) || epoch(8) || random(12) ||
//	           HMAC-SHA256(secret, timestamp || epoch || random || realm) )
//
// Any node holding the same secret accepts a nonce another node issued. A nonce is bound to the
// realm it was issued for and carries the store epoch (Store.NonceEpoch) it was issued under,
// 0 when the node did not know it yet. Replays within the lifetime are caught by the nonce-count
// guard (Store.UseNonceCount), which refuses a nonce of another epoch: its records were lost.
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

// Issue returns a new nonce for realm under the store epoch epoch, stamped with now.
func (n *Nonces) Issue(realm string, epoch uint64, now time.Time) (string, error) {
	var raw [nonceLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(now.Unix()))
	binary.BigEndian.PutUint64(raw[nonceTimeLen:nonceTimeLen+nonceEpochLen], epoch)
	if _, err := rand.Read(raw[nonceTimeLen+nonceEpochLen : nonceDataLen]); err != nil {
		return "", fmt.Errorf("auth: issue nonce: %w", err)
	}
	copy(raw[nonceDataLen:], n.mac(raw[:nonceDataLen], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// Check verifies that nonce was issued by a holder of the secret for realm and is fresh at now,
// and returns the store epoch it was issued under. The error is nil, ErrNonceInvalid, or
// ErrNonceStale (authentic but older than the lifetime; the epoch is still returned). A
// timestamp more than one lifetime in the future is invalid.
func (n *Nonces) Check(nonce, realm string, now time.Time) (uint64, error) {
	if len(nonce) > maxNonceText {
		return 0, ErrNonceInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceLen {
		return 0, ErrNonceInvalid
	}
	if !hmac.Equal(raw[nonceDataLen:], n.mac(raw[:nonceDataLen], realm)) {
		return 0, ErrNonceInvalid
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[:nonceTimeLen])), 0)
	epoch := binary.BigEndian.Uint64(raw[nonceTimeLen : nonceTimeLen+nonceEpochLen])
	age := now.Sub(issued)
	switch {
	case age < -n.lifetime:
		return 0, ErrNonceInvalid
	case age > n.lifetime:
		return epoch, ErrNonceStale
	}
	return epoch, nil
}

func (n *Nonces) mac(data []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(data)
	m.Write([]byte(realm))
	return m.Sum(nil)
}
