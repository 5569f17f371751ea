// Package gopool runs functions on reused goroutines. A new goroutine starts with a small stack
// that the runtime grows by copying as calls go deeper; a SIP request handled through simpled's
// chain, or a NOTIFY built and sent, goes some 40 frames deep and paid for two or three copies
// each time (runtime.newstack/copystack: 12-14 % of simpled's CPU under REGISTER load and
// during NOTIFY fan-out). A pooled goroutine keeps the stack it grew for the next function.
//
// A Pool has no bound: a function finds an idle goroutine or starts a new one, so a function
// that waits (a relayed MESSAGE waiting for its callee, a slow store) never holds up another.
// A goroutine idle for the pool's idle time ends, so a burst leaves nothing behind. It is its
// own package because the server's request handlers and the presence notifier share it.
package gopool

import "time"

// Pool runs functions on reused goroutines. The zero value is not usable; see New.
type Pool struct {
	jobs chan func()
	idle time.Duration
}

// New returns a pool whose goroutines end after idle without work.
func New(idle time.Duration) *Pool {
	return &Pool{jobs: make(chan func()), idle: idle}
}

// Go runs f on an idle goroutine of the pool, or on a new one.
func (p *Pool) Go(f func()) {
	select {
	case p.jobs <- f:
	default:
		go p.work(f)
	}
}

func (p *Pool) work(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.jobs:
		case <-t.C:
			return
		}
	}
}
