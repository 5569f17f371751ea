package dns

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	mdns "github.com/miekg/dns"
)

// resolveZone is what the test DNS server knows. Names not listed are NXDOMAIN; names under
// broken.example.net. answer SERVFAIL.
var resolveZone = []string{
	// Plain SIP domain: udp and tcp SRV, sips SRV, and an A record of its own.
	"_sip._udp.example.net. 60 IN SRV 10 0 5060 a.example.net.",
	"_sip._tcp.example.net. 60 IN SRV 10 0 5062 b.example.net.",
	"_sips._tcp.example.net. 60 IN SRV 0 0 5061 tls.example.net.",
	"example.net. 60 IN A 192.0.2.100",
	"a.example.net. 60 IN A 192.0.2.1",
	"b.example.net. 60 IN A 192.0.2.2",
	"tls.example.net. 60 IN A 192.0.2.10",
	"v6.example.net. 60 IN AAAA 2001:db8::6",

	// No SRV at all: A/AAAA fallback.
	"nosrv.example.net. 60 IN A 198.51.100.1",

	// Priorities given out of order, one record each: a fixed order.
	"_sip._udp.prio.example.net. 60 IN SRV 30 5 5090 c.example.net.",
	"_sip._udp.prio.example.net. 60 IN SRV 10 5 5070 a.example.net.",
	"_sip._udp.prio.example.net. 60 IN SRV 20 5 5080 b.example.net.",
	"c.example.net. 60 IN A 192.0.2.3",

	// Every SRV record says "not available": no fallback to the A record.
	"_sip._udp.dot.example.net. 60 IN SRV 0 0 0 .",
	"_sip._tcp.dot.example.net. 60 IN SRV 0 0 0 .",
	"dot.example.net. 60 IN A 198.51.100.9",

	// udp not available, tcp is.
	"_sip._udp.halfdot.example.net. 60 IN SRV 0 0 0 .",
	"_sip._tcp.halfdot.example.net. 60 IN SRV 0 0 5060 b.example.net.",

	// An SRV target with only AAAA, one that does not exist, and one that fails.
	"_sip._udp.six.example.net. 60 IN SRV 10 0 5060 ghost.example.net.",
	"_sip._udp.six.example.net. 60 IN SRV 20 0 5060 v6.example.net.",
	"_sip._udp.ghosts.example.net. 60 IN SRV 10 0 5060 ghost.example.net.",
	"_sip._udp.failing.example.net. 60 IN SRV 10 0 5060 host.broken.example.net.",

	// Weighted records: priority 10 with weights 100 and 300, priority 20 with 5 and 5.
	"_sip._udp.weights.example.net. 60 IN SRV 10 100 5060 w1.example.net.",
	"_sip._udp.weights.example.net. 60 IN SRV 10 300 5060 w2.example.net.",
	"_sip._udp.weights.example.net. 60 IN SRV 20 5 5060 w3.example.net.",
	"_sip._udp.weights.example.net. 60 IN SRV 20 5 5060 w4.example.net.",
	"w1.example.net. 60 IN A 203.0.113.1",
	"w2.example.net. 60 IN A 203.0.113.2",
	"w3.example.net. 60 IN A 203.0.113.3",
	"w4.example.net. 60 IN A 203.0.113.4",
}

// resolveDNS is an authoritative DNS server on 127.0.0.1 (UDP) serving resolveZone and counting
// the queries it gets.
type resolveDNS struct {
	addr  string
	zone  map[string][]mdns.RR // owner name, lower case and rooted
	mu    sync.Mutex
	count map[string]int // "name TYPE" → queries
}

func startResolveDNS(t *testing.T) *resolveDNS {
	t.Helper()
	d := &resolveDNS{zone: make(map[string][]mdns.RR), count: make(map[string]int)}
	for _, s := range resolveZone {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("zone record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.zone[name] = append(d.zone[name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("test DNS server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("test DNS server shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Logf("test DNS server: %v", err)
		}
	})
	return d
}

