package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	t0 := time.Unix(1_700_000_000, 0)
	n, err := NewNonces(secret, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const epoch = 0x0102030405060708
	issued, err := n.Issue("example.test", epoch, t0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(issued)
	if err != nil || len(raw) != nonceLen {
		t.Fatalf("nonce %q: %d bytes, %v", issued, len(raw), err)
	}
	other, _ := NewNonces([]byte("another secret, 32 bytes long..."), 5*time.Minute)
	tamper := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}

	tests := []struct {
		name  string
		n     *Nonces
		nonce string
		realm string
		at    time.Time
		want  error
	}{
		{name: "fresh", n: n, nonce: issued, realm: "example.test", at: t0},
		{name: "at lifetime", n: n, nonce: issued, realm: "example.test", at: t0.Add(5 * time.Minute)},
		{name: "stale", n: n, nonce: issued, realm: "example.test", at: t0.Add(5*time.Minute + time.Second), want: ErrNonceStale},
		{name: "far future stamp", n: n, nonce: issued, realm: "example.test", at: t0.Add(-6 * time.Minute), want: ErrNonceInvalid},
		{name: "other realm", n: n, nonce: issued, realm: "other.test", at: t0, want: ErrNonceInvalid},
		{name: "other secret", n: other, nonce: issued, realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "re-stamped", n: n, nonce: tamper(nonceTimeLen - 1), realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "tampered epoch", n: n, nonce: tamper(nonceTimeLen + 1), realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "tampered random", n: n, nonce: tamper(nonceTimeLen + nonceEpochLen + 1), realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "tampered mac", n: n, nonce: tamper(nonceLen - 1), realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "truncated", n: n, nonce: issued[:len(issued)-4], realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "kamailio nonce", n: n, nonce: "awLkQWsC4xUB4nvS3KXDWWYUvitWgHKo", realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "not base64", n: n, nonce: "!!!", realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "empty", n: n, nonce: "", realm: "example.test", at: t0, want: ErrNonceInvalid},
		{name: "huge", n: n, nonce: strings.Repeat("A", 10000), realm: "example.test", at: t0, want: ErrNonceInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.n.Check(tt.nonce, tt.realm, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if (err == nil || errors.Is(err, ErrNonceStale)) && e != epoch {
				t.Fatalf("Check epoch = %#x, want %#x", e, uint64(epoch))
			}
		})
	}
}

func TestNoncesUnique(t *testing.T) {
	n, err := NewNonces([]byte("0123456789abcdef"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	seen := map[string]bool{}
	for range 1000 {
		s, err := n.Issue("example.test", 1, now)
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("nonce %q issued twice", s)
		}
		seen[s] = true
	}
}

func TestNewNoncesOptions(t *testing.T) {
	tests := []struct {
		name     string
		secret   []byte
		lifetime time.Duration
	}{
		{name: "short secret", secret: []byte("short"), lifetime: time.Minute},
		{name: "zero lifetime", secret: []byte("0123456789abcdef"), lifetime: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewNonces(tt.secret, tt.lifetime); err == nil {
				t.Fatal("NewNonces accepted bad options")
			}
		})
	}
}
