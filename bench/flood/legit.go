package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/bench/internal/rawsip"
)

// The legitimate users: alice (the scripted client), bob (a device that answers 200) and
// carol (a device that never answers: the attackers' MESSAGEs target her).
var passwords = map[string]string{"alice": "alice-flood-pw", "bob": "bob-flood-pw", "carol": "carol-flood-pw"}

const (
	domain      = "example.test"
	answerBy    = time.Second            // a legitimate request counts when answered correctly within this
	retransmit  = 500 * time.Millisecond // T1: an unanswered request is sent once more
	giveUp      = 2 * time.Second
	maxInFlight = 200
)

// legit is the legitimate side, all on 127.0.0.1: alice's socket sends the requests and
// answers the NOTIFYs, bob's answers every request 200, carol's is bound and never read.
type legit struct {
	server           netip.AddrPort
	alice, bob, dead *net.UDPConn

	mu      sync.Mutex
	pending map[string]chan []byte // Call-ID + " " + CSeq number → final answer
	nonces  map[int][]*nonce       // free challenges, by their code (401, 407)
	dialog  *subDialog             // alice's presence subscription to bob, nil between two

	seq      atomic.Int64
	inFlight atomic.Int64
	// refreshing is set while a refresh of the dialog is in flight: the next refresh waits
	// for its answer (a refresh overtaking another would get 500 for its lower CSeq), and
	// a SUBSCRIBE due meanwhile is a new subscription of its own instead.
	refreshing atomic.Bool
	wg         sync.WaitGroup
	results    chan result
}

// subDialog is the SUBSCRIBE dialog alice refreshes.
type subDialog struct {
	callID, fromTag, toTag, target string
	cseq                           int
}

// result is one legitimate request's outcome.
type result struct {
	kind    string
	start   time.Time
	rtt     time.Duration
	code    int // final status, 0 when none came
	correct bool
}

func newLegit(server netip.AddrPort) (*legit, error) {
	l := &legit{server: server, pending: map[string]chan []byte{}, nonces: map[int][]*nonce{}, results: make(chan result, 4096)}
	var err error
	listen := func() *net.UDPConn {
		if err != nil {
			return nil
		}
		var c *net.UDPConn
		c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return c
	}
	l.alice, l.bob, l.dead = listen(), listen(), listen()
	if err != nil {
		l.close()
		return nil, err
	}
	_ = l.alice.SetReadBuffer(4 << 20)
	_ = l.dead.SetReadBuffer(4096)
	l.wg.Add(2)
	go l.read(l.alice, true)
	go l.read(l.bob, false)
	return l, nil
}

func (l *legit) close() {
	for _, c := range []*net.UDPConn{l.alice, l.bob, l.dead} {
		if c != nil {
			c.Close()
		}
	}
	l.wg.Wait()
}

// read answers the requests c receives with 200 and, for alice's socket, hands the final
// answers to their waiting request.
func (l *legit) read(c *net.UDPConn, dispatch bool) {
	defer l.wg.Done()
	buf := make([]byte, 65535)
	var out []byte
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := buf[:n]
		code := statusOf(msg)
		if code == 0 {
			if len(msg) > 4 && string(msg[:4]) == "ACK " {
				continue
			}
			out = rawsip.Answer200(rawsip.Head(msg), out[:0], "flood")
			_, _ = c.WriteToUDPAddrPort(out, from)
			continue
		}
		if !dispatch || code < 200 {
			continue
		}
		cseq := rawsip.HeaderValue(rawsip.Head(msg), "CSeq", "")
		num := cseq
		for i, b := range cseq {
			if b == ' ' {
				num = cseq[:i]
				break
			}
		}
		key := string(rawsip.HeaderValue(rawsip.Head(msg), "Call-ID", "i")) + " " + string(num)
		l.mu.Lock()
		ch := l.pending[key]
		delete(l.pending, key)
		l.mu.Unlock()
		if ch != nil {
			ch <- append([]byte(nil), msg...)
		}
	}
}

func (l *legit) local(c *net.UDPConn) string { return c.LocalAddr().String() }

// transact sends msg from alice's socket and waits for its final answer (retransmitting it
// once after T1); nil when none came within giveUp.
func (l *legit) transact(callID string, cseq int, msg []byte) []byte {
	key := callID + " " + strconv.Itoa(cseq)
	ch := make(chan []byte, 1)
	l.mu.Lock()
	l.pending[key] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, key)
		l.mu.Unlock()
	}()
	_, _ = l.alice.WriteToUDPAddrPort(msg, l.server)
	t := time.NewTimer(retransmit)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case r := <-ch:
			return r
		case <-t.C:
			if i > 0 {
				return nil
			}
			_, _ = l.alice.WriteToUDPAddrPort(msg, l.server)
			t.Reset(giveUp - retransmit)
		}
	}
}

