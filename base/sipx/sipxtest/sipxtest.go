// Package sipxtest is the harness of the stage unit tests: a recording server transaction, a
// Serve that runs one stage (a sipx.Plugin) on one request the way the chain does, and Run, a
// table of requests and the answers the stage must give.
//
// A stage is tested without sockets: it gets a request, a State in its context and a
// transaction that records what it sends; what matters is the Handler contract of package
// sipx (a stage that answers has sent exactly one final response with the status it returns;
// one that passes the request on has sent nothing) and the answer itself. sipgo's own
// siptest.NewServerTxRecorder serves tests that need sipgo's transaction behaviour; the
// Recorder here is safe for concurrent use and keeps every response.
package sipxtest

import (
	"context"
	"sync"
	"testing"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Recorder is a sip.ServerTransaction that keeps every response sent on it.
type Recorder struct {
	mu   sync.Mutex
	res  []*sip.Response
	done chan struct{}
}

var _ sip.ServerTransaction = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{done: make(chan struct{})} }

// Respond records res.
func (r *Recorder) Respond(res *sip.Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res = append(r.res, res)
	return nil
}

// Responses returns the responses sent so far, in order.
func (r *Recorder) Responses() []*sip.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sip.Response(nil), r.res...)
}

// Last returns the last response sent, or an empty one (status 0) when none was.
func (r *Recorder) Last() *sip.Response {
	res := r.Responses()
	if len(res) == 0 {
		return &sip.Response{}
	}
	return res[len(res)-1]
}

// Count is the number of responses sent.
func (r *Recorder) Count() int { return len(r.Responses()) }

// Codes are the status codes sent, in order.
func (r *Recorder) Codes() []int {
	var codes []int
	for _, res := range r.Responses() {
		codes = append(codes, res.StatusCode)
	}
	return codes
}

// The rest of sip.ServerTransaction: a recorder never ends and has no ACKs or CANCELs.

func (r *Recorder) Terminate()                         {}
func (r *Recorder) OnTerminate(sip.FnTxTerminate) bool { return true }
func (r *Recorder) Done() <-chan struct{}              { return r.done }
func (r *Recorder) Err() error                         { return nil }
func (r *Recorder) Acks() <-chan *sip.Request          { return nil }
func (r *Recorder) OnCancel(sip.FnTxCancel) bool       { return true }

// Result is what a stage did with one request.
type Result struct {
	Status int         // ServeSIP's status: 0 when the request went on down the chain
	Err    error       // ServeSIP's error
	Next   bool        // the next handler was called
	Tx     *Recorder   // the responses the stage sent
	State  *sipx.State // the request's State after the stage (AuthUser, Rule, ...)
}

// Serve runs stage on req as the chain does: with a fresh State (logging to log; nil: none)
// in ctx, a Recorder as the transaction, and a next handler that records being called.
func Serve(ctx context.Context, stage sipx.Plugin, req *sip.Request, log *zap.Logger) Result {
	if log == nil {
		log = zap.NewNop()
	}
	r := Result{Tx: NewRecorder(), State: sipx.NewState(req, log)}
	next := sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
		r.Next = true
		return 0, nil
	}}
	r.Status, r.Err = stage(next).ServeSIP(sipx.WithState(ctx, r.State), r.Tx, req)
	return r
}

// CheckContract fails t when r breaks the Handler contract: a stage that passed the request on
// sent no response, one that answered sent exactly one, with the status it returned.
func (r Result) CheckContract(t testing.TB) {
	t.Helper()
	if r.Next && r.Tx.Count() > 0 {
		t.Fatalf("stage answered %v and called next", r.Tx.Codes())
	}
	if !r.Next && (r.Tx.Count() != 1 || r.Tx.Last().StatusCode != r.Status) {
		t.Fatalf("stage returned %d, sent %v", r.Status, r.Tx.Codes())
	}
}

// Case is one row of a stage's table: a request and the answer it must get.
type Case struct {
	Name    string
	Request func(t testing.TB) *sip.Request
	Status  int    // the status the stage must answer; 0: it must pass the request on
	Reason  string // the reason phrase it must answer with, when not ""
	// Check, when set, looks further at the result (headers, State, metrics).
	Check func(t *testing.T, r Result)
}

// Run serves each case's request to stage in a subtest and checks the contract, the status,
// the reason and the case's own Check.
func Run(t *testing.T, stage sipx.Plugin, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := Serve(context.Background(), stage, c.Request(t), nil)
			r.CheckContract(t)
			if c.Status == 0 && !r.Next {
				t.Fatalf("answered %d %q, want it passed on", r.Status, r.Tx.Last().Reason)
			}
			if c.Status != 0 && r.Status != c.Status {
				t.Fatalf("answered %d %q, want %d", r.Status, r.Tx.Last().Reason, c.Status)
			}
			if c.Reason != "" && r.Tx.Last().Reason != c.Reason {
				t.Fatalf("answered %d %q, want %d %q", r.Status, r.Tx.Last().Reason, c.Status, c.Reason)
			}
			if c.Check != nil {
				c.Check(t, r)
			}
		})
	}
}
