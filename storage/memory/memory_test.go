package memory_test

import (
	"testing"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/offline"
	"github.com/simpled/simpled/registrar"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"
	"github.com/simpled/simpled/storage/storagetest"
)

// The assertions live in the external test package: registrar and auth tests import
// this package, so the package itself must not import them.
var (
	_ registrar.Store      = (*memory.Store)(nil)
	_ auth.Store           = (*memory.Store)(nil)
	_ offline.MessageStore = (*memory.Store)(nil)
	_ storage.Backend      = (*memory.Store)(nil)
	_ storage.Credentials  = (*memory.Store)(nil)
	_ storagetest.Store    = (*memory.Store)(nil)
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
