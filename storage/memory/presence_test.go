package memory_test

import (
	"testing"

	"github.com/simpled/simpled/storage/memory"
	"github.com/simpled/simpled/storage/storagetest"
)

func BenchmarkPublish(b *testing.B) {
	storagetest.BenchmarkPublish(b, memory.New())
}

func BenchmarkSubscriptions(b *testing.B) {
	storagetest.BenchmarkSubscriptions(b, memory.New())
}