func (d *resolveDNS) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
	} else {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		d.mu.Lock()
		d.count[name+" "+mdns.TypeToString[q.Qtype]]++
		d.mu.Unlock()
		rrs, ok := d.zone[name]
		switch {
		case strings.HasSuffix(name, "broken.example.net."):
			m.Rcode = mdns.RcodeServerFailure
		case !ok:
			m.Rcode = mdns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	// A failed write shows up in the test as a resolver timeout.
	_ = w.WriteMsg(m)
}

// queries returns how many queries the server got, in total and of type qtype ("" for all).
func (d *resolveDNS) queries(qtype string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for k, c := range d.count {
		if qtype == "" || strings.HasSuffix(k, " "+qtype) {
			n += c
		}
	}
	return n
}

func (d *resolveDNS) resolver(t *testing.T) *Resolver {
	t.Helper()
	r := NewResolver(d.addr, time.Second)
	r.intN = rand.New(rand.NewPCG(1, 2)).IntN
	return r
}

func resolveTestURI(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

func resolveErrText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func resolveTargetStrings(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

func TestResolve(t *testing.T) {
	d := startResolveDNS(t)
	tests := []struct {
		name    string
		uri     string
		want    []string
		wantErr error
		// noQuery: no DNS query at all; noSRV: no SRV query.
		noQuery, noSRV bool
	}{
		{name: "IPv4 literal", uri: "sip:bob@192.0.2.7", want: []string{"udp 192.0.2.7:5060"}, noQuery: true},
		{name: "IPv4 literal port and transport", uri: "sip:bob@192.0.2.7:5080;transport=TCP", want: []string{"tcp 192.0.2.7:5080"}, noQuery: true},
		{name: "IPv6 literal sips", uri: "sips:bob@[2001:db8::7]", want: []string{"tls [2001:db8::7]:5061"}, noQuery: true},
		{name: "IPv4 literal transport=tls", uri: "sip:bob@192.0.2.7;transport=tls", want: []string{"tls 192.0.2.7:5061"}, noQuery: true},
		{name: "maddr literal", uri: "sip:bob@example.net;maddr=192.0.2.55", want: []string{"udp 192.0.2.55:5060"}, noQuery: true},
		{name: "explicit port: A only", uri: "sip:bob@example.net:5070", want: []string{"udp 192.0.2.100:5070"}, noSRV: true},
		{name: "explicit port sips", uri: "sips:bob@example.net:5071", want: []string{"tls 192.0.2.100:5071"}, noSRV: true},
		{name: "explicit port and transport", uri: "sip:bob@example.net:5072;transport=tcp", want: []string{"tcp 192.0.2.100:5072"}, noSRV: true},
		{name: "no port: udp then tcp SRV", uri: "sip:bob@example.net", want: []string{"udp 192.0.2.1:5060", "tcp 192.0.2.2:5062"}},
		{name: "rooted, upper-case host", uri: "sip:bob@EXAMPLE.net.", want: []string{"udp 192.0.2.1:5060", "tcp 192.0.2.2:5062"}},
		{name: "transport=tcp: _sip._tcp", uri: "sip:bob@example.net;transport=tcp", want: []string{"tcp 192.0.2.2:5062"}},
		{name: "transport=udp: _sip._udp", uri: "sip:bob@example.net;transport=udp", want: []string{"udp 192.0.2.1:5060"}},
		{name: "sips: _sips._tcp", uri: "sips:bob@example.net", want: []string{"tls 192.0.2.10:5061"}},
		{name: "sips transport=tcp: _sips._tcp", uri: "sips:bob@example.net;transport=tcp", want: []string{"tls 192.0.2.10:5061"}},
		{name: "transport=tls: _sips._tcp", uri: "sip:bob@example.net;transport=tls", want: []string{"tls 192.0.2.10:5061"}},
		{name: "no SRV: A fallback udp", uri: "sip:bob@nosrv.example.net", want: []string{"udp 198.51.100.1:5060"}},
		{name: "no SRV: A fallback tcp", uri: "sip:bob@nosrv.example.net;transport=tcp", want: []string{"tcp 198.51.100.1:5060"}},
		{name: "no SRV: A fallback sips", uri: "sips:bob@nosrv.example.net", want: []string{"tls 198.51.100.1:5061"}},
		{name: "SRV priority order", uri: "sip:bob@prio.example.net;transport=udp",
			want: []string{"udp 192.0.2.1:5070", "udp 192.0.2.2:5080", "udp 192.0.2.3:5090"}},
		{name: "SRV target AAAA only, missing target skipped", uri: "sip:bob@six.example.net", want: []string{"udp [2001:db8::6]:5060"}},
		{name: "udp SRV \".\": tcp only", uri: "sip:bob@halfdot.example.net", want: []string{"tcp 192.0.2.2:5060"}},
		{name: "all SRV \".\": no A fallback", uri: "sip:bob@dot.example.net", wantErr: ErrNoTargets},
		{name: "SRV target does not exist", uri: "sip:bob@ghosts.example.net", wantErr: ErrNoTargets},
		{name: "NXDOMAIN", uri: "sip:bob@missing.example.net", wantErr: ErrNoTargets},
		{name: "NXDOMAIN explicit port", uri: "sip:bob@missing.example.net:5060", wantErr: ErrNoTargets},
		{name: "SERVFAIL", uri: "sip:bob@broken.example.net", wantErr: ErrDNSUnavailable},
		{name: "SERVFAIL explicit port", uri: "sip:bob@broken.example.net:5060", wantErr: ErrDNSUnavailable},
		{name: "SERVFAIL on SRV target", uri: "sip:bob@failing.example.net", wantErr: ErrDNSUnavailable},
		{name: ".invalid refused", uri: "sip:df7jal23ls0d@a8s7df.invalid;transport=udp", wantErr: ErrUnresolvable, noQuery: true},
		{name: ".invalid WebSocket contact", uri: "sip:df7jal23ls0d@a8s7df.invalid;transport=ws", wantErr: ErrUnresolvable, noQuery: true},
		{name: "ws transport", uri: "sip:bob@example.net;transport=ws", wantErr: ErrUnresolvable, noQuery: true},
		{name: "sips over udp", uri: "sips:bob@example.net;transport=udp", wantErr: ErrUnresolvable, noQuery: true},
		{name: "tel scheme", uri: "tel:+15551234567", wantErr: ErrUnresolvable, noQuery: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := d.resolver(t)
			before, beforeSRV := d.queries(""), d.queries("SRV")
			got, err := r.Resolve(t.Context(), resolveTestURI(t, tc.uri))
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("Resolve(%s) error = %v, want %v", tc.uri, err, tc.wantErr)
			}
			if gotS := resolveTargetStrings(got); !slices.Equal(gotS, tc.want) {
				t.Errorf("Resolve(%s) = %q, want %q", tc.uri, gotS, tc.want)
			}
			if n := d.queries("") - before; tc.noQuery && n != 0 {
				t.Errorf("%d DNS queries, want none", n)
			}
			if n := d.queries("SRV") - beforeSRV; tc.noSRV && n != 0 {
				t.Errorf("%d SRV queries, want none", n)
			}
		})
	}
}

// TestResolveSRVWeights checks RFC 2782 ordering over many calls on one cached answer: the
// priority groups never mix, and within a group the first record is drawn in proportion to its
// weight (the seeded draw makes the count exact from run to run).
func TestResolveSRVWeights(t *testing.T) {
	d := startResolveDNS(t)
	r := d.resolver(t)
	uri := resolveTestURI(t, "sip:bob@weights.example.net;transport=udp")
	const n = 4000
	first := map[string]int{}
	seen := map[string]bool{}
	queries := 0
	for i := range n {
		got, err := r.Resolve(t.Context(), uri)
		if err != nil {
			t.Fatal(err)
		}
		s := resolveTargetStrings(got)
		if len(s) != 4 {
			t.Fatalf("got %q, want 4 targets", s)
		}
		high, low := slices.Sorted(slices.Values(s[:2])), slices.Sorted(slices.Values(s[2:]))
		if !slices.Equal(high, []string{"udp 203.0.113.1:5060", "udp 203.0.113.2:5060"}) ||
			!slices.Equal(low, []string{"udp 203.0.113.3:5060", "udp 203.0.113.4:5060"}) {
			t.Fatalf("got %q: priority 10 targets must come before priority 20 ones", s)
		}
		first[s[0]]++
		seen[s[2]] = true
		if i == 0 {
			queries = d.queries("")
		}
	}
	// RFC 2782 draws in [0, sum] inclusive: weight 300 of 400 wins 300/401 of the draws.
	if frac := float64(first["udp 203.0.113.2:5060"]) / n; frac < 0.70 || frac > 0.80 {
		t.Errorf("weight-300 record first in %.3f of calls, want about 0.75", frac)
	}
	if len(seen) != 2 {
		t.Errorf("equal weights: first of priority 20 was only %v, want both records", seen)
	}
	if q := d.queries(""); q != queries {
		t.Errorf("%d queries after the first call, want none: the answers are cached", q-queries)
	}
}

func TestResolveOrderSRVZeroWeights(t *testing.T) {
	r := NewResolver("", time.Second)
	r.intN = rand.New(rand.NewPCG(3, 4)).IntN
	recs := []srvRecord{
		{target: "x", port: 1, priority: 1, weight: 0},
		{target: "y", port: 1, priority: 1, weight: 0},
		{target: ".", port: 0, priority: 0, weight: 10},
		{target: "z", port: 0, priority: 0, weight: 10}, // port 0: unusable
	}
	for range 100 {
		got := r.orderSRV(recs)
		if len(got) != 2 || got[0].target != "x" || got[1].target != "y" {
			t.Fatalf("orderSRV = %v, want x then y (all weights 0 keep the answer order)", got)
		}
	}
	if recs[0].target != "x" || recs[2].target != "." {
		t.Errorf("orderSRV modified its input: %v", recs)
	}
}

// TestResolveTimeout: a server that never answers gives ErrDNSUnavailable after the query
// timeout, not after the caller's much longer deadline.
func TestResolveTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Error(err)
		}
	})
	const timeout = 200 * time.Millisecond
	r := NewResolver(pc.LocalAddr().String(), timeout)
	for _, uri := range []string{"sip:bob@example.net", "sip:bob@example.net:5060", "sips:bob@example.net"} {
		t.Run(uri, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			got, err := r.Resolve(ctx, resolveTestURI(t, uri))
			elapsed := time.Since(start)
			if !errors.Is(err, ErrDNSUnavailable) {
				t.Fatalf("Resolve = %v, %v; want ErrDNSUnavailable", got, err)
			}
			if elapsed > 5*timeout {
				t.Errorf("took %v with a %v query timeout", elapsed, timeout)
			}
		})
	}
}

