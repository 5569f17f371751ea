package transport

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"

	"go.uber.org/zap"
)

// AddrOf returns the IP address of a *net.UDPAddr or *net.TCPAddr without allocating, and
// false for anything else.
func AddrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// LimitSourceRate is the name SourceRate counts its refusals under in simpled_limited_total.
const LimitSourceRate = "source_rate"

// Bounds of the per-source tables: sourceShards shards of at most sourceShardMax entries
// each (131,072 sources, a few MiB), so a flood from spoofed addresses cannot grow them.
const (
	sourceShards   = 64
	sourceShardMax = 2048
)

func sourceShard(k netip.Addr) int {
	b := k.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9E3779B97F4A7C15
	return int(h >> 58) // top 6 bits: 0..63
}

// SourceRate is a token bucket per source (sipx.SourceKey), Kamailio pike-like: each source may
// send Rate messages a second sustained and Burst at once. It is meant to be asked before a
// message is parsed: Allow allocates nothing, takes one of 64 shard locks, and its table is
// bounded (idle sources are forgotten first when a shard is full, else arbitrary ones: a
// forgotten source starts again with a full bucket). Safe for concurrent use; a nil
// *SourceRate allows everything.
type SourceRate struct {
	perNs float64 // tokens per nanosecond
	burst float64
	full  int64 // nanoseconds an empty bucket takes to fill: an entry idle this long is fresh
	// Trusted, if set, exempts a source: ip is the full address, names what a client
	// certificate verified on the connection proves (nil over UDP).
	Trusted func(ip netip.Addr, names []string) bool
	limited *sipx.Limited
	log     *zap.Logger
	shards  [sourceShards]rateShard
}

type rateShard struct {
	mu sync.Mutex
	m  map[netip.Addr]bucket
}

type bucket struct {
	tokens   float64
	last     int64 // unix ns of the last refill
	answered int64 // unix ns of the last 503 answered to this source
	logged   int64 // unix ns of the last log line about this source
}

// NewSourceRate allows rate messages a second and a burst of burst per source (rate < 1: nil,
// no limit). Refusals count in limited as LimitSourceRate and are logged once a minute per
// source on log.
func NewSourceRate(rate, burst int, limited *sipx.Limited, log *zap.Logger) *SourceRate {
	if rate < 1 {
		return nil
	}
	burst = max(burst, rate)
	if log == nil {
		log = zap.NewNop()
	}
	r := &SourceRate{perNs: float64(rate) / 1e9, burst: float64(burst),
		full: int64(float64(burst) / float64(rate) * 1e9), limited: limited, log: log}
	for i := range r.shards {
		r.shards[i].m = make(map[netip.Addr]bucket)
	}
	return r
}

// Allow takes one token for a message from ip at now. When there is none it reports pass
// false, and answer true at most once a second per source: the caller answers that message
// 503 with Retry-After and drops the others silently.
func (r *SourceRate) Allow(ip netip.Addr, names []string, now time.Time) (pass, answer bool) {
	if r == nil {
		return true, false
	}
	if r.Trusted != nil && r.Trusted(ip, names) {
		return true, false
	}
	k := sipx.SourceKey(ip)
	n := now.UnixNano()
	s := &r.shards[sourceShard(k)]
	s.mu.Lock()
	b, ok := s.m[k]
	if !ok {
		if len(s.m) >= sourceShardMax {
			s.evict(n, r.full)
		}
		b = bucket{tokens: r.burst, last: n}
	} else if n > b.last {
		b.tokens = min(r.burst, b.tokens+float64(n-b.last)*r.perNs)
		b.last = n
	}
	if b.tokens >= 1 {
		b.tokens--
		s.m[k] = b
		s.mu.Unlock()
		return true, false
	}
	answer = n-b.answered >= int64(time.Second)
	if answer {
		b.answered = n
	}
	logIt := n-b.logged >= int64(time.Minute)
	if logIt {
		b.logged = n
	}
	s.m[k] = b
	s.mu.Unlock()
	r.limited.Inc(LimitSourceRate)
	if logIt {
		r.log.Warn("source over its request rate: answered 503, then dropped, for a minute of log silence",
			zap.String(logging.KeyRemoteAddr, k.String()), zap.String(logging.KeyReason, LimitSourceRate))
	}
	return false, answer
}

// Len returns how many sources the table holds.
func (r *SourceRate) Len() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// evict makes room in a full shard: entries idle long enough to have refilled (forgetting
// them changes nothing), else an eighth of the entries, whichever they are.
func (s *rateShard) evict(now, full int64) {
	for k, b := range s.m {
		if now-b.last >= full && now-b.answered >= int64(time.Second) {
			delete(s.m, k)
		}
	}
	if len(s.m) < sourceShardMax {
		return
	}
	drop := sourceShardMax / 8
	for k := range s.m {
		if drop == 0 {
			break
		}
		delete(s.m, k)
		drop--
	}
}
