package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
)

// Errors of Resolve. Each error Resolve returns wraps exactly one of them, and each wraps the
// sipx error that gives its answer (sipx.ErrorStatus, the one status table):
//
//	ErrNoTargets       404: DNS said for certain that the domain has no SIP server (NXDOMAIN,
//	                   no SRV and no A/AAAA records, or SRV records that all say "."). Asking
//	                   again cannot help, so not 503.
//	ErrDNSUnavailable  503: a query timed out, the server answered SERVFAIL or REFUSED, or it
//	                   could not be reached; a later try may work. The cause is wrapped too, so
//	                   errors.Is(err, context.Canceled) tells that the caller gave up.
//	ErrUnresolvable    404, like any next hop that cannot exist: the URI names nothing DNS can
//	                   locate, and no query was made: a host under .invalid (RFC 7118 WebSocket
//	                   clients, reachable only over their flow), a transport we cannot open (ws,
//	                   wss, sctp, sips over udp), or a scheme other than sip and sips (the proxy
//	                   answers 416 for that before asking).
var (
	ErrNoTargets      = fmt.Errorf("dns: no SIP server found: %w", sipx.ErrDomainNotFound)
	ErrDNSUnavailable = fmt.Errorf("dns: lookup failed: %w", sipx.ErrNextHopUnresolvable)
	ErrUnresolvable   = fmt.Errorf("dns: URI cannot be resolved: %w", sipx.ErrNoRoute)
)

// Bounds of the resolver. The cache lifetimes are fixed because net.Resolver does not report
// record TTLs: an answer is kept for at most dnsPositiveTTL whatever its TTL, so a DNS change is
// seen within that time. The fan-out bounds keep a broken or hostile zone from turning one
// request into hundreds of queries and connection attempts.
const (
	dnsDefaultTimeout  = 2 * time.Second
	dnsPositiveTTL     = 30 * time.Second // answers with records
	dnsNegativeTTL     = 10 * time.Second // NXDOMAIN and no-data answers
	dnsMaxCacheEntries = 1024
	dnsMaxSRVRecords   = 32 // per SRV name, lowest priorities kept
	dnsMaxSRVHosts     = 8  // distinct SRV target names looked up per Resolve
	dnsMaxTargets      = 16 // targets returned per Resolve
)

// Target is one place to send a request: transport (udp, tcp or tls), IP address and port.
type Target struct {
	Transport string
	Addr      netip.AddrPort
}

// String returns the target as "udp 192.0.2.1:5060", for logs.
func (t Target) String() string { return t.Transport + " " + t.Addr.String() }

// Resolver locates the SIP server of a URI per RFC 3263 §4 (without NAPTR: SRV, then A/AAAA).
// It caches answers for a short time and is safe for concurrent use.
type Resolver struct {
	res     *net.Resolver
	timeout time.Duration

	// Replaced by tests: the source of SRV weight draws (math/rand/v2's IntN is safe for
	// concurrent use) and the clock of the cache.
	intN func(n int) int
	now  func() time.Time

	mu         sync.Mutex
	cache      map[string]dnsCacheEntry // key: "SRV name" or "IP name", name lower-case, unrooted
	maxEntries int
}

// dnsCacheEntry is one cached answer. Empty slices mean the name had no such records.
type dnsCacheEntry struct {
	srv     []srvRecord
	addrs   []netip.Addr
	expires time.Time
}

// srvRecord is one SRV record with a lower-case, unrooted target ("." stays ".").
type srvRecord struct {
	target   string
	port     uint16
	priority uint16
	weight   uint16
}

// NewResolver returns a Resolver that asks the servers of the system's resolv.conf when server
// is "", and only the DNS server at server ("HOST:PORT"; port 53 when HOST is given alone)
// otherwise, as the -dns flag sets. Each DNS query gets timeout; zero or less means 2 s.
//
// Lookups use Go's own resolver (PreferGo; it still reads resolv.conf, nsswitch.conf and
// /etc/hosts), never libc's, whose lookups cannot be canceled.
func NewResolver(server string, timeout time.Duration) *Resolver {
	if timeout <= 0 {
		timeout = dnsDefaultTimeout
	}
	if server != "" {
		server = dnsServerAddr(server)
	}
	return &Resolver{
		res:        &net.Resolver{PreferGo: true, Dial: dnsDial(server)},
		timeout:    timeout,
		intN:       rand.IntN,
		now:        time.Now,
		cache:      make(map[string]dnsCacheEntry),
		maxEntries: dnsMaxCacheEntries,
	}
}

