package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/logging"

	"github.com/gobwas/ws"
	"go.uber.org/zap"
)

// The WebSocket shim. sipgo's WS transport upgrades connections inside its accept loop (one
// silent client blocks every other), does not require the sip subprotocol (RFC 7118 §4), and
// its reader ignores control frames (pings go unanswered, a close is not answered), discards
// binary frames and the continuation frames of fragmented messages, and truncates a message
// larger than its read buffer without a word. So the listener does the real upgrade itself,
// in the connection's handshake goroutine, and gives sipgo a wsConn that
//
//  1. replays to sipgo's own Upgrader a canned, valid upgrade request and swallows its 101
//     answer (the client already has ours);
//  2. reads the client's frames itself, answering pings and closes, reassembling fragmented
//     messages, taking binary frames as text, and refusing oversized messages (close 1009)
//     and protocol errors (close 1002), and presents to sipgo's reader exactly one FIN text
//     frame per message, with the payload in the clear;
//  3. passes sipgo's writes (already valid server frames) through, tracking frame boundaries
//     so that a pong or close of ours is never written between the header and the payload
//     of one of sipgo's frames (ws.WriteFrame writes them with two Write calls).
//
// The frames presented to sipgo carry the mask bit with an all-zero key: sipgo reads them with
// a server-side wsutil.Reader, which refuses unmasked frames, and XOR with zeros leaves the
// payload as it is, so a single-frame message streams from the socket into sipgo's buffer,
// unmasked in place, without being held here.

// wsCannedUpgrade is the upgrade request sipgo's Upgrader reads from a wsConn.
const wsCannedUpgrade = "GET / HTTP/1.1\r\n" +
	"Host: simpled.invalid\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Protocol: sip\r\n" +
	"\r\n"

// wsMaxHandshake bounds the client's upgrade request (gobwas/ws would accumulate a header
// line of any length).
const wsMaxHandshake = 16 << 10

// wsControlTimeout bounds writing one pong or close frame, waiting for sipgo to finish the
// frame it is writing included: a peer that does not read must not hold the reader.
const wsControlTimeout = 5 * time.Second

var (
	errWSSubprotocol = ws.RejectConnectionError(ws.RejectionStatus(400),
		ws.RejectionReason("the sip WebSocket subprotocol is required (RFC 7118)"))
	errWSOrigin = ws.RejectConnectionError(ws.RejectionStatus(403),
		ws.RejectionReason("origin not allowed"))
	errWSHandshakeSize = errors.New("websocket upgrade request too large")
	errWSPeerClose     = errors.New("websocket closed by peer")
)

// wsOrigins decides the Origins of WebSocket upgrades (StreamOptions.WSOrigins).
type wsOrigins struct {
	allowed map[string]bool // nil: any Origin
	mu      sync.Mutex
	seen    map[string]bool // Origins already logged (any-Origin mode), at most wsOriginsLogged
}

// wsOriginsLogged bounds the Origins remembered for logging: a client forging Origins cannot
// grow the set, nor the log, past it.
const wsOriginsLogged = 1024

func newWSOrigins(list []string) *wsOrigins {
	o := &wsOrigins{seen: map[string]bool{}}
	if len(list) > 0 {
		o.allowed = make(map[string]bool, len(list))
		for _, s := range list {
			o.allowed[normalOrigin(s)] = true
		}
	}
	return o
}

// normalOrigin compares Origins as RFC 6454 serializes them: scheme and host lower case, no
// trailing slash.
func normalOrigin(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "/"))
}

// allow reports whether an upgrade with origin may go on. With no list, any may, and each
// Origin is logged at Info the first time it is seen (a browser page using this server).
func (o *wsOrigins) allow(origin string, log *zap.Logger, remote string) bool {
	origin = normalOrigin(origin)
	if o.allowed != nil {
		if !o.allowed[origin] {
			log.Info("websocket upgrade refused: origin not in transport.ws_origins",
				zap.String("origin", origin), zap.String(logging.KeyRemoteAddr, remote))
			return false
		}
		return true
	}
	o.mu.Lock()
	first := !o.seen[origin] && len(o.seen) < wsOriginsLogged
	if first {
		o.seen[origin] = true
	}
	o.mu.Unlock()
	if first {
		log.Info("websocket upgrade from a new origin (transport.ws_origins allows any)",
			zap.String("origin", origin), zap.String(logging.KeyRemoteAddr, remote))
	}
	return true
}

