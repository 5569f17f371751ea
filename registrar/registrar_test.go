package registrar

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	r     *Registrar
	h     sipx.Handler
	clock *clock
	bus   *storage.LocalBus
	store Store
}

func newFixture(t *testing.T, mod func(*options)) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}, bus: storage.NewLocalBus()}
	f.store = memory.New()
	opts := options{Config: DefaultConfig(), Deps: Deps{Domains: []string{"example.test"}, Store: f.store, Bus: f.bus, Now: f.clock.Now}}
	if mod != nil {
		mod(&opts)
	}
	r, err := Setup(opts.Config, opts.Deps)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	f.h = r.Plugin()(nil)
	return f
}

// register builds a REGISTER for alice with extra header lines and sends it through the stage.
func (f *fixture) register(t *testing.T, callID string, cseq int, lines ...string) *sip.Response {
	t.Helper()
	raw := "REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK" + fmt.Sprint(cseq) + callID + ";rport\r\n" +
		"From: <sip:alice@example.test>;tag=9b43\r\n" +
		"To: <sip:alice@example.test>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) +
		"Max-Forwards: 70\r\n"
	for _, l := range lines {
		raw += l + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	return f.send(t, raw)
}

func (f *fixture) send(t *testing.T, raw string) *sip.Response {
	t.Helper()
	msg, err := sipx.NewParser(1 << 20).ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	req.SetSource("127.0.0.1:25100")
	req.SetTransport("UDP")
	tx := siptest.NewServerTxRecorder(req)
	status, err := f.h.ServeSIP(context.Background(), tx, req)
	res := tx.Result()
	if len(res) != 1 {
		t.Fatalf("responses = %d (status %d, err %v), want 1", len(res), status, err)
	}
	if status != res[0].StatusCode {
		t.Errorf("stage returned %d but sent %d", status, res[0].StatusCode)
	}
	return res[0]
}

func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func TestRegisterBaresipAndLinphone(t *testing.T) {
	f := newFixture(t, nil)
	// baresip: expiry as a Contact parameter, +sip.instance, random user part, Route to us.
	res := f.register(t, "fb3293e8", 8110,
		`Contact: <sip:alice-0x5608@127.0.0.1:25100>;expires=600;+sip.instance="<urn:uuid:3d0cd413>"`,
		"Route: <sip:127.0.0.1:25060;transport=udp;lr>")
	if res.StatusCode != 200 {
		t.Fatalf("baresip REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	// linphone: Expires header, display name, second device of the same AOR.
	res = f.register(t, "linph1", 20, `Contact: "Alice" <sip:alice@127.0.0.1:25112;transport=udp>;+sip.instance="<urn:uuid:aaaa>"`, "Expires: 600")
	got := contacts(res)
	if len(got) != 2 {
		t.Fatalf("contacts = %q, want both devices", got)
	}
	for _, c := range got {
		if !strings.Contains(c, ";expires=600") {
			t.Errorf("contact %q lacks its remaining expiry", c)
		}
	}
	if !strings.Contains(strings.Join(got, "|"), `"Alice" <sip:alice@127.0.0.1:25112;transport=udp>`) {
		t.Errorf("linphone contact not returned as sent: %q", got)
	}
	if d := res.GetHeader("Date"); d == nil || d.Value() != "Mon, 23 Nov 2026 10:00:00 GMT" {
		t.Errorf("Date %v, want the clock's time", d)
	}
	// Remaining expiry counts down, and Date follows the clock.
	f.clock.Add(100 * time.Second)
	res = f.register(t, "query", 1)
	for _, c := range contacts(res) {
		if !strings.Contains(c, ";expires=500") {
			t.Errorf("after 100 s: %q, want expires=500", c)
		}
	}
	if d := res.GetHeader("Date"); d == nil || d.Value() != "Mon, 23 Nov 2026 10:01:40 GMT" {
		t.Errorf("after 100 s: Date %v, want the clock's time", d)
	}
}

func TestRegisterAnswers(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		code   int
		reason string
		header string // a header the answer must carry, "Name: value"
	}{
		{name: "too brief", lines: []string{"Contact: <sip:a@127.0.0.1:5070>", "Expires: 30"}, code: 423, header: "Min-Expires: 60"},
		{name: "too brief as param", lines: []string{"Contact: <sip:a@127.0.0.1:5070>;expires=1"}, code: 423},
		{name: "negative expires", lines: []string{"Contact: <sip:a@127.0.0.1:5070>", "Expires: -1"}, code: 400, reason: "Malformed Expires"},
		{name: "non-numeric expires param", lines: []string{"Contact: <sip:a@127.0.0.1:5070>;expires=soon"}, code: 400},
		{name: "huge expires is clamped", lines: []string{"Contact: <sip:a@127.0.0.1:5070>", "Expires: 99999999999999"}, code: 200, header: "Contact: <sip:a@127.0.0.1:5070>;expires=7200"},
		{name: "wildcard without expires 0", lines: []string{"Contact: *"}, code: 400},
		{name: "wildcard with another contact", lines: []string{"Contact: *", "Contact: <sip:a@127.0.0.1>", "Expires: 0"}, code: 400},
		{name: "wildcard", lines: []string{"Contact: *", "Expires: 0"}, code: 200},
		{name: "bad q", lines: []string{"Contact: <sip:a@127.0.0.1:5070>;q=2"}, code: 400},
		{name: "q kept", lines: []string{"Contact: <sip:a@127.0.0.1:5070>;q=0.5"}, code: 200, header: "Contact: <sip:a@127.0.0.1:5070>;expires=3600;q=0.5"},
		{name: "unparseable contact", lines: []string{"Contact: <sip:::>"}, code: 400, reason: "Malformed Contact"},
		{name: "invalid contact host", lines: []string{"Contact: <sip:a@-bad-.example.test>"}, code: 400, reason: "Invalid Contact URI"},
		{name: "ipv6 contact", lines: []string{"Contact: <sip:a@[::1]:5070>"}, code: 200, header: "Contact: <sip:a@[::1]:5070>;expires=3600"},
		{name: "non-sip contact", lines: []string{"Contact: <http://example.test/>"}, code: 400},
		{name: "unsupported require", lines: []string{"Require: foo, path"}, code: 420, header: "Unsupported: foo"},
		{name: "bad reg-id", lines: []string{`Contact: <sip:a@127.0.0.1>;+sip.instance="<urn:uuid:1>";reg-id=x`}, code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			res := f.register(t, "c1", 1, tt.lines...)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %q, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if tt.reason != "" && res.Reason != tt.reason {
				t.Errorf("reason %q, want %q", res.Reason, tt.reason)
			}
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				found := false
				for _, h := range res.GetHeaders(name) {
					found = found || h.Value() == value
				}
				if !found {
					t.Errorf("no %q in\n%s", tt.header, res)
				}
			}
		})
	}
}