// dnsDial returns the Dial function of the Go resolver: it connects to server (when not "")
// instead of the resolv.conf server Go picked, over udp or tcp as Go chooses (tcp after a
// truncated answer). Go's resolver bounds a query by the context's deadline only, not by its
// cancellation, so the connection is also made to fail at once when ctx is canceled: a request
// whose transaction died does not wait out the query timeout.
func dnsDial(server string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if server != "" {
			address = server
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() {
			_ = c.SetDeadline(time.Unix(1, 0)) // an error means c is closed already
		})
		// Go's resolver tells a UDP connection from a stream by its net.PacketConn methods.
		if uc, ok := c.(*net.UDPConn); ok {
			return &dnsUDPConn{UDPConn: uc, stop: stop}, nil
		}
		return &dnsStreamConn{Conn: c, stop: stop}, nil
	}
}

// dnsUDPConn and dnsStreamConn stop the cancellation watch of dnsDial when closed.
type dnsUDPConn struct {
	*net.UDPConn
	stop func() bool
}

func (c *dnsUDPConn) Close() error { c.stop(); return c.UDPConn.Close() }

type dnsStreamConn struct {
	net.Conn
	stop func() bool
}

func (c *dnsStreamConn) Close() error { c.stop(); return c.Conn.Close() }

// dnsServerAddr adds port 53 to a DNS server address that has none.
func dnsServerAddr(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "53")
}

// srvService is one SRV name to query and the transport its records reach.
type srvService struct {
	name      string
	transport string
}

// Resolve returns the targets to try, in order, for a request to uri, per RFC 3263 §4:
//
//   - The target host is the maddr parameter if present, else the URI host.
//   - An IP address gives that address, with no DNS query: port from the URI, else 5060 (5061
//     for tls); transport from the transport parameter, else udp (tls for sips).
//   - A name with a port gives its A/AAAA addresses at that port.
//   - A name with a transport parameter gives the SRV records for that transport
//     (_sip._udp, _sip._tcp, or _sips._tcp for tls and for sips URIs).
//   - A name with neither gives the SRV records of _sips._tcp for sips URIs, and of _sip._udp
//     then _sip._tcp for sip URIs (no NAPTR query: RFC 3263 §4.1 then falls back to SRV).
//   - With no SRV records, the name's A/AAAA addresses at the default port and transport. SRV
//     records whose targets are all "." (RFC 2782: not available) give no fallback.
//
// SRV records are ordered by priority and, within a priority, by RFC 2782's weighted random
// draw, anew on every call. Each record gives its target's addresses in the resolver's order
// (IPv4 and IPv6 both: the caller skips families it cannot reach). Duplicates are dropped and
// at most 16 targets are returned. The error wraps ErrNoTargets, ErrDNSUnavailable or
// ErrUnresolvable. Hosts under .invalid are never looked up.
func (r *Resolver) Resolve(ctx context.Context, uri sip.Uri) ([]Target, error) {
	var secure bool
	switch strings.ToLower(uri.Scheme) {
	case "", "sip":
	case "sips":
		secure = true
	default:
		return nil, fmt.Errorf("%w: scheme %q", ErrUnresolvable, uri.Scheme)
	}
	host := uri.Host
	if maddr, ok := uriParam(uri.UriParams, "maddr"); ok && maddr != "" {
		host = maddr
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return nil, fmt.Errorf("%w: no host in %s", ErrUnresolvable, uri.String())
	}
	transport, explicit, err := resolveTransport(uri.UriParams, secure)
	if err != nil {
		return nil, err
	}
	if uri.Port < 0 || uri.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrUnresolvable, uri.Port)
	}
	port := uint16(uri.Port)
	if port == 0 {
		port = resolvePort(transport)
	}

	if ip, err := netip.ParseAddr(host); err == nil {
		return []Target{{Transport: transport, Addr: netip.AddrPortFrom(ip.Unmap(), port)}}, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "invalid" || strings.HasSuffix(name, ".invalid") {
		return nil, fmt.Errorf("%w: %s: .invalid names are never looked up (RFC 6761)", ErrUnresolvable, host)
	}
	if uri.Port != 0 {
		return r.hostTargets(ctx, name, transport, port)
	}

	var svcs []srvService
	switch {
	case transport == "tls":
		svcs = []srvService{{"_sips._tcp." + name, "tls"}}
	case explicit:
		svcs = []srvService{{"_sip._" + transport + "." + name, transport}}
	default:
		svcs = []srvService{{"_sip._udp." + name, "udp"}, {"_sip._tcp." + name, "tcp"}}
	}
	targets, found, err := r.srvTargets(ctx, svcs)
	switch {
	case len(targets) > 0:
		return targets, nil
	case err != nil:
		return nil, err
	case found:
		return nil, fmt.Errorf("%w: %s: SRV records name no reachable host", ErrNoTargets, name)
	}
	return r.hostTargets(ctx, name, transport, port)
}

