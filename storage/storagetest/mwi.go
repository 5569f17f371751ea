package storagetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// testMessageSummaries checks MailboxStore: a summary per AOR, replaced whole, its body byte
// for byte and its time to the nanosecond, ErrNotFound for none, AORs apart, an oversized
// body refused without a write.
func testMessageSummaries(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.MessageSummary(ctx, "alice@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no summary: want ErrNotFound, got %v", err)
	}
	if err := s.DeleteMessageSummary(ctx, "alice@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete of none: want ErrNotFound, got %v", err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.UTC)
	first := storage.MessageSummary{Body: []byte("Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n"), UpdatedAt: at}
	if err := s.PutMessageSummary(ctx, "alice@example.com", first); err != nil {
		t.Fatal(err)
	}
	second := storage.MessageSummary{Body: []byte("Messages-Waiting: no\r\n"), UpdatedAt: at.Add(time.Nanosecond)}
	if err := s.PutMessageSummary(ctx, "alice@example.com", second); err != nil {
		t.Fatal(err)
	}
	got, err := s.MessageSummary(ctx, "alice@example.com")
	if err != nil || !bytes.Equal(got.Body, second.Body) || !got.UpdatedAt.Equal(second.UpdatedAt) {
		t.Fatalf("after a replace: got %q at %v, %v; want %q at %v", got.Body, got.UpdatedAt, err, second.Body, second.UpdatedAt)
	}
	if _, err := s.MessageSummary(ctx, "bob@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another AOR: want ErrNotFound, got %v", err)
	}
	big := storage.MessageSummary{Body: []byte(strings.Repeat("x", storage.MaxMessageSummary+1)), UpdatedAt: at}
	if err := s.PutMessageSummary(ctx, "alice@example.com", big); err == nil {
		t.Fatal("an oversized summary was stored")
	}
	if got, _ := s.MessageSummary(ctx, "alice@example.com"); !bytes.Equal(got.Body, second.Body) {
		t.Fatalf("a refused put changed the summary: %q", got.Body)
	}
	if err := s.DeleteMessageSummary(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MessageSummary(ctx, "alice@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: want ErrNotFound, got %v", err)
	}
}