// wsConn is a ws or wss connection as sipgo sees it; see above.
type wsConn struct {
	streamCore

	// sipgo's handshake: its Accept goroutine, before the reader starts.
	replay int // bytes of wsCannedUpgrade read by sipgo

	// The read side: sipgo's reader goroutine only.
	pre      []byte   // client bytes read past its upgrade request
	hdr      [14]byte // the frame header presented to sipgo; also where client headers are read
	hdrOff   int
	hdrLen   int
	msg      []byte // a message presented from memory (reassembled, or tiny)
	msgOff   int
	remain   int64   // payload bytes of a streamed client frame still to present
	mask     [4]byte // its masking key
	maskOff  int
	frag     []byte // a fragmented message being reassembled
	fragging bool
	small    [4]byte // a message of up to 4 bytes (a CRLFCRLF keepalive)

	// The write side.
	wmu       sync.Mutex    // sipgo's writes (sipgo serializes them too)
	upgraded  bool          // sipgo's 101 has been swallowed
	swallow   httpEnd       // finds the end of sipgo's 101
	swallowed int           // bytes of it seen
	tok       chan struct{} // held while a frame is written: by sipgo from header to payload, by us for a control frame
	holding   bool          // sipgo holds tok
	out       wsFrameTracker
	wdl       atomic.Int64 // sipgo's write deadline, unix ns (0: none)
}

// upgrade does the client's WebSocket upgrade under the handshake deadline. It refuses (HTTP
// 400) a client that does not offer the sip subprotocol, and answers "Sec-WebSocket-Protocol:
// sip" to one that does. It returns the rejection reason with the error.
func (c *wsConn) upgrade() (string, error) {
	hr := &wsHandshakeReader{r: c.Conn}
	var offered bool
	var origin string
	u := ws.Upgrader{
		OnHeader: func(key, value []byte) error {
			if bytes.EqualFold(key, []byte("Origin")) {
				origin = string(value)
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			for p := range bytes.SplitSeq(v, []byte{','}) {
				if string(bytes.Trim(p, " \t")) == "sip" {
					offered = true
					return "sip", true
				}
			}
			return "", true
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !offered {
				return nil, errWSSubprotocol
			}
			if origin != "" && !c.l.origins.allow(origin, c.l.log, c.remote) {
				return nil, errWSOrigin
			}
			return nil, nil
		},
	}
	if _, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{hr, c.Conn}); err != nil {
		// Read the rest of the request (bounded) so that closing with unread bytes does not
		// reset the connection before the client has read our answer.
		_, _ = io.Copy(io.Discard, hr)
		if errors.Is(err, errWSSubprotocol) {
			return ReasonSubprotocol, err
		}
		if errors.Is(err, errWSOrigin) {
			return ReasonOrigin, err
		}
		return ReasonHandshake, err
	}
	c.pre = hr.rest
	return "", nil
}

// wsHandshakeReader hands gobwas/ws's Upgrader the client's request and nothing past it: the
// Upgrader reads through a buffer it then drops, which would lose a frame the client sent
// right behind its request. Bytes read past the empty line are kept in rest.
type wsHandshakeReader struct {
	r    io.Reader
	n    int
	end  httpEnd
	done bool
	rest []byte
}

func (h *wsHandshakeReader) Read(p []byte) (int, error) {
	if h.done {
		return 0, io.EOF
	}
	if h.n >= wsMaxHandshake {
		return 0, errWSHandshakeSize
	}
	p = p[:min(len(p), wsMaxHandshake-h.n)]
	n, err := h.r.Read(p)
	for i := range n {
		if h.end.next(p[i]) {
			h.done = true
			if i+1 < n {
				h.rest = bytes.Clone(p[i+1 : n])
			}
			n, err = i+1, nil
			break
		}
	}
	h.n += n
	return n, err
}

