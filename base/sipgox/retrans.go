package sipgox

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// RetransCache answers retransmitted UDP requests in place of sipgo's completed server
// transactions (RFC 3261 §17.2.2). A non-INVITE server transaction over UDP must stay 64*T1
// (32 s) after its final response to answer retransmissions of the request with that
// response. sipgo keeps the whole transaction for that time: the parsed request, the response
// object, timers and channels, about 3 KiB of pointer-rich memory per request. At 8,000
// REGISTER/s that is a quarter of a million transactions, 600 MiB of live heap whose every
// collection took both cores of the reference machine for half a second, starving the
// clients' sockets. The cache keeps the same promise with the response's bytes alone (under
// 1 KiB, no pointers for the collector to follow): once the final response is sent the
// transaction is terminated, and a retransmission that sipgo then takes for a new request
// is answered here, before any stage sees it, with the very same bytes to the same address.
//
// The cache is bounded in bytes (keys and answers, which a peer chooses the size of through
// its Via and headers), in all and per source (sipx.SourceKey of where the answer goes),
// so that one source cannot fill it for everyone; when full, a transaction is left to sipgo
// as before.
type RetransCache struct {
	// answered counts the retransmissions answered from the cache (nil: not counted).
	answered prometheus.Counter
	ttl      time.Duration
	seed     maphash.Seed
	shards   [retransShards]retransShard
	// max bytes per shard
	max int
	// perSource bounds the bytes of one source's answers; sources holds them, in shards of
	// their own (locked after a retransShard, never before).
	perSource int
	sources   [retransShards]sourceBytes
}

// sourceBytes is one shard of the bytes held per source.
type sourceBytes struct {
	mu sync.Mutex
	m  map[netip.Addr]int
}

// retransOverhead approximates an entry's memory beyond its key and answer (map slot, entry,
// queue slot).
const retransOverhead = 128

const retransShards = 64

type retransShard struct {
	c  *RetransCache
	mu sync.Mutex
	m  map[string]*retransEntry
	// fifo holds the keys in insertion order; every entry has the same ttl, so expiry is
	// popping from the front.
	fifo  []retransKey
	head  int
	bytes int // entries' size, retransOverhead included
}

type retransKey struct {
	key     string
	expires int64 // unix nanoseconds
}

type retransEntry struct {
	resp    []byte
	dest    netip.AddrPort
	expires int64
	src     netip.Addr // sipx.SourceKey of dest
}

// maxRetrans bounds the retransmission cache in bytes: 32 s of answers at about 25,000
// requests/s of a typical 500 bytes each; past it transactions stay with sipgo.
const maxRetrans = 512 << 20

// retransShare is one source's share of the retransmission cache, so one source flooding
// cannot crowd out everyone else's answers: what a source sending at sourceRate requests/s
// needs for Timer J (32 s of answers of up to 2 KiB), and at least a sixteenth (32 MiB: 32 s at
// 2,000 requests/s, ten times the default limits.source_rate). A load generator given a high
// source rate (bench/) gets the whole cache.
func retransShare(sourceRate int, timerJ time.Duration) int {
	need := int64(sourceRate) * int64(timerJ/time.Second) * 2048
	return int(min(max(need, maxRetrans/16), maxRetrans))
}

// NewRetransCache builds the cache of one server: answers are kept for Timer J (as set when it
// is called, so after Configure and ShortTimers), 512 MiB at most in all, and per source what
// a source sending at sourceRate requests/s needs (limits.source_rate). answered counts the
// retransmissions answered from the cache (nil: not counted).
func NewRetransCache(sourceRate int, answered prometheus.Counter) *RetransCache {
	c := newRetransCache(sip.Timer_J, maxRetrans, retransShare(sourceRate, sip.Timer_J))
	c.answered = answered
	return c
}

// newRetransCache keeps answers for ttl, at most maxBytes in all and perSource bytes for one
// source.
func newRetransCache(ttl time.Duration, maxBytes, perSource int) *RetransCache {
	c := &RetransCache{ttl: ttl, seed: maphash.MakeSeed(), max: max(1, maxBytes/retransShards),
		perSource: max(1, perSource)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*retransEntry)
		c.shards[i].c = c
		c.sources[i].m = make(map[netip.Addr]int)
	}
	return c
}

func (c *RetransCache) sourceShard(k netip.Addr) *sourceBytes {
	b := k.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9E3779B97F4A7C15
	return &c.sources[h%retransShards]
}

// charge adds n bytes (negative: frees them) to source k's share; it refuses (false) an
// addition that would take it past perSource.
func (c *RetransCache) charge(k netip.Addr, n int) bool {
	s := c.sourceShard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[k] + n
	if n > 0 && v > c.perSource {
		return false
	}
	if v <= 0 {
		delete(s.m, k)
	} else {
		s.m[k] = v
	}
	return true
}

