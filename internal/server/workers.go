package server

import (
	"sync"
	"time"

	"github.com/simpled/simpled/base/gopool"

	"github.com/emiago/sipgo/sip"
)

// workers runs request handlers on reused goroutines (gopool): sipgo starts a fresh goroutine,
// with a small stack, for every message, and a request going through the chain then grew it by
// copying two or three times. The sipgo goroutine waits for its worker: the server transaction
// ends when the handler returns (sipgo server.go handleRequest), so the handoff must not return early.
type workers struct {
	pool *gopool.Pool
	done sync.Pool // chan struct{}, one per call in flight
}

// workerIdle is how long an idle worker waits for a request before it ends.
const workerIdle = 10 * time.Second

func newWorkers() *workers {
	w := &workers{pool: gopool.New(workerIdle)}
	w.done.New = func() any { return make(chan struct{}, 1) }
	return w
}

// wrap returns a sipgo handler that runs h on a worker and returns when h has (also when h
// panics: dispatch recovers its stages' panics, and one that got past it is passed on).
func (w *workers) wrap(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		done := w.done.Get().(chan struct{})
		w.pool.Go(func() {
			defer func() { done <- struct{}{} }()
			h(req, tx)
		})
		<-done
		w.done.Put(done)
	}
}
