package storagetest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/simpled/simpled/storage"
)

// benchAORs is how many distinct AORs the benchmarks spread their work over.
const benchAORs = 1000

// BenchmarkUpdateBindings measures the REGISTER hot path: the refresh of one binding, on
// distinct AORs in turn (serial), and from GOMAXPROCS goroutines with their own AORs
// (parallel).
func BenchmarkUpdateBindings(b *testing.B, s Store) {
	ctx := b.Context()
	t0 := base()
	refresh := func(b *testing.B, aor string, cseq uint32) {
		u := update(t0, bnd(t0, "sip:dev@192.0.2.1:5060", "call-1", cseq, 0, 3600))
		u.MaxBindings = 10
		if _, err := s.UpdateBindings(ctx, aor, u); err != nil {
			b.Fatalf("UpdateBindings: %v", err)
		}
	}
	// The counters live outside the sub-benchmarks, which may run more than once: a new run
	// continues the CSeq sequence (serial) or takes fresh AORs (parallel).
	var (
		i int
		g atomic.Int64
	)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refresh(b, fmt.Sprintf("serial%d@bench.example.com", i%benchAORs), uint32(i/benchAORs+1))
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := g.Add(1)
			i := 0
			for pb.Next() {
				refresh(b, fmt.Sprintf("par%d-%d@bench.example.com", id, i%benchAORs), uint32(i/benchAORs+1))
				i++
			}
		})
	})
}

// BenchmarkBindings measures a lookup of an AOR with three bindings (the proxy's hot path).
func BenchmarkBindings(b *testing.B, s Store) {
	ctx := b.Context()
	t0 := base()
	for i := range benchAORs {
		var bs []storage.Binding
		for j := range 3 {
			bs = append(bs, bnd(t0, fmt.Sprintf("sip:dev%d@192.0.2.%d:5060", j, j+1), "call", 1, 0, 3600))
		}
		if _, err := s.UpdateBindings(ctx, fmt.Sprintf("lookup%d@bench.example.com", i), update(t0, bs...)); err != nil {
			b.Fatalf("UpdateBindings: %v", err)
		}
	}
	aors := make([]string, benchAORs)
	for i := range aors {
		aors[i] = fmt.Sprintf("lookup%d@bench.example.com", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bs, err := s.Bindings(ctx, aors[i%benchAORs], t0)
		if err != nil || len(bs) != 3 {
			b.Fatalf("Bindings = %d, %v", len(bs), err)
		}
		i++
	}
}

// BenchmarkStoreMessage measures the offline path of one MESSAGE: StoreMessage into a mailbox
// that holds a few messages, with limits and a dedup key, plus the DeleteMessage that follows
// its delivery (so every mailbox stays at 4-5 messages, as between two registrations).
func BenchmarkStoreMessage(b *testing.B, s Store) {
	ctx := b.Context()
	t0 := base()
	lim := storage.MailboxLimits{MaxCount: 100, MaxBytes: 1 << 20}
	body := make([]byte, 300)
	for i := range body {
		body[i] = byte(i)
	}
	ids := make([][]string, benchAORs) // per AOR, the stored IDs oldest first
	aors := make([]string, benchAORs)
	for i := range aors {
		aors[i] = fmt.Sprintf("offline%d@bench.example.com", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := i % benchAORs
		m := msg(t0, fmt.Sprintf("imdn-%d", i), "", 0, 7*24*3600)
		m.Body = body
		id, dup, err := s.StoreMessage(ctx, aors[a], m, lim, t0)
		if err != nil || dup {
			b.Fatalf("StoreMessage = %v, %v", dup, err)
		}
		ids[a] = append(ids[a], id)
		if len(ids[a]) > 4 {
			if err := s.DeleteMessage(ctx, aors[a], ids[a][0]); err != nil {
				b.Fatalf("DeleteMessage: %v", err)
			}
			ids[a] = ids[a][1:]
		}
		i++
	}
}
