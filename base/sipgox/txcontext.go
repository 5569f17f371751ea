package sipgox

import (
	"context"

	"github.com/emiago/sipgo/sip"
)

// TxContext returns a context that ends when tx terminates or when cancel is called (the
// dispatcher calls it when the chain returns).
//
// It replaces sip.ServerTransactionContext, which in sipgo v1.7.2 cancels its context at once
// whenever the termination callback was registered (it inverts OnTerminate's result), so every
// store call under it would fail with "context canceled".
func TxContext(tx sip.ServerTransaction) (ctx context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(context.Background())
	if utx, ok := tx.(*udpTx); ok {
		utx.cancelOnEnd(cancel) // no callback closure and list for simpled's own transactions
		return ctx, cancel
	}
	if !tx.OnTerminate(func(string, error) { cancel() }) {
		cancel() // already terminated
	}
	return ctx, cancel
}
