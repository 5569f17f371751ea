package sipxtest_test

import (
	"context"
	"testing"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/sipx/sipxtest"

	"github.com/emiago/sipgo/sip"
)

// refuseMessages is a stage that answers MESSAGE 403 and passes every other request on.
func refuseMessages(next sipx.Handler) sipx.Handler {
	return sipx.HandlerFunc{NameText: "refuse", F: func(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
		if req.Method != sip.MESSAGE {
			return sipx.Next(ctx, next, tx, req)
		}
		return 403, tx.Respond(sip.NewResponseFromRequest(req, 403, "Not Here", nil))
	}}
}

func request(method sip.RequestMethod) func(testing.TB) *sip.Request {
	return func(testing.TB) *sip.Request {
		req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.test"}, Params: sip.NewParams()})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"}, Params: sip.NewParams()})
		req.AppendHeader(sip.NewHeader("Call-ID", "c1"))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
		return req
	}
}

// The table runs each request through the stage: the answered one is checked by status and
// reason, the passed-on one by the next handler having been called and nothing sent.
func TestRunTable(t *testing.T) {
	sipxtest.Run(t, refuseMessages, []sipxtest.Case{
		{Name: "MESSAGE refused", Request: request(sip.MESSAGE), Status: 403, Reason: "Not Here",
			Check: func(t *testing.T, r sipxtest.Result) {
				if got := r.Tx.Codes(); len(got) != 1 || got[0] != 403 {
					t.Fatalf("codes %v, want [403]", got)
				}
			}},
		{Name: "OPTIONS passed on", Request: request(sip.OPTIONS), Check: func(t *testing.T, r sipxtest.Result) {
			if !r.Next || r.Tx.Count() != 0 || r.Tx.Last().StatusCode != 0 {
				t.Fatalf("next %v, sent %v", r.Next, r.Tx.Codes())
			}
		}},
	})
}

// The recorder keeps every response in order, as sent.
func TestRecorderKeepsOrder(t *testing.T) {
	rec := sipxtest.NewRecorder()
	req := request(sip.INVITE)(t)
	for _, code := range []int{100, 180, 486} {
		if err := rec.Respond(sip.NewResponseFromRequest(req, code, "", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.Codes(); len(got) != 3 || got[0] != 100 || got[2] != 486 || rec.Last().StatusCode != 486 {
		t.Fatalf("codes %v, last %d", got, rec.Last().StatusCode)
	}
}