func TestRegisterDomains(t *testing.T) {
	f := newFixture(t, nil)
	raw := "REGISTER sip:other.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\nCall-ID: d1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContact: <sip:a@127.0.0.1>\r\n\r\n"
	if res := f.send(t, raw); res.StatusCode != 403 {
		t.Errorf("foreign Request-URI: %d, want 403", res.StatusCode)
	}
	raw = strings.NewReplacer("sip:other.test", "sip:example.test", "<sip:alice@example.test>\r\nCall", "<sip:alice@other.test>\r\nCall").Replace(raw)
	if res := f.send(t, raw); res.StatusCode != 404 {
		t.Errorf("foreign To: %d, want 404", res.StatusCode)
	}
	raw = strings.Replace(raw, "sip:example.test SIP", "sip:127.0.0.1 SIP", 1)
	raw = strings.Replace(raw, "<sip:alice@other.test>\r\nCall", "<sip:alice@example.test>\r\nCall", 1)
	if res := f.send(t, raw); res.StatusCode != 200 {
		t.Errorf("Request-URI by IP: %d, want 200", res.StatusCode)
	}
}

func TestStaleCSeqKeepsBinding(t *testing.T) {
	f := newFixture(t, nil)
	c := "Contact: <sip:a@127.0.0.1:5070>"
	if res := f.register(t, "same", 10, c, "Expires: 600"); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	res := f.register(t, "same", 9, c, "Expires: 0")
	if res.StatusCode != 500 {
		t.Fatalf("lower CSeq on the same Call-ID: %d, want 500", res.StatusCode)
	}
	if got := contacts(f.register(t, "q", 1)); len(got) != 1 {
		t.Fatalf("binding lost after a stale request: %q", got)
	}
	// Another Call-ID (a rebooted phone) may take the binding over with any CSeq.
	if res := f.register(t, "other", 1, c, "Expires: 0"); res.StatusCode != 200 || len(contacts(res)) != 0 {
		t.Fatalf("new Call-ID removal: %d %q", res.StatusCode, contacts(res))
	}
}

