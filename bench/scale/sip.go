package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/bench/internal/rawsip"
)

// Client transaction timers: a request unanswered after retransmitAfter is sent once more
// (the same bytes, so simpled's transaction layer absorbs it), and one unanswered after
// giveUpAfter counts as failed.
const (
	retransmitAfter = 500 * time.Millisecond
	giveUpAfter     = 4 * time.Second
	reapEvery       = 20 * time.Millisecond
)

// udpClient sends hand-built requests to simpled from a few UDP sockets, matches the final
// answers by Call-ID (every request the tool sends has its own), and answers every request
// simpled sends to those sockets (the NOTIFYs) with 200.
type udpClient struct {
	server *net.UDPAddr
	socks  []*net.UDPConn
	ports  []int

	mu      sync.Mutex
	pending map[string]*txn

	retransmits atomic.Int64
	writeErrs   atomic.Int64
	strays      atomic.Int64 // final answers matching no pending request (late, duplicate)
	notifies    atomic.Int64 // NOTIFYs received, retransmissions included
	notifyDups  atomic.Int64 // NOTIFYs received again (same Call-ID and CSeq as the last)
	terminated  atomic.Int64 // NOTIFYs with Subscription-State terminated
	otherReqs   atomic.Int64 // requests other than NOTIFY (answered 200 too)

	// watchers is the per-watcher NOTIFY bookkeeping, set before the SUBSCRIBEs go out.
	watchers atomic.Pointer[watcherTable]

	stop chan struct{}
	wg   sync.WaitGroup
}

// txn is one request awaiting its final answer.
type txn struct {
	msg     []byte
	sock    int
	first   time.Time
	retrans bool
	// done is called once, from a reader or the reaper: status 0 means no answer. resp is
	// only valid during the call.
	done func(status int, resp []byte, rtt time.Duration)
}

// watcherTable records, per watcher index (Call-ID "scale-s-<i>"), the NOTIFYs received.
type watcherTable struct {
	notified []atomic.Int32  // distinct NOTIFYs
	lastCSeq []atomic.Uint32 // CSeq of the last NOTIFY, to tell retransmissions
	// marker, once set, is the note awaited in phase 3; resumeAt holds when (UnixNano) a
	// NOTIFY carrying it reached each watcher.
	marker   atomic.Pointer[[]byte]
	resumeAt []atomic.Int64
}

func newWatcherTable(n int) *watcherTable {
	return &watcherTable{
		notified: make([]atomic.Int32, n),
		lastCSeq: make([]atomic.Uint32, n),
		resumeAt: make([]atomic.Int64, n),
	}
}

// newUDPClient opens n sockets on 127.0.0.1 and starts their readers and the reaper.
func newUDPClient(server string, n int) (*udpClient, error) {
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	c := &udpClient{server: sa, pending: map[string]*txn{}, stop: make(chan struct{})}
	for range n {
		s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			c.close()
			return nil, err
		}
		_ = s.SetReadBuffer(4 << 20)
		_ = s.SetWriteBuffer(4 << 20)
		c.socks = append(c.socks, s)
		c.ports = append(c.ports, s.LocalAddr().(*net.UDPAddr).Port)
	}
	for k := range c.socks {
		c.wg.Add(1)
		go c.read(k)
	}
	c.wg.Add(1)
	go c.reap()
	return c, nil
}

// close closes the sockets and waits for the readers and the reaper.
func (c *udpClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	for _, s := range c.socks {
		_ = s.Close()
	}
	c.wg.Wait()
}

// local returns the address of socket k, as put in Via and Contact.
func (c *udpClient) local(k int) string { return "127.0.0.1:" + strconv.Itoa(c.ports[k]) }

// send registers a transaction keyed by its Call-ID and sends msg from socket sock.
func (c *udpClient) send(callID string, sock int, msg []byte, done func(int, []byte, time.Duration)) error {
	t := &txn{msg: msg, sock: sock, first: time.Now(), done: done}
	c.mu.Lock()
	if _, dup := c.pending[callID]; dup {
		c.mu.Unlock()
		return fmt.Errorf("Call-ID %s already pending", callID)
	}
	c.pending[callID] = t
	c.mu.Unlock()
	if _, err := c.socks[sock].WriteToUDP(msg, c.server); err != nil {
		c.writeErrs.Add(1) // the retransmission, or the time-out, deals with it
	}
	return nil
}

