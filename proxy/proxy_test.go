package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// mapLocator serves fixed bindings.
type mapLocator map[string][]storage.Binding

func (l mapLocator) Lookup(_ context.Context, aor string) ([]storage.Binding, error) {
	return l[aor], nil
}

// recordTx is a server transaction that records the responses sent on it.
type recordTx struct {
	mu   sync.Mutex
	sent []*sip.Response
	done chan struct{}
}

func newRecordTx() *recordTx { return &recordTx{done: make(chan struct{})} }

func (tx *recordTx) Respond(res *sip.Response) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.sent = append(tx.sent, res)
	return nil
}
func (tx *recordTx) Acks() <-chan *sip.Request          { return nil }
func (tx *recordTx) OnCancel(sip.FnTxCancel) bool       { return true }
func (tx *recordTx) Terminate()                         {}
func (tx *recordTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (tx *recordTx) Done() <-chan struct{}              { return tx.done }
func (tx *recordTx) Err() error                         { return nil }
func (tx *recordTx) last() *sip.Response {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.sent[len(tx.sent)-1]
}

var _ sip.ServerTransaction = (*recordTx)(nil)

// harness is a proxy for example.test sending from a loopback UDP socket, with carol
// registered at a UDP socket (returned) that answers every request with code.
func harness(t *testing.T, code string) (*Proxy, <-chan string) {
	t.Helper()
	a := sipgoxtest.NewAgent(t)
	dev := sipgoxtest.Listen(t)
	got := sipgoxtest.Answer(dev, code)
	uri := fmt.Sprintf("sip:carol@%s", dev.LocalAddr())
	loc := mapLocator{"carol@example.test": {{Key: uri, URI: uri, Q: -1, Transport: "udp", UpdatedAt: time.Now()}}}
	flows := transport.NewFlows(nil, func() []transport.Listener { return []transport.Listener{{Transport: "udp", Addr: a.Addr()}} })
	seals := sipx.NewSeals(nil)
	d, err := delivery.New(delivery.Options{Domains: []string{"example.test"}, Flows: flows, Locator: loc, Client: a.Client, Seals: seals, UDPMTU: 1300})
	if err != nil {
		t.Fatal(err)
	}
	a.Strays.Handle(d.ClientTxs().Deliver)
	p, err := New(Options{Domains: []string{"example.test"}, IsOurs: func(h string) bool { return h == "example.test" || h == "127.0.0.1" },
		Locator: loc, Client: a.Client, Delivery: d, Seals: seals, InviteTimeout: 3 * time.Minute,
		Messages: msgcheck.New(msgcheck.Options{Domains: []string{"example.test"}, MaxBodySize: 64 << 10})})
	if err != nil {
		t.Fatal(err)
	}
	a.Strays.Handle(p.ServeStrayResponse)
	return p, got
}

// received is a MESSAGE from alice's client at 127.0.0.1:40000 to ruri, as sipgo hands it to
// the chain, with the state the identity stage gives it under rule.
func received(t *testing.T, ruri string, rule sipx.Rule) (context.Context, *sip.Request) {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.MESSAGE, u)
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 40000,
		Params: sip.HeaderParams{{K: "branch", V: "z9hG4bKclient1"}, {K: "rport", V: ""}}})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.test"}, Params: sip.HeaderParams{{K: "tag", V: "a1"}}})
	req.AppendHeader(&sip.ToHeader{Address: u})
	cid := sip.CallIDHeader("proxy-test")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	ct := sip.ContentTypeHeader("text/plain")
	req.AppendHeader(&ct)
	req.SetBody([]byte("hello"))
	req.SetSource("127.0.0.1:40000")
	req.SetTransport("UDP")
	st := sipx.NewState(req, zap.NewNop())
	st.Rule, st.AuthUser = rule, "alice@example.test"
	return sipx.WithState(t.Context(), st), req
}

// TestRelayToDevice: a MESSAGE for a registered user is forwarded to the device with our Via on
// top and the client's Via given received/rport (§16.6), Max-Forwards decremented, and the
// device's answer goes back with our Via removed.
func TestRelayToDevice(t *testing.T) {
	p, got := harness(t, "200 OK")
	ctx, req := received(t, "sip:carol@example.test", sipx.RuleUser)
	tx := newRecordTx()
	status, err := p.ServeSIP(ctx, tx, req)
	if err != nil || status != 200 {
		t.Fatalf("ServeSIP = %d, %v", status, err)
	}
	msg := <-got
	vias := 0
	for _, l := range strings.Split(msg, "\r\n") {
		if strings.HasPrefix(l, "Via:") {
			vias++
			if vias == 1 && !strings.Contains(l, "branch="+delivery.BranchMagic) {
				t.Errorf("top Via not ours: %s", l)
			}
			if vias == 2 && !strings.Contains(l, "rport=40000") {
				t.Errorf("client Via without rport: %s", l)
			}
		}
	}
	if vias != 2 || !strings.Contains(msg, "Max-Forwards: 69") {
		t.Errorf("forwarded:\n%s", msg)
	}
	res := tx.last()
	if v := res.Via(); v == nil || v.Params.GetOr("branch", "") != "z9hG4bKclient1" {
		t.Errorf("answer upstream has Via %v, want the client's alone", v)
	}
}