func TestMaxContacts(t *testing.T) {
	for _, evict := range []bool{true, false} {
		t.Run(fmt.Sprint("evict=", evict), func(t *testing.T) {
			f := newFixture(t, func(o *options) {
				o.MaxContacts = 2
				if !evict {
					o.OnMaxContacts = "reject"
				}
			})
			for i := range 2 {
				f.register(t, fmt.Sprint("c", i), 1, fmt.Sprintf("Contact: <sip:a@127.0.0.%d>", i+1))
				f.clock.Add(time.Second)
			}
			res := f.register(t, "c9", 1, "Contact: <sip:a@127.0.0.9>")
			if !evict {
				if res.StatusCode != 403 {
					t.Fatalf("third contact with reject: %d, want 403", res.StatusCode)
				}
				return
			}
			got := strings.Join(contacts(res), "|")
			if res.StatusCode != 200 || strings.Contains(got, "127.0.0.1>") || !strings.Contains(got, "127.0.0.9") {
				t.Fatalf("evict: %d %q, want the oldest (127.0.0.1) gone", res.StatusCode, got)
			}
		})
	}
}

func TestThousandsOfContactsRefusedCheaply(t *testing.T) {
	f := newFixture(t, nil)
	var lines []string
	for i := range 3000 {
		lines = append(lines, fmt.Sprintf("Contact: <sip:a@10.0.%d.%d>", i/250, i%250))
	}
	if res := f.register(t, "many", 1, lines...); res.StatusCode != 403 {
		t.Fatalf("3000 contacts: %d, want 403", res.StatusCode)
	}
	if got := contacts(f.register(t, "q", 1)); len(got) != 0 {
		t.Fatalf("something was stored: %d bindings", len(got))
	}
}

func TestPathStoredAndEchoed(t *testing.T) {
	f := newFixture(t, nil)
	path := "<sip:edge1.example.test;lr>, <sip:edge2.example.test;lr>"
	res := f.register(t, "p", 1, "Contact: <sip:a@127.0.0.1>", "Path: "+path, "Supported: path")
	if h := res.GetHeader("Path"); h == nil || h.Value() != path {
		t.Fatalf("Path in 200 = %v, want %q", h, path)
	}
	bs, _ := f.r.Lookup(context.Background(), "alice@example.test")
	if len(bs) != 1 || len(bs[0].Path) != 2 {
		t.Fatalf("stored path = %+v", bs)
	}
	res = f.register(t, "p", 2, "Contact: <sip:a@127.0.0.1>", "Path: "+path)
	if res.GetHeader("Path") != nil {
		t.Error("Path echoed to a UA that did not say Supported: path")
	}
}

// TestPathBounded: more than five Path entries, or one over 1 KiB, is refused with a 400
// naming the fault, and nothing is stored (issue 14: a 216 KB REGISTER grew a binding to
// 2.6 MB).
func TestPathBounded(t *testing.T) {
	f := newFixture(t, nil)
	entry := "<sip:edge.example.test;lr>"
	six := strings.TrimSuffix(strings.Repeat(entry+", ", 6), ", ")
	long := "<sip:edge.example.test;lr;x=" + strings.Repeat("a", 1100) + ">"
	for _, c := range []struct {
		name   string
		paths  []string // Path header values
		reason string
	}{
		{"six entries", []string{six}, "Too Many Path Entries"},
		{"six headers", []string{entry, entry, entry, entry, entry, entry}, "Too Many Path Entries"},
		{"long entry", []string{long}, "Path Entry Too Long"},
	} {
		lines := []string{"Contact: <sip:a@127.0.0.1>"}
		for _, p := range c.paths {
			lines = append(lines, "Path: "+p)
		}
		res := f.register(t, "big"+c.name, 1, lines...)
		if res.StatusCode != 400 || !strings.HasPrefix(res.Reason, c.reason) {
			t.Errorf("%s: %d %s, want 400 %s", c.name, res.StatusCode, res.Reason, c.reason)
		}
	}
	if got := contacts(f.register(t, "q", 1)); len(got) != 0 {
		t.Fatalf("something was stored: %v", got)
	}
	five := strings.TrimSuffix(strings.Repeat(entry+", ", 5), ", ")
	if res := f.register(t, "five", 1, "Contact: <sip:a@127.0.0.1>", "Path: "+five); res.StatusCode != 200 {
		t.Fatalf("five entries: %d, want 200", res.StatusCode)
	}
}

