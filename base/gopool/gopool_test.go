package gopool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Functions that block do not wait for each other, each runs once, and an idle goroutine is
// reused for the next function.
func TestPoolRunsConcurrentlyAndReuses(t *testing.T) {
	p := New(time.Minute)
	release := make(chan struct{})
	var started, done sync.WaitGroup
	var runs atomic.Int32
	started.Add(20)
	done.Add(20)
	for range 20 {
		p.Go(func() {
			defer done.Done()
			runs.Add(1)
			started.Done()
			<-release
		})
	}
	wait(t, &started, "20 blocked functions to start")
	close(release)
	wait(t, &done, "them to end")
	if n := runs.Load(); n != 20 {
		t.Fatalf("%d runs, want 20", n)
	}
	// Twenty goroutines are idle now: a function is handed to one of them, not a new one.
	handed := make(chan bool, 1)
	select {
	case p.jobs <- func() { handed <- true }:
	case <-time.After(5 * time.Second):
		t.Fatal("no idle goroutine took a function")
	}
	<-handed
}

// Idle goroutines end after the idle time.
func TestPoolIdleGoroutinesEnd(t *testing.T) {
	p := New(10 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	p.Go(wg.Done)
	wait(t, &wg, "the function")
	time.Sleep(100 * time.Millisecond)
	select {
	case p.jobs <- func() {}:
		t.Fatal("a goroutine still waited for work after its idle time")
	default:
	}
}

func wait(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
