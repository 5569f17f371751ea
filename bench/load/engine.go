package main

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// scenario steps (call.state); stDone ends a call.
const (
	st0 uint8 = iota // first request sent
	st1              // register_auth: digest REGISTER sent; publish: modify; subscribe: waiting for the first NOTIFY
	st2              // publish: remove; subscribe: un-SUBSCRIBE sent
	st3              // subscribe: waiting for the last NOTIFY
	stDone
)

// call flags
const (
	fNotify1 uint8 = 1 << iota // subscribe: the first NOTIFY came before the SUBSCRIBE's 200
	fNotify2                   // subscribe: the last NOTIFY came before the un-SUBSCRIBE's 200
)

// call is one call's state, owned by its socket's worker.
type call struct {
	buf     []byte // the request of the open transaction (resent as is), nil when none
	start   int64  // ns since the phase began
	txStart int64
	dlg     *dialog
	txn     uint16
	state   uint8
	tries   uint8
	flags   uint8
}

// dialog keeps what a later request of the call repeats: the server's To tag and Contact
// (subscribe) or its entity tag (publish).
type dialog struct {
	toTag, target, etag []byte
}

// timer is an entry of a fifo: call j's transaction txn is due at at.
type timer struct {
	at  int64
	j   int32
	txn uint16
}

// fifo is a queue of timers pushed in order of their due time (every entry of one fifo has
// the same delay), so its head is the earliest.
type fifo struct {
	q    []timer
	head int
}

func (f *fifo) push(t timer) {
	if f.head > 4096 && f.head*2 > len(f.q) {
		n := copy(f.q, f.q[f.head:])
		f.q = f.q[:n]
		f.head = 0
	}
	f.q = append(f.q, t)
}

func (f *fifo) peek() (timer, bool) {
	if f.head == len(f.q) {
		return timer{}, false
	}
	return f.q[f.head], true
}

func (f *fifo) pop() { f.head++ }

// stats are one worker's counts; merged at the end of a phase.
type stats struct {
	created, ok, failed          int
	timeouts, unexpected, broken int // failures: Timer F / no NOTIFY, a wrong answer, unfinished at the hard end
	retrans, strays              int // retransmitted requests, answers to no open transaction
	sendErrs, readErrs           int
	lagMax                       int64 // ns a call started after its time
	lastDone                     int64 // ns since the phase began
	calls, txs                   hist
	codes                        map[int]int // unexpected final answers by status
}

func (s *stats) merge(o *stats) {
	s.created += o.created
	s.ok += o.ok
	s.failed += o.failed
	s.timeouts += o.timeouts
	s.unexpected += o.unexpected
	s.broken += o.broken
	s.retrans += o.retrans
	s.strays += o.strays
	s.sendErrs += o.sendErrs
	s.readErrs += o.readErrs
	s.lagMax = max(s.lagMax, o.lagMax)
	s.lastDone = max(s.lastDone, o.lastDone)
	s.calls.merge(&o.calls)
	s.txs.merge(&o.txs)
	for c, n := range o.codes {
		if s.codes == nil {
			s.codes = map[int]int{}
		}
		s.codes[c] += n
	}
}

// worker drives the calls of one socket: it starts them on schedule, sends and resends their
// requests, reads the answers and the server's requests, all in one goroutine, batched.
type worker struct {
	ph     *phase
	k      int
	conn   *net.UDPConn
	pc     *ipv4.PacketConn
	laddr  string
	base   time.Time
	calls  []call
	next   int   // calls started
	active int   // calls started and not ended
	every  int64 // ns between two calls of this socket
	offset int64 // ns of its first call
	levels []fifo
	ivs    []int64
	finals fifo // Timer F of every transaction, and the wait for a NOTIFY
	rms    []ipv4.Message
	wms    []ipv4.Message
	nw     int
	out    []byte // answers of this round, sent with the round's requests
	free   [][]byte
	m      sipMsg
	ch     *challenge // register_auth: the challenge being answered (set just before send)
	st     stats
}

func newWorker(ph *phase, k int, conn *net.UDPConn, base time.Time) *worker {
	cfg := ph.cfg
	n := ph.calls / cfg.sockets
	if k < ph.calls%cfg.sockets {
		n++
	}
	w := &worker{
		ph: ph, k: k, conn: conn, pc: ipv4.NewPacketConn(conn), laddr: conn.LocalAddr().String(),
		base: base, calls: make([]call, n),
		every:  int64(float64(cfg.sockets) * 1e9 / ph.rate),
		offset: int64(float64(k) * 1e9 / ph.rate),
		rms:    make([]ipv4.Message, cfg.batch),
		wms:    make([]ipv4.Message, cfg.batch),
	}
	for iv := cfg.t1; ; iv *= 2 {
		iv = min(iv, cfg.t2)
		w.levels = append(w.levels, fifo{})
		w.ivs = append(w.ivs, int64(iv))
		if iv == cfg.t2 {
			break
		}
	}
	for i := range w.rms {
		w.rms[i].Buffers = [][]byte{make([]byte, 65536)}
		w.wms[i].Buffers = make([][]byte, 1)
	}
	return w
}

