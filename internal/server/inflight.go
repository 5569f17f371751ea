package server

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Names of the in-flight limits in simpled_limited_total.
const (
	limitInflight          = "inflight"
	limitInflightPerSource = "inflight_per_source"
)

// inflightRetryAfter is the Retry-After, in seconds, of a 503 for an in-flight limit: long
// enough for the requests in flight to end (a relayed MESSAGE waits up to a few seconds for
// its device), short enough that a client's next attempt is soon served.
const inflightRetryAfter = 5

// inflight bounds the requests being handled at once: in all (limits.max_inflight) and per
// source (limits.max_inflight_per_source, by sipx.SourceKey). Each request in flight
// holds a sipgo server transaction and two or three goroutines until its handler returns,
// which for a MESSAGE relayed to a device that never answers is seconds: without a bound, one
// source sending thousands of them a second holds tens of thousands of goroutines and
// hundreds of megabytes. The per-source counts live only while a source has requests in
// flight, so the table is bounded by max_inflight.
type inflight struct {
	total     atomic.Int64
	max       int64
	perSource int
	shards    [64]inflightShard
	logs      *sipx.LogGate[netip.Addr]
}

type inflightShard struct {
	mu sync.Mutex
	m  map[netip.Addr]int
}

func newInflight(max, perSource int) *inflight {
	f := &inflight{max: int64(max), perSource: perSource, logs: sipx.NewLogGate[netip.Addr](time.Minute)}
	for i := range f.shards {
		f.shards[i].m = make(map[netip.Addr]int)
	}
	return f
}

func (f *inflight) shard(k netip.Addr) *inflightShard {
	b := k.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9E3779B97F4A7C15
	return &f.shards[h>>58]
}

// acquire takes a slot for a request from k (a SourceKey; invalid: unknown source, counted in
// the total only), unless perSource is false (a trusted peer). It returns the limit that
// refused it, or "".
func (f *inflight) acquire(k netip.Addr, perSource bool) string {
	if f.total.Add(1) > f.max {
		f.total.Add(-1)
		return limitInflight
	}
	if !perSource || !k.IsValid() {
		return ""
	}
	s := f.shard(k)
	s.mu.Lock()
	if s.m[k] >= f.perSource {
		s.mu.Unlock()
		f.total.Add(-1)
		return limitInflightPerSource
	}
	s.m[k]++
	s.mu.Unlock()
	return ""
}

// release gives back what acquire took.
func (f *inflight) release(k netip.Addr, perSource bool) {
	f.total.Add(-1)
	if !perSource || !k.IsValid() {
		return
	}
	s := f.shard(k)
	s.mu.Lock()
	if s.m[k]--; s.m[k] <= 0 {
		delete(s.m, k)
	}
	s.mu.Unlock()
}

// admitInflight wraps the sipgo handler h with the in-flight bounds of f: a request beyond
// either is answered 503 with Retry-After at once, before any stage or store sees it.
// Trusted peers count in the total only.
func (s *Server) admitInflight(f *inflight, h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		var k netip.Addr
		ap, err := netip.ParseAddrPort(req.Source())
		if err == nil {
			k = sipx.SourceKey(ap.Addr())
		}
		perSource := true
		if err == nil && !s.trusted.Empty() {
			var names []string
			if tp := strings.ToLower(req.Transport()); s.opts.TLSClientCA != "" && (tp == "tls" || tp == "wss") {
				names = s.peerNames(tp, req.Source())
			}
			perSource = !s.trusted.TrustsSource(ap.Addr(), names)
		}
		if limit := f.acquire(k, perSource); limit != "" {
			s.limited.Inc(limit)
			if k.IsValid() && f.logs.Allow(k, time.Now()) {
				s.log.Warn("request refused: too many in flight (logged once a minute per source)",
					zap.String(logging.KeyRemoteAddr, req.Source()), zap.String(logging.KeyReason, limit))
			}
			s.requests.WithLabelValues(string(req.Method)).Inc()
			s.count(string(req.Method), s.respond(tx, req, 503, "Service Unavailable",
				sip.NewHeader("Retry-After", strconv.Itoa(inflightRetryAfter))))
			return
		}
		defer f.release(k, perSource)
		h(req, tx)
	}
}
