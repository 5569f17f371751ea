package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/simpled/simpled/storage"
)

// TestDirectory: a user is known from the users file or the store; a reload adds and removes
// the file's users; without a file there is nothing to reload; store errors reach the caller.
func TestDirectory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("erin@example.test:secret-erin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := newMemStore()
	store.setPassword("alice", "example.test", "secret-alice")
	d, err := NewDirectory(path, store)
	if err != nil {
		t.Fatal(err)
	}
	known := func(aor string) bool {
		t.Helper()
		ok, err := d.Known(ctx, aor)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !known("erin@example.test") || !known("alice@example.test") || known("bob@example.test") || known("no-domain") {
		t.Fatal("Known: want erin (file) and alice (store) only")
	}
	if err := os.WriteFile(path, []byte("bob@Example.Test:secret-bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	diff, ok, err := d.Reload()
	if !ok || err != nil || fmt.Sprint(diff.Added, diff.Removed) != "[bob@example.test] [erin@example.test]" {
		t.Fatalf("Reload: %+v %v %v", diff, ok, err)
	}
	if !known("bob@example.test") || known("erin@example.test") {
		t.Fatal("after reload: want bob, not erin")
	}
	if _, found, err := d.Credential(ctx, "bob@example.test", "example.test"); !found || err != nil {
		t.Fatalf("Credential(bob): %v %v", found, err)
	}

	none, err := NewDirectory("", store)
	if err != nil || none.File() != nil || none.Path() != "" {
		t.Fatalf("no file: %v", err)
	}
	if _, ok, err := none.Reload(); ok || err != nil {
		t.Fatalf("Reload without a file: %v %v", ok, err)
	}
	store.err = storage.ErrUnavailable
	if _, err := none.Known(ctx, "alice@example.test"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("store error: %v", err)
	}
	if _, err := NewDirectory(filepath.Join(t.TempDir(), "missing"), store); err == nil {
		t.Fatal("a missing users file: no error")
	}
}