// srvTargets queries svcs in parallel and returns their targets, in svcs order. found reports
// whether any SRV record exists (then RFC 3263 §4.2 allows no A/AAAA fallback); err is a
// lookup failure, returned only when there are no targets.
func (r *Resolver) srvTargets(ctx context.Context, svcs []srvService) (targets []Target, found bool, err error) {
	type answer struct {
		recs []srvRecord
		err  error
	}
	answers := make([]answer, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Go(func() { answers[i].recs, answers[i].err = r.lookupSRV(ctx, s.name) })
	}
	wg.Wait()

	type pick struct {
		rec       srvRecord
		transport string
	}
	var picks []pick
	var hosts []string
	for i, a := range answers {
		if a.err != nil {
			err = cmp.Or(err, a.err)
			continue
		}
		found = found || len(a.recs) > 0
		for _, rec := range r.orderSRV(a.recs) {
			if !slices.Contains(hosts, rec.target) {
				if len(hosts) == dnsMaxSRVHosts {
					continue
				}
				hosts = append(hosts, rec.target)
			}
			picks = append(picks, pick{rec, svcs[i].transport})
		}
	}
	if len(picks) == 0 {
		return nil, found, err
	}

	// Look each distinct target host up once, all at the same time.
	addrs := make([][]netip.Addr, len(hosts))
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Go(func() { addrs[i], errs[i] = r.lookupHost(ctx, h) })
	}
	wg.Wait()

	for _, p := range picks {
		for _, a := range addrs[slices.Index(hosts, p.rec.target)] {
			targets = appendNewTarget(targets, Target{Transport: p.transport, Addr: netip.AddrPortFrom(a, p.rec.port)})
		}
	}
	if len(targets) == 0 {
		for _, e := range errs {
			err = cmp.Or(err, e)
		}
	}
	return targets, found, err
}

// hostTargets returns name's A/AAAA addresses at port over transport.
func (r *Resolver) hostTargets(ctx context.Context, name, transport string, port uint16) ([]Target, error) {
	addrs, err := r.lookupHost(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s: no SRV, A or AAAA records", ErrNoTargets, name)
	}
	var targets []Target
	for _, a := range addrs {
		targets = appendNewTarget(targets, Target{Transport: transport, Addr: netip.AddrPortFrom(a, port)})
	}
	return targets, nil
}

// appendNewTarget appends t unless it is already in ts or ts is full.
func appendNewTarget(ts []Target, t Target) []Target {
	if len(ts) == dnsMaxTargets || slices.Contains(ts, t) {
		return ts
	}
	return append(ts, t)
}

// orderSRV returns the usable records of recs (target not ".", port not 0) in RFC 2782 order:
// by priority, then within each priority by repeated weighted random draws. recs is not
// modified: the cache holds it.
func (r *Resolver) orderSRV(recs []srvRecord) []srvRecord {
	live := make([]srvRecord, 0, len(recs))
	for _, rec := range recs {
		if rec.target != "." && rec.port != 0 {
			live = append(live, rec)
		}
	}
	slices.SortStableFunc(live, func(a, b srvRecord) int { return cmp.Compare(a.priority, b.priority) })
	out := make([]srvRecord, 0, len(live))
	for len(live) > 0 {
		n := 1
		for n < len(live) && live[n].priority == live[0].priority {
			n++
		}
		group := live[:n]
		live = live[n:]
		// "Arrange all SRV RRs (that have not been ordered yet) in any order, except that all
		// those with weight 0 are placed at the beginning of the list."
		slices.SortStableFunc(group, func(a, b srvRecord) int { return cmp.Compare(min(a.weight, 1), min(b.weight, 1)) })
		for len(group) > 0 {
			sum := 0
			for _, rec := range group {
				sum += int(rec.weight)
			}
			// A uniform number in [0, sum]; the first record whose running sum reaches it.
			draw, run, i := r.intN(sum+1), 0, 0
			for ; i < len(group)-1; i++ {
				run += int(group[i].weight)
				if run >= draw {
					break
				}
			}
			out = append(out, group[i])
			group = slices.Delete(group, i, i+1)
		}
	}
	return out
}