func TestEventsAndExpirySweep(t *testing.T) {
	f := newFixture(t, nil)
	events, stop := f.bus.Subscribe(16)
	defer stop()
	f.register(t, "e", 1, "Contact: <sip:a@127.0.0.1>;expires=60")
	f.register(t, "e", 2, "Contact: <sip:a@127.0.0.1>;expires=60")
	f.register(t, "e2", 1, "Contact: <sip:b@127.0.0.2>;expires=3600")
	want := []storage.EventKind{storage.BindingAdded, storage.BindingRefreshed, storage.BindingAdded}
	for _, k := range want {
		if ev := <-events; ev.Kind != k || ev.AOR != "alice@example.test" {
			t.Fatalf("event %v %q, want %v", ev.Kind, ev.AOR, k)
		}
	}
	f.clock.Add(61 * time.Second)
	f.r.sweep(context.Background())
	select {
	case ev := <-events:
		if ev.Kind != storage.BindingExpired || ev.Binding.URI != "sip:a@127.0.0.1" {
			t.Fatalf("after expiry: %v %s", ev.Kind, ev.Binding.URI)
		}
	default:
		t.Fatal("no expiry event after the binding expired")
	}
	f.r.sweep(context.Background())
	select {
	case ev := <-events:
		t.Fatalf("second sweep fired again: %v", ev)
	default:
	}
}

func TestParseQ(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1000, "0.5": 500, "0.001": 1, "1.000": 1000} {
		if got, err := parseQ(in); err != nil || got != want {
			t.Errorf("parseQ(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"1.5", "-0.1", "x", "0.12345"} {
		if _, err := parseQ(in); err == nil {
			t.Errorf("parseQ(%q) accepted", in)
		}
	}
	formatQ := func(q int) string { return string(appendQ(nil, q)) }
	if formatQ(500) != "0.5" || formatQ(1000) != "1" || formatQ(0) != "0" || formatQ(125) != "0.125" || formatQ(70) != "0.07" {
		t.Errorf("appendQ: %s %s %s %s %s", formatQ(500), formatQ(1000), formatQ(0), formatQ(125), formatQ(70))
	}
}

func TestURIKey(t *testing.T) {
	tests := map[string]string{
		"sip:Alice@EXAMPLE.com:5070;transport=TCP;ob": "sip:Alice@example.com:5070;transport=tcp",
		"SIPS:bob@[2001:DB8::1]":                      "sips:bob@[2001:db8::1]",
		"sip:192.0.2.1;transport=":                    "sip:192.0.2.1",
	}
	for in, want := range tests {
		var u sip.Uri
		if err := sip.ParseUri(in, &u); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := uriKey(&u); got != want {
			t.Errorf("uriKey(%s) = %q, want %q", in, got, want)
		}
	}
}

// TestMetrics: results by status, binding events by kind and store latency by operation are
// counted, and a series appears only once something was counted under it.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "store_seconds"}, []string{"op"})
	f := newFixture(t, func(o *options) { o.Registerer = reg; o.StoreLatency = latency })
	f.register(t, "m1", 1, "Contact: <sip:alice@127.0.0.1:25100>")
	f.register(t, "m1", 2, "Contact: <sip:alice@127.0.0.1:25100>")
	f.register(t, "m1", 3, "Contact: <sip:alice@127.0.0.1:25100>;expires=5")
	f.register(t, "m1", 4, "Contact: <sip:alice@127.0.0.1:25100>", "Expires: soon")
	got := map[string]float64{}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			got[fam.GetName()+"{"+m.GetLabel()[0].GetValue()+"}"] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"simpled_binding_events_total{binding.added}":     1,
		"simpled_binding_events_total{binding.refreshed}": 1,
		"simpled_register_results_total{200}":             2,
		"simpled_register_results_total{400}":             1,
		"simpled_register_results_total{423}":             1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
	ch := make(chan prometheus.Metric, 10)
	latency.Collect(ch)
	if n := len(ch); n != 1 {
		t.Errorf("latency series: %d, want update_bindings alone", n)
	}
}
