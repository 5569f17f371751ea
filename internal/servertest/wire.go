package servertest

import (
	"bufio"
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/server"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Wire is a raw SIP client socket: send text, expect a response matching a regexp (nats-style
// send/expect).
type Wire struct {
	T    testing.TB
	Conn net.Conn
	UDP  bool
	WS   bool // SIP over WebSocket (DialWS): Via transport WS
	rd   *bufio.Reader
	seen map[string]bool // requests read (method and branch) and responses returned, to skip retransmissions
}

// retransmission reports whether msg repeats a request Request read or a final response
// Expect returned: what a UA's transaction layer absorbs (RFC 3261 §17). A UDP server
// retransmits its final answer to an INVITE until the ACK, and a request until its answer,
// every T1 and more: a test reading on must not take them for new messages.
func (w *Wire) retransmission(msg string) bool {
	parsed, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		return false
	}
	switch m := parsed.(type) {
	case *sip.Request:
		return w.seen[requestKey(m)]
	case *sip.Response:
		return w.seen["response "+FirstLine(msg)+" "+responseKey(m)]
	}
	return false
}

// mark remembers a message read, by key.
func (w *Wire) mark(key string) {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	w.seen[key] = true
}

// requestKey names a request for retransmission matching: its method and branch.
func requestKey(req *sip.Request) string {
	if req.Via() == nil {
		return ""
	}
	branch, _ := req.Via().Params.Get("branch")
	return string(req.Method) + " " + branch
}

// responseKey names a response for retransmission matching: its branch, Call-ID and CSeq.
func responseKey(res *sip.Response) string {
	key := ""
	if v := res.Via(); v != nil {
		key, _ = v.Params.Get("branch")
	}
	if c := res.CallID(); c != nil {
		key += " " + c.Value()
	}
	if c := res.CSeq(); c != nil {
		key += " " + c.Value()
	}
	return key
}

// Dial connects a Wire to addr over network (udp or tcp); it is closed in t.Cleanup.
func Dial(t testing.TB, network, addr string) *Wire {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Wire{T: t, Conn: c, UDP: network == "udp", rd: bufio.NewReaderSize(c, 1<<16)}
}

// DialFrom is Dial from a given local IP (another address of 127.0.0.0/8: another host, as far
// as simpled can tell).
func DialFrom(t testing.TB, network, localIP, addr string) *Wire {
	t.Helper()
	d := net.Dialer{}
	switch network {
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(localIP)}
	default:
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", network, addr, localIP, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Wire{T: t, Conn: c, UDP: network == "udp", rd: bufio.NewReaderSize(c, 1<<16)}
}