// reap retransmits once what is unanswered after retransmitAfter and fails what is still
// unanswered after giveUpAfter.
func (c *udpClient) reap() {
	defer c.wg.Done()
	tick := time.NewTicker(reapEvery)
	defer tick.Stop()
	var resend, expired []*txn
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		resend, expired = resend[:0], expired[:0]
		c.mu.Lock()
		for k, t := range c.pending {
			age := now.Sub(t.first)
			switch {
			case age >= giveUpAfter:
				delete(c.pending, k)
				expired = append(expired, t)
			case !t.retrans && age >= retransmitAfter:
				t.retrans = true
				resend = append(resend, t)
			}
		}
		c.mu.Unlock()
		for _, t := range resend {
			c.retransmits.Add(1)
			if _, err := c.socks[t.sock].WriteToUDP(t.msg, c.server); err != nil {
				c.writeErrs.Add(1)
			}
		}
		for _, t := range expired {
			t.done(0, nil, now.Sub(t.first))
		}
	}
}

// read handles what socket k receives until it is closed.
func (c *udpClient) read(k int) {
	defer c.wg.Done()
	buf := make([]byte, 65535)
	out := make([]byte, 0, 2048)
	for {
		n, from, err := c.socks[k].ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-c.stop:
				return
			default:
				continue
			}
		}
		out = c.handle(k, buf[:n], from, out[:0])
	}
}

var sipVersion = []byte("SIP/2.0 ")

// handle dispatches one datagram: a final answer completes its transaction, a request is
// answered 200 (a NOTIFY is also counted for its watcher). out is a scratch buffer, returned.
func (c *udpClient) handle(k int, msg []byte, from *net.UDPAddr, out []byte) []byte {
	head := rawsip.Head(msg)
	body := msg[min(len(head)+4, len(msg)):]
	if bytes.HasPrefix(head, sipVersion) {
		if len(head) < 11 {
			return out
		}
		status, err := strconv.Atoi(string(head[8:11]))
		if err != nil || status < 200 {
			return out
		}
		callID := string(rawsip.HeaderValue(head, "call-id", "i"))
		c.mu.Lock()
		t := c.pending[callID]
		delete(c.pending, callID)
		c.mu.Unlock()
		if t == nil {
			c.strays.Add(1)
			return out
		}
		t.done(status, msg, time.Since(t.first))
		return out
	}
	sp := bytes.IndexByte(head, ' ')
	if sp <= 0 {
		return out
	}
	method := string(head[:sp])
	if method == "ACK" {
		return out
	}
	out = rawsip.Answer200(head, out, "scale")
	if _, err := c.socks[k].WriteToUDP(out, from); err != nil {
		c.writeErrs.Add(1)
	}
	if method != "NOTIFY" {
		c.otherReqs.Add(1)
		return out
	}
	c.notifies.Add(1)
	if bytes.HasPrefix(bytes.TrimSpace(rawsip.HeaderValue(head, "subscription-state", "")), []byte("terminated")) {
		c.terminated.Add(1)
	}
	w := c.watchers.Load()
	if w == nil {
		return out
	}
	idx, ok := watcherIndex(rawsip.HeaderValue(head, "call-id", "i"))
	if !ok || idx >= len(w.notified) {
		return out
	}
	cseq := cseqNumber(rawsip.HeaderValue(head, "cseq", ""))
	if w.lastCSeq[idx].Swap(cseq) == cseq {
		c.notifyDups.Add(1)
	} else {
		w.notified[idx].Add(1)
	}
	if m := w.marker.Load(); m != nil && bytes.Contains(body, *m) {
		w.resumeAt[idx].CompareAndSwap(0, time.Now().UnixNano())
	}
	return out
}

// cseqNumber returns the sequence number of a CSeq value ("12 NOTIFY").
func cseqNumber(v []byte) uint32 {
	f := bytes.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(string(f[0]), 10, 32)
	return uint32(n)
}

// watcherIndex returns i of a SUBSCRIBE Call-ID "scale-s-<i>".
func watcherIndex(callID []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(callID, []byte("scale-s-"))
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(rest))
	return i, err == nil && i >= 0
}

