package transport

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// streamWait bounds every wait of these tests; nothing here should take more than a fraction.
const streamWait = 10 * time.Second

// streamEvents records a listener's events.
type streamEvents struct {
	mu  sync.Mutex
	evs []Event
}

func (e *streamEvents) add(ev Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *streamEvents) count(kind EventKind, reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == kind && (reason == "" || ev.Reason == reason) {
			n++
		}
	}
	return n
}

// wait polls until at least n events of kind (and reason, if set) were seen.
func (e *streamEvents) wait(t testing.TB, kind EventKind, reason string, n int) {
	t.Helper()
	streamPoll(t, fmt.Sprintf("%d %s %q events", n, kind, reason), func() bool { return e.count(kind, reason) >= n })
}

func streamPoll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(streamWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var streamCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "simpled test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})

func streamServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := streamCert()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func streamClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := streamCert()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// streamServer is a sipgo server answering REGISTER with 200, served on a StreamListener on
// 127.0.0.1.
type streamServer struct {
	l         *StreamListener
	addr      string
	transport string
	ev        *streamEvents
	stopFns   []func()
	insecure  bool // the client does not verify the certificate (a child process has another)
}

func (s *streamServer) clientTLS(t testing.TB) *tls.Config {
	if s.insecure {
		return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test's own server
	}
	return streamClientTLS(t)
}

func startStreamServer(t testing.TB, o StreamOptions) *streamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ev := &streamEvents{}
	o.Events = ev.add
	if o.Log == nil {
		o.Log = zap.NewNop()
		if testing.Verbose() {
			o.Log = streamTestLogger(t)
		}
	}
	if (o.Transport == "tls" || o.Transport == "wss") && o.TLS == nil {
		o.TLS = streamServerTLS(t)
	}
	l := NewStreamListener(ln, o)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("stream-test"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	serve := map[string]func(net.Listener) error{"tcp": srv.ServeTCP, "tls": srv.ServeTLS, "ws": srv.ServeWS, "wss": srv.ServeWSS}[o.Transport]
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	t.Cleanup(func() {
		_ = l.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve returned %v, want net.ErrClosed", err)
			}
		case <-time.After(streamWait):
			t.Error("Serve did not return after the listener closed")
		}
		_ = ua.Close()
	})
	return &streamServer{l: l, addr: ln.Addr().String(), transport: o.Transport, ev: ev}
}

// streamTestLogger logs to t until the test ends: a connection goroutine of sipgo's may still
// be closing (lingering) then, and testing forbids logging to a finished test.
func streamTestLogger(t testing.TB) *zap.Logger {
	w := &streamTestLog{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.DebugLevel))
}

type streamTestLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *streamTestLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

// dial opens a tcp or tls client connection (TLS handshake done).
func (s *streamServer) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, streamWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if s.transport == "tls" {
		tc := tls.Client(c, s.clientTLS(t))
		_ = tc.SetDeadline(time.Now().Add(streamWait))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		_ = tc.SetDeadline(time.Time{})
		return tc
	}
	return c
}

var streamBranch struct {
	sync.Mutex
	n int
}

// streamRegister is a REGISTER over transport with a fresh branch, and body if any.
func streamRegister(transport, body string) string {
	streamBranch.Lock()
	streamBranch.n++
	n := strconv.Itoa(streamBranch.n)
	streamBranch.Unlock()
	return "REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/" + strings.ToUpper(transport) + " 127.0.0.1:5999;branch=z9hG4bK-stream-" + n + ";rport\r\n" +
		"From: <sip:alice@example.test>;tag=a" + n + "\r\n" +
		"To: <sip:alice@example.test>\r\n" +
		"Call-ID: stream-" + n + "\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice@127.0.0.1:5999>\r\n" +
		"Max-Forwards: 70\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// readSIP reads one SIP message (headers and Content-Length body) from a stream.
func readSIP(t testing.TB, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(streamWait))
	var head strings.Builder
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a SIP message: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "content-length") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	return head.String() + string(body)
}

func expect200(t testing.TB, msg string) {
	t.Helper()
	if !strings.HasPrefix(msg, "SIP/2.0 200 ") {
		t.Fatalf("got %q, want a 200", msg)
	}
}

// expectClosed reads until the server closes the connection (EOF or reset).
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(streamWait))
	_, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatal("the server did not close the connection")
	}
}

