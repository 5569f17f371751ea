package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// wsClient is a WebSocket client connection of the tests: it writes masked frames as it is
// told, valid or not, and reads the server's frames.
type wsClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func (s *streamServer) dialWS(t testing.TB) *wsClient {
	t.Helper()
	c := s.dialWSNoCleanup(t)
	t.Cleanup(func() { _ = c.conn.Close() })
	return c
}

func (s *streamServer) dialWSNoCleanup(t testing.TB) *wsClient {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"sip"}, Timeout: streamWait}
	scheme := "ws://"
	if s.transport == "wss" {
		d.TLSConfig = s.clientTLS(t)
		scheme = "wss://"
	}
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, scheme+s.addr+"/any/path")
	if err != nil {
		t.Fatal(err)
	}
	if hs.Protocol != "sip" {
		t.Fatalf("subprotocol %q, want sip", hs.Protocol)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{conn: conn, br: br}
}

// send writes one masked client frame.
func (c *wsClient) send(t testing.TB, op ws.OpCode, fin bool, payload string) {
	t.Helper()
	f := ws.MaskFrameInPlace(ws.NewFrame(op, fin, []byte(payload)))
	if err := ws.WriteFrame(c.conn, f); err != nil {
		t.Fatal(err)
	}
}

// read reads the server's next frame, checking it is a valid server frame.
func (c *wsClient) read(t testing.TB) ws.Frame {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(streamWait))
	f, err := ws.ReadFrame(c.br)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if f.Header.Masked || f.Header.Rsv != 0 || !f.Header.Fin {
		t.Fatalf("bad server frame header %+v", f.Header)
	}
	return f
}

// readText reads the next frame, which must be a text frame.
func (c *wsClient) readText(t testing.TB) string {
	t.Helper()
	f := c.read(t)
	if f.Header.OpCode != ws.OpText {
		t.Fatalf("got opcode %v (%q), want text", f.Header.OpCode, f.Payload)
	}
	return string(f.Payload)
}

// readClose reads the next frame, which must be a close frame, and returns its code; then the
// server must close the connection.
func (c *wsClient) readClose(t testing.TB) ws.StatusCode {
	t.Helper()
	f := c.read(t)
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("got opcode %v (%q), want close", f.Header.OpCode, f.Payload)
	}
	code, _ := ws.ParseCloseFrameData(f.Payload)
	_ = c.conn.SetReadDeadline(time.Now().Add(streamWait))
	if _, err := io.Copy(io.Discard, c.br); isTimeout(err) {
		t.Fatal("the server did not close the connection after its close frame")
	}
	return code
}

func TestWSNoSubprotocol(t *testing.T) {
	for name, header := range map[string]string{
		"none":  "",
		"other": "Sec-WebSocket-Protocol: chat, superchat\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: "ws"})
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + header + "\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(streamWait))
			answer, _ := io.ReadAll(c)
			if !strings.HasPrefix(string(answer), "HTTP/1.1 400 ") {
				t.Fatalf("answer %q, want 400", answer)
			}
			s.ev.wait(t, EventRejected, ReasonSubprotocol, 1)
		})
	}
}

func TestWSPingPong(t *testing.T) {
	for _, tr := range []string{"ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: tr})
			c := s.dialWS(t)
			c.send(t, ws.OpPing, true, "hello")
			if f := c.read(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != "hello" {
				t.Fatalf("got %v %q, want pong hello", f.Header.OpCode, f.Payload)
			}
			// Pings interleaved with requests, in one burst: sipgo writes the responses from
			// its handler goroutines while the reader writes pongs; every frame must arrive
			// whole.
			const n = 40
			var burst bytes.Buffer
			for i := range n {
				f := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(streamRegister(tr, strings.Repeat("b", i*50)))))
				if err := ws.WriteFrame(&burst, f); err != nil {
					t.Fatal(err)
				}
				if err := ws.WriteFrame(&burst, ws.MaskFrameInPlace(ws.NewPingFrame([]byte("p"+strconv.Itoa(i))))); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.conn.Write(burst.Bytes()); err != nil {
				t.Fatal(err)
			}
			pongs := map[string]bool{}
			oks := 0
			for range 2 * n {
				f := c.read(t)
				switch f.Header.OpCode {
				case ws.OpPong:
					pongs[string(f.Payload)] = true
				case ws.OpText:
					expect200(t, string(f.Payload))
					oks++
				default:
					t.Fatalf("unexpected opcode %v", f.Header.OpCode)
				}
			}
			if len(pongs) != n || oks != n {
				t.Fatalf("%d distinct pongs and %d 200s, want %d each", len(pongs), oks, n)
			}
			s.ev.wait(t, EventKeepalive, "", n+1)
		})
	}
}