// phaseStats is what one phase of paced requests achieved.
type phaseStats struct {
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Statuses    map[string]int `json:"failed_by_status,omitempty"` // "0" = no answer
	Retransmits int64          `json:"retransmitted"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	LatencyP50  float64        `json:"latency_p50_ms"`
	LatencyP99  float64        `json:"latency_p99_ms"`
	LatencyMax  float64        `json:"latency_max_ms"`
}

// request is one request of a phase: its Call-ID, the socket it leaves from and its bytes.
type request struct {
	callID string
	sock   int
	msg    []byte
}

// runPhase sends n requests built by build, paced at rate per second with at most window
// unanswered at a time, and waits for every answer (or its time-out). ok, when not nil, is
// told which requests got a 2xx. It returns early, with what was measured, when ctx ends or
// alive reports an error (the server exited).
func (c *udpClient) runPhase(ctx context.Context, name string, n, rate, window int,
	build func(i int) request, ok func(i int), alive func() error, progress io.Writer) (*phaseStats, error) {
	st := &phaseStats{Requests: n, Statuses: map[string]int{}}
	lat := make([]time.Duration, n)
	var (
		mu             sync.Mutex
		okN, failN     atomic.Int64
		outstanding    sync.WaitGroup
		sem            = make(chan struct{}, window)
		retransAtStart = c.retransmits.Load()
	)
	start := time.Now()
	defer reportProgress(progress, name, n, start, &okN, &failN)()

	var err error
	sent := 0
	// alive is asked every 200 ms, whatever the loop waits for (its pace, a window slot, the
	// last answers).
	check := time.NewTicker(200 * time.Millisecond)
	defer check.Stop()
	pace := time.NewTimer(time.Hour)
	defer pace.Stop()
send:
	for i := range n {
		due := start.Add(time.Duration(int64(i) * int64(time.Second) / int64(rate)))
		if d := time.Until(due); d > time.Millisecond {
			pace.Reset(d)
			if err = await(ctx, pace.C, check.C, alive); err != nil {
				break send
			}
		}
		for waiting := true; waiting; {
			select {
			case sem <- struct{}{}:
				waiting = false
			case <-ctx.Done():
				err = ctx.Err()
				break send
			case <-check.C:
				if err = alive(); err != nil {
					break send
				}
			}
		}
		r := build(i)
		outstanding.Add(1)
		if e := c.send(r.callID, r.sock, r.msg, func(status int, _ []byte, rtt time.Duration) {
			lat[i] = rtt
			if status >= 200 && status < 300 {
				okN.Add(1)
				if ok != nil {
					ok(i)
				}
			} else {
				failN.Add(1)
				mu.Lock()
				st.Statuses[strconv.Itoa(status)]++
				mu.Unlock()
			}
			<-sem
			outstanding.Done()
		}); e != nil {
			outstanding.Done()
			<-sem
			err = e
			break send
		}
		sent++
	}
	all := make(chan struct{})
	go func() { outstanding.Wait(); close(all) }()
	for err == nil {
		select {
		case <-all:
		case <-ctx.Done():
			err = ctx.Err()
			continue
		case <-check.C:
			err = alive()
			continue
		}
		break
	}
	st.OK, st.Failed = int(okN.Load()), int(failN.Load())
	st.Retransmits = c.retransmits.Load() - retransAtStart
	st.finish(time.Since(start), lat[:sent], err != nil)
	return st, err
}

// finish fills in a phase's rate and latency percentiles over the answers of the requests
// sent (lat). After an error (failed) it counts the requests sent instead: unanswered
// requests keep their window slots until the reaper fails them, so the counts are what was
// answered so far, and the latencies are left out.
func (st *phaseStats) finish(elapsed time.Duration, lat []time.Duration, failed bool) {
	st.Seconds = elapsed.Seconds()
	st.PerSecond = float64(st.OK+st.Failed) / st.Seconds
	if !failed {
		ls := slices.Clone(lat)
		slices.Sort(ls)
		if len(ls) > 0 {
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			st.LatencyP50 = ms(ls[len(ls)/2])
			st.LatencyP99 = ms(ls[len(ls)*99/100])
			st.LatencyMax = ms(ls[len(ls)-1])
		}
	} else {
		st.Requests = len(lat)
	}
	if len(st.Statuses) == 0 {
		st.Statuses = nil
	}
}

// await waits for ch, asking alive at every tick of check; it returns ctx's error or alive's.
func await(ctx context.Context, ch, check <-chan time.Time, alive func() error) error {
	for {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-check:
			if err := alive(); err != nil {
				return err
			}
		}
	}
}

// reportProgress writes a phase's progress every 5 s until the function it returns is
// called.
func reportProgress(w io.Writer, name string, n int, start time.Time, okN, failN *atomic.Int64) (stop func()) {
	stopping, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopping:
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				answered := okN.Load() + failN.Load()
				fmt.Fprintf(w, "  %s: %d/%d answered in %.0f s (%.0f/s), %d failed\n",
					name, answered, n, el, float64(answered)/el, failN.Load())
			}
		}
	}()
	return func() {
		close(stopping)
		<-done
	}
}