func TestStreamRegister(t *testing.T) {
	for _, tr := range []string{"tcp", "tls", "ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: tr})
			if tr == "ws" || tr == "wss" {
				c := s.dialWS(t)
				for range 3 {
					c.send(t, ws.OpText, true, streamRegister(tr, ""))
					expect200(t, c.readText(t))
				}
				streamPoll(t, "Has", func() bool { return s.l.Has(c.conn.LocalAddr().String()) })
			} else {
				c := s.dial(t)
				br := bufio.NewReader(c)
				for range 3 {
					if _, err := io.WriteString(c, streamRegister(tr, "")); err != nil {
						t.Fatal(err)
					}
					expect200(t, readSIP(t, c, br))
				}
				// Two messages in one write, and one with a body.
				if _, err := io.WriteString(c, streamRegister(tr, "")+streamRegister(tr, "hello")); err != nil {
					t.Fatal(err)
				}
				expect200(t, readSIP(t, c, br))
				expect200(t, readSIP(t, c, br))
				if !s.l.Has(c.LocalAddr().String()) || s.l.Len() != 1 {
					t.Errorf("Has = %v, Len = %d; want true, 1", s.l.Has(c.LocalAddr().String()), s.l.Len())
				}
			}
			if n := s.ev.count(EventOpen, ""); n != 1 {
				t.Errorf("%d open events, want 1", n)
			}
		})
	}
}

func TestStreamTLSGarbage(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "tls"})
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := io.WriteString(raw, "REGISTER sip:example.test SIP/2.0\r\n\r\n"+strings.Repeat("garbage", 100)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, raw)
	s.ev.wait(t, EventRejected, ReasonHandshake, 1)
	c := s.dial(t)
	if _, err := io.WriteString(c, streamRegister("tls", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, c, bufio.NewReader(c)))
}

// A client that connects and says nothing must not hold up the handshakes of others.
func TestStreamSilentClientDoesNotBlock(t *testing.T) {
	for _, tr := range []string{"tls", "ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: tr, HandshakeTimeout: time.Minute})
			silent, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			streamPoll(t, "the silent connection accepted", func() bool { return s.l.Len() == 1 })
			if tr == "tls" {
				c := s.dial(t)
				if _, err := io.WriteString(c, streamRegister(tr, "")); err != nil {
					t.Fatal(err)
				}
				expect200(t, readSIP(t, c, bufio.NewReader(c)))
			} else {
				c := s.dialWS(t)
				c.send(t, ws.OpText, true, streamRegister(tr, ""))
				expect200(t, c.readText(t))
			}
			if !s.l.Has(silent.LocalAddr().String()) {
				t.Error("the silent connection is not counted")
			}
			// Closing the listener ends the pending handshake.
			_ = s.l.Close()
			expectClosed(t, silent)
			if s.l.Has(silent.LocalAddr().String()) {
				t.Error("the silent connection is still counted after Close")
			}
		})
	}
}

func TestStreamHandshakeTimeout(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "wss", HandshakeTimeout: 200 * time.Millisecond})
	silent, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	expectClosed(t, silent)
	s.ev.wait(t, EventRejected, ReasonHandshake, 1)
	streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
}

func TestStreamStall(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "tcp", MessageTimeout: 200 * time.Millisecond})
	c := s.dial(t)
	br := bufio.NewReader(c)
	// A whole message first: the stall timer only runs while a message is in progress.
	if _, err := io.WriteString(c, streamRegister("tcp", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, c, br))
	msg := streamRegister("tcp", "0123456789")
	if _, err := io.WriteString(c, msg[:len(msg)-5]); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	s.ev.wait(t, EventRejected, ReasonStall, 1)
	s.ev.wait(t, EventClose, "", 1)
	streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
}

func TestStreamIdleAndPin(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "tcp", IdleTimeout: 300 * time.Millisecond})
	idle, pinned := s.dial(t), s.dial(t)
	for _, c := range []net.Conn{idle, pinned} {
		if _, err := io.WriteString(c, streamRegister("tcp", "")); err != nil {
			t.Fatal(err)
		}
		expect200(t, readSIP(t, c, bufio.NewReader(c)))
	}
	if s.l.Pin("127.0.0.1:1", time.Now().Add(time.Hour)) {
		t.Error("Pin of an unknown remote reported true")
	}
	until := time.Now().Add(2 * time.Second)
	if !s.l.Pin(pinned.LocalAddr().String(), until) {
		t.Fatal("Pin reported no connection")
	}
	s.l.Pin(pinned.LocalAddr().String(), until.Add(-time.Second)) // a shorter pin does not shorten
	expectClosed(t, idle)
	s.ev.wait(t, EventRejected, ReasonIdle, 1)
	if time.Now().Before(until.Add(-100 * time.Millisecond)) {
		if !s.l.Has(pinned.LocalAddr().String()) {
			t.Fatal("the pinned connection was closed before its pin passed")
		}
	}
	expectClosed(t, pinned)
	if time.Now().Before(until) {
		t.Fatalf("the pinned connection was closed %v before its pin passed", time.Until(until))
	}
	s.ev.wait(t, EventRejected, ReasonIdle, 2)
	streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
}

