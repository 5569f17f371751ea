package presence

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
)

type noBindings struct{}

func (noBindings) Lookup(context.Context, string) ([]storage.Binding, error) { return nil, nil }

type noSender struct{}

func (noSender) SendInDialog(context.Context, *sip.Request, *storage.Subscription) (int, error) {
	return 200, nil
}

// withPolicy is the default configuration with policy.
func withPolicy(policy string) Config {
	c := DefaultConfig()
	c.Policy = policy
	return c
}

// testDeps fills what the wiring hands from other sections with simpled's defaults (the
// registrar's expiry limits and sweep interval, limits.max_body_size).
func testDeps(d Deps) Deps {
	d.MinExpires, d.DefaultExpires, d.MaxExpires = 60, 3600, 7200
	d.MaxBodySize = 64 << 10
	d.SweepInterval = time.Second
	return d
}

func newTestPresence(t testing.TB, policy string) *Presence {
	t.Helper()
	p, err := Setup(withPolicy(policy), testDeps(Deps{
		Domains: []string{"example.test"}, Store: memory.New(), Locator: noBindings{}, Sender: noSender{},
		Contact: func(string, string) string { return "sip:127.0.0.1:5060" },
		IsOurs:  func(h string) bool { return h == "127.0.0.1" },
	}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDecide: the most specific rule wins (watcher, then its domain), then the policy; a
// presentity always watches itself.
func TestDecide(t *testing.T) {
	ctx := t.Context()
	for _, c := range []struct {
		policy, watcher, want string
	}{
		{PolicySameDomain, "carol@example.test", storage.RuleAllow},
		{PolicySameDomain, "eve@other.test", storage.RulePending},
		{PolicyAllow, "eve@other.test", storage.RuleAllow},
		{PolicyConfirm, "carol@example.test", storage.RulePending},
		{PolicyConfirm, "bob@example.test", storage.RuleAllow}, // itself
	} {
		p := newTestPresence(t, c.policy)
		if got, err := p.decide(ctx, "bob@example.test", c.watcher); err != nil || got != c.want {
			t.Errorf("%s, %s: %q %v, want %q", c.policy, c.watcher, got, err, c.want)
		}
	}

	p := newTestPresence(t, PolicyAllow)
	if err := p.SetRule(ctx, "bob@example.test", "other.test", storage.RuleBlock); err != nil {
		t.Fatal(err)
	}
	if err := p.SetRule(ctx, "sip:bob@example.test", "sip:friend@OTHER.test", storage.RulePoliteBlock); err != nil {
		t.Fatal(err)
	}
	for watcher, want := range map[string]string{
		"eve@other.test":     storage.RuleBlock,       // the domain's rule
		"friend@other.test":  storage.RulePoliteBlock, // its own rule, domain lower-cased
		"carol@example.test": storage.RuleAllow,       // the policy
	} {
		if got, _ := p.decide(ctx, "bob@example.test", watcher); got != want {
			t.Errorf("%s: %q, want %q", watcher, got, want)
		}
	}
	for _, bad := range [][3]string{
		{"bob@example.test", "eve@other.test", "maybe"},
		{"bob@elsewhere.test", "eve@other.test", "allow"},
		{"bob@example.test", "eve@", "allow"},
		{"bob@example.test", "a b@c.test", "allow"},
		{"bob@example.test", "x@c.test\r\nX: y", "allow"},
	} {
		if err := p.SetRule(ctx, bad[0], bad[1], bad[2]); !errors.Is(err, ErrBadRule) {
			t.Errorf("SetRule(%q) = %v, want ErrBadRule", bad, err)
		}
	}
	if err := p.DeleteRule(ctx, "bob@example.test", "nobody@x.test"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteRule of a missing rule = %v, want ErrNotFound", err)
	}
}

func request(t *testing.T, headers ...string) *sip.Request {
	t.Helper()
	raw := "SUBSCRIBE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
		"From: <sip:carol@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n" +
		strings.Join(headers, "\r\n")
	if len(headers) > 0 {
		raw += "\r\n"
	}
	m, err := sip.ParseMessage([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestAccepts: no Accept means the package's type (RFC 3856 §6.7); wildcards and parameters
// are understood; other types are not served.
func TestAccepts(t *testing.T) {
	for _, c := range []struct {
		accept []string
		want   bool
	}{
		{nil, true},
		{[]string{"Accept: application/pidf+xml"}, true},
		{[]string{"Accept: application/xpidf+xml, application/pidf+xml;q=0.5"}, true},
		{[]string{"Accept: application/*"}, true},
		{[]string{"Accept: */*"}, true},
		{[]string{"Accept: application/xpidf+xml"}, false},
		{[]string{"Accept: text/plain", "Accept: application/pidf+xml"}, true},
	} {
		if got := accepts(request(t, c.accept...), TypePIDF); got != c.want {
			t.Errorf("%q: %v, want %v", c.accept, got, c.want)
		}
	}
}

// TestExpiry: absent → default, 0 stays 0 (remove, fetch), below the minimum → 423, above the
// maximum → clamped, garbage → error.
func TestExpiry(t *testing.T) {
	p := newTestPresence(t, PolicySameDomain)
	for _, c := range []struct {
		hdr    string
		secs   int
		ok     bool
		hasErr bool
	}{
		{"", 3600, true, false},
		{"Expires: 0", 0, true, false},
		{"Expires: 30", 0, false, false},
		{"Expires: 600", 600, true, false},
		{"Expires: 99999999999", 7200, true, false},
		{"Expires: soon", 0, false, true},
	} {
		var hs []string
		if c.hdr != "" {
			hs = append(hs, c.hdr)
		}
		secs, ok, err := p.expiry(request(t, hs...))
		if secs != c.secs || ok != c.ok || (err != nil) != c.hasErr {
			t.Errorf("%q: %d %v %v", c.hdr, secs, ok, err)
		}
	}
}

// TestTerminates: the answers that end a subscription (RFC 5057) and those that do not.
func TestTerminates(t *testing.T) {
	for _, code := range []int{404, 408, 481, 489, 503} {
		if !terminates(code) {
			t.Errorf("%d should end the subscription", code)
		}
	}
	for _, code := range []int{200, 202, 400, 415, 486, 500} {
		if terminates(code) {
			t.Errorf("%d should not end the subscription", code)
		}
	}
}

// TestRegistrationDocument: one open tuple per device, stable ids, closed without devices.
func TestRegistrationDocument(t *testing.T) {
	closed, err := pidf.Parse(registrationDocument("sip:bob@example.test", nil))
	if err != nil {
		t.Fatal(err)
	}
	if ts := closed.Tuples(); len(ts) != 1 || ts[0].Basic != "closed" {
		t.Fatalf("no device: %+v", ts)
	}
	bs := []storage.Binding{{Key: "<urn:uuid:1>"}, {Key: "<urn:uuid:2>"}}
	a := registrationDocument("sip:bob@example.test", bs)
	if b := registrationDocument("sip:bob@example.test", bs); string(a) != string(b) {
		t.Fatal("the same bindings give different documents")
	}
	doc, err := pidf.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	ts := doc.Tuples()
	if len(ts) != 2 || ts[0].Basic != "open" || ts[1].Basic != "open" || ts[0].ID == ts[1].ID {
		t.Fatalf("two devices: %+v", ts)
	}
	if ts[0].Contact != "sip:bob@example.test" {
		t.Errorf("contact %q: device addresses must not reach watchers", ts[0].Contact)
	}
}

// TestETagOrder: entity tags drawn later sort later, so stores ordering publications of one
// second by tag keep the PUBLISH order.
func TestETagOrder(t *testing.T) {
	a := newETag()
	time.Sleep(time.Microsecond)
	b := newETag()
	if a >= b || a == b {
		t.Errorf("%q then %q: not increasing", a, b)
	}
}
