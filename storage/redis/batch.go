package redis

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent callers to Redis in shared pipelines
// (auto-pipelining): under load, one write and one read carry many REGISTERs instead of one
// each, on simpled's side and on Redis's. An idle caller's commands go out at once, alone.
type batcher struct {
	c       goredis.UniversalClient
	ch      chan *batchReq
	timeout time.Duration
	wg      sync.WaitGroup
	mu      sync.RWMutex // held (read) while handing a request over, (write) to close
	closed  bool
}

// batchReq is one caller's commands; done is signalled once they all have their results.
type batchReq struct {
	cmds []goredis.Cmder
	done chan struct{}
}

// maxBatch bounds one pipeline; batchSenders pipelines may be in flight at once. Fewer
// senders make fuller pipelines: while one is in flight the next fills. Under sipp REGISTER
// load at 6,000/s two senders used 5-10 % less CPU (simpled and Redis) than four; one a little
// less again, but then one slow reply would hold up every caller.
const (
	maxBatch     = 128
	batchSenders = 2
)

func newBatcher(c goredis.UniversalClient, timeout time.Duration) *batcher {
	b := &batcher{c: c, ch: make(chan *batchReq), timeout: timeout}
	b.wg.Add(batchSenders)
	for range batchSenders {
		go b.run()
	}
	return b
}

var batchReqPool = sync.Pool{New: func() any { return &batchReq{done: make(chan struct{}, 1)} }}

// do runs cmds in a pipeline shared with other callers and returns when they have results.
// Each command carries its own error. ctx bounds the wait only: commands already handed over
// run to completion (bounded by the client's timeouts).
func (b *batcher) do(ctx context.Context, cmds ...goredis.Cmder) {
	r := batchReqPool.Get().(*batchReq)
	r.cmds = cmds
	b.mu.RLock()
	var err error
	if b.closed {
		err = goredis.ErrClosed
	} else {
		select {
		case b.ch <- r:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	b.mu.RUnlock()
	if err != nil {
		for _, c := range cmds {
			c.SetErr(err)
		}
		r.cmds = nil
		batchReqPool.Put(r)
		return
	}
	<-r.done
	r.cmds = nil
	batchReqPool.Put(r)
}

func (b *batcher) run() {
	defer b.wg.Done()
	batch := make([]*batchReq, 0, maxBatch)
	for first := range b.ch {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-b.ch:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		pipe := b.c.Pipeline()
		for _, r := range batch {
			for _, c := range r.cmds {
				_ = pipe.Process(ctx, c)
			}
		}
		_, _ = pipe.Exec(ctx) // each command's error is its caller's to read
		cancel()
		for _, r := range batch {
			r.done <- struct{}{}
		}
	}
}

// close stops the senders once queued requests are done; do must not be called after.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	close(b.ch)
	b.mu.Unlock()
	b.wg.Wait()
}