// DialWS connects a Wire to a ws:// listener at addr as a browser does (subprotocol "sip", one
// SIP message per text frame); it is closed in t.Cleanup.
func DialWS(t testing.TB, addr string) *Wire {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, "ws://"+addr)
	if err != nil {
		t.Fatalf("dial ws %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	fc := &frameConn{Conn: c}
	return &Wire{T: t, Conn: fc, WS: true, rd: bufio.NewReaderSize(fc, 1<<16)}
}

// frameConn is a client's WebSocket as a byte stream: each Write one text frame, Read the
// frames' payloads one after the other.
type frameConn struct {
	net.Conn
	pending []byte
}

func (f *frameConn) Write(b []byte) (int, error) {
	if err := wsutil.WriteClientText(f.Conn, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (f *frameConn) Read(b []byte) (int, error) {
	for len(f.pending) == 0 {
		data, err := wsutil.ReadServerText(f.Conn)
		if err != nil {
			return 0, err
		}
		f.pending = data
	}
	n := copy(b, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// WireOn makes a Wire of a stream connection the test already has (TLS, WebSocket framing
// aside).
func WireOn(t testing.TB, c net.Conn) *Wire {
	return &Wire{T: t, Conn: c, rd: bufio.NewReaderSize(c, 1<<16)}
}

// Send writes one SIP message; "\n" line ends become CRLF, {local} becomes the socket's
// address, {transport} its Via transport.
func (w *Wire) Send(msg string) {
	w.T.Helper()
	msg = w.Expand(msg)
	if _, err := w.Conn.Write([]byte(msg)); err != nil {
		w.T.Fatalf("send: %v", err)
	}
}

// Expand replaces {local} and {transport} and makes line ends CRLF, as Send does.
func (w *Wire) Expand(msg string) string {
	tp := strings.ToUpper(w.tp())
	msg = strings.NewReplacer("{local}", w.Conn.LocalAddr().String(), "{transport}", tp).Replace(msg)
	if !strings.Contains(msg, "\r\n") {
		msg = strings.ReplaceAll(msg, "\n", "\r\n")
	}
	return msg
}

// SendTP sends msg with {tp} replaced by the wire's transport (udp or tcp).
func (w *Wire) SendTP(msg string) {
	w.T.Helper()
	w.Send(strings.ReplaceAll(msg, "{tp}", w.tp()))
}

func (w *Wire) tp() string {
	switch {
	case w.UDP:
		return "udp"
	case w.WS:
		return "ws"
	}
	return "tcp"
}

// Read returns the next SIP message from the socket, or "" after timeout.
func (w *Wire) Read(timeout time.Duration) string {
	w.T.Helper()
	_ = w.Conn.SetReadDeadline(time.Now().Add(timeout))
	if w.UDP {
		buf := make([]byte, 65535)
		n, err := w.Conn.Read(buf)
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
	if _, err := io.ReadFull(w.rd, body); err != nil && length > 0 {
		return ""
	}
	return sb.String() + string(body)
}

// Expect reads messages until one matches re (skipping provisional responses), failing after
// 3 s. It returns the parsed response.
func (w *Wire) Expect(re string) *sip.Response {
	w.T.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(3 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		msg := w.Read(time.Until(deadline))
		if msg == "" {
			break
		}
		seen = append(seen, FirstLine(msg))
		if strings.HasPrefix(msg, "SIP/2.0 1") && !rx.MatchString(msg) {
			continue
		}
		if w.retransmission(msg) {
			continue
		}
		if !rx.MatchString(msg) {
			w.T.Fatalf("got %q, want %s\n%s", FirstLine(msg), re, msg)
		}
		parsed, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			w.T.Fatalf("response does not parse: %v\n%s", err, msg)
		}
		res, ok := parsed.(*sip.Response)
		if !ok {
			w.T.Fatalf("not a response: %s", msg)
		}
		w.mark("response " + FirstLine(msg) + " " + responseKey(res))
		return res
	}
	w.T.Fatalf("no message matching %s within 3 s (saw %q)", re, seen)
	return nil
}

// ExpectNothing asserts that no message arrives within d.
func (w *Wire) ExpectNothing(d time.Duration) {
	w.T.Helper()
	if msg := w.Read(d); msg != "" {
		w.T.Fatalf("unexpected message: %s", FirstLine(msg))
	}
}

// Request reads the next request (skipping responses and retransmissions of requests already
// read), failing after 3 s or when it is not a method request.
func (w *Wire) Request(method string) *sip.Request {
	w.T.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		msg := w.Read(time.Until(deadline))
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			continue
		}
		parsed, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			w.T.Fatalf("request does not parse: %v\n%s", err, msg)
		}
		req, ok := parsed.(*sip.Request)
		if ok && req.Via() != nil {
			key := requestKey(req)
			if w.seen[key] {
				continue // a retransmission
			}
			w.mark(key)
		}
		if !ok || string(req.Method) != method {
			w.T.Fatalf("got %q, want a %s request\n%s", FirstLine(msg), method, msg)
		}
		return req
	}
	w.T.Fatalf("no %s request within 3 s", method)
	return nil
}

// Reply answers req with code; extra header lines are added; the To tag is set for code > 100.
func (w *Wire) Reply(req *sip.Request, code int, extra ...string) {
	w.T.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + sipReason(code) + "\r\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString("Via: " + h.Value() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString("Record-Route: " + h.Value() + "\r\n")
	}
	b.WriteString("From: " + req.From().Value() + "\r\n")
	to := req.To().Value()
	if code > 100 && !req.To().Params.Has("tag") {
		to += ";tag=uas" + strconv.Itoa(code)
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + req.CallID().Value() + "\r\n")
	b.WriteString("CSeq: " + req.CSeq().Value() + "\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := w.Conn.Write([]byte(b.String())); err != nil {
		w.T.Fatalf("reply: %v", err)
	}
}

func sipReason(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 486:
		return "Busy Here"
	case 603:
		return "Decline"
	}
	return "Whatever"
}

// AnswerTo reads w until the response to the request with Call-ID callID, skipping the
// requests (NOTIFYs) and other responses in between, and returns it; it fails after 3 s.
func (w *Wire) AnswerTo(callID string) *sip.Response {
	w.T.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		msg := w.Read(time.Until(deadline))
		if msg == "" {
			break
		}
		if !strings.HasPrefix(msg, "SIP/2.0 ") || strings.HasPrefix(msg, "SIP/2.0 1") {
			continue
		}
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			w.T.Fatalf("response does not parse: %v\n%s", err, msg)
		}
		if res := m.(*sip.Response); res.CallID().Value() == callID {
			return res
		}
	}
	w.T.Fatalf("no answer to %s within 3 s", callID)
	return nil
}

// Watch subscribes over w ({tp} in msg becomes the wire's transport) and returns the 200 and
// the first NOTIFY (answered 200).
func (w *Wire) Watch(msg string) (*sip.Response, *sip.Request) {
	w.T.Helper()
	w.SendTP(msg)
	res := w.Expect(`^SIP/2.0 200 `)
	// The Event header of the dialog, for Resubscribe.
	if res.GetHeader("Event") == nil {
		ev := "presence"
		if _, rest, ok := strings.Cut(msg, "\nEvent: "); ok {
			ev, _, _ = strings.Cut(rest, "\n")
			ev = strings.TrimSpace(ev)
		}
		res.AppendHeader(sip.NewHeader("Event", ev))
	}
	n := w.Notify()
	return res, n
}