// TestResolveCanceled: a caller that gives up gets ErrDNSUnavailable wrapping its context's
// error, at once.
func TestResolveCanceled(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Error(err)
		}
	})
	r := NewResolver(pc.LocalAddr().String(), 10*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = r.Resolve(ctx, resolveTestURI(t, "sip:bob@example.net"))
	if !errors.Is(err, ErrDNSUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Resolve = %v, want ErrDNSUnavailable and context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v after the caller canceled", elapsed)
	}
}

func TestResolveCache(t *testing.T) {
	d := startResolveDNS(t)
	r := d.resolver(t)
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(dt time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(dt) }

	tests := []struct {
		name string
		uri  string
		ttl  time.Duration
	}{
		{name: "SRV and A", uri: "sip:bob@example.net;transport=tcp", ttl: dnsPositiveTTL},
		{name: "A only", uri: "sip:bob@example.net:5060", ttl: dnsPositiveTTL},
		{name: "A fallback after no SRV", uri: "sip:bob@nosrv.example.net", ttl: dnsNegativeTTL},
		{name: "NXDOMAIN", uri: "sip:bob@missing.example.net", ttl: dnsNegativeTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uri := resolveTestURI(t, tc.uri)
			resolve := func() ([]string, error) {
				got, err := r.Resolve(t.Context(), uri)
				return resolveTargetStrings(got), err
			}
			first, firstErr := resolve()
			before := d.queries("")
			second, secondErr := resolve()
			if n := d.queries("") - before; n != 0 {
				t.Errorf("second Resolve made %d queries, want 0 (cached)", n)
			}
			if !slices.Equal(first, second) || resolveErrText(secondErr) != resolveErrText(firstErr) {
				t.Errorf("cached answer %q, %v differs from %q, %v", second, secondErr, first, firstErr)
			}
			advance(tc.ttl)
			before = d.queries("")
			if _, err := resolve(); resolveErrText(err) != resolveErrText(firstErr) {
				t.Errorf("after expiry: %v, want %v", err, firstErr)
			}
			if d.queries("") == before {
				t.Errorf("no query after %v: the entry did not expire", tc.ttl)
			}
		})
	}
}