func TestStreamMaxConnections(t *testing.T) {
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: tr, MaxConnections: 2})
			register := func(c net.Conn) {
				t.Helper()
				if tr == "ws" {
					wc := &wsClient{conn: c, br: bufio.NewReader(c)}
					wc.send(t, ws.OpText, true, streamRegister(tr, ""))
					expect200(t, wc.readText(t))
					return
				}
				if _, err := io.WriteString(c, streamRegister(tr, "")); err != nil {
					t.Fatal(err)
				}
				expect200(t, readSIP(t, c, bufio.NewReader(c)))
			}
			var first []net.Conn
			for range 2 {
				var c net.Conn
				if tr == "ws" {
					c = s.dialWS(t).conn
				} else {
					c = s.dial(t)
				}
				register(c)
				first = append(first, c)
			}
			extra, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer extra.Close()
			expectClosed(t, extra)
			s.ev.wait(t, EventRejected, ReasonLimit, 1)
			for _, c := range first {
				register(c)
			}
			if n := s.l.Len(); n != 2 {
				t.Errorf("Len = %d, want 2", n)
			}
		})
	}
}

func TestStreamCRLFKeepalive(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "tcp"})
	c := s.dial(t)
	if _, err := io.WriteString(c, "\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(streamWait))
	pong := make([]byte, 2)
	if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("pong %q, %v; want CRLF", pong, err)
	}
	s.ev.wait(t, EventKeepalive, "", 1)
	if _, err := io.WriteString(c, streamRegister("tcp", "")); err != nil {
		t.Fatal(err)
	}
	expect200(t, readSIP(t, c, bufio.NewReader(c)))
}

func TestStreamTooLarge(t *testing.T) {
	for name, msg := range map[string]string{
		"body":    streamRegister("tcp", strings.Repeat("x", 2000)),
		"headers": strings.Replace(streamRegister("tcp", ""), "Max-Forwards: 70", "X-Big: "+strings.Repeat("x", 2000), 1),
	} {
		t.Run(name, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: "tcp", MaxMessageSize: 1024})
			c := s.dial(t)
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, streamRegister("tcp", strings.Repeat("y", 500))); err != nil {
				t.Fatal(err)
			}
			expect200(t, readSIP(t, c, br))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			s.ev.wait(t, EventRejected, ReasonTooLarge, 1)
		})
	}
}

