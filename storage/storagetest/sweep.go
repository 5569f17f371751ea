package storagetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// Sweep is one caller's expiry sweep of one kind, reduced to the names of the items it
// returned: "<kind>|<aor>|<id>", so that sweeps of several kinds can be checked together.
type Sweep func(ctx context.Context, now time.Time, limit int) ([]string, error)

// sweepOf adapts an Expire* method to Sweep, naming each item by name.
func sweepOf[E any](kind string, expire func(ctx context.Context, now time.Time, limit int) ([]E, error),
	name func(E) (aor, id string)) Sweep {
	return func(ctx context.Context, now time.Time, limit int) ([]string, error) {
		ex, err := expire(ctx, now, limit)
		names := make([]string, 0, len(ex))
		for _, e := range ex {
			aor, id := name(e)
			names = append(names, kind+"|"+aor+"|"+id)
		}
		return names, err
	}
}

// BindingSweep is s.SweepExpired as a Sweep ("reg|aor|key").
func BindingSweep(s BindingStore) Sweep {
	return sweepOf("reg", s.SweepExpired, func(e storage.ExpiredBinding) (string, string) { return e.AOR, e.Binding.Key })
}

// MessageSweep is s.ExpireMessages as a Sweep ("msg|aor|id").
func MessageSweep(s MessageStore) Sweep {
	return sweepOf("msg", s.ExpireMessages, func(e storage.ExpiredMessage) (string, string) { return e.AOR, e.Message.ID })
}

// PublicationSweep is s.ExpirePublications as a Sweep ("pub|aor|etag").
func PublicationSweep(s PublicationStore) Sweep {
	return sweepOf("pub", s.ExpirePublications, func(e storage.ExpiredPublication) (string, string) {
		return e.AOR, e.Publication.ETag
	})
}

// SubscriptionSweep is s.ExpireSubscriptions as a Sweep ("sub|aor|id").
func SubscriptionSweep(s SubscriptionStore) Sweep {
	return sweepOf("sub", s.ExpireSubscriptions, func(e storage.ExpiredSubscription) (string, string) {
		return e.AOR, e.Subscription.ID
	})
}

// SweptOnce checks the promise every expiry sweep makes: each expired item is returned
// exactly once in total, however many callers (nodes on one Redis, goroutines of one node)
// sweep at the same time. It runs each of sweeps in its own goroutine, at now with limit,
// until that sweep returns nothing, and checks that want distinct items came back, none
// twice. Pass one Sweep per caller: the same store's several times for goroutines of one
// node, one per store for several nodes, sweeps of several kinds to race them on one index.
func SweptOnce(t testing.TB, now time.Time, limit, want int, sweeps ...Sweep) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, len(sweeps))
	)
	for _, sweep := range sweeps {
		wg.Go(func() {
			for {
				names, err := sweep(t.Context(), now, limit)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, n := range names {
					seen[n]++
				}
				mu.Unlock()
				if len(names) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sweep: %v", err)
	}
	if len(seen) != want {
		t.Errorf("swept %d distinct items, want %d", len(seen), want)
	}
	for n, k := range seen {
		if k != 1 {
			t.Errorf("%s returned %d times", n, k)
		}
	}
}