func TestWSFragmentedAndBinary(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "ws"})
	c := s.dialWS(t)
	msg := streamRegister("ws", "fragmented body")
	a, b := len(msg)/3, 2*len(msg)/3
	c.send(t, ws.OpText, false, msg[:a])
	c.send(t, ws.OpPing, true, "between")
	c.send(t, ws.OpContinuation, false, msg[a:b])
	c.send(t, ws.OpContinuation, true, msg[b:])
	if f := c.read(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != "between" {
		t.Fatalf("got %v %q, want the pong first", f.Header.OpCode, f.Payload)
	}
	expect200(t, c.readText(t))

	c.send(t, ws.OpBinary, true, streamRegister("ws", ""))
	expect200(t, c.readText(t))

	// A message above 64 KiB's 16-bit length is not needed; one above 125 bytes with a
	// 16-bit length, streamed, is.
	c.send(t, ws.OpText, true, streamRegister("ws", strings.Repeat("z", 20000)))
	expect200(t, c.readText(t))

	// Binary fragments.
	msg = streamRegister("ws", "")
	c.send(t, ws.OpBinary, false, msg[:10])
	c.send(t, ws.OpContinuation, true, msg[10:])
	expect200(t, c.readText(t))
}

func TestWSCRLFKeepalive(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "ws"})
	c := s.dialWS(t)
	c.send(t, ws.OpText, true, "\r\n\r\n")
	if got := c.readText(t); got != "\r\n" {
		t.Fatalf("got %q, want CRLF", got)
	}
	s.ev.wait(t, EventKeepalive, "", 1)
	c.send(t, ws.OpText, true, streamRegister("ws", ""))
	expect200(t, c.readText(t))
}

func TestWSTooLarge(t *testing.T) {
	for name, send := range map[string]func(*testing.T, *wsClient){
		"one frame": func(t *testing.T, c *wsClient) {
			c.send(t, ws.OpText, true, streamRegister("ws", strings.Repeat("x", 2000)))
		},
		"fragments": func(t *testing.T, c *wsClient) {
			c.send(t, ws.OpText, false, strings.Repeat("x", 800))
			c.send(t, ws.OpContinuation, true, strings.Repeat("x", 800))
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: "ws", MaxMessageSize: 1024})
			c := s.dialWS(t)
			c.send(t, ws.OpText, true, streamRegister("ws", strings.Repeat("y", 500)))
			expect200(t, c.readText(t))
			send(t, c)
			if code := c.readClose(t); code != ws.StatusMessageTooBig {
				t.Fatalf("close code %d, want 1009", code)
			}
			s.ev.wait(t, EventRejected, ReasonTooLarge, 1)
			streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
		})
	}
}

func TestWSProtocolErrors(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unmasked":             ws.MustCompileFrame(ws.NewTextFrame([]byte(streamRegister("ws", "")))),
		"reserved opcode":      ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpCode(0x3), true, []byte("x")))),
		"fragmented ping":      ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpPing, false, []byte("x")))),
		"stray continuation":   ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpContinuation, true, []byte("x")))),
		"oversized ping":       wsOversizedPing(),
		"reserved bits":        wsWithRsv(),
		"text inside fragment": append(ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpText, false, []byte("x")))), ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpText, true, []byte("y"))))...),
	} {
		t.Run(name, func(t *testing.T) {
			s := startStreamServer(t, StreamOptions{Transport: "ws"})
			c := s.dialWS(t)
			if _, err := c.conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			if code := c.readClose(t); code != ws.StatusProtocolError {
				t.Fatalf("close code %d, want 1002", code)
			}
			s.ev.wait(t, EventRejected, ReasonFrame, 1)
		})
	}
}

