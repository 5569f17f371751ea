package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/simpled/simpled/storage"
)

// summaries are the message summaries (presence/mwi's MailboxStore).
type summaries struct {
	mu sync.RWMutex
	m  map[string]storage.MessageSummary
}

// PutMessageSummary stores aor's message summary, replacing the one before.
func (s *Store) PutMessageSummary(ctx context.Context, aor string, sum storage.MessageSummary) error {
	const step = "put message summary"
	if err := s.check(ctx, step); err != nil {
		return err
	}
	if len(sum.Body) > storage.MaxMessageSummary {
		return fmt.Errorf("memory: %s: %s: %d bytes, at most %d", step, aor, len(sum.Body), storage.MaxMessageSummary)
	}
	s.mwi.mu.Lock()
	defer s.mwi.mu.Unlock()
	if s.mwi.m == nil {
		s.mwi.m = make(map[string]storage.MessageSummary)
	}
	sum.Body = slices.Clone(sum.Body)
	s.mwi.m[strings.Clone(aor)] = sum
	return nil
}

// MessageSummary returns aor's message summary, or fails with storage.ErrNotFound.
func (s *Store) MessageSummary(ctx context.Context, aor string) (storage.MessageSummary, error) {
	const step = "message summary"
	if err := s.check(ctx, step); err != nil {
		return storage.MessageSummary{}, err
	}
	s.mwi.mu.RLock()
	defer s.mwi.mu.RUnlock()
	sum, ok := s.mwi.m[aor]
	if !ok {
		return storage.MessageSummary{}, fmt.Errorf("memory: %s: %s: %w", step, aor, storage.ErrNotFound)
	}
	sum.Body = slices.Clone(sum.Body)
	return sum, nil
}

// DeleteMessageSummary removes aor's message summary, or fails with storage.ErrNotFound.
func (s *Store) DeleteMessageSummary(ctx context.Context, aor string) error {
	const step = "delete message summary"
	if err := s.check(ctx, step); err != nil {
		return err
	}
	s.mwi.mu.Lock()
	defer s.mwi.mu.Unlock()
	if _, ok := s.mwi.m[aor]; !ok {
		return fmt.Errorf("memory: %s: %s: %w", step, aor, storage.ErrNotFound)
	}
	delete(s.mwi.m, aor)
	return nil
}