// TestRouteRefusals: what the proxy answers itself, without sending anything.
func TestRouteRefusals(t *testing.T) {
	p, _ := harness(t, "200 OK")
	for _, tt := range []struct {
		name string
		ruri string
		rule sipx.Rule
		want int
	}{
		{"unknown user", "sip:bob@example.test", sipx.RuleUser, 404},
		{"foreign domain from nobody", "sip:x@192.0.2.1", sipx.RuleNone, 403},
		{"unroutable next hop", "sip:x@nowhere.invalid", sipx.RuleUser, 404},
		{"to the server itself", "sip:example.test", sipx.RuleUser, 404},
	} {
		ctx, req := received(t, tt.ruri, tt.rule)
		tx := newRecordTx()
		if status, _ := p.ServeSIP(ctx, tx, req); status != tt.want || tx.last().StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, status, tt.want)
		}
	}
}

// TestLoopDetected: a request carrying a Via of ours with its own loop hash has looped (§16.3
// step 4): 482.
func TestLoopDetected(t *testing.T) {
	p, _ := harness(t, "200 OK")
	ctx, req := received(t, "sip:carol@example.test", sipx.RuleUser)
	l := p.flows.Listener("udp")
	req.PrependHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: int(l.Port()),
		Params: sip.HeaderParams{{K: "branch", V: delivery.BranchMagic + loopHash(req) + ".x"}}})
	tx := newRecordTx()
	if status, _ := p.ServeSIP(ctx, tx, req); status != 482 {
		t.Errorf("looped request: %d", status)
	}
}

// TestBest: §16.7 step 6 and 7 — a 6xx beats everything, else the lowest class; a 503 becomes
// 500; the challenges of every 401/407 are gathered in the one sent.
func TestBest(t *testing.T) {
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: "u", Host: "example.test"})
	res := func(code int, hdrs ...sip.Header) *sip.Response {
		r := sip.NewResponse(code, "")
		for _, h := range hdrs {
			r.AppendHeader(h)
		}
		return r
	}
	if got := best(req, []*sip.Response{res(486), res(603), res(302)}, nil).StatusCode; got != 603 {
		t.Errorf("with a 6xx: %d", got)
	}
	if got := best(req, []*sip.Response{res(486), res(302)}, []int{408}).StatusCode; got != 302 {
		t.Errorf("lowest class: %d", got)
	}
	if got := best(req, []*sip.Response{res(503)}, nil); got.StatusCode != 500 {
		t.Errorf("503 downstream: %d", got.StatusCode)
	}
	if got := best(req, nil, nil).StatusCode; got != 480 {
		t.Errorf("no branch: %d", got)
	}
	got := best(req, []*sip.Response{res(401, sip.NewHeader("WWW-Authenticate", "Digest realm=\"a\"")),
		res(407, sip.NewHeader("Proxy-Authenticate", "Digest realm=\"b\""))}, nil)
	if got.StatusCode != 401 || len(sipx.Headers(got, "Proxy-Authenticate")) != 1 || len(sipx.Headers(got, "WWW-Authenticate")) != 1 {
		t.Errorf("challenges not gathered:\n%s", got)
	}
}

// TestSecureGroups: a sips: request reaches only the targets (and alternative flows) over TLS
// or secure WebSocket; groups left empty go.
func TestSecureGroups(t *testing.T) {
	groups := [][]delivery.Target{
		{{Transport: "udp"}, {Transport: "tls", Alts: []delivery.Target{{Transport: "tcp"}, {Transport: "wss"}}}},
		{{Transport: "tcp"}},
	}
	out := secureGroups(groups)
	if len(out) != 1 || len(out[0]) != 1 || out[0][0].Transport != "tls" || len(out[0][0].Alts) != 1 || out[0][0].Alts[0].Transport != "wss" {
		t.Errorf("secureGroups = %+v", out)
	}
}
