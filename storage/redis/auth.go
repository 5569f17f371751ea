package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	c, err := decodeCredential(js)
	if err != nil {
		return storage.Credential{}, fmt.Errorf("redis: %s: %s realm %q: %w", step, aor, realm, err)
	}
	return c, nil
}

// SetCredential stores (replaces) the secrets of aor for realm: HSET cred:{aor} and SADD
// creds in one pipeline. Both are idempotent, so a failed call may simply be repeated.
func (s *Store) SetCredential(ctx context.Context, aor, realm string, c storage.Credential) error {
	const step = "set credential"
	js, err := encodeCredential(&c)
	if err != nil {
		return fmt.Errorf("redis: %s: %w", step, err)
	}
	pipe := s.c.Pipeline()
	hset := pipe.HSet(ctx, credKey(aor), realm, js)
	sadd := pipe.SAdd(ctx, credsKey, aor)
	_, _ = pipe.Exec(ctx)
	if err := errors.Join(hset.Err(), sadd.Err()); err != nil {
		return unavailable(step, err)
	}
	return nil
}

// DeleteCredential removes every credential of aor: DEL cred:{aor} and SREM creds in one
// pipeline (both idempotent, so a failed call may be repeated). It reports whether either
// held anything.
func (s *Store) DeleteCredential(ctx context.Context, aor string) (bool, error) {
	const step = "delete credential"
	pipe := s.c.Pipeline()
	del := pipe.Del(ctx, credKey(aor))
	srem := pipe.SRem(ctx, credsKey, aor)
	_, _ = pipe.Exec(ctx)
	if err := errors.Join(del.Err(), srem.Err()); err != nil {
		return false, unavailable(step, err)
	}
	return del.Val()+srem.Val() > 0, nil
}

// ListCredentials returns the members of the set creds, sorted. It walks the set with SSCAN,
// a thousand at a time, so a large user base does not block Redis with one SMEMBERS.
func (s *Store) ListCredentials(ctx context.Context) ([]string, error) {
	const step = "list credentials"
	var out []string
	var cursor uint64
	for {
		keys, next, err := s.c.SScan(ctx, credsKey, cursor, "", 1000).Result()
		if err != nil {
			return nil, unavailable(step, err)
		}
		out = append(out, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	// SSCAN may return a member twice when the set is rehashed during the walk.
	slices.Sort(out)
	return slices.Compact(out), nil
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

// NonceEpoch returns the store's nonce epoch: SET nonce-epoch <random> NX GET, which returns
// the epoch stored or, when there was none, stores the random one.
func (s *Store) NonceEpoch(ctx context.Context) (uint64, error) {
	const step = "nonce epoch"
	cand := storage.NewNonceEpoch()
	cmd := epochCmd(ctx, cand)
	s.batch.do(ctx, cmd)
	return epochResult(step, cmd, cand)
}

// UseNonceCount records nc for nonce and reports whether it is higher than every count
// accepted for that nonce within ttl and epoch is the store's epoch. One round trip: a
// pipeline of the script on nonce:{nonce} that compares, sets and sets the TTL (milliseconds,
// at least 1), then SET nonce-epoch <random> NX GET. A missing nonce-epoch means the store
// lost its state (or is new): the command creates a new epoch and the nonce is refused. The
// epoch is read after the count is recorded, so a loss between the two is seen too (on one
// Redis; in Cluster the two keys live on different shards, and only the loss of the shard
// holding nonce-epoch, or of all of them, is detected).
func (s *Store) UseNonceCount(ctx context.Context, epoch uint64, nonce string, nc uint32, ttl time.Duration) (bool, uint64, error) {
	const step = "use nonce count"
	if err := storage.CheckTTL(ttl); err != nil {
		return false, 0, fmt.Errorf("redis: %s: %w", step, err)
	}
	ms := max(ttl.Milliseconds(), 1)
	keys := []string{nonceKey(nonce)}
	cand := storage.NewNonceEpoch()
	ecmd := epochCmd(ctx, cand)
	cmd := s.runScript(ctx, nonceScript, keys, []any{nc, ms}, nil, []goredis.Cmder{ecmd})
	cur, err := epochResult(step, ecmd, cand)
	if err != nil {
		return false, 0, err
	}
	n, err := cmd.Int64()
	switch {
	case goredis.HasErrorPrefix(err, replyCorrupt):
		return false, 0, fmt.Errorf("redis: %s: %w", step, err)
	case err != nil:
		return false, 0, unavailable(step, err)
	}
	return n == 1 && cur == epoch, cur, nil
}

// epochCmd is SET nonce-epoch cand NX GET (Redis 7.0): it replies the stored epoch, or nil
// when there was none and cand is now stored.
func epochCmd(ctx context.Context, cand uint64) *goredis.StringCmd {
	return goredis.NewStringCmd(ctx, "set", nonceEpochKey, encodeEpoch(cand), "nx", "get")
}

// epochResult returns the epoch cmd (epochCmd(cand)) left stored.
func epochResult(step string, cmd *goredis.StringCmd, cand uint64) (uint64, error) {
	v, err := cmd.Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return cand, nil
	case err != nil:
		return 0, unavailable(step, err)
	}
	e, err := decodeEpoch(v)
	if err != nil {
		return 0, fmt.Errorf("redis: %s: %w", step, err)
	}
	return e, nil
}
