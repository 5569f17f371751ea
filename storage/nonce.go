package storage

import (
	"crypto/rand"
	"encoding/binary"
)

// NewNonceEpoch draws a nonce epoch (auth.Store.NonceEpoch): 64 random bits, never zero (zero
// stands for "no epoch known" in nonces issued before a node learned its store's epoch).
func NewNonceEpoch() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}