// Every goroutine of the listener ends with its connection, and with the listener.
func TestStreamGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		var servers []*streamServer
		for _, tr := range []string{"tcp", "tls", "ws", "wss"} {
			servers = append(servers, startStreamServerNoCleanup(t, StreamOptions{Transport: tr}))
		}
		defer func() {
			for _, s := range servers {
				s.stop()
			}
		}()
		var conns []net.Conn
		for _, s := range servers {
			for range 3 {
				if s.transport == "ws" || s.transport == "wss" {
					c := s.dialWSNoCleanup(t)
					c.send(t, ws.OpText, true, streamRegister(s.transport, ""))
					expect200(t, c.readText(t))
					c.send(t, ws.OpPing, true, "x")
					if f := c.read(t); f.Header.OpCode != ws.OpPong {
						t.Fatalf("got opcode %v, want pong", f.Header.OpCode)
					}
					conns = append(conns, c.conn)
				} else {
					c := s.dialNoCleanup(t)
					if _, err := io.WriteString(c, streamRegister(s.transport, "")); err != nil {
						t.Fatal(err)
					}
					expect200(t, readSIP(t, c, bufio.NewReader(c)))
					conns = append(conns, c)
				}
			}
			// A connection that never finishes its handshake, left to Close.
			if s.transport != "tcp" {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
		for _, s := range servers {
			streamPoll(t, s.transport+" connections closed", func() bool { return s.l.Len() == 0 })
		}
	}()
	var n int
	deadline := time.Now().Add(streamWait)
	for n = runtime.NumGoroutine(); n > base && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// startStreamServerNoCleanup is startStreamServer with an explicit stop, for tests that count
// goroutines before their own end.
func startStreamServerNoCleanup(t *testing.T, o StreamOptions) *streamServer {
	t.Helper()
	var cleanups []func()
	ct := &cleanupTB{TB: t, add: func(f func()) { cleanups = append(cleanups, f) }}
	s := startStreamServer(ct, o)
	s.stopFns = cleanups
	return s
}

// cleanupTB collects Cleanup functions instead of deferring them to the test's end.
type cleanupTB struct {
	testing.TB
	add func(func())
}

func (c *cleanupTB) Cleanup(f func()) { c.add(f) }

func (s *streamServer) stop() {
	for i := len(s.stopFns) - 1; i >= 0; i-- {
		s.stopFns[i]()
	}
}

func (s *streamServer) dialNoCleanup(t *testing.T) net.Conn {
	t.Helper()
	var cleanups []func()
	c := s.dial(&cleanupTB{TB: t, add: func(f func()) { cleanups = append(cleanups, f) }})
	return c
}

func TestFramer(t *testing.T) {
	reg := streamRegister("tcp", "")
	withBody := streamRegister("tcp", "0123456789")
	tests := []struct {
		name       string
		in         string
		max        int
		done, ka   int
		mid, large bool
	}{
		{name: "one message", in: reg, done: 1},
		{name: "two in a row with CRLFs", in: "\r\n" + reg + "\r\n\r\n" + withBody, done: 2, ka: 1},
		{name: "half a message", in: reg[:40], mid: true},
		{name: "headers without the body", in: withBody[:len(withBody)-3], mid: true},
		{name: "no content-length", in: "OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n", done: 1},
		{name: "compact l with spaces", in: "MESSAGE sip:x SIP/2.0\r\nL :  3 \r\n\r\nabc", done: 1},
		{name: "last content-length wins", in: "MESSAGE sip:x SIP/2.0\r\nl: 9\r\nContent-Length: 3\r\n\r\nabc", done: 1},
		{name: "malformed content-length ignored", in: "MESSAGE sip:x SIP/2.0\r\nContent-Length: 3\r\nContent-Length: x3\r\n\r\nabc", done: 1},
		{name: "content-length in the start line is not one", in: "l: 5 sip:x SIP/2.0\r\n\r\n", done: 1},
		{name: "keepalives", in: "\r\n\r\n\r\n\r\n\r\n", ka: 2},
		{name: "bare LF does not end headers", in: "OPTIONS sip:x SIP/2.0\n\n", mid: true},
		{name: "too large headers", in: reg, max: 50, large: true},
		{name: "too large body", in: "MESSAGE sip:x SIP/2.0\r\nl: 100\r\n\r\n", max: 60, large: true},
		{name: "huge content-length", in: "MESSAGE sip:x SIP/2.0\r\nl: 99999999999\r\n\r\n", done: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1 << 16
			}
			// Whole, and byte by byte.
			for _, step := range []int{len(tt.in), 1} {
				f := framer{max: int64(max)}
				var done, ka int
				var large bool
				for i := 0; i < len(tt.in) && !large; i += step {
					r := f.feed([]byte(tt.in[i:min(i+step, len(tt.in))]))
					done, ka, large = done+r.done, ka+r.keepalives, r.verdict.Code == 513
				}
				if done != tt.done || ka != tt.ka || large != tt.large || (!large && f.mid() != tt.mid) {
					t.Errorf("step %d: done %d ka %d large %v mid %v; want %d %d %v %v", step, done, ka, large, f.mid(), tt.done, tt.ka, tt.large, tt.mid)
				}
			}
		})
	}
}

