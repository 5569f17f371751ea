package sipx

import (
	"context"

	"github.com/emiago/sipgo/sip"
)

// Handler is one stage of the request chain, shaped like a CoreDNS plugin.
//
// ServeSIP handles req. It returns the final status it sent (0: it sent none and the request
// goes on down the chain) and an error for the top of the chain to log. The top answers 500 only
// when nothing was sent. A stage that answers must have responded on tx before returning: sipgo
// terminates the server transaction when the dispatcher returns.
type Handler interface {
	ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error)
	Name() string
}

// Plugin wraps the next handler of the chain into a stage.
type Plugin func(next Handler) Handler

// HandlerFunc adapts a function to Handler, for the end of the chain and for tests.
type HandlerFunc struct {
	F        func(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error)
	NameText string
}

// ServeSIP calls h.F.
func (h HandlerFunc) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	return h.F(ctx, tx, req)
}

// Name returns the handler's name.
func (h HandlerFunc) Name() string { return h.NameText }

// Next passes the request to next, or, at the end of the chain, reports that nothing served it
// (status 0, no error): the dispatcher then answers 405 or 501.
func Next(ctx context.Context, next Handler, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if next == nil {
		return 0, nil
	}
	return next.ServeSIP(ctx, tx, req)
}