// Notify reads the next NOTIFY and answers it 200.
func (w *Wire) Notify() *sip.Request {
	w.T.Helper()
	n := w.Request("NOTIFY")
	w.Reply(n, 200)
	return n
}

// UA is a raw SIP endpoint for proxy tests: a Wire that registers a contact at its own address
// and answers the requests the proxy forwards to it.
type UA struct {
	*Wire
	User string
}

// NewUA dials simpled over network and registers user with a contact at the socket's address
// (unless extra holds a Contact line).
func NewUA(t testing.TB, srv *server.Server, network, user string, extra ...string) *UA {
	t.Helper()
	u := &UA{Wire: Dial(t, network, srv.Listener(network)), User: user}
	hasContact := false
	for _, e := range extra {
		hasContact = hasContact || strings.HasPrefix(e, "Contact:")
	}
	if !hasContact {
		extra = append([]string{"Contact: <sip:" + user + "@{local};transport=" + network + ">"}, extra...)
	}
	u.Send(Register(user, "reg-"+user+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), 1, extra...))
	u.Expect(`^SIP/2.0 200 `)
	return u
}

// NewAuthUA is NewUA for a server with auth.mode required: the REGISTER is authenticated with
// the password UsersFile gives user.
func NewAuthUA(t testing.TB, srv *server.Server, network, user string) *UA {
	t.Helper()
	u := &UA{Wire: Dial(t, network, srv.Listener(network)), User: user}
	u.WithAuth(Register(user, "reg-"+user+"-"+NextBranch(), 1, "Contact: <sip:"+user+"@{local};transport="+network+">"),
		user, "sip:"+Domain, `^SIP/2.0 200 `)
	return u
}

// WithAuth sends msg from w as user, answers the challenge (401 for REGISTER, 407 otherwise)
// with qop=auth credentials for uri (password "secret-<user>"), and sends it again with the
// next CSeq and a new branch. It returns the response to the retry, matched against want ("":
// the retry's answer is left to the caller, nil is returned).
func (w *Wire) WithAuth(msg, user, uri, want string) *sip.Response {
	w.T.Helper()
	method, _, _ := strings.Cut(msg, " ")
	w.Send(msg)
	code, hdr, authz := "407", "Proxy-Authenticate", "Proxy-Authorization"
	if method == "REGISTER" {
		code, hdr, authz = "401", "WWW-Authenticate", "Authorization"
	}
	res := w.Expect(`^SIP/2.0 ` + code + ` `)
	var values []string
	for _, h := range res.GetHeaders(hdr) {
		values = append(values, h.Value())
	}
	c := ChallengeParams(values)
	cnonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	resp := DigestMD5(user, c["realm"], "secret-"+user, method, uri, c["nonce"], "00000001", cnonce)
	line := authz + `: Digest username="` + user + `", realm="` + c["realm"] + `", nonce="` + c["nonce"] +
		`", uri="` + uri + `", response="` + resp + `", algorithm=MD5, qop=auth, nc=00000001, cnonce="` + cnonce + `"`
	retry := regexp.MustCompile(`CSeq: (\d+) `).ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimSpace(s[len("CSeq:") : len(s)-1]))
		return "CSeq: " + strconv.Itoa(n+1) + " "
	})
	retry = strings.Replace(retry, "branch=z9hG4bK", "branch=z9hG4bKauth", 1)
	nl := "\n"
	if strings.Contains(msg, "\r\n") {
		nl = "\r\n"
	}
	retry = strings.Replace(retry, "Max-Forwards: 70"+nl, "Max-Forwards: 70"+nl+line+nl, 1)
	w.Send(retry)
	if want == "" {
		return nil
	}
	return w.Expect(want)
}

// UDPWireOn makes a Wire of a datagram connection the test already has (an unconnected
// socket adapted to net.Conn, say).
func UDPWireOn(t testing.TB, c net.Conn) *Wire {
	return &Wire{T: t, Conn: c, UDP: true}
}

// ReadRaw reads bytes as they come from a stream Wire (through its buffer, which Read shares):
// a keepalive pong, say.
func (w *Wire) ReadRaw(p []byte) (int, error) {
	if w.rd == nil {
		return w.Conn.Read(p)
	}
	return w.rd.Read(p)
}

// PacketWire makes a UDP Wire of an unconnected socket: it reads from anyone and sends to the
// last sender (to, before anything was read; nil: nobody yet). A test stands for a remote
// peer with it.
func PacketWire(t testing.TB, pc net.PacketConn, to net.Addr) *Wire {
	return UDPWireOn(t, &packetConn{PacketConn: pc, last: to})
}

// packetConn adapts an unconnected UDP socket to net.Conn.
type packetConn struct {
	net.PacketConn
	last net.Addr
}

func (p *packetConn) Read(b []byte) (int, error) {
	n, addr, err := p.ReadFrom(b)
	if err == nil {
		p.last = addr
	}
	return n, err
}

func (p *packetConn) Write(b []byte) (int, error) { return p.WriteTo(b, p.last) }

func (p *packetConn) RemoteAddr() net.Addr { return p.last }
