package sipgox

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/simpled/simpled/base/gopool"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// UDPTransactions runs the server transactions of non-INVITE requests received over UDP
// (RFC 3261 §17.2.2) in place of sipgo's transaction layer. For every request sipgo starts a
// goroutine, builds its transaction key with a string builder, asks its transport layer for
// the connection under a ten-second context, creates a ServerTx with its FSM, mutexes, timers
// and channels, adds the source to its UDP connection pool (an entry never removed), and on
// the final answer arms Timer J: a dozen allocations, a handful of lock round trips and two
// goroutine handoffs per REGISTER, and the heaviest part of sipgo's share in the profiles.
// Once the retransmission cache (RetransCache) answers retransmissions of answered requests,
// what is left of a non-INVITE server transaction is small: match retransmissions of the
// request while it is being handled (Trying: absorb them; Proceeding: send the last
// provisional answer again; Completed: the final one), send the answers to where the request
// came from (RFC 3581: its source address and port), and end.
//
// Take is called by the UDP guard for every datagram that passed its checks: it takes a
// request that parses, carries an RFC 3261 branch and is neither INVITE, ACK nor CANCEL, and
// runs the handler on it on a pooled goroutine (gopool) with a transaction of this table; it
// leaves everything else (responses, INVITE and what belongs to it, what does not parse) to
// sipgo, which reads it as before. A request taken here never reaches sipgo.
type UDPTransactions struct {
	parser  Parser
	cache   *RetransCache
	handler sipgo.RequestHandler
	pool    *gopool.Pool
	timerJ  time.Duration // sipgo's Timer J when the table was made
	// Inline, when set and true for a request, has its handler run on the goroutine that read
	// it rather than on a pooled one. Only a request whose handling never waits (no network,
	// no store round trip) may run inline: while it runs, that read loop reads nothing. It
	// saves the handoff between goroutines and the wake-up of an idle processor that comes
	// with it (about a tenth of a REGISTER's CPU on the memory store). Set it before the
	// first Take.
	Inline func(*sip.Request) bool
	shards [udpTxShards]udpTxShard
}

const udpTxShards = 64

// Parser parses one whole datagram, as (*sip.Parser).ParseSIP does.
type Parser interface {
	ParseSIP(data []byte) (sip.Message, error)
}

type udpTxShard struct {
	mu sync.Mutex
	m  map[string]*udpTx
}

// NewUDPTransactions returns a table that parses with parser, answers retransmissions of
// answered requests from cache, and hands every other request it takes to h, which must
// answer it finally before it returns (the contract of sipx.Handler). The final answers go
// into cache, which then answers for the transaction (Timer J).
func NewUDPTransactions(parser Parser, cache *RetransCache, h sipgo.RequestHandler) *UDPTransactions {
	t := &UDPTransactions{parser: parser, cache: cache, handler: h, pool: gopool.New(workerIdle), timerJ: sip.Timer_J}
	for i := range t.shards {
		t.shards[i].m = map[string]*udpTx{}
	}
	return t
}

// For returns the Take of the UDP socket conn, for the guard of conn (transport.GuardConn).
func (t *UDPTransactions) For(conn net.PacketConn) func(data []byte, addr net.Addr) bool {
	return func(data []byte, addr net.Addr) bool { return t.Take(data, addr, conn) }
}

