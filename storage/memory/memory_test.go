package memory_test

import (
	"testing"

	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"
	"github.com/simpled/simpled/storage/storagetest"
)

// The backend satisfies every contract of the conformance suite (the stages' own interfaces
// are checked where the backend is wired to them, in internal/server).
var (
	_ storage.Backend     = (*memory.Store)(nil)
	_ storage.Credentials = (*memory.Store)(nil)
	_ storagetest.Store   = (*memory.Store)(nil)
)

func newStore(t *testing.T) storagetest.Store {
	t.Helper()
	s := memory.New()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, newStore)
}

func BenchmarkUpdateBindings(b *testing.B) {
	storagetest.BenchmarkUpdateBindings(b, memory.New())
}

func BenchmarkBindings(b *testing.B) {
	storagetest.BenchmarkBindings(b, memory.New())
}

func BenchmarkStoreMessage(b *testing.B) {
	storagetest.BenchmarkStoreMessage(b, memory.New())
}
