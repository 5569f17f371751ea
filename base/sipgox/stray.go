package sipgox

import (
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// StrayRouter passes on the responses that matched none of sipgo's client transactions: those
// of simpled's own non-INVITE transactions (ClientTxs.Deliver), and a 2xx to an INVITE
// retransmitted after sipgo's transaction ended, which a proxy still relays (RFC 6026). The
// server installs Serve once, when it builds the user agent
// (sip.WithTransactionLayerUnhandledResponseHandler), and the components that want such
// responses register as they are built: no handler refers to a component that does not exist
// yet. The zero value routes nothing; it is safe for concurrent use.
type StrayRouter struct {
	mu       sync.Mutex // serialises Handle
	handlers atomic.Pointer[[]func(*sip.Response) bool]
}

// Handle adds h; handlers are asked in the order they were added until one reports that it
// took the response.
func (r *StrayRouter) Handle(h func(*sip.Response) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hs []func(*sip.Response) bool
	if cur := r.handlers.Load(); cur != nil {
		hs = append(hs, *cur...)
	}
	hs = append(hs, h)
	r.handlers.Store(&hs)
}

// Serve offers res to the handlers; a response nobody takes is dropped. It runs on sipgo's
// read path for every response of simpled's own transactions, so it takes no lock.
func (r *StrayRouter) Serve(res *sip.Response) {
	hs := r.handlers.Load()
	if hs == nil {
		return
	}
	for _, h := range *hs {
		if h(res) {
			return
		}
	}
}
