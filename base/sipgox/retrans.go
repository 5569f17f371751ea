package sipgox

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
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
// clients' sockets. The cache keeps the same promise with the response's bytes alone (no
// pointers for the collector to follow): once the final response is sent the transaction is
// terminated, and a retransmission that sipgo then takes for a new request is answered here,
// before any stage sees it, with the very same bytes to the same address: about 450 bytes per
// answer of a REGISTER, in chunks of bytes the collector does not scan, where sipgo's
// transaction took 3 KiB.
//
// The cache is bounded in bytes (answers, which a peer chooses the size of through its Via
// and headers), in all and per source (sipx.SourceKey of where the answer goes),
// so that one source cannot fill it for everyone; when full, a transaction is left to sipgo
// as before.
type RetransCache struct {
	// answered counts the retransmissions answered from the cache (nil: not counted).
	answered prometheus.Counter
	ttl      time.Duration
	seed     maphash.Seed // of the keys' hashes
	seed2    maphash.Seed // of their checks
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

// retransOverhead approximates an entry's memory beyond its answer and its record's header:
// its map slot (the map of a shard holds two uint64 per entry, at a load of about 3/4).
const retransOverhead = 32

const retransShards = 64

// retransChunk is the size of the chunks a shard stores its records in; an answer too large
// for one gets a chunk of its own.
const retransChunk = 16 << 10

// A shard keeps its entries as records appended to a log of byte chunks, in the order they
// were stored, which is the order they expire in (every entry has the same ttl): expiry walks
// the log from its head and frees whole chunks. The map from a key's hash to its record holds
// no pointers, nor do the chunks, so the collector has nothing to follow in the cache however
// many answers it holds; an entry costs its answer's bytes, a 30-byte header, its destination
// and a map slot, where a map of strings to entries cost about 250 bytes more (key string,
// entry, map slot and queue slot, and the rounding of each).
//
// A record is:
//
//	expires int64 (unix nanoseconds) | key hash uint64 | key check uint64 |
//	destination length uint16 | answer length uint32 | destination | answer
//
// The key hash (seed) indexes the map; the check (a second hash of the key, with seed2) tells
// two keys apart whose hashes collide: a record answers only a key with both. The
// destination is netip.AddrPort's binary form.
type retransShard struct {
	c  *RetransCache
	mu sync.Mutex
	// m maps a key's hash to its record's position: its chunk's sequence number (high 32
	// bits) and its offset in that chunk.
	m map[uint64]uint64
	// chunks is the log; chunks[0] has sequence number first, head is the offset of the
	// oldest record in it not yet expired.
	chunks [][]byte
	first  uint32
	head   int
	spare  []byte // a chunk freed by expiry, for the next one needed
	bytes  int    // records' size, retransOverhead included
}

const recordHeader = 8 + 8 + 8 + 2 + 4

// retransEntry is an answer found in the cache: a copy of its bytes and where they went.
type retransEntry struct {
	resp []byte
	dest netip.AddrPort
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
	c := &RetransCache{ttl: ttl, seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		max: max(1, maxBytes/retransShards), perSource: max(1, perSource)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]uint64)
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

// hashes are key's map hash and its check.
func (c *RetransCache) hashes(key string) (uint64, uint64) {
	return maphash.String(c.seed, key), maphash.String(c.seed2, key)
}

func (c *RetransCache) shard(key string) *retransShard {
	h, _ := c.hashes(key)
	return &c.shards[h%retransShards]
}

// get returns a copy of the response recorded for the transaction key, if it is still due.
func (c *RetransCache) get(key string, now time.Time) (retransEntry, bool) {
	h, check := c.hashes(key)
	s := &c.shards[h%retransShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	t := now.UnixNano()
	s.expire(t)
	pos, ok := s.m[h]
	if !ok {
		return retransEntry{}, false
	}
	r := s.record(pos)
	if int64(binary.LittleEndian.Uint64(r)) <= t || binary.LittleEndian.Uint64(r[16:]) != check {
		return retransEntry{}, false
	}
	var e retransEntry
	dl, rl := recordLens(r)
	if e.dest.UnmarshalBinary(r[recordHeader:recordHeader+dl]) != nil {
		return retransEntry{}, false
	}
	e.resp = bytes.Clone(r[recordHeader+dl : recordHeader+dl+rl])
	return e, true
}

// record is the record at pos, from its header to the end of its chunk.
func (s *retransShard) record(pos uint64) []byte {
	return s.chunks[uint32(pos>>32)-s.first][uint32(pos):]
}

func recordLens(r []byte) (dest, resp int) {
	return int(binary.LittleEndian.Uint16(r[24:])), int(binary.LittleEndian.Uint32(r[26:]))
}

// put records resp (the final response's bytes, sent at now) for key, sent to dest. It
// reports false when the shard or the source's share is full, and the caller keeps its
// transaction.
func (c *RetransCache) put(key string, resp []byte, dest netip.AddrPort, now time.Time) bool {
	h, check := c.hashes(key)
	s := &c.shards[h%retransShards]
	exp := now.Add(c.ttl).UnixNano()
	d, err := dest.MarshalBinary()
	if err != nil || len(d) > 0xffff || int64(len(resp)) > 0xffffffff {
		return false
	}
	n := recordHeader + len(d) + len(resp)
	size := recordSize(len(d), len(resp))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	if s.bytes+size > c.max || !c.charge(sipx.SourceKey(dest.Addr()), size) {
		return false
	}
	// A record replaced (the same key stored again) stays in the log, still counted, until
	// it expires: only the map forgets it.
	s.bytes += size
	pos, r := s.alloc(n)
	binary.LittleEndian.PutUint64(r, uint64(exp))
	binary.LittleEndian.PutUint64(r[8:], h)
	binary.LittleEndian.PutUint64(r[16:], check)
	binary.LittleEndian.PutUint16(r[24:], uint16(len(d)))
	binary.LittleEndian.PutUint32(r[26:], uint32(len(resp)))
	copy(r[recordHeader+copy(r[recordHeader:], d):], resp)
	s.m[h] = pos
	return true
}

// alloc appends n bytes to the log and returns their position and the bytes.
func (s *retransShard) alloc(n int) (uint64, []byte) {
	last := len(s.chunks) - 1
	if last < 0 || cap(s.chunks[last])-len(s.chunks[last]) < n {
		var ch []byte
		if n <= retransChunk && s.spare != nil {
			ch, s.spare = s.spare[:0], nil
		} else {
			ch = make([]byte, 0, max(n, retransChunk))
		}
		if last < 0 {
			s.head = 0
		}
		s.chunks = append(s.chunks, ch)
		last++
	}
	ch := s.chunks[last]
	off := len(ch)
	s.chunks[last] = ch[:off+n]
	return uint64(s.first+uint32(last))<<32 | uint64(off), s.chunks[last][off : off+n]
}

// entrySize is what an entry answering with resp is counted as.
func entrySize(resp []byte) int { return recordSize(0, len(resp)) }

// recordSize is what a record of a destination of dest bytes and an answer of resp bytes is
// counted as: an IPv4 destination as an IPv6 one (18 bytes), so that the shares of the
// two families hold as many answers.
func recordSize(dest, resp int) int {
	return recordHeader + max(dest, 18) + resp + retransOverhead
}

// expire drops the records due at now (unix nanoseconds), oldest first, and the chunks they
// emptied.
func (s *retransShard) expire(now int64) {
	for len(s.chunks) > 0 {
		ch := s.chunks[0]
		if s.head >= len(ch) {
			if len(s.chunks) == 1 {
				return // the chunk being filled
			}
			s.freeChunk()
			continue
		}
		r := ch[s.head:]
		if int64(binary.LittleEndian.Uint64(r)) > now {
			return
		}
		dl, rl := recordLens(r)
		n := recordHeader + dl + rl
		pos := uint64(s.first)<<32 | uint64(s.head)
		if h := binary.LittleEndian.Uint64(r[8:]); s.m[h] == pos {
			delete(s.m, h)
		}
		var dest netip.AddrPort
		if dest.UnmarshalBinary(r[recordHeader:recordHeader+dl]) == nil {
			s.c.charge(sipx.SourceKey(dest.Addr()), -recordSize(dl, rl))
		}
		s.bytes -= recordSize(dl, rl)
		s.head += n
	}
}

// freeChunk drops the oldest chunk, keeping it as the spare if it has the usual size.
func (s *retransShard) freeChunk() {
	if cap(s.chunks[0]) == retransChunk {
		s.spare = s.chunks[0]
	}
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	s.first++
	s.head = 0
	if len(s.chunks) == 0 {
		s.chunks = nil
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
		key, ok := udpTxKey(req)
		if !ok {
			h(req, tx)
			return
		}
		if e, ok := c.get(key, time.Now()); ok && c.answerAgain(e, tx) {
			return
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

// count counts one retransmission answered for a transaction that ended into the cache or is
// still running.
func (c *RetransCache) count() {
	if c.answered != nil {
		c.answered.Inc()
	}
}

// answerAgain sends the answer of e again. It reports false, nothing done, when tx has no UDP
// socket to answer on.
func (c *RetransCache) answerAgain(e retransEntry, tx sip.ServerTransaction) bool {
	ct, ok := tx.(interface{ Connection() sip.Connection })
	if !ok {
		return false
	}
	uc, ok := ct.Connection().(*sip.UDPConnection)
	if !ok {
		return false
	}
	c.count() // before the answer, which a test may be waiting for to read the count
	_ = writeTo(uc.PacketConn, e.resp, e.dest)
	return true
}

func isUDP(transport string) bool {
	return len(transport) == 3 && (transport == "UDP" || transport == "udp")
}
