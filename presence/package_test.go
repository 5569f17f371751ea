package presence

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"go.uber.org/zap"
)

// testPackage is an event package whose state is a set of items per AOR; its documents list
// the items the watcher does not know yet ("full" or "partial", with the version).
type testPackage struct {
	mu    sync.Mutex
	items map[string][]string
	p     *Presence
}

func (*testPackage) Event() string { return "x-test" }
func (*testPackage) Type() string  { return "application/x-test" }

func (t *testPackage) Authorize(_ context.Context, s *Subscribe) (Decision, error) {
	if strings.HasPrefix(s.Watcher, "blocked") {
		return Refuse(403, "Not Yours"), nil
	}
	return Allow(), nil
}

func (t *testPackage) Document(ctx context.Context, sub *storage.Subscription, version uint32, sent map[string]string) ([]byte, map[string]string, error) {
	t.mu.Lock()
	items := append([]string(nil), t.items[sub.AOR]...)
	t.mu.Unlock()
	pubs, err := t.p.PublicationsOf(ctx, "x-test", sub.AOR)
	if err != nil {
		return nil, nil, err
	}
	for _, pub := range pubs {
		items = append(items, string(pub.Body))
	}
	known := map[string]string{}
	var news []string
	for _, it := range items {
		known[it] = "1"
		if sent[it] == "" {
			news = append(news, it)
		}
	}
	state := "partial"
	if sent == nil {
		state = "full"
	} else if len(news) == 0 {
		return nil, known, nil
	}
	return fmt.Appendf(nil, "%s %d %s", state, version, strings.Join(news, ",")), known, nil
}

func (t *testPackage) MayPublish(_ context.Context, st *sipx.State, _ *sip.Request, _ string) bool {
	return st.Rule == sipx.RulePeer
}

func (t *testPackage) Check(_ context.Context, _ *sip.Request, body []byte) (int, string, []sip.Header) {
	if strings.Contains(string(body), "bad") {
		return 400, "Bad Item", nil
	}
	return 0, "", nil
}

func (t *testPackage) add(aor, item string) {
	t.mu.Lock()
	t.items[aor] = append(t.items[aor], item)
	t.mu.Unlock()
	t.p.Changed(aor, "x-test")
}

// sentNotifies records the NOTIFYs the agent sends and answers them 200.
type sentNotifies chan *sip.Request

func (s sentNotifies) SendInDialog(_ context.Context, req *sip.Request, _ *storage.Subscription) (int, error) {
	s <- req
	return 200, nil
}

func (s sentNotifies) next(t *testing.T) *sip.Request {
	t.Helper()
	select {
	case r := <-s:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY")
		return nil
	}
}