// httpEnd finds the empty line ending an HTTP header section (lines end with LF, optionally
// after CR, as gobwas/ws reads them).
type httpEnd struct{ s uint8 } // 0: in a line, 1: at a line start, 2: after CR at a line start

func (h *httpEnd) next(c byte) bool {
	switch {
	case c == '\n':
		if h.s != 0 {
			return true
		}
		h.s = 1
	case c == '\r' && h.s == 1:
		h.s = 2
	default:
		h.s = 0
	}
	return false
}

// Read is sipgo's reader: first the canned upgrade request, then one FIN text frame per
// message of the client's.
func (c *wsConn) Read(b []byte) (int, error) {
	if c.replay < len(wsCannedUpgrade) {
		n := copy(b, wsCannedUpgrade[c.replay:])
		c.replay += n
		return n, nil
	}
	for {
		switch {
		case c.hdrOff < c.hdrLen:
			n := copy(b, c.hdr[c.hdrOff:c.hdrLen])
			c.hdrOff += n
			return n, nil
		case c.msg != nil:
			n := copy(b, c.msg[c.msgOff:])
			if c.msgOff += n; c.msgOff == len(c.msg) {
				c.msg, c.msgOff, c.mid = nil, 0, false
			}
			return n, nil
		case c.remain > 0:
			p := b[:min(int64(len(b)), c.remain)]
			n, err := c.input(p)
			if err != nil {
				return c.fail(err)
			}
			ws.Cipher(p[:n], c.mask, c.maskOff)
			c.maskOff += n
			if c.remain -= int64(n); c.remain == 0 {
				c.mid = false
			}
			return n, nil
		}
		if err := c.nextFrame(); err != nil {
			return c.fail(err)
		}
	}
}

// nextFrame reads the client's next frame header and handles the frame: a control frame is
// answered, a data frame is set up for sipgo (streamed when it is a whole message, else
// reassembled).
func (c *wsConn) nextFrame() error {
	h, err := c.readHeader()
	if err != nil {
		return err
	}
	switch {
	case h.Rsv != 0:
		return wsProtocolError("reserved bits set")
	case h.OpCode.IsReserved():
		return wsProtocolError("reserved opcode")
	case !h.Masked:
		return wsProtocolError("unmasked client frame")
	}
	if h.OpCode.IsControl() {
		if !h.Fin || h.Length > ws.MaxControlFramePayloadSize {
			return wsProtocolError("fragmented or oversized control frame")
		}
		var buf [ws.MaxControlFramePayloadSize]byte
		body := buf[:h.Length]
		if err := c.inputFull(body); err != nil {
			return err
		}
		ws.Cipher(body, h.Mask, 0)
		if !c.fragging {
			c.mid = false
		}
		switch h.OpCode {
		case ws.OpPing:
			c.l.emit(EventKeepalive, c.remote, "")
			return c.control(ws.NewPongFrame(body))
		case ws.OpClose:
			if len(body) == 1 {
				return wsProtocolError("close frame of one byte")
			}
			_ = c.control(ws.NewCloseFrame(body[:min(len(body), 2)])) // echo the status code
			return errWSPeerClose
		}
		return nil // pong
	}
	if cont := h.OpCode == ws.OpContinuation; cont != c.fragging {
		if cont {
			return wsProtocolError("continuation frame outside a fragmented message")
		}
		return wsProtocolError("new message inside a fragmented message")
	}
	if !c.fragging {
		// A message begins: over its source's rate the connection is closed with 1008
		// (the WebSocket shim does not frame SIP, so there is no 503 to build).
		if pass, _ := c.rate(); !pass {
			return &closeReason{reason: ReasonRate, code: int(ws.StatusPolicyViolation), text: "request rate"}
		}
	}
	if int64(len(c.frag))+h.Length > int64(c.l.wsMax) {
		return &closeReason{reason: ReasonTooLarge, code: int(ws.StatusMessageTooBig), text: "message too large"}
	}
	if h.Fin && !c.fragging {
		switch {
		case h.Length == 0:
			c.mid = false // nothing for sipgo, which would spin on an empty read
		case h.Length <= int64(len(c.small)):
			body := c.small[:h.Length]
			if err := c.inputFull(body); err != nil {
				return err
			}
			ws.Cipher(body, h.Mask, 0)
			if string(body) == "\r\n\r\n" {
				c.l.emit(EventKeepalive, c.remote, "")
			}
			c.msg = body
			c.present(h.Length)
		default:
			c.remain, c.mask, c.maskOff = h.Length, h.Mask, 0
			c.present(h.Length)
		}
		return nil
	}
	n := len(c.frag)
	c.frag = slices.Grow(c.frag, int(h.Length))[:n+int(h.Length)]
	if err := c.inputFull(c.frag[n:]); err != nil {
		return err
	}
	ws.Cipher(c.frag[n:], h.Mask, 0)
	c.fragging = !h.Fin
	if h.Fin {
		msg := c.frag
		c.frag = nil
		if len(msg) == 0 {
			c.mid = false
			return nil
		}
		c.msg = msg
		c.present(int64(len(msg)))
	}
	return nil
}

