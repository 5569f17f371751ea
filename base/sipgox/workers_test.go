package sipgox

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A handler run by the workers sees its request and transaction, the caller returns only
// after it, and concurrent handlers that block do not wait for each other.
func TestWorkersRunConcurrently(t *testing.T) {
	w := newWorkers()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(20)
	h := w.wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		started.Done()
		<-release
	})
	var done sync.WaitGroup
	for range 20 {
		done.Add(1)
		go func() {
			defer done.Done()
			h(sip.NewRequest(sip.MESSAGE, sip.Uri{Host: "example.test"}), nil)
		}()
	}
	waitTimeout(t, &started, "20 blocked handlers to start")
	close(release)
	waitTimeout(t, &done, "the callers to return")
	// Handlers run one after another on the same worker see each their own request.
	got := make(chan sip.RequestMethod, 2)
	h2 := w.wrap(func(req *sip.Request, _ sip.ServerTransaction) { got <- req.Method })
	h2(sip.NewRequest(sip.REGISTER, sip.Uri{Host: "example.test"}), nil)
	h2(sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.test"}), nil)
	if a, b := <-got, <-got; a != sip.REGISTER || b != sip.OPTIONS {
		t.Fatalf("handlers saw %s, %s", a, b)
	}
}

func waitTimeout(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
