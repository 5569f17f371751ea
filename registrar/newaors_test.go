package registrar

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

var cseqs atomic.Int64

// registerAs sends a REGISTER of user@example.test with the given Expires from source under
// rule, and returns the response.
func (f *fixture) registerAs(t *testing.T, rule sipx.Rule, source, user string, expires int) *sip.Response {
	t.Helper()
	raw := "REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + source + ";branch=z9hG4bK" + user + strconv.Itoa(expires) + "\r\n" +
		"From: <sip:" + user + "@example.test>;tag=1\r\nTo: <sip:" + user + "@example.test>\r\n" +
		"Call-ID: " + user + "\r\nCSeq: " + strconv.FormatInt(cseqs.Add(1), 10) + " REGISTER\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:" + user + "@" + source + ">;expires=" + strconv.Itoa(expires) + "\r\nContent-Length: 0\r\n\r\n"
	msg, err := sipx.NewParser(1 << 20).ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	req.SetSource(source)
	req.SetTransport("UDP")
	st := sipx.NewState(req, zap.NewNop())
	st.Rule = rule
	tx := siptest.NewServerTxRecorder(req)
	if _, err := f.h.ServeSIP(sipx.WithState(context.Background(), st), tx, req); err != nil {
		t.Fatal(err)
	}
	return tx.Result()[0]
}

// TestNewAORsPerSource: in open mode one source registers at most MaxNewAORsPerSource new
// AORs a minute (503 with Retry-After beyond, counted as limit new_aors); refreshes, removals,
// AORs that have bindings already, authenticated users and other sources are not limited; an
// IPv6 source counts per /64; the next minute brings a new budget.
func TestNewAORsPerSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	lim, err := sipx.NewLimited(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) {
		o.MaxNewAORsPerSource = 3
		o.Limited = lim
		o.TrustedPeer = func(st *sipx.State) bool { return st.Source == "192.0.2.9:5060" }
	})
	const a, b = "192.0.2.1:5060", "192.0.2.2:5060"
	want := func(res *sip.Response, code int, what string) {
		t.Helper()
		if res.StatusCode != code {
			t.Errorf("%s: %d %s, want %d", what, res.StatusCode, res.Reason, code)
		}
	}
	for i := range 3 {
		want(f.registerAs(t, sipx.RuleOpen, a, fmt.Sprint("u", i), 600), 200, "new AOR within the budget")
	}
	res := f.registerAs(t, sipx.RuleOpen, a, "u3", 600)
	want(res, 503, "a 4th new AOR")
	if ra := res.GetHeader("Retry-After"); ra == nil {
		t.Error("503 without Retry-After")
	} else if secs, err := strconv.Atoi(ra.Value()); err != nil || secs < 1 || secs > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 s", ra.Value())
	}
	want(f.registerAs(t, sipx.RuleOpen, a, "u0", 600), 200, "a refresh")
	want(f.registerAs(t, sipx.RuleOpen, a, "nobody", 0), 200, "a removal")
	want(f.registerAs(t, sipx.RuleOpen, b, "u3", 600), 200, "another source")
	want(f.registerAs(t, sipx.RuleOpen, a, "u3", 600), 200, "an AOR that has bindings already")
	want(f.registerAs(t, sipx.RuleUser, a, "u9", 600), 200, "an authenticated user")
	for i := range 5 {
		want(f.registerAs(t, sipx.RuleOpen, "192.0.2.9:5060", fmt.Sprint("p", i), 600), 200, "a trusted peer")
	}
	for i := range 4 {
		code := 200
		if i == 3 {
			code = 503
		}
		want(f.registerAs(t, sipx.RuleOpen, fmt.Sprintf("[2001:db8::%d]:5060", i+1), fmt.Sprint("v", i), 600), code,
			fmt.Sprintf("new AOR %d from one /64", i))
	}
	f.clock.Add(61 * time.Second)
	want(f.registerAs(t, sipx.RuleOpen, a, "u5", 600), 200, "a new AOR the next minute")

	mfs, _ := reg.Gather()
	got := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "new_aors" {
				got = m.GetCounter().GetValue()
			}
		}
	}
	if got != 2 {
		t.Errorf("simpled_limited_total{limit=new_aors} = %v, want 2", got)
	}
}

// TestNewAORsBounded: a flood of sources (forged UDP addresses) keeps the table bounded.
func TestNewAORsBounded(t *testing.T) {
	n := newNewAORs(60, time.Minute)
	now := time.Now()
	for i := range 2 * maxNewAORSources {
		for j := range 3 {
			n.reserve(fmt.Sprint("198.18.", i), fmt.Sprintf("a%d-%d@example.test", i, j), now)
		}
	}
	if len(n.sources) > maxNewAORSources {
		t.Errorf("%d sources tracked, want at most %d", len(n.sources), maxNewAORSources)
	}
}