func wsProtocolError(text string) error {
	return &closeReason{reason: ReasonFrame, code: int(ws.StatusProtocolError), text: text}
}

// readHeader reads a client frame header into c.hdr (free: nothing is being presented).
func (c *wsConn) readHeader() (h ws.Header, err error) {
	b := c.hdr[:2]
	if err := c.inputFull(b); err != nil {
		return h, err
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x7
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n := 0
	switch l := b[1] & 0x7f; l {
	case 126:
		n = 2
	case 127:
		n = 8
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		n += 4
	}
	ext := c.hdr[2 : 2+n]
	if err := c.inputFull(ext); err != nil {
		return h, err
	}
	switch b[1] & 0x7f {
	case 126:
		h.Length, ext = int64(binary.BigEndian.Uint16(ext)), ext[2:]
	case 127:
		u := binary.BigEndian.Uint64(ext)
		if u > 1<<63-1 {
			return h, wsProtocolError("frame length with the most significant bit set")
		}
		h.Length, ext = int64(u), ext[8:]
	}
	if h.Masked {
		copy(h.Mask[:], ext)
	}
	return h, nil
}

// present sets the header of the FIN text frame of n bytes that sipgo reads next: masked with
// the zero key (see above).
func (c *wsConn) present(n int64) {
	c.hdr[0] = 0x80 | byte(ws.OpText)
	i := 2
	switch {
	case n <= 125:
		c.hdr[1] = 0x80 | byte(n)
	case n <= 0xffff:
		c.hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(c.hdr[2:], uint16(n))
		i = 4
	default:
		c.hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(c.hdr[2:], uint64(n))
		i = 10
	}
	clear(c.hdr[i : i+4])
	c.hdrOff, c.hdrLen = 0, i+4
}

// input reads client bytes: those read past the upgrade request first, then the socket under
// the idle or message deadline. It returns n > 0 or an error. A first byte begins a frame.
func (c *wsConn) input(p []byte) (int, error) {
	var n int
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		if c.pre = c.pre[n:]; len(c.pre) == 0 {
			c.pre = nil
		}
	} else {
		var err error
		if n, err = c.readRaw(p); n == 0 {
			return 0, err
		}
		c.touch(time.Now())
	}
	if !c.mid {
		c.begin(time.Now())
	}
	return n, nil
}

func (c *wsConn) inputFull(p []byte) error {
	for len(p) > 0 {
		n, err := c.input(p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// fail ends the connection after a read-side error: a refusal of ours sends its close frame
// and is reported; sipgo then gets io.EOF and stops reading quietly.
func (c *wsConn) fail(err error) (int, error) {
	var r *closeReason
	switch {
	case errors.As(err, &r):
		code := r.code
		switch r.reason {
		case ReasonIdle:
			code = int(ws.StatusGoingAway)
		case ReasonStall:
			code = int(ws.StatusPolicyViolation)
		}
		if code != 0 {
			_ = c.control(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), r.text)))
		}
		c.reject(r.reason, err)
		if r.reason == ReasonTooLarge || r.reason == ReasonFrame {
			c.linger() // the peer is sending: let our close frame reach it before a reset
		}
	case errors.Is(err, errWSPeerClose):
	default:
		return 0, err
	}
	c.abort()
	return 0, io.EOF
}