func (c *RetransCache) shard(key string) *retransShard {
	return &c.shards[maphash.String(c.seed, key)%retransShards]
}

// get returns the response recorded for the transaction key, if it is still due.
func (c *RetransCache) get(key string, now time.Time) (*retransEntry, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	e, ok := s.m[key]
	return e, ok
}

// put records resp (the final response's bytes, sent at now) for key, sent to dest. It
// reports false when the shard is full, and the caller keeps its transaction.
func (c *RetransCache) put(key string, resp []byte, dest netip.AddrPort, now time.Time) bool {
	s := c.shard(key)
	exp := now.Add(c.ttl).UnixNano()
	size := entrySize(key, resp)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	src := sipx.SourceKey(dest.Addr())
	old := s.m[key]
	if old != nil {
		s.bytes -= entrySize(key, old.resp)
	}
	if s.bytes+size > c.max || !c.charge(src, size) {
		if old != nil {
			s.bytes += entrySize(key, old.resp)
		}
		return false
	}
	if old != nil {
		c.charge(old.src, -entrySize(key, old.resp))
	}
	s.bytes += size
	s.m[key] = &retransEntry{resp: resp, dest: dest, expires: exp, src: src}
	s.fifo = append(s.fifo, retransKey{key: key, expires: exp})
	return true
}

func entrySize(key string, resp []byte) int { return len(key) + len(resp) + retransOverhead }

// expire drops the entries due at now (unix nanoseconds) and compacts the queue once half
// of it is spent.
func (s *retransShard) expire(now int64) {
	for s.head < len(s.fifo) && s.fifo[s.head].expires <= now {
		k := s.fifo[s.head]
		if e, ok := s.m[k.key]; ok && e.expires == k.expires {
			s.bytes -= entrySize(k.key, e.resp)
			s.c.charge(e.src, -entrySize(k.key, e.resp))
			delete(s.m, k.key)
		}
		s.fifo[s.head] = retransKey{}
		s.head++
	}
	if s.head > 1024 && s.head*2 >= len(s.fifo) {
		n := copy(s.fifo, s.fifo[s.head:])
		clear(s.fifo[n:])
		s.fifo = s.fifo[:n]
		s.head = 0
	}
}

var respBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// recordingTx is the server transaction handed to the chain for a UDP non-INVITE request: it
// keeps a copy of the final response's bytes and where they went.
type recordingTx struct {
	sip.ServerTransaction
	final []byte
	dest  string
}

func (t *recordingTx) Respond(res *sip.Response) error {
	err := t.ServerTransaction.Respond(res)
	if err == nil && !res.IsProvisional() && t.final == nil {
		b := respBuffers.Get().(*bytes.Buffer)
		b.Reset()
		res.StringWrite(b)
		t.final = bytes.Clone(b.Bytes())
		t.dest = res.Destination()
		respBuffers.Put(b)
	}
	return err
}

// Retransmits wraps the sipgo handler h with the cache c: a UDP non-INVITE request that
// retransmits one already answered gets the recorded answer again; any other goes to h, and
// when h answered it finally over UDP, the answer is recorded and the transaction ended at once
// (RFC 3261 §17.2.2: Timer J runs from the answer, here in the cache rather than in sipgo).
func Retransmits(c *RetransCache, h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if tx == nil || req.IsInvite() || req.IsAck() || !isUDP(req.Transport()) {
			h(req, tx)
			return
		}
		key, err := sip.ServerTxKeyMake(req)
		if err != nil {
			h(req, tx)
			return
		}
		now := time.Now()
		if e, ok := c.get(key, now); ok {
			if uc, ok := udpConn(tx); ok {
				_, _ = uc.PacketConn.WriteTo(e.resp, net.UDPAddrFromAddrPort(e.dest))
				if c.answered != nil {
					c.answered.Inc()
				}
				return
			}
		}
		rtx := &recordingTx{ServerTransaction: tx}
		h(req, rtx)
		if rtx.final == nil {
			return
		}
		dest, err := netip.ParseAddrPort(rtx.dest)
		if err != nil {
			return
		}
		if c.put(key, rtx.final, dest, time.Now()) { // Timer J runs from the answer
			tx.Terminate()
		}
	}
}

// udpConn is the UDP socket tx's request came over.
func udpConn(tx sip.ServerTransaction) (*sip.UDPConnection, bool) {
	ct, ok := tx.(interface{ Connection() sip.Connection })
	if !ok {
		return nil, false
	}
	uc, ok := ct.Connection().(*sip.UDPConnection)
	return uc, ok
}

func isUDP(transport string) bool {
	return len(transport) == 3 && (transport == "UDP" || transport == "udp")
}