func TestResolveCacheBound(t *testing.T) {
	d := startResolveDNS(t)
	r := d.resolver(t)
	r.maxEntries = 3
	for _, host := range []string{"a", "b", "c", "tls", "v6", "w1"} {
		if _, err := r.Resolve(t.Context(), resolveTestURI(t, "sip:bob@"+host+".example.net:5060")); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		r.mu.Lock()
		n := len(r.cache)
		r.mu.Unlock()
		if n > 3 {
			t.Fatalf("cache holds %d entries, bound is 3", n)
		}
	}
}

// TestResolveConcurrent runs lookups from many goroutines on one Resolver, for the race
// detector.
func TestResolveConcurrent(t *testing.T) {
	d := startResolveDNS(t)
	r := NewResolver(d.addr, time.Second)
	uris := []sip.Uri{
		resolveTestURI(t, "sip:bob@example.net"),
		resolveTestURI(t, "sips:bob@example.net"),
		resolveTestURI(t, "sip:bob@weights.example.net"),
		resolveTestURI(t, "sip:bob@missing.example.net"),
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := r.Resolve(t.Context(), uris[(i+j)%len(uris)]); err != nil && !errors.Is(err, ErrNoTargets) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestResolveServerAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{in: "127.0.0.1:5353", want: "127.0.0.1:5353"},
		{in: "127.0.0.1", want: "127.0.0.1:53"},
		{in: "::1", want: "[::1]:53"},
		{in: "[::1]", want: "[::1]:53"},
		{in: "[::1]:5353", want: "[::1]:5353"},
		{in: "dns.example.net", want: "dns.example.net:53"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := dnsServerAddr(tc.in); got != tc.want {
				t.Errorf("dnsServerAddr(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