// control writes a control frame of ours between sipgo's frames.
func (c *wsConn) control(f ws.Frame) error {
	select {
	case c.tok <- struct{}{}:
	default:
		t := time.NewTimer(wsControlTimeout)
		defer t.Stop()
		select {
		case c.tok <- struct{}{}:
		case <-c.closed:
			return net.ErrClosed
		case <-t.C:
			c.abort() // sipgo is stuck writing to a peer that does not read
			return net.ErrClosed
		}
	}
	defer func() { <-c.tok }()
	b, err := ws.CompileFrame(f)
	if err != nil {
		return err
	}
	_ = c.raw.SetWriteDeadline(time.Now().Add(wsControlTimeout))
	_, err = c.Conn.Write(b)
	_ = c.raw.SetWriteDeadline(unixOrZero(c.wdl.Load()))
	if err != nil {
		c.abort() // a write that failed may have left half a frame
		return err
	}
	c.touch(time.Now())
	return nil
}

func unixOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Write takes sipgo's bytes: its 101 answer is swallowed, its frames go out as they are.
func (c *wsConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	if !c.upgraded {
		n = c.swallowUpgrade(b)
		if b = b[n:]; len(b) == 0 {
			return n, nil
		}
	}
	if !c.holding {
		select {
		case c.tok <- struct{}{}:
		case <-c.closed:
			return n, net.ErrClosed
		}
		c.holding = true
	}
	m, err := c.Conn.Write(b)
	if m > 0 {
		c.touch(time.Now())
	}
	c.out.advance(b[:m])
	if err != nil || c.out.boundary() {
		c.holding = false
		<-c.tok
	}
	if err != nil {
		c.abort() // half a frame may be out: the stream cannot go on
	}
	return n + m, err
}

// swallowUpgrade consumes sipgo's answer to the canned request, up to its empty line, and
// returns how many bytes of b it took.
func (c *wsConn) swallowUpgrade(b []byte) int {
	if c.swallowed == 0 && len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 101 ")) {
		c.l.log.Error("sipgo refused the replayed websocket upgrade", zap.String(logging.KeyRemoteAddr, c.remote),
			zap.ByteString("answer", b[:min(len(b), 64)]))
	}
	for i, ch := range b {
		if c.swallow.next(ch) {
			c.upgraded = true
			c.swallowed += i + 1
			return i + 1
		}
	}
	c.swallowed += len(b)
	return len(b)
}

// SetWriteDeadline records sipgo's write deadline, which control writes restore.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.wdl.Store(ns)
	return c.raw.SetWriteDeadline(t)
}

// SetDeadline sets the write deadline only (the listener owns read deadlines).
func (c *wsConn) SetDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

// wsFrameTracker follows the frames of an outgoing byte stream to tell when one ends.
type wsFrameTracker struct {
	hdr    [14]byte
	have   int // header bytes seen
	need   int // header size, once its first two bytes are seen
	remain int64
}

func (t *wsFrameTracker) boundary() bool { return t.have == 0 }

func (t *wsFrameTracker) advance(p []byte) {
	for len(p) > 0 {
		if t.need == 0 || t.have < t.need {
			t.hdr[t.have] = p[0]
			t.have++
			p = p[1:]
			if t.have == 2 {
				t.need = 2
				switch t.hdr[1] & 0x7f {
				case 126:
					t.need += 2
				case 127:
					t.need += 8
				}
				if t.hdr[1]&0x80 != 0 {
					t.need += 4
				}
			}
			if t.have == t.need {
				switch l := t.hdr[1] & 0x7f; l {
				case 126:
					t.remain = int64(binary.BigEndian.Uint16(t.hdr[2:]))
				case 127:
					t.remain = int64(binary.BigEndian.Uint64(t.hdr[2:]) & (1<<63 - 1))
				default:
					t.remain = int64(l)
				}
				if t.remain == 0 {
					t.have, t.need = 0, 0
				}
			}
			continue
		}
		k := min(t.remain, int64(len(p)))
		p = p[k:]
		if t.remain -= k; t.remain == 0 {
			t.have, t.need = 0, 0
		}
	}
}
