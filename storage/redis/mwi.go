package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Message summaries (presence/mwi's MailboxStore): mwi:{aor}, a string "<updated_at unix ns>
// <body>", no TTL (a mailbox's state does not expire). Each call is one command.

func mwiKey(aor string) string { return "mwi:{" + aor + "}" }

// PutMessageSummary stores aor's message summary, replacing the one before (one SET).
func (s *Store) PutMessageSummary(ctx context.Context, aor string, sum storage.MessageSummary) error {
	const step = "put message summary"
	if len(sum.Body) > storage.MaxMessageSummary {
		return fmt.Errorf("redis: %s: %s: %d bytes, at most %d", step, aor, len(sum.Body), storage.MaxMessageSummary)
	}
	v := strconv.FormatInt(sum.UpdatedAt.UnixNano(), 10) + " " + string(sum.Body)
	cmd := goredis.NewStatusCmd(ctx, "set", mwiKey(aor), v)
	s.batch.do(ctx, cmd)
	if err := cmd.Err(); err != nil {
		return unavailable(step, err)
	}
	return nil
}

// MessageSummary returns aor's message summary, or fails with storage.ErrNotFound (one GET).
func (s *Store) MessageSummary(ctx context.Context, aor string) (storage.MessageSummary, error) {
	const step = "message summary"
	cmd := goredis.NewStringCmd(ctx, "get", mwiKey(aor))
	s.batch.do(ctx, cmd)
	v, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return storage.MessageSummary{}, fmt.Errorf("redis: %s: %s: %w", step, aor, storage.ErrNotFound)
	}
	if err != nil {
		return storage.MessageSummary{}, unavailable(step, err)
	}
	ns, body, ok := strings.Cut(v, " ")
	n, perr := strconv.ParseInt(ns, 10, 64)
	if !ok || perr != nil {
		return storage.MessageSummary{}, fmt.Errorf("redis: %s: %s: corrupt value", step, aor)
	}
	return storage.MessageSummary{Body: []byte(body), UpdatedAt: time.Unix(0, n).UTC()}, nil
}

// DeleteMessageSummary removes aor's message summary, or fails with storage.ErrNotFound (one
// DEL).
func (s *Store) DeleteMessageSummary(ctx context.Context, aor string) error {
	const step = "delete message summary"
	cmd := goredis.NewIntCmd(ctx, "del", mwiKey(aor))
	s.batch.do(ctx, cmd)
	n, err := cmd.Result()
	if err != nil {
		return unavailable(step, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: %s: %s: %w", step, aor, storage.ErrNotFound)
	}
	return nil
}