// lookupSRV returns the SRV records of name (no records: nil, nil). Errors wrap
// ErrDNSUnavailable.
func (r *Resolver) lookupSRV(ctx context.Context, name string) ([]srvRecord, error) {
	key := "SRV " + name
	if e, ok := r.cached(key); ok {
		return e.srv, nil
	}
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, srvs, err := r.res.LookupSRV(qctx, "", "", name+".")
	// With malformed records among good ones, LookupSRV returns the good ones and an error.
	if err != nil && len(srvs) == 0 {
		if dnsNotFound(err) {
			r.store(key, dnsCacheEntry{}, dnsNegativeTTL)
			return nil, nil
		}
		return nil, fmt.Errorf("%w: SRV %s: %w", ErrDNSUnavailable, name, err)
	}
	// Keep the lowest priorities of an oversized answer.
	slices.SortStableFunc(srvs, func(a, b *net.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	recs := make([]srvRecord, 0, min(len(srvs), dnsMaxSRVRecords))
	for _, s := range srvs[:min(len(srvs), dnsMaxSRVRecords)] {
		target := strings.ToLower(s.Target)
		if target != "." {
			target = strings.TrimSuffix(target, ".")
		}
		recs = append(recs, srvRecord{target: target, port: s.Port, priority: s.Priority, weight: s.Weight})
	}
	ttl := dnsPositiveTTL
	if len(recs) == 0 {
		ttl = dnsNegativeTTL
	}
	r.store(key, dnsCacheEntry{srv: recs}, ttl)
	return recs, nil
}

// lookupHost returns the A and AAAA addresses of name (no records: nil, nil). Errors wrap
// ErrDNSUnavailable.
func (r *Resolver) lookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	key := "IP " + name
	if e, ok := r.cached(key); ok {
		return e.addrs, nil
	}
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ips, err := r.res.LookupNetIP(qctx, "ip", name+".")
	if err != nil {
		if dnsNotFound(err) {
			r.store(key, dnsCacheEntry{}, dnsNegativeTTL)
			return nil, nil
		}
		return nil, fmt.Errorf("%w: A/AAAA %s: %w", ErrDNSUnavailable, name, err)
	}
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if ip = ip.Unmap(); !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	ttl := dnsPositiveTTL
	if len(addrs) == 0 {
		ttl = dnsNegativeTTL
	}
	r.store(key, dnsCacheEntry{addrs: addrs}, ttl)
	return addrs, nil
}

// dnsNotFound reports whether err says the name or its records do not exist (NXDOMAIN, no data,
// or a name that is not a valid domain name), rather than that the lookup failed.
func dnsNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// cached returns the unexpired cache entry of key.
func (r *Resolver) cached(key string) (dnsCacheEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[key]
	if !ok || !r.now().Before(e.expires) {
		return dnsCacheEntry{}, false
	}
	return e, true
}

// store caches e under key for ttl. When the cache is full it first drops expired entries,
// then, if still full, an arbitrary one.
func (r *Resolver) store(key string, e dnsCacheEntry, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	e.expires = now.Add(ttl)
	if _, ok := r.cache[key]; !ok && len(r.cache) >= r.maxEntries {
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.maxEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// resolveTransport returns the transport a URI asks for: its transport parameter (tcp means tls
// in a sips URI) or, with explicit false, udp for sip and tls for sips.
func resolveTransport(params sip.HeaderParams, secure bool) (transport string, explicit bool, err error) {
	v, ok := uriParam(params, "transport")
	if !ok || v == "" {
		if secure {
			return "tls", false, nil
		}
		return "udp", false, nil
	}
	switch strings.ToLower(v) {
	case "udp":
		if !secure {
			return "udp", true, nil
		}
	case "tcp":
		if secure {
			return "tls", true, nil
		}
		return "tcp", true, nil
	case "tls":
		return "tls", true, nil
	}
	return "", false, fmt.Errorf("%w: transport %q", ErrUnresolvable, v)
}

// uriParam returns the value of the URI parameter key, whose name is case-insensitive (RFC 3261
// §19.1.4).
func uriParam(params sip.HeaderParams, key string) (string, bool) {
	for _, kv := range params {
		if strings.EqualFold(kv.K, key) {
			return kv.V, true
		}
	}
	return "", false
}

// resolvePort is the port of transport when neither the URI nor SRV gives one.
func resolvePort(transport string) uint16 {
	if transport == "tls" {
		return 5061
	}
	return 5060
}