func wsOversizedPing() []byte {
	hdr := []byte{0x80 | byte(ws.OpPing), 0x80 | 126, 0, 200, 0, 0, 0, 0}
	return append(hdr, make([]byte, 200)...)
}

func wsWithRsv() []byte {
	b := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte("x"))))
	b[0] |= 0x40
	return b
}

func TestWSPeerClose(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "wss"})
	c := s.dialWS(t)
	c.send(t, ws.OpText, true, streamRegister("wss", ""))
	expect200(t, c.readText(t))
	c.send(t, ws.OpClose, true, string(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
	if code := c.readClose(t); code != ws.StatusNormalClosure {
		t.Fatalf("close code %d, want 1000", code)
	}
	s.ev.wait(t, EventClose, "", 1)
	streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
	if n := s.ev.count(EventRejected, ""); n != 0 {
		t.Errorf("%d rejections for a normal close", n)
	}
}

func TestWSStall(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "ws", MessageTimeout: 200 * time.Millisecond})
	c := s.dialWS(t)
	f := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte(streamRegister("ws", "")))))
	if _, err := c.conn.Write(f[:len(f)/2]); err != nil {
		t.Fatal(err)
	}
	if code := c.readClose(t); code != ws.StatusPolicyViolation {
		t.Fatalf("close code %d, want 1008", code)
	}
	s.ev.wait(t, EventRejected, ReasonStall, 1)
	streamPoll(t, "Len 0", func() bool { return s.l.Len() == 0 })
}

func TestWSIdle(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "wss", IdleTimeout: 200 * time.Millisecond})
	c := s.dialWS(t)
	if code := c.readClose(t); code != ws.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	s.ev.wait(t, EventRejected, ReasonIdle, 1)
}

// A client may send its first frame right behind its upgrade request, in the same segment.
func TestWSFrameBehindUpgrade(t *testing.T) {
	s := startStreamServer(t, StreamOptions{Transport: "wss"})
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, streamClientTLS(t))
	defer c.Close()
	req := "GET /sip HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: foo, sip\r\n\r\n"
	frame := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte(streamRegister("wss", "")))))
	if _, err := c.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(streamWait))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("status %q, %v", status, err)
	}
	protocol := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if k, v, _ := strings.Cut(line, ":"); strings.EqualFold(k, "Sec-WebSocket-Protocol") {
			protocol = strings.TrimSpace(v)
		}
	}
	if protocol != "sip" {
		t.Errorf("Sec-WebSocket-Protocol %q, want sip", protocol)
	}
	wc := &wsClient{conn: c, br: br}
	expect200(t, wc.readText(t))
}

func TestWSFrameTracker(t *testing.T) {
	var stream bytes.Buffer
	var sizes []int
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		f := ws.NewTextFrame(make([]byte, n))
		if n%2 == 1 {
			f = ws.MaskFrameInPlace(f)
		}
		if err := ws.WriteFrame(&stream, f); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, stream.Len())
	}
	var tr wsFrameTracker
	b := stream.Bytes()
	for i := range b {
		tr.advance(b[i : i+1])
		want := false
		for _, s := range sizes {
			want = want || s == i+1
		}
		if tr.boundary() != want {
			t.Fatalf("at %d: boundary %v, want %v", i+1, tr.boundary(), want)
		}
	}
	// The same, in the two writes of ws.WriteFrame.
	tr = wsFrameTracker{}
	hdr := make([]byte, 0, 14)
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: 300}
	var w bytes.Buffer
	if err := ws.WriteHeader(&w, h); err != nil {
		t.Fatal(err)
	}
	hdr = append(hdr, w.Bytes()...)
	tr.advance(hdr)
	if tr.boundary() {
		t.Fatal("boundary after the header alone")
	}
	tr.advance(make([]byte, 300))
	if !tr.boundary() {
		t.Fatal("no boundary after the payload")
	}
}
