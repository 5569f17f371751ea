package sipgox

import (
	"sync"
	"time"

	"github.com/simpled/simpled/base/gopool"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// workers runs request handlers on reused goroutines (gopool): sipgo's transaction layer starts
// a fresh goroutine, with a small stack, for every message it receives (TransactionLayer
// handleMessage), and a request going through the chain then grew it by copying two or three
// times. The sipgo goroutine waits for its worker: the server transaction ends when the handler
// returns (sipgo Server.handleRequest calls TerminateGracefully), so the handoff must not
// return early.
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

// OnWorkers returns a sipgo handler that runs h on a pool of reused goroutines of its own and
// returns when h has, also when h panics (simpled's dispatcher recovers its stages' panics; one
// that gets past h goes on up the worker's stack, as it would in sipgo's own goroutine).
func OnWorkers(h sipgo.RequestHandler) sipgo.RequestHandler {
	return newWorkers().wrap(h)
}

// wrap returns a sipgo handler that runs h on a worker and returns when h has.
func (w *workers) wrap(h sipgo.RequestHandler) sipgo.RequestHandler {
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
