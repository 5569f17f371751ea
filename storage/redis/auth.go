package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Credential returns the secrets of aor for realm (HGET cred:{aor}), or storage.ErrNotFound.
func (s *Store) Credential(ctx context.Context, aor, realm string) (storage.Credential, error) {
	const step = "credential"
	cmd := goredis.NewStringCmd(ctx, "hget", credKey(aor), realm)
	s.batch.do(ctx, cmd)
	js, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return storage.Credential{}, fmt.Errorf("redis: %s: %s realm %q: %w", step, aor, realm, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Credential{}, unavailable(step, err)
	}
	var c storage.Credential
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return storage.Credential{}, fmt.Errorf("redis: %s: %s realm %q: corrupt credential: %w", step, aor, realm, err)
	}
	return c, nil
}

// SetCredential stores (replaces) the secrets of aor for realm: HSET cred:{aor} and SADD
// creds in one pipeline. Both are idempotent, so a failed call may simply be repeated.
func (s *Store) SetCredential(ctx context.Context, aor, realm string, c storage.Credential) error {
	const step = "set credential"
	js, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("redis: %s: %w", step, err)
	}
	pipe := s.c.Pipeline()
	hset := pipe.HSet(ctx, credKey(aor), realm, string(js))
	sadd := pipe.SAdd(ctx, credsKey, aor)
	_, _ = pipe.Exec(ctx)
	if err := errors.Join(hset.Err(), sadd.Err()); err != nil {
		return unavailable(step, err)
	}
	return nil
}

// HasCredentials reports whether any credential is stored (EXISTS creds).
func (s *Store) HasCredentials(ctx context.Context) (bool, error) {
	cmd := goredis.NewIntCmd(ctx, "exists", credsKey)
	s.batch.do(ctx, cmd)
	n, err := cmd.Result()
	if err != nil {
		return false, unavailable("has credentials", err)
	}
	return n > 0, nil
}

// UseNonceCount records nc for nonce and reports whether it is higher than every count
// accepted for that nonce within ttl: one script on nonce:{nonce} that compares, sets and
// sets the TTL (milliseconds, at least 1).
func (s *Store) UseNonceCount(ctx context.Context, nonce string, nc uint32, ttl time.Duration) (bool, error) {
	const step = "use nonce count"
	if ttl <= 0 {
		return false, fmt.Errorf("redis: %s: ttl %v: must be positive", step, ttl)
	}
	ms := max(ttl.Milliseconds(), 1)
	keys := []string{nonceKey(nonce)}
	cmd := s.runScript(ctx, nonceScript, keys, []any{nc, ms}, nil, nil)
	n, err := cmd.Int64()
	switch {
	case goredis.HasErrorPrefix(err, replyCorrupt):
		return false, fmt.Errorf("redis: %s: %w", step, err)
	case err != nil:
		return false, unavailable(step, err)
	}
	return n == 1, nil
}