// Take handles the datagram data received from addr on conn if it is a request of this
// table's kind, and reports whether it did. It keeps no reference to data.
func (t *UDPTransactions) Take(data []byte, addr net.Addr, conn net.PacketConn) bool {
	if !takeable(data) {
		return false
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	msg, err := t.parser.ParseSIP(data)
	if err != nil {
		return false // sipgo parses it again, and logs and drops it as before
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.IsInvite() || req.IsAck() || req.IsCancel() {
		return false
	}
	key, ok := udpTxKey(req)
	if !ok {
		return false // no RFC 3261 branch or no CSeq: sipgo's stateless 400
	}
	src := ua.AddrPort()
	srcText := addr.String()
	req.SetTransport("UDP")
	req.SetSource(srcText)
	s := &t.shards[shardOf(key)]
	s.mu.Lock()
	if tx, dup := s.m[key]; dup {
		s.mu.Unlock()
		tx.retransmitted(t.cache.count)
		return true
	}
	// The cache is asked under the shard's lock: a transaction leaves the table only once
	// its answer is in the cache, so a retransmission finds one or the other.
	if e, ok := t.cache.get(key, time.Now()); ok {
		s.mu.Unlock()
		t.cache.count() // before the answer, which a test may be waiting for to read the count
		_ = writeTo(conn, e.resp, e.dest)
		return true
	}
	tx := &udpTx{shard: s, key: key, conn: conn, src: src, srcText: srcText}
	s.m[key] = tx
	s.mu.Unlock()
	if t.Inline != nil && t.Inline(req) {
		t.serve(req, tx)
		return true
	}
	t.pool.Go(func() { t.serve(req, tx) })
	return true
}

// serve runs the handler on one request and ends its transaction, handing its final answer
// to the cache. One the cache could not store (full) stays Completed for Timer J, answering
// retransmissions itself as sipgo's would.
func (t *UDPTransactions) serve(req *sip.Request, tx *udpTx) {
	defer func() {
		final, dest := tx.answer()
		if final != nil && !t.cache.put(tx.key, final, dest, time.Now()) {
			time.AfterFunc(t.timerJ, tx.Terminate)
			return
		}
		tx.Terminate()
	}()
	t.handler(req, tx)
}

// takeable reports from the request line alone whether data may be a request of the table's
// kind, so that responses and INVITE transactions reach sipgo unparsed.
func takeable(data []byte) bool {
	sp := bytes.IndexByte(data, ' ')
	if sp <= 0 {
		return false
	}
	switch string(data[:sp]) {
	case "SIP/2.0", sip.INVITE.String(), sip.ACK.String(), sip.CANCEL.String():
		return false
	}
	return true
}

// udpTxKey is the key of req's server transaction (RFC 3261 §17.2.3): the top Via's branch
// and sent-by, and the request's method, in the format of sipgo's keys (ServerTxKeyMake)
// though with the method of the request line, which §17.2.3 matches on, rather than of CSeq.
// ok is false when the branch is not an RFC 3261 one or there is no CSeq.
func udpTxKey(req *sip.Request) (string, bool) {
	via := req.Via()
	if via == nil || req.CSeq() == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	if len(branch) <= len(sip.RFC3261BranchMagicCookie) || branch[:len(sip.RFC3261BranchMagicCookie)] != sip.RFC3261BranchMagicCookie {
		return "", false
	}
	port := via.Port
	if port <= 0 {
		port = int(sip.DefaultPort(via.Transport))
	}
	method := string(req.Method)
	var buf [256]byte
	b := buf[:0]
	b = append(b, branch...)
	b = append(b, sip.TxSeperator...)
	b = append(b, via.Host...)
	b = append(b, sip.TxSeperator...)
	b = strconv.AppendInt(b, int64(port), 10)
	b = append(b, sip.TxSeperator...)
	b = append(b, method...)
	return string(b), true
}

func shardOf(key string) uint32 {
	// FNV-1a over the key's last bytes: the branch's random part and the method.
	h := uint32(2166136261)
	for i := max(0, len(key)-32); i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return h % udpTxShards
}

// udpTx is one non-INVITE server transaction over UDP. It implements sip.ServerTransaction.
type udpTx struct {
	shard   *udpTxShard
	key     string
	conn    net.PacketConn
	src     netip.AddrPort // where the request came from, and its answers go
	srcText string

	mu          sync.Mutex
	provisional []byte // the last provisional answer sent (Proceeding)
	final       []byte // the final answer sent (Completed)
	finalTo     netip.AddrPort
	terminated  bool
	err         error
	done        chan struct{}
	onTerminate []sip.FnTxTerminate
	cancel      context.CancelFunc // of the handler's context (TxContext)
}

var errNoDestination = errors.New("sipgox: response destination is not an address")

// Respond sends res to where the request came from, or to res's destination when the
// handler set another. A response after the final one is ignored, as in sipgo's Completed
// and Terminated states.
func (tx *udpTx) Respond(res *sip.Response) error {
	dest := tx.src
	if d := res.Destination(); d != "" && d != tx.srcText {
		ap, err := netip.ParseAddrPort(d)
		if err != nil {
			return errNoDestination
		}
		dest = ap
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.final != nil || tx.terminated {
		return nil
	}
	b := respBuffers.Get().(*bytes.Buffer)
	defer respBuffers.Put(b)
	b.Reset()
	res.StringWrite(b)
	data := bytes.Clone(b.Bytes())
	if res.IsProvisional() {
		tx.provisional = data
	} else {
		tx.final, tx.finalTo, tx.provisional = data, dest, nil
	}
	if err := writeTo(tx.conn, data, dest); err != nil {
		tx.err = err
		return err
	}
	return nil
}

// retransmitted answers a retransmission of the request: nothing while it is being handled
// with no answer yet, else the last answer again (RFC 3261 §17.2.2); final is called before
// the final answer is sent again.
func (tx *udpTx) retransmitted(final func()) {
	tx.mu.Lock()
	data, dest := tx.final, tx.finalTo
	if data == nil {
		data, dest = tx.provisional, tx.src
	} else {
		final()
	}
	tx.mu.Unlock()
	if data != nil {
		_ = writeTo(tx.conn, data, dest)
	}
}

// answer is the final answer sent and where it went (nil: none).
func (tx *udpTx) answer() ([]byte, netip.AddrPort) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.final, tx.finalTo
}

// Terminate ends the transaction: it leaves the table, and its OnTerminate functions run.
func (tx *udpTx) Terminate() {
	tx.mu.Lock()
	if tx.terminated {
		tx.mu.Unlock()
		return
	}
	tx.terminated = true
	fns, cancel := tx.onTerminate, tx.cancel
	tx.onTerminate, tx.cancel = nil, nil
	if tx.done != nil {
		close(tx.done)
	}
	err := tx.err
	tx.mu.Unlock()
	tx.shard.mu.Lock()
	if tx.shard.m[tx.key] == tx {
		delete(tx.shard.m, tx.key)
	}
	tx.shard.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, f := range fns {
		f(tx.key, err)
	}
}

// cancelOnEnd makes cancel run when tx ends (at once if it has).
func (tx *udpTx) cancelOnEnd(cancel context.CancelFunc) {
	tx.mu.Lock()
	if !tx.terminated {
		tx.cancel = cancel
		cancel = nil
	}
	tx.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// OnTerminate adds f to what runs when tx ends; it reports false when tx has ended already.
func (tx *udpTx) OnTerminate(f sip.FnTxTerminate) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.terminated {
		return false
	}
	tx.onTerminate = append(tx.onTerminate, f)
	return true
}

// Done is closed when tx ends.
func (tx *udpTx) Done() <-chan struct{} {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done == nil {
		tx.done = make(chan struct{})
		if tx.terminated {
			close(tx.done)
		}
	}
	return tx.done
}

// Err is the error of the last failed send, if any.
func (tx *udpTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// Acks is nil: a non-INVITE transaction has no ACK (RFC 3261 §17.2.2).
func (tx *udpTx) Acks() <-chan *sip.Request { return nil }

// OnCancel never fires: a CANCEL has no effect on a non-INVITE request (RFC 3261 §9.2), and
// sipgo matches CANCELs to INVITE transactions only.
func (tx *udpTx) OnCancel(sip.FnTxCancel) bool { return true }

// writeTo sends data to dest on conn without allocating an address when conn is a UDP
// socket.
func writeTo(conn net.PacketConn, data []byte, dest netip.AddrPort) error {
	if uc, ok := conn.(interface {
		WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
	}); ok {
		_, err := uc.WriteToUDPAddrPort(data, dest)
		return err
	}
	_, err := conn.WriteTo(data, net.UDPAddrFromAddrPort(dest))
	return err
}