// refFrames is the framer's specification over a whole stream: the offsets where messages
// end, the keepalives between them, and the index of the byte at which the stream is refused
// as too large (-1: never).
func refFrames(data []byte, max int) (ends []int, keepalives int, failAt int) {
	i := 0
	for {
		gap := i
		for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
			i++
		}
		keepalives += bytes.Count(data[gap:i], []byte("\r\n\r\n"))
		if i == len(data) {
			return ends, keepalives, -1
		}
		start := i
		he := bytes.Index(data[start:], []byte("\r\n\r\n"))
		if he < 0 || he+4 > max {
			if start+max < len(data) {
				return ends, keepalives, start + max
			}
			return ends, keepalives, -1
		}
		cl := 0
		for k, line := range bytes.Split(data[start:start+he], []byte("\r\n")) {
			if k == 0 || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				continue
			}
			name = bytes.TrimRight(name, " \t")
			if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
				continue
			}
			value = bytes.Trim(value, " \t")
			if len(value) == 0 || bytes.IndexFunc(value, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
				continue
			}
			if n, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				cl = int(n)
			}
		}
		if he+4+cl > max {
			return ends, keepalives, start + he + 3
		}
		end := start + he + 4 + cl
		if end > len(data) {
			return ends, keepalives, -1
		}
		ends = append(ends, end)
		i = end
	}
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte(streamRegister("tcp", "body")+"\r\n\r\n"+streamRegister("tcp", "")), uint16(1000), uint8(7))
	f.Add([]byte("MESSAGE sip:x SIP/2.0\r\nl:3\r\n\r\nabc\r\n"), uint16(40), uint8(1))
	f.Add([]byte("\r\n\r\n\r\nX\r\nContent-Length: 0004\r\n\r\n1234"), uint16(100), uint8(3))
	f.Add([]byte("X\r\r\n\r\nY \r\n l: 5\r\n\r\n"), uint16(10), uint8(2))
	f.Add([]byte("0\r0\n\r\n000000000"), uint16(10), uint8(1)) // a CR inside a line, then a bare LF
	f.Fuzz(func(t *testing.T, data []byte, max uint16, chunk uint8) {
		m := int(max) + 1
		ends, kas, failAt := refFrames(data, m)
		// Byte by byte: messages end exactly where the reference says.
		fr := framer{max: int64(m)}
		var got []int
		gotKA, gotFail := 0, -1
		for i := range data {
			r := fr.feed(data[i : i+1])
			for range r.done {
				got = append(got, i+1)
			}
			gotKA += r.keepalives
			if r.verdict.Code == 513 {
				gotFail = i
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(ends) || gotFail != failAt || (failAt < 0 && gotKA != kas) {
			t.Fatalf("framer: ends %v keepalives %d fail %d; reference: %v %d %d", got, gotKA, gotFail, ends, kas, failAt)
		}
		// In chunks: the same counts.
		step := int(chunk) + 1
		fr = framer{max: int64(m)}
		done, large := 0, false
		for i := 0; i < len(data) && !large; i += step {
			r := fr.feed(data[i:min(i+step, len(data))])
			done += r.done
			large = r.verdict.Code == 513
		}
		if large != (failAt >= 0) || (!large && done != len(ends)) {
			t.Fatalf("chunked by %d: done %d large %v; reference %d, fail at %d", step, done, large, len(ends), failAt)
		}
		rest := data
		if len(ends) > 0 {
			rest = data[ends[len(ends)-1]:]
		}
		if !large && fr.mid() != (len(bytes.Trim(rest, "\r\n")) > 0) {
			t.Fatalf("chunked by %d: mid %v at the end", step, fr.mid())
		}
		// Judging: the refusal points into the bytes fed, and what the framer keeps of the
		// refused message is a prefix of it.
		fr = framer{max: int64(m), judge: true}
		offset := 0
		for i := 0; i < len(data); i += step {
			p := data[i:min(i+step, len(data))]
			r := fr.feed(p)
			if r.verdict.Code != 0 {
				if r.at < 0 || r.at > len(p) {
					t.Fatalf("refusal at %d of a %d-byte feed", r.at, len(p))
				}
				// at 0: the message may have begun in an earlier feed.
				if start := offset + r.at; r.at > 0 && !bytes.HasPrefix(data[start:], fr.head) {
					t.Fatalf("kept %q, not a prefix of the refused message %q", fr.head, data[start:])
				}
				break
			}
			offset += len(p)
		}
	})
}

// BenchmarkIdleConnMemory measures what one idle connection costs the server (listener and
// sipgo, which allocates sip.TransportBufferReadSize per connection): the clients run in a
// child process. Run with -benchtime=1x. sipgo's read buffer is set as simpled sets it.
func BenchmarkIdleConnMemory(b *testing.B) {
	defer func(old uint16) { sip.TransportBufferReadSize = old }(sip.TransportBufferReadSize)
	sip.TransportBufferReadSize = 65535
	for _, tr := range []string{"tcp", "tls", "ws", "wss"} {
		b.Run(tr, func(b *testing.B) {
			n := 2000
			if v, err := strconv.Atoi(os.Getenv("STREAM_IDLE_N")); err == nil {
				n = v
			}
			s := startStreamServer(b, StreamOptions{Transport: tr})
			settle := func() (heap, stack, rss uint64) {
				time.Sleep(200 * time.Millisecond)
				runtime.GC()
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapInuse, m.StackInuse, streamRSS()
			}
			h0, s0, r0 := settle()
			cmd := exec.Command(os.Args[0], "-test.run=^TestStreamHelperClients$")
			cmd.Env = append(os.Environ(), "STREAM_HELPER_ADDR="+s.addr, "STREAM_HELPER_TRANSPORT="+tr, "STREAM_HELPER_N="+strconv.Itoa(n))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() { _ = stdin.Close(); <-exited }()
			streamPoll(b, "all connections open", func() bool {
				select {
				case err := <-exited:
					b.Fatalf("the client process ended: %v", err)
				default:
				}
				return s.ev.count(EventOpen, "") >= n
			})
			h1, s1, r1 := settle()
			per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
			b.ReportMetric(per(h0, h1), "heap-B/conn")
			b.ReportMetric(per(s0, s1), "stack-B/conn")
			b.ReportMetric(per(r0, r1), "rss-B/conn")
			b.Logf("%s, %d idle connections, sip.TransportBufferReadSize %d: heap %.0f B/conn, stacks %.0f B/conn, RSS %.0f B/conn",
				tr, n, sip.TransportBufferReadSize, per(h0, h1), per(s0, s1), per(r0, r1))
		})
	}
}

// TestStreamHelperClients is BenchmarkIdleConnMemory's child process: it opens the idle client
// connections and holds them until its stdin closes.
func TestStreamHelperClients(t *testing.T) {
	addr := os.Getenv("STREAM_HELPER_ADDR")
	if addr == "" {
		t.Skip("helper process of BenchmarkIdleConnMemory")
	}
	tr := os.Getenv("STREAM_HELPER_TRANSPORT")
	n, _ := strconv.Atoi(os.Getenv("STREAM_HELPER_N"))
	s := &streamServer{addr: addr, transport: tr, insecure: true}
	var conns []net.Conn
	for range n {
		if tr == "ws" || tr == "wss" {
			conns = append(conns, s.dialWSNoCleanup(t).conn)
		} else {
			conns = append(conns, s.dialNoCleanup(t))
		}
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
}

// streamRSS is the resident set size of this process (Linux; 0 elsewhere).
func streamRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// TestFramerJudges: a judging framer refuses what sipgo's stream parser would close the
// connection over, says where the refused message begins in the bytes fed, and keeps its
// header section to answer it from, however the bytes are split.
func TestFramerJudges(t *testing.T) {
	good := "OPTIONS sip:x@example.test SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n"
	tests := []struct {
		name, bad string
		code      int
	}{
		{"other scheme", "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nl: 0\r\n\r\n", 416},
		{"negative content-length", "INVITE sip:x@example.test SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK3\r\nContent-Length: -999\r\n\r\n", 400},
		{"no content-length", "INVITE sip:x@example.test SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK4\r\n\r\n", 400},
		{"too large", "MESSAGE sip:x@example.test SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK5\r\nl: 99999\r\n\r\n", 513},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := good + tt.bad
			for _, step := range []int{len(in), 7, 1} {
				f := framer{max: 1 << 12, judge: true}
				var v Verdict
				at, headDone := -1, false
				for i := 0; i < len(in) && !headDone; i += step {
					r := f.feed([]byte(in[i:min(i+step, len(in))]))
					if r.verdict.Code != 0 && v.Code == 0 {
						v, at = r.verdict, i+r.at
					}
					headDone = v.Code != 0 && (r.headDone || v.Code == 513)
				}
				if v.Code != tt.code || !headDone {
					t.Fatalf("step %d: verdict %+v, header done %v; want %d", step, v, headDone, tt.code)
				}
				if step == len(in) && at != len(good) {
					t.Errorf("refused message at %d, want %d", at, len(good))
				}
				if string(f.head) != tt.bad {
					t.Errorf("step %d: kept %q, want %q", step, f.head, tt.bad)
				}
			}
		})
	}
}

// BenchmarkFramerFeed: the framer's cost per message on a stream, judging included (the start
// line's Request-URI is parsed as sipgo will, the header lines scanned).
func BenchmarkFramerFeed(b *testing.B) {
	msg := []byte(streamRegister("tcp", ""))
	f := framer{max: 1 << 18, judge: true}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		f.feed(msg)
	}
}