// takeNonce returns a free challenge of code, nil when there is none.
func (l *legit) takeNonce(code int) *nonce {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns := l.nonces[code]
	if len(ns) == 0 {
		return nil
	}
	n := ns[len(ns)-1]
	l.nonces[code] = ns[:len(ns)-1]
	return n
}

func (l *legit) putNonce(code int, n *nonce) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.nonces[code]) < 32 {
		l.nonces[code] = append(l.nonces[code], n)
	}
}

// request is what one legitimate request needs: how to build it (with or without
// credentials) and which answers are correct.
type request struct {
	kind, method, uri, user string
	callID                  string
	cseq                    int
	refresh, extra          bool // a SUBSCRIBE refreshing the dialog; one beside it
	build                   func(cseq int, authz string) []byte
}

// do sends r, answering challenges with the user's password (a kept nonce first), and
// returns its outcome.
func (l *legit) do(r request) result {
	start := time.Now()
	res := result{kind: r.kind, start: start}
	code := 401
	if r.method != "REGISTER" {
		code = 407
	}
	n := l.takeNonce(code)
	cseq := r.cseq
	var resp []byte
	for attempt := 0; attempt < 3; attempt++ {
		authz := ""
		if n != nil {
			authz = n.authorization(r.user, passwords[r.user], r.method, r.uri)
		}
		resp = l.transact(r.callID, cseq, r.build(cseq, authz))
		res.rtt = time.Since(start)
		res.code = statusOf(resp)
		if res.code != 401 && res.code != 407 {
			break
		}
		name := "WWW-Authenticate"
		if res.code == 407 {
			name = "Proxy-Authenticate"
		}
		n = parseChallenge(string(rawsip.HeaderValue(rawsip.Head(resp), name, "")))
		if n == nil {
			break
		}
		cseq++
	}
	if res.code >= 200 && res.code < 300 && n != nil {
		l.putNonce(code, n)
	}
	res.correct = res.code >= 200 && res.code < 300 && res.rtt <= answerBy
	if r.kind == "subscribe" {
		l.subscribed(r, cseq, res.code, resp)
	}
	return res
}

