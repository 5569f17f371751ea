package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/redis"
)

// TestConcurrentUpdatesShareAndKeepResults runs many REGISTER updates at once, so they travel in
// shared pipelines, and checks each caller got its own result: the right added binding, a stale
// error for exactly the stale ones, and nothing lost in Redis.
func TestConcurrentUpdatesShareAndKeepResults(t *testing.T) {
	testConcurrentUpdatesShareAndKeepResults(t, redistest.Start(t).URL())
}

func testConcurrentUpdatesShareAndKeepResults(t *testing.T, url string) {
	s := connect(t, url, redis.Options{})
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0)
	update := func(aor string, cseq uint32) (storage.BindingResult, error) {
		return s.UpdateBindings(ctx, aor, storage.BindingUpdate{Now: now, Changes: []storage.BindingChange{{Binding: storage.Binding{
			Key: "sip:" + aor, Contact: "<sip:" + aor + ">", URI: "sip:" + aor, ExpiresAt: now.Add(time.Hour),
			CallID: "c-" + aor, CSeq: cseq, Q: -1, UpdatedAt: now,
		}}}, MaxBindings: 10})
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aor := fmt.Sprintf("u%d@example.test", i)
			res, err := update(aor, 2)
			if err != nil || len(res.Added) != 1 || res.Added[0].URI != "sip:"+aor {
				errs <- fmt.Errorf("%s: %w %+v", aor, err, res.Added)
				return
			}
			// The same Call-ID with a lower CSeq is stale, for this caller only.
			if _, err := update(aor, 1); !errors.Is(err, storage.ErrStale) {
				errs <- fmt.Errorf("%s: stale update: %w", aor, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range n {
		aor := fmt.Sprintf("u%d@example.test", i)
		bs, err := s.Bindings(ctx, aor, now)
		if err != nil || len(bs) != 1 || bs[0].CSeq != 2 {
			t.Fatalf("%s: %v %+v", aor, err, bs)
		}
	}
}

// TestUpdateAfterCloseFails: a closed store answers ErrUnavailable, it does not hang or panic.
func TestUpdateAfterCloseFails(t *testing.T) {
	srv := redistest.Start(t)
	s := connect(t, srv.URL(), redis.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		now := time.Unix(1_900_000_000, 0)
		_, err := s.UpdateBindings(context.Background(), "a@example.test", storage.BindingUpdate{Now: now,
			Changes: []storage.BindingChange{{Binding: storage.Binding{Key: "k", URI: "sip:a@h", ExpiresAt: now.Add(time.Hour)}}}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("UpdateBindings hung on a closed store")
	}
}
