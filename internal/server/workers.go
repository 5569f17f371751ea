package server

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// workers runs request handlers on long-lived goroutines. sipgo starts a fresh goroutine for
// every message, with a small stack; a REGISTER or a MESSAGE then goes some 40 frames deep
// through the chain and the store, so each request grew its stack by copying it two or three
// times (runtime.newstack/copystack: 14 % of the server's CPU at 8,000 REGISTER/s). A worker
// keeps the stack it grew for the next request. The sipgo goroutine waits for its worker: the
// server transaction ends when the handler returns (SIPGO.md), so the handoff must not return
// early.
//
// There is no bound on the number of workers: a request finds an idle worker or starts a new
// one, so a stage that waits (a relayed MESSAGE waiting for its callee, a slow store) never
// holds up another request. A worker idle for workerIdle ends, so a burst does not leave its
// goroutines behind.
type workers struct {
	jobs chan *job
	pool sync.Pool
}

// workerIdle is how long an idle worker waits for a request before it ends.
const workerIdle = 10 * time.Second

type job struct {
	h    func(*sip.Request, sip.ServerTransaction)
	req  *sip.Request
	tx   sip.ServerTransaction
	done chan struct{}
}

func newWorkers() *workers {
	w := &workers{jobs: make(chan *job)}
	w.pool.New = func() any { return &job{done: make(chan struct{}, 1)} }
	return w
}

// wrap returns a sipgo handler that runs h on a worker and returns when h has.
func (w *workers) wrap(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		j := w.pool.Get().(*job)
		j.h, j.req, j.tx = h, req, tx
		select {
		case w.jobs <- j:
		default:
			go w.work(j)
		}
		<-j.done
		j.h, j.req, j.tx = nil, nil, nil
		w.pool.Put(j)
	}
}

// work runs j, then whatever jobs come until it has been idle for workerIdle.
func (w *workers) work(j *job) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		w.run(j)
		idle.Reset(workerIdle)
		select {
		case j = <-w.jobs:
		case <-idle.C:
			return
		}
	}
}

// run calls the handler and always signals done, also when it panics (dispatch recovers its
// stages' panics; this covers the handler itself). A panic that got this far is passed on.
func (w *workers) run(j *job) {
	defer func() { j.done <- struct{}{} }()
	j.h(j.req, j.tx)
}