// subscribed keeps or ends alice's subscription dialog after a SUBSCRIBE.
func (l *legit) subscribed(r request, cseq, code int, resp []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.refresh {
		defer l.refreshing.Store(false)
	}
	if r.extra {
		return
	}
	if code < 200 || code >= 300 {
		if l.dialog != nil && l.dialog.callID == r.callID {
			l.dialog = nil
		}
		return
	}
	if l.dialog == nil {
		to := string(rawsip.HeaderValue(rawsip.Head(resp), "To", "t"))
		target := ""
		c := string(rawsip.HeaderValue(rawsip.Head(resp), "Contact", "m"))
		if i, j := indexByte(c, '<'), indexByte(c, '>'); i >= 0 && j > i {
			target = c[i+1 : j]
		}
		if target == "" {
			target = "sip:bob@" + domain
		}
		l.dialog = &subDialog{callID: r.callID, fromTag: "a" + r.callID, toTag: param(to, "tag"), target: target, cseq: cseq}
		return
	}
	if l.dialog.callID == r.callID && cseq > l.dialog.cseq {
		l.dialog.cseq = cseq
	}
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// register builds a REGISTER of user with a contact at c (alice's, bob's or carol's socket).
func (l *legit) register(user string, c *net.UDPConn, expires int) request {
	id := fmt.Sprintf("lr-%s-%d", user, l.seq.Add(1))
	return request{kind: "register", method: "REGISTER", uri: "sip:" + domain, user: user, callID: id, cseq: 1,
		build: func(cseq int, authz string) []byte {
			return []byte("REGISTER sip:" + domain + " SIP/2.0\r\n" + l.via() +
				"From: <sip:" + user + "@" + domain + ">;tag=t" + id + "\r\nTo: <sip:" + user + "@" + domain + ">\r\n" +
				"Call-ID: " + id + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
				"Contact: <sip:" + user + "@" + l.local(c) + ">\r\nExpires: " + strconv.Itoa(expires) + "\r\n" +
				header("Authorization", authz) + "Content-Length: 0\r\n\r\n")
		}}
}

// message builds a MESSAGE from alice to bob.
func (l *legit) message() request {
	id := fmt.Sprintf("lm-%d", l.seq.Add(1))
	body := "hello bob " + id
	return request{kind: "message", method: "MESSAGE", uri: "sip:bob@" + domain, user: "alice", callID: id, cseq: 1,
		build: func(cseq int, authz string) []byte {
			return []byte("MESSAGE sip:bob@" + domain + " SIP/2.0\r\n" + l.via() +
				"From: <sip:alice@" + domain + ">;tag=t" + id + "\r\nTo: <sip:bob@" + domain + ">\r\n" +
				"Call-ID: " + id + "\r\nCSeq: " + strconv.Itoa(cseq) + " MESSAGE\r\n" +
				header("Proxy-Authorization", authz) +
				"Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
		}}
}

// subscribe builds a SUBSCRIBE of alice to bob's presence: a refresh within the dialog when
// there is one and no refresh is in flight, else a new one (which becomes the dialog when
// there is none).
func (l *legit) subscribe() request {
	l.mu.Lock()
	d := l.dialog
	var id, fromTag, toTag, target string
	cseq := 1
	refresh, extra := false, false
	switch {
	case d != nil && l.refreshing.CompareAndSwap(false, true):
		d.cseq++
		id, fromTag, toTag, target, cseq = d.callID, d.fromTag, d.toTag, d.target, d.cseq
		refresh = true
	case d != nil:
		d, extra = nil, true
	}
	l.mu.Unlock()
	if d == nil {
		id = fmt.Sprintf("ls-%d", l.seq.Add(1))
		fromTag, target = "a"+id, "sip:bob@"+domain
	}
	to := "To: <sip:bob@" + domain + ">"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	expires := "600"
	if extra {
		expires = "60" // the shortest simpled accepts: these pile up for a minute at most
	}
	return request{kind: "subscribe", method: "SUBSCRIBE", uri: target, user: "alice", callID: id, cseq: cseq,
		refresh: refresh, extra: extra,
		build: func(cseq int, authz string) []byte {
			return []byte("SUBSCRIBE " + target + " SIP/2.0\r\n" + l.via() +
				"From: <sip:alice@" + domain + ">;tag=" + fromTag + "\r\n" + to + "\r\n" +
				"Call-ID: " + id + "\r\nCSeq: " + strconv.Itoa(cseq) + " SUBSCRIBE\r\n" +
				"Contact: <sip:alice@" + l.local(l.alice) + ">\r\nEvent: presence\r\nAccept: application/pidf+xml\r\n" +
				"Expires: " + expires + "\r\n" + header("Proxy-Authorization", authz) + "Content-Length: 0\r\n\r\n")
		}}
}

func (l *legit) via() string {
	return "Via: SIP/2.0/UDP " + l.local(l.alice) + ";branch=z9hG4bK-l" + strconv.FormatInt(l.seq.Add(1), 10) + ";rport\r\nMax-Forwards: 70\r\n"
}

func header(name, v string) string {
	if v == "" {
		return ""
	}
	return name + ": " + v + "\r\n"
}

// setup registers bob's and carol's devices.
func (l *legit) setup() error {
	for _, u := range []struct {
		user string
		c    *net.UDPConn
	}{{"bob", l.bob}, {"carol", l.dead}} {
		if r := l.do(l.register(u.user, u.c, 3600)); r.code != 200 {
			return fmt.Errorf("REGISTER %s: answered %d", u.user, r.code)
		}
	}
	return nil
}

// run sends one legitimate request every interval (REGISTER, MESSAGE, SUBSCRIBE in turn)
// until stop closes, each in its own goroutine (at most maxInFlight), and sends every
// outcome to l.results; it returns when the last has.
func (l *legit) run(interval time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var reqs sync.WaitGroup
	for i := 0; ; i++ {
		select {
		case <-stop:
			reqs.Wait()
			close(l.results)
			return
		case <-tick.C:
		}
		var r request
		switch i % 3 {
		case 0:
			r = l.register("alice", l.alice, 600)
		case 1:
			r = l.message()
		default:
			r = l.subscribe()
		}
		if l.inFlight.Load() >= maxInFlight {
			l.results <- result{kind: r.kind, start: time.Now(), code: -1}
			continue
		}
		l.inFlight.Add(1)
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			defer l.inFlight.Add(-1)
			l.results <- l.do(r)
		}()
	}
}