func (w *worker) now() int64 { return int64(time.Since(w.base)) }

// run drives the worker's calls until they have all ended, or until the hard end when it
// counts those still open as failed.
func (w *worker) run() {
	hardEnd := int64(w.ph.hardEnd)
	for {
		now := w.now()
		w.startDue(now)
		w.fireTimers(now)
		w.flush()
		if w.next == len(w.calls) && w.active == 0 {
			return
		}
		if now >= hardEnd {
			w.abandon(now)
			return
		}
		// a fresh clock: sending may have taken a while, and a deadline already past would
		// make the read below give up without reading (and, behind schedule, never read)
		now = w.now()
		wake := max(min(w.nextWake(now), hardEnd), now+int64(50*time.Microsecond))
		if err := w.conn.SetReadDeadline(w.base.Add(time.Duration(wake))); err != nil {
			w.st.readErrs++
			w.abandon(now)
			return
		}
		err := w.read()
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, syscall.EAGAIN) {
			if errors.Is(err, net.ErrClosed) {
				w.abandon(now)
				return
			}
			w.st.readErrs++ // ECONNREFUSED from an ICMP error: the target is not there (yet)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// maxReads bounds the batches read in one round: answers are drained before more requests
// go out (else, behind schedule, a worker would send bursts its own socket cannot take the
// answers of), yet a round always ends.
const maxReads = 16

// read waits for datagrams until the deadline, then takes what else is queued without
// waiting, up to maxReads batches, and handles them.
func (w *worker) read() error {
	flags := 0
	for i := 0; i < maxReads; i++ {
		n, err := w.pc.ReadBatch(w.rms, flags)
		now := w.now()
		for i := 0; i < n; i++ {
			w.handle(w.rms[i].Buffers[0][:w.rms[i].N], now)
		}
		if err != nil || n < len(w.rms) {
			return err
		}
		flags = syscall.MSG_DONTWAIT
	}
	return nil
}

// nextWake returns when the loop must wake at the latest: the next call's start (not sooner
// than a tick from now, so that starts are sent in batches) or the earliest timer.
func (w *worker) nextWake(now int64) int64 {
	wake := now + int64(time.Second)
	if w.next < len(w.calls) && w.offset+int64(w.next)*w.every <= now {
		wake = now // behind schedule: go on after reading what is there
	} else if w.next < len(w.calls) {
		wake = max(w.offset+int64(w.next)*w.every, now+int64(w.ph.cfg.tick))
	}
	for i := range w.levels {
		if t, ok := w.levels[i].peek(); ok {
			wake = min(wake, t.at)
		}
	}
	if t, ok := w.finals.peek(); ok {
		wake = min(wake, t.at)
	}
	return max(wake, now+int64(50*time.Microsecond))
}

// startDue starts the calls whose time has come (open loop: answers do not hold it back), at
// most four batches a round so that answers are read in between when behind schedule.
func (w *worker) startDue(now int64) {
	for n := 0; w.next < len(w.calls) && n < 4*len(w.wms); n++ {
		due := w.offset + int64(w.next)*w.every
		if due > now {
			return
		}
		w.st.lagMax = max(w.st.lagMax, now-due)
		j := w.next
		w.next++
		w.active++
		w.st.created++
		c := &w.calls[j]
		c.start = now
		c.state = st0
		w.send(j, now)
		if w.nw == len(w.wms) {
			w.flush()
		}
	}
}

// send builds and queues the request of the call's current state: a new transaction.
func (w *worker) send(j int, now int64) {
	c := &w.calls[j]
	c.txn++
	var b []byte
	if n := len(w.free); n > 0 {
		b, w.free = w.free[n-1][:0], w.free[:n-1]
	} else {
		b = make([]byte, 0, 1024)
	}
	c.buf = w.ph.build(w, b, j, c)
	c.txStart = now
	c.tries = 1
	w.queue(c.buf)
	w.levels[0].push(timer{at: now + w.ivs[0], j: int32(j), txn: c.txn})
	w.finals.push(timer{at: now + int64(w.ph.cfg.timerF), j: int32(j), txn: c.txn})
}

// wait makes the call wait for a request of the server (a NOTIFY), for at most Timer F.
func (w *worker) wait(j int, now int64, state uint8) {
	c := &w.calls[j]
	c.txn++
	c.state = state
	w.finals.push(timer{at: now + int64(w.ph.cfg.timerF), j: int32(j), txn: c.txn})
}

func (w *worker) queue(b []byte) {
	if w.nw == len(w.wms) {
		w.flush()
	}
	w.wms[w.nw].Buffers[0] = b
	w.nw++
}

// flush sends the queued datagrams with as few sendmmsg calls as the kernel allows.
func (w *worker) flush() {
	ms := w.wms[:w.nw]
	for retry := 0; len(ms) > 0; {
		n, err := w.pc.WriteBatch(ms, 0)
		if n > 0 {
			ms = ms[n:]
			retry = 0
			continue
		}
		if err != nil {
			w.st.sendErrs++
			if retry++; retry > 1 { // this datagram is lost: its retransmission resends it
				ms = ms[1:]
				retry = 0
			}
			if errors.Is(err, net.ErrClosed) {
				break
			}
		}
	}
	for i := range w.wms[:w.nw] {
		w.wms[i].Buffers[0] = nil
	}
	w.nw = 0
	w.out = w.out[:0]
}

// fireTimers retransmits the requests whose timer ran out and fails the transactions whose
// Timer F did (and the calls that waited for a NOTIFY as long).
func (w *worker) fireTimers(now int64) {
	last := len(w.levels) - 1
	for i := range w.levels {
		for {
			t, ok := w.levels[i].peek()
			if !ok || t.at > now {
				break
			}
			w.levels[i].pop()
			c := &w.calls[t.j]
			if c.state == stDone || c.txn != t.txn || c.buf == nil || now-c.txStart >= int64(w.ph.cfg.timerF) {
				continue
			}
			w.queue(c.buf)
			w.st.retrans++
			c.tries++
			l := min(i+1, last)
			w.levels[l].push(timer{at: now + w.ivs[l], j: t.j, txn: t.txn})
		}
	}
	for {
		t, ok := w.finals.peek()
		if !ok || t.at > now {
			return
		}
		w.finals.pop()
		c := &w.calls[t.j]
		if c.state != stDone && c.txn == t.txn {
			w.st.timeouts++
			w.end(int(t.j), now, false)
		}
	}
}

// end closes call j, a success or a failure.
func (w *worker) end(j int, now int64, ok bool) {
	c := &w.calls[j]
	if c.buf != nil {
		w.free = append(w.free, c.buf)
		c.buf = nil
	}
	c.state = stDone
	c.dlg = nil
	w.active--
	w.st.lastDone = now
	if ok {
		w.st.ok++
		w.st.calls.add(time.Duration(now - c.start))
	} else {
		w.st.failed++
	}
}

// fail ends call j on an answer the scenario does not expect.
func (w *worker) fail(j int, now int64, code int) {
	w.st.unexpected++
	if w.st.codes == nil {
		w.st.codes = map[int]int{}
	}
	w.st.codes[code]++
	w.end(j, now, false)
}

// abandon fails the calls still open at the hard end.
func (w *worker) abandon(now int64) {
	for j := range w.calls[:w.next] {
		if w.calls[j].state != stDone {
			w.st.broken++
			w.end(j, now, false)
		}
	}
}

// handle reads one datagram: an answer to one of the worker's requests, or a request of the
// server (answered 200; a NOTIFY moves its subscribe call on).
func (w *worker) handle(b []byte, now int64) {
	m := &w.m
	if !parse(b, m) {
		w.st.strays++
		return
	}
	if m.request {
		w.request(m, now)
		return
	}
	r, ok := parseBranch(param(m.topVia(), "branch"))
	if !ok || r.run != w.ph.run || r.sock != w.k || r.call >= w.next {
		w.st.strays++
		return
	}
	c := &w.calls[r.call]
	if c.state == stDone || c.txn != r.txn || c.buf == nil {
		w.st.strays++ // a retransmitted answer, or one to a transaction already ended
		return
	}
	if m.status < 200 {
		return // provisional: the retransmissions go on (RFC 3261 §17.1.2.2 would slow them to T2)
	}
	w.st.txs.add(time.Duration(now - c.txStart))
	w.free = append(w.free, c.buf)
	c.buf = nil
	w.ph.answer(w, r.call, c, m, now)
}

// request answers a request of the server 200 (none for ACK) and passes a NOTIFY of one of
// the worker's subscribe calls to the scenario.
func (w *worker) request(m *sipMsg, now int64) {
	if eqFold(m.method, "ACK") {
		return
	}
	if w.nw == len(w.wms) {
		w.flush() // before appending: a flush reuses w.out
	}
	start := len(w.out)
	w.out = appendAnswer(w.out, m, 200, "OK", "L0")
	w.out = appendEnd(w.out, nil)
	w.queue(w.out[start:])
	if !eqFold(m.method, "NOTIFY") || w.ph.notify == nil {
		return
	}
	r, ok := parseCallID(m.callID)
	if !ok || r.run != w.ph.run || r.sock != w.k || r.call >= w.next {
		w.st.strays++
		return
	}
	if c := &w.calls[r.call]; c.state != stDone {
		w.ph.notify(w, r.call, c, m, now)
	}
}
