package sipx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// TempGRUUPrefix starts the user part of every temporary GRUU simpled issues (RFC 5627 §3.2).
const TempGRUUPrefix = "tgruu."

var gruuEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// GRUUs seals temporary GRUUs: a temp-gruu must name one instance of one AOR without letting
// anyone who sees it learn which (RFC 5627 §3.2), and must be recognised by any node of the
// deployment without a store lookup. The AOR and instance are sealed with AES-GCM under a key
// derived from the deployment's secret; a fresh nonce makes each one issued different.
type GRUUs struct{ aead cipher.AEAD }

// NewGRUUs derives the sealing key from secret (nodes sharing a store share it).
func NewGRUUs(secret []byte) *GRUUs {
	key := sha256.Sum256(append([]byte("simpled temp-gruu\x00"), secret...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &GRUUs{aead: aead}
}

// Temp returns the user part of a new temporary GRUU for instance of aor.
func (g *GRUUs) Temp(aor, instance string) string {
	nonce := make([]byte, g.aead.NonceSize(), g.aead.NonceSize()+len(aor)+1+len(instance)+g.aead.Overhead())
	_, _ = rand.Read(nonce)
	sealed := g.aead.Seal(nonce, nonce, []byte(aor+"\x00"+instance), nil)
	return TempGRUUPrefix + gruuEncoding.EncodeToString(sealed)
}

// Open returns the AOR and instance a temporary GRUU's user part names; ok is false for any
// user part Temp did not write under the same secret.
func (g *GRUUs) Open(user string) (aor, instance string, ok bool) {
	if !strings.HasPrefix(user, TempGRUUPrefix) || len(user) > 1024 {
		return "", "", false
	}
	b, err := gruuEncoding.DecodeString(strings.ToLower(user[len(TempGRUUPrefix):]))
	if err != nil || len(b) < g.aead.NonceSize()+g.aead.Overhead() {
		return "", "", false
	}
	plain, err := g.aead.Open(nil, b[:g.aead.NonceSize()], b[g.aead.NonceSize():], nil)
	if err != nil {
		return "", "", false
	}
	aor, instance, ok = strings.Cut(string(plain), "\x00")
	return aor, instance, ok
}
