package server

import (
	"bufio"
	"context"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testLogger is silent unless SIMPLED_TEST_LOG is set.
func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("SIMPLED_TEST_LOG") != "" {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// startServer runs a simpled on free loopback ports (udp, tcp, http) for domain example.test.
func startServer(t testing.TB, mod func(*config.Options)) *Server {
	t.Helper()
	opts := config.Default()
	opts.Listen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"}
	opts.HTTP = "127.0.0.1:0"
	opts.Domains = []string{"example.test"}
	if mod != nil {
		mod(&opts)
	}
	ctx := context.Background()
	srv, err := New(ctx, opts, testLogger(t))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return srv
}

// loadGenerator lifts the per-source limits (limits.source_rate, max_inflight_per_source,
// transport.max_connections_per_ip) for a test whose load all comes from one address, as
// sipp's and the benchmarks' does from 127.0.0.1, then applies mod.
func loadGenerator(mod func(*config.Options)) func(*config.Options) {
	return func(o *config.Options) {
		o.Limits.SourceRate, o.Limits.SourceBurst = 1_000_000, 1_000_000
		o.Limits.MaxInflightPerSource = o.Limits.MaxInflight
		o.Transport.MaxConnectionsPerIP = 1_000_000
		o.Registrar.MaxNewAORsPerSource = 0
		o.Presence.MaxWatchers, o.Presence.MaxWatchersPerDomain = 1_000_000, 1_000_000
		if mod != nil {
			mod(o)
		}
	}
}

// wire is a raw SIP client socket: send text, expect a response matching a regexp (nats-style
// send/expect).
type wire struct {
	t    testing.TB
	conn net.Conn
	udp  bool
	rd   *bufio.Reader
	seen map[string]bool // requests read (method and branch), to skip retransmissions
}

func dial(t testing.TB, network, addr string) *wire {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &wire{t: t, conn: c, udp: network == "udp", rd: bufio.NewReaderSize(c, 1<<16)}
}

// send writes one SIP message; "\n" line ends become CRLF, {local} becomes the socket's
// address, {transport} its Via transport.
func (w *wire) send(msg string) {
	w.t.Helper()
	msg = w.expand(msg)
	if _, err := w.conn.Write([]byte(msg)); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

func (w *wire) expand(msg string) string {
	tp := "TCP"
	if w.udp {
		tp = "UDP"
	}
	msg = strings.NewReplacer("{local}", w.conn.LocalAddr().String(), "{transport}", tp).Replace(msg)
	if !strings.Contains(msg, "\r\n") {
		msg = strings.ReplaceAll(msg, "\n", "\r\n")
	}
	return msg
}

// read returns the next SIP message from the socket, or "" after timeout.
func (w *wire) read(timeout time.Duration) string {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(time.Now().Add(timeout))
	if w.udp {
		buf := make([]byte, 65535)
		n, err := w.conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	var sb strings.Builder
	length := 0
	for {
		line, err := w.rd.ReadString('\n')
		if err != nil {
			return ""
		}
		if line == "\r\n" && sb.Len() == 0 {
			continue // keepalive pong
		}
		sb.WriteString(line)
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, length)
	if _, err := w.rd.Read(body); err != nil && length > 0 {
		return ""
	}
	return sb.String() + string(body)
}

// expect reads messages until one matches re (skipping provisional responses), failing after
// 3 s. It returns the parsed response.
func (w *wire) expect(re string) *sip.Response {
	w.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(3 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		msg := w.read(time.Until(deadline))
		if msg == "" {
			break
		}
		seen = append(seen, firstLine(msg))
		if strings.HasPrefix(msg, "SIP/2.0 1") && !rx.MatchString(msg) {
			continue
		}
		if !rx.MatchString(msg) {
			w.t.Fatalf("got %q, want %s\n%s", firstLine(msg), re, msg)
		}
		parsed, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			w.t.Fatalf("response does not parse: %v\n%s", err, msg)
		}
		res, ok := parsed.(*sip.Response)
		if !ok {
			w.t.Fatalf("not a response: %s", msg)
		}
		return res
	}
	w.t.Fatalf("no message matching %s within 3 s (saw %q)", re, seen)
	return nil
}

// expectNothing asserts that no message arrives within d.
func (w *wire) expectNothing(d time.Duration) {
	w.t.Helper()
	if msg := w.read(d); msg != "" {
		w.t.Fatalf("unexpected message: %s", firstLine(msg))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// branchSeq numbers the branches of the requests tests write; parallel tests share it.
var branchSeq atomic.Int64

func init() { branchSeq.Store(time.Now().UnixNano()) }

// nextBranch returns a fresh branch suffix.
func nextBranch() string { return strconv.FormatInt(branchSeq.Add(1), 36) }

// register is a REGISTER template for user in example.test; extra lines are inserted before
// Content-Length.
func register(user, callID string, cseq int, extra ...string) string {
	msg := "REGISTER sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + user + "@example.test>;tag=t" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\n"
	for _, e := range extra {
		msg += e + "\n"
	}
	return msg + "Content-Length: 0\n\n"
}

// metricValue reads one sample (name with its labels, in the exposition's label order) from
// the server's /metrics; 0 when absent.
func metricValue(t *testing.T, srv *Server, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, "http://"+srv.HTTPAddr()+"/metrics", 200), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", sample, v)
			}
			return f
		}
	}
	return 0
}