func packagePresence(t *testing.T) (*Presence, *testPackage, sentNotifies) {
	t.Helper()
	sent := make(sentNotifies, 16)
	p, err := Setup(withPolicy(PolicyAllow), testDeps(Deps{
		Domains: []string{"example.test"}, Store: memory.New(), Locator: noBindings{}, Sender: sent,
		Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
		IsOurs:  func(h string) bool { return h == "127.0.0.1" },
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.notifier.close)
	pkg := &testPackage{items: map[string][]string{}, p: p}
	if err := p.Serve(pkg); err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(pkg); err == nil {
		t.Fatal("a package served twice was accepted")
	}
	return p, pkg, sent
}

// serve hands p a request (raw SIP) from source over UDP under trust rule and returns the
// recorded response.
func serve(t *testing.T, p *Presence, raw string, rule sipx.Rule) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	st := sipx.NewState(req, zap.NewNop())
	st.Source, st.Transport, st.Rule = "192.0.2.9:5060", "udp", rule
	rec := siptest.NewServerTxRecorder(req)
	if _, err := p.ServeSIP(sipx.WithState(context.Background(), st), rec, req); err != nil {
		t.Fatal(err)
	}
	rs := rec.Result()
	if len(rs) == 0 {
		t.Fatal("no response")
	}
	return rs[len(rs)-1]
}

func packageRequest(method, from, event, callID string, extra ...string) string {
	return method + " sip:bob@example.test SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK" + callID +
		"\nFrom: <sip:" + from + ">;tag=f" + callID + "\nTo: <sip:bob@example.test>\nCall-ID: " + callID +
		"\nCSeq: 1 " + method + "\nEvent: " + event + "\nExpires: 600\nContact: <sip:w@192.0.2.9:5060>\n" +
		strings.Join(extra, "")
}

func withBody(body string) string {
	return "Content-Type: application/x-test\nContent-Length: " + fmt.Sprint(len(body)) + "\n\n" + body
}

// TestEventPackage: a package served by the agent gets its subscriptions (489 lists it; the
// package's refusal is the answer), its documents sent with versions from 0 and what the
// watcher knows, its state changes notified, and PUBLISHes of its state checked by its
// rules and stored apart from presence.
func TestEventPackage(t *testing.T) {
	p, pkg, sent := packagePresence(t)
	p.opts.Known = func(context.Context, string) (bool, error) { return true, nil }
	pkg.items["bob@example.test"] = []string{"a"}

	if res := serve(t, p, packageRequest("SUBSCRIBE", "carol@example.test", "x-none", "c0", "Content-Length: 0\n\n"), sipx.RuleOpen); res.StatusCode != 489 ||
		res.GetHeader("Allow-Events").Value() != "presence, presence.winfo, x-test" {
		t.Fatalf("unknown event: want 489 listing the packages:\n%s", res)
	}
	if res := serve(t, p, packageRequest("SUBSCRIBE", "blocked@example.test", "x-test", "c1", "Content-Length: 0\n\n"), sipx.RuleOpen); res.StatusCode != 403 || res.Reason != "Not Yours" {
		t.Fatalf("refused by the package: want its 403:\n%s", res)
	}
	if res := serve(t, p, packageRequest("SUBSCRIBE", "carol@example.test", "x-test", "c2", "Accept: application/pidf+xml\nContent-Length: 0\n\n"), sipx.RuleOpen); res.StatusCode != 406 {
		t.Fatalf("Accept without the package's type: want 406:\n%s", res)
	}
	if res := serve(t, p, packageRequest("SUBSCRIBE", "carol@example.test", "x-test", "c3", "Content-Length: 0\n\n"), sipx.RuleOpen); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: want 200:\n%s", res)
	}
	n := sent.next(t)
	if string(n.Body()) != "full 0 a" || n.ContentType().Value() != "application/x-test" || n.GetHeader("Event").Value() != "x-test" {
		t.Fatalf("first NOTIFY: want the full document, version 0, the package's type and event:\n%s", n)
	}
	pkg.add("bob@example.test", "b")
	if n := sent.next(t); string(n.Body()) != "partial 1 b" {
		t.Fatalf("after a change: want a partial document with version 1:\n%s", n)
	}
	p.Changed("bob@example.test", "x-test") // nothing new: no NOTIFY
	pkg.add("dave@example.test", "z")       // another AOR: no NOTIFY

	pub := func(rule sipx.Rule, callID, body string) *sip.Response {
		return serve(t, p, packageRequest("PUBLISH", "pbx@example.test", "x-test", callID, withBody(body)), rule)
	}
	if res := pub(sipx.RuleOpen, "p1", "c"); res.StatusCode != 403 {
		t.Fatalf("PUBLISH from whom the package does not allow: want 403:\n%s", res)
	}
	if res := pub(sipx.RulePeer, "p2", "bad"); res.StatusCode != 400 || res.Reason != "Bad Item" {
		t.Fatalf("PUBLISH of a document the package refuses: want its 400:\n%s", res)
	}
	if res := pub(sipx.RulePeer, "p3", "c"); res.StatusCode != 200 || res.GetHeader("SIP-ETag") == nil {
		t.Fatalf("PUBLISH by a trusted peer: want 200 with SIP-ETag:\n%s", res)
	}
	if n := sent.next(t); string(n.Body()) != "partial 2 c" {
		t.Fatalf("after the PUBLISH: want the published item, version 2:\n%s", n)
	}
	if pubs, err := p.opts.Store.Publications(t.Context(), "bob@example.test", time.Now()); err != nil || len(pubs) != 0 {
		t.Fatalf("the package's publication is among presence's: %v %v", pubs, err)
	}
	select {
	case n := <-sent:
		t.Fatalf("unexpected NOTIFY:\n%s", n)
	case <-time.After(100 * time.Millisecond):
	}
}
