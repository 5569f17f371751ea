package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Defaults of StreamOptions.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultMessageTimeout   = 30 * time.Second
	DefaultMaxMessageSize   = 256 << 10
)

// TCP keepalive of accepted connections: a peer that vanished without a FIN or RST (NAT
// binding dropped, host powered off) is detected after Idle + Count×Interval = 2 minutes even
// when it holds a pinned (registered) connection that the idle timeout leaves alone.
var streamKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4}

// StreamOptions configures a StreamListener.
type StreamOptions struct {
	Transport string // "tcp", "tls", "ws", "wss"
	// TLS is required for tls and wss: the listener does the TLS handshake itself, in a
	// per-connection goroutine bounded by HandshakeTimeout, so that a silent client never holds
	// up sipgo's accept loop (a tls.Listen listener would handshake lazily inside it).
	TLS *tls.Config
	// MaxConnections bounds the open connections of this listener, handshaking ones included;
	// a new one beyond is closed at once (logged, EventRejected "limit"). 0 = unlimited.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open connections of this listener from one source
	// (SourceKey: an IPv4 address, an IPv6 /64), handshaking ones included; one beyond is
	// closed at accept (EventRejected "limit per ip", counted in Limited as
	// LimitConnectionsPerIP, logged once a minute per source). Sources Trusted by address are
	// exempt. 0 = unlimited.
	MaxConnectionsPerIP int
	// Rate, if set, is asked as each SIP message begins, before sipgo parses anything. On
	// tcp and tls a message over its source's rate is read to the end of its header section,
	// answered 503 with Retry-After (at most once a second per source; else not answered)
	// and the connection is closed (EventRejected "rate"): a client that floods one
	// connection loses it. On ws and wss the connection is closed with status 1008.
	// Connections whose source or client certificate is Trusted are exempt.
	Rate *SourceRate
	// Trusted, if set, tells trusted peers (proxy.trusted_peers) by source address and, on
	// tls and wss, by the names their verified client certificate proves.
	Trusted func(ip netip.Addr, names []string) bool
	// Limited counts the refusals of MaxConnectionsPerIP.
	Limited *sipx.Limited
	// HandshakeTimeout bounds the TLS and WebSocket handshakes together; default 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that carried no byte either way for this long, unless it
	// is pinned (Pin); default 2m.
	IdleTimeout time.Duration
	// MessageTimeout closes a connection on which a SIP message (tcp, tls) or a WebSocket
	// frame or fragmented message (ws, wss) was begun but not completed within this long: a
	// peer that sends half a message and stalls; default 30s.
	MessageTimeout time.Duration
	// MaxMessageSize bounds one SIP message (tcp, tls: headers and Content-Length body) or one
	// WebSocket message (ws, wss); a larger one closes the connection (WebSocket: close 1009).
	// Default 262144. For ws and wss it is further capped at sipgo's read buffer
	// (sip.TransportBufferReadSize) and frame limit (sip.ParseMaxMessageLength) as they are
	// when the listener is made: sipgo would silently truncate a larger message.
	MaxMessageSize int
	// WSOrigins (ws, wss) lists the Origins an upgrade may carry; one with another Origin is
	// refused with HTTP 403 (EventRejected "origin"). An upgrade without an Origin header (not
	// a browser) is accepted. Empty: any Origin, each logged at Info the first time.
	WSOrigins []string
	Log       *zap.Logger
	// Events, if set, is called synchronously (possibly from many goroutines at once) for
	// each event; it must be cheap: it is meant for metrics.
	Events func(Event)
}

// EventKind is what happened to a connection.
type EventKind uint8

// Event kinds. Every EventOpen is followed by exactly one EventClose; EventRejected is sent
// when the listener itself refuses or closes a connection (before or after EventOpen), with
// the reason in Event.Reason.
const (
	EventOpen      EventKind = iota + 1 // handed to sipgo, handshakes done
	EventClose                          // an opened connection closed, by either side
	EventKeepalive                      // a CRLFCRLF ping between messages, or a WebSocket ping
	EventRejected                       // refused or closed by the listener: see Reason
)

func (k EventKind) String() string {
	switch k {
	case EventOpen:
		return "open"
	case EventClose:
		return "close"
	case EventKeepalive:
		return "keepalive"
	case EventRejected:
		return "rejected"
	}
	return "unknown"
}

// Rejection reasons (Event.Reason of EventRejected).
const (
	ReasonLimit       = "limit"        // MaxConnections reached
	ReasonHandshake   = "handshake"    // TLS or WebSocket handshake failed or timed out
	ReasonSubprotocol = "subprotocol"  // WebSocket upgrade without the sip subprotocol (HTTP 400)
	ReasonOrigin      = "origin"       // WebSocket upgrade from an Origin not allowed (HTTP 403)
	ReasonTooLarge    = "too large"    // message above MaxMessageSize
	ReasonStall       = "stall"        // message begun and not completed within MessageTimeout
	ReasonIdle        = "idle"         // no byte for IdleTimeout, not pinned
	ReasonFrame       = "frame"        // WebSocket protocol error (close 1002)
	ReasonMalformed   = "malformed"    // a message sipgo cannot parse, answered before closing
	ReasonLimitPerIP  = "limit per ip" // MaxConnectionsPerIP reached for the source
	ReasonRate        = "rate"         // a message over its source's rate (Rate)
)

// LimitConnectionsPerIP is the name MaxConnectionsPerIP refusals count under in
// simpled_limited_total.
const LimitConnectionsPerIP = "connections_per_ip"

// Event is one connection event, for metrics.
type Event struct {
	Kind      EventKind
	Transport string
	Remote    string // the peer's host:port, as conn.RemoteAddr().String()
	Reason    string // EventRejected only
}

// StreamListener wraps the TCP listener of a stream transport and hands sipgo connections
// that are ready for it (handshakes done) and that close themselves on a stall, on idleness,
// on an oversized message and, for WebSocket, on protocol errors (ws.go tells what the
// WebSocket shim does). Serve it with the sipgo Serve* of its transport: ServeTCP, ServeTLS
// (the conns are already TLS), ServeWS, ServeWSS.
type StreamListener struct {
	ln        net.Listener
	o         StreamOptions
	transport string
	tls       bool // the listener terminates TLS
	ws        bool // the listener upgrades to WebSocket
	wsMax     int  // WebSocket message bound: MaxMessageSize capped by sipgo's buffers
	log       *zap.Logger
	origins   *wsOrigins // ws, wss

	ready     chan net.Conn // handshaken connections waiting for Accept
	done      chan struct{} // closed when the listener is closed or its socket failed
	closeOnce sync.Once
	err       error // why done was closed (net.ErrClosed after Close)
	wg        sync.WaitGroup

	mu    sync.Mutex
	conns map[string]*streamCore
	perIP map[netip.Addr]int // open connections by SourceKey, when MaxConnectionsPerIP is set
	slog  *sipx.LogGate[netip.Addr]
}

// NewStreamListener wraps ln (a plain TCP listener, also for tls and wss) and starts accepting.
// Close it to stop; connections already handed to sipgo stay open (sipgo owns them). It panics
// on an unknown transport, or on tls or wss without a TLS config: the wiring is wrong.
func NewStreamListener(ln net.Listener, o StreamOptions) *StreamListener {
	switch o.Transport {
	case "tcp", "ws":
	case "tls", "wss":
		if o.TLS == nil {
			panic("transport: " + o.Transport + " listener without a TLS config")
		}
	default:
		panic("transport: stream listener for transport " + o.Transport)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = DefaultMessageTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	l := &StreamListener{
		ln:        ln,
		o:         o,
		transport: o.Transport,
		tls:       o.Transport == "tls" || o.Transport == "wss",
		ws:        o.Transport == "ws" || o.Transport == "wss",
		wsMax:     min(o.MaxMessageSize, int(sip.TransportBufferReadSize), sip.ParseMaxMessageLength),
		log:       o.Log.With(zap.String(logging.KeyTransport, o.Transport), zap.String(logging.KeyListener, ln.Addr().String())),
		origins:   newWSOrigins(o.WSOrigins),
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		conns:     make(map[string]*streamCore),
		perIP:     make(map[netip.Addr]int),
		slog:      sipx.NewLogGate[netip.Addr](time.Minute),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection ready for sipgo: for tls the TLS handshake is done, for
// ws and wss the WebSocket upgrade is done (see wsConn). After Close it returns net.ErrClosed.
func (l *StreamListener) Accept() (net.Conn, error) {
	for {
		select {
		case c := <-l.ready:
			core := coreOf(c)
			if !core.state.CompareAndSwap(coreHandshake, coreOpen) {
				continue // closed by Close while waiting
			}
			l.emit(EventOpen, core.remote, "")
			l.log.Debug("connection open", zap.String(logging.KeyRemoteAddr, core.remote))
			return c, nil
		case <-l.done:
			return nil, l.err
		}
	}
}

// Close stops accepting and ends pending handshakes; connections already returned by Accept
// are sipgo's and stay open. It waits for the listener's goroutines to end.
func (l *StreamListener) Close() error {
	err := l.stop(net.ErrClosed)
	l.mu.Lock()
	var pending []*streamCore
	for _, c := range l.conns {
		if c.state.Load() == coreHandshake {
			pending = append(pending, c)
		}
	}
	l.mu.Unlock()
	for _, c := range pending {
		c.abort()
	}
	l.wg.Wait()
	return err
}

// stop closes done and the socket once.
func (l *StreamListener) stop(why error) error {
	var err error
	l.closeOnce.Do(func() {
		l.err = why
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr is the listening address.
func (l *StreamListener) Addr() net.Addr { return l.ln.Addr() }

// Pin keeps the connection from remote (host:port, as conn.RemoteAddr().String() and sipgo's
// request Source) open at least until until even when idle: it carries a registration or a
// subscription whose client expects to be reached over it. A pin only ever extends (the
// latest of all pins counts) and lapses by itself. It reports whether such a connection is
// open.
func (l *StreamListener) Pin(remote string, until time.Time) bool {
	l.mu.Lock()
	c := l.conns[remote]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	u := until.UnixNano()
	for {
		old := c.pinned.Load()
		if old >= u || c.pinned.CompareAndSwap(old, u) {
			return true
		}
	}
}

// PeerNames returns the names (CertNames) of the client certificate verified on the
// connection from remote (host:port, as sipgo's request Source), or nil: no such connection,
// no certificate, or a listener that asks for none. The answer goes with the connection: a
// closed one is forgotten, and a later connection from the same address proves nothing.
func (l *StreamListener) PeerNames(remote string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.conns[remote]; c != nil {
		return c.peerNames
	}
	return nil
}

// Has reports whether a connection from remote is open on this listener.
func (l *StreamListener) Has(remote string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[remote] != nil
}

// Len is the number of open connections, handshaking ones included.
func (l *StreamListener) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *StreamListener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			// EMFILE, ECONNABORTED and the like pass; back off as net/http does.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration(logging.KeyDuration, delay))
				select {
				case <-time.After(delay):
				case <-l.done:
					return
				}
				continue
			}
			l.log.Error("accept failed; listener stopped", zap.Error(err))
			_ = l.stop(err)
			return
		}
		delay = 0
		l.admit(raw)
	}
}

// admit registers a new connection and starts its handshake (tls, ws, wss) or hands it over.
func (l *StreamListener) admit(raw net.Conn) {
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(streamKeepAlive)
	}
	remote := raw.RemoteAddr().String()
	var core *streamCore
	var conn net.Conn
	if l.ws {
		w := &wsConn{tok: make(chan struct{}, 1)}
		w.closed = make(chan struct{})
		core, conn = &w.streamCore, w
	} else {
		s := &streamConn{}
		s.f.max = int64(l.o.MaxMessageSize)
		s.f.judge = true
		core, conn = &s.streamCore, s
	}
	core.Conn, core.raw, core.l, core.remote = raw, raw, l, remote
	core.touch(time.Now())
	ip, hasIP := AddrOf(raw.RemoteAddr())
	core.ip = ip
	core.trusted = hasIP && l.o.Trusted != nil && l.o.Trusted(ip, nil)
	if s, ok := conn.(*streamConn); ok && l.o.Rate != nil && hasIP {
		s.f.admit = s.admitMessage
	}
	limitIP := l.o.MaxConnectionsPerIP > 0 && hasIP && !core.trusted

	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		_ = raw.Close()
		return
	default:
	}
	if l.o.MaxConnections > 0 && len(l.conns) >= l.o.MaxConnections {
		n := len(l.conns)
		l.mu.Unlock()
		_ = raw.Close()
		l.emit(EventRejected, remote, ReasonLimit)
		l.log.Warn("connection refused: limit reached", zap.String(logging.KeyRemoteAddr, remote),
			zap.String(logging.KeyReason, ReasonLimit), zap.Int("open", n))
		return
	}
	if limitIP {
		k := sipx.SourceKey(ip)
		if n := l.perIP[k]; n >= l.o.MaxConnectionsPerIP {
			l.mu.Unlock()
			_ = raw.Close()
			l.emit(EventRejected, remote, ReasonLimitPerIP)
			l.o.Limited.Inc(LimitConnectionsPerIP)
			if l.slog.Allow(sipx.SourceKey(ip), time.Now()) {
				l.log.Warn("connection refused: too many from its source (logged once a minute per source)",
					zap.String(logging.KeyRemoteAddr, remote), zap.String(logging.KeyReason, ReasonLimitPerIP), zap.Int("open", n))
			}
			return
		}
		l.perIP[k]++
		core.ipKey = k
	}
	l.conns[remote] = core
	l.mu.Unlock()

	if !l.tls && !l.ws {
		l.handoff(conn, core)
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.handshake(conn, core)
	}()
}

// handshake runs the TLS handshake and the WebSocket upgrade of one connection, bounded by
// HandshakeTimeout, in the connection's own goroutine.
func (l *StreamListener) handshake(conn net.Conn, c *streamCore) {
	if err := c.raw.SetDeadline(time.Now().Add(l.o.HandshakeTimeout)); err != nil {
		c.abort()
		return
	}
	if l.tls {
		tc := tls.Server(c.raw, l.o.TLS)
		if err := tc.Handshake(); err != nil {
			l.refuse(c, ReasonHandshake, err)
			return
		}
		c.Conn = tc
		if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 && len(chains[0]) > 0 {
			names := CertNames(chains[0][0])
			l.mu.Lock()
			c.peerNames = names
			l.mu.Unlock()
			c.trusted = c.trusted || c.ip.IsValid() && l.o.Trusted != nil && l.o.Trusted(c.ip, names)
		}
	}
	if w, ok := conn.(*wsConn); ok {
		if reason, err := w.upgrade(); err != nil {
			l.refuse(c, reason, err)
			return
		}
	}
	if err := c.raw.SetDeadline(time.Time{}); err != nil {
		c.abort()
		return
	}
	c.touch(time.Now())
	l.handoff(conn, c)
}

// refuse closes a connection whose handshake failed, reporting it unless the listener was
// closed under it.
func (l *StreamListener) refuse(c *streamCore, reason string, err error) {
	select {
	case <-l.done:
	default:
		c.reject(reason, err)
	}
	c.abort()
}

// handoff waits for Accept to take conn.
func (l *StreamListener) handoff(conn net.Conn, c *streamCore) {
	select {
	case l.ready <- conn:
	case <-l.done:
		c.abort()
	}
}

func (l *StreamListener) emit(kind EventKind, remote, reason string) {
	if l.o.Events != nil {
		l.o.Events(Event{Kind: kind, Transport: l.transport, Remote: remote, Reason: reason})
	}
}

func (l *StreamListener) remove(c *streamCore) {
	l.mu.Lock()
	if l.conns[c.remote] == c {
		delete(l.conns, c.remote)
	}
	if c.ipKey.IsValid() {
		if l.perIP[c.ipKey]--; l.perIP[c.ipKey] <= 0 {
			delete(l.perIP, c.ipKey)
		}
	}
	l.mu.Unlock()
}

// Connection states.
const (
	coreHandshake int32 = iota // accepted, not yet returned by Accept
	coreOpen                   // returned by Accept: sipgo's
	coreClosed
)

// streamCore is what every connection of a StreamListener has: the timers and the pin. Its
// read-side fields are used only by the goroutine reading the connection (sipgo's, after the
// handshake goroutine handed it over through a channel).
type streamCore struct {
	net.Conn          // what bytes go through: the TCP conn, or the *tls.Conn over it
	raw      net.Conn // the TCP conn: deadlines and abort
	l        *StreamListener
	remote   string
	ipKey    netip.Addr // SourceKey counted in l.perIP; zero when not counted
	ip       netip.Addr // the peer's address; zero when unknown
	// trusted: a trusted peer, by address or (tls, wss) client certificate; set before the
	// connection is handed to sipgo, read-only after. Exempt from Rate, and its keepalives
	// keep it open as a pin would.
	trusted bool

	// peerNames are what a client certificate verified in the TLS handshake proves
	// (CertNames); guarded by l.mu.
	peerNames []string

	state      atomic.Int32
	lastActive atomic.Int64 // unix ns of the last byte read or written
	pinned     atomic.Int64 // unix ns until which the connection is kept even when idle

	closed chan struct{} // ws only: closed with the connection, ends waits for the write token

	mid      bool      // a message (tcp, tls) or frame (ws) has begun and not completed
	msgStart time.Time // when it began
}

// ConnectionState is the TLS state of a tls or wss connection (zero for tcp and ws):
// VerifyPeerName reads the client certificate of an accepted connection reused to reach its
// peer.
func (c *streamCore) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

func (c *streamCore) touch(now time.Time) { c.lastActive.Store(now.UnixNano()) }

// kept reports whether keepalives count as activity at now: a pin holds the connection (an
// authenticated flow), or it is a trusted peer's.
func (c *streamCore) kept(now time.Time) bool { return c.trusted || c.pinned.Load() > now.UnixNano() }

// begin marks a message begun at now.
func (c *streamCore) begin(now time.Time) { c.mid, c.msgStart = true, now }

// deadline is the read deadline of the next read: the end of the message timer while a message
// is in progress, else the later of the idle timer and the pin.
func (c *streamCore) deadline() time.Time {
	if c.mid {
		return c.msgStart.Add(c.l.o.MessageTimeout)
	}
	d := c.lastActive.Load() + int64(c.l.o.IdleTimeout)
	return time.Unix(0, max(d, c.pinned.Load()))
}

// expired judges a read timeout at now: "" if the connection is to be read again (a pin or a
// write moved the deadline after the read began), else the reason to close it.
func (c *streamCore) expired(now time.Time) string {
	if c.mid {
		if now.Before(c.msgStart.Add(c.l.o.MessageTimeout)) {
			return ""
		}
		return ReasonStall
	}
	if n := now.UnixNano(); n < c.lastActive.Load()+int64(c.l.o.IdleTimeout) || n < c.pinned.Load() {
		return ""
	}
	return ReasonIdle
}

// readRaw reads from the connection under the idle/message deadline, re-arming it when a
// timeout finds the connection pinned or recently written to (a timed-out read is recoverable,
// crypto/tls included). A timeout that stands is returned as a *closeReason.
func (c *streamCore) readRaw(b []byte) (int, error) {
	for {
		if err := c.raw.SetReadDeadline(c.deadline()); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(b)
		if n > 0 {
			// An error that comes with data (crypto/tls returns a close_notify's io.EOF with
			// the last bytes) is dropped: sipgo drops the data of a read that errs. It comes
			// back on the next read. The caller touches the connection: keepalives alone do
			// not keep an unpinned one open.
			return n, nil
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return 0, err
		}
		if reason := c.expired(time.Now()); reason != "" {
			return 0, &closeReason{reason: reason}
		}
	}
}

// closeReason is why the listener closes a connection.
type closeReason struct {
	reason string
	code   int // WebSocket close status to send, 0 for none
	text   string
}

func (r *closeReason) Error() string {
	if r.text != "" {
		return r.reason + ": " + r.text
	}
	return r.reason
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// reject reports that the listener refuses or closes the connection.
func (c *streamCore) reject(reason string, err error) {
	c.l.emit(EventRejected, c.remote, reason)
	log := c.l.log
	fields := []zap.Field{zap.String(logging.KeyRemoteAddr, c.remote), zap.String(logging.KeyReason, reason)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	switch reason {
	case ReasonIdle, ReasonRate: // the source's rate is logged by Rate, once a minute
		log.Debug("connection closed", fields...)
	case ReasonHandshake, ReasonSubprotocol:
		log.Info("connection refused", fields...)
	default:
		log.Warn("connection closed", fields...)
	}
}

// Close closes the connection (for tls with a close_notify) and forgets it. Closing it again
// is not an error: sipgo closes a connection more than once when we closed it first.
func (c *streamCore) Close() error {
	if !c.finish() {
		return nil
	}
	return c.Conn.Close()
}

// abort closes the TCP connection at once: no close_notify that could block on a stalled peer.
func (c *streamCore) abort() {
	if c.finish() {
		_ = c.raw.Close()
	}
}

// Bounds of linger.
const (
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
)

// linger half-closes the connection and discards what the peer still sends, for a moment:
// closing a socket with unread bytes resets the connection, and the reset can destroy the
// last thing we wrote (a WebSocket close frame) before the peer reads it.
func (c *streamCore) linger() {
	tc, ok := c.raw.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		return
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.raw, lingerBytes)
}

// finish moves the connection to closed once, reporting whether this call did.
func (c *streamCore) finish() bool {
	old := c.state.Swap(coreClosed)
	if old == coreClosed {
		return false
	}
	c.l.remove(c)
	if c.closed != nil {
		close(c.closed)
	}
	if old == coreOpen {
		c.l.emit(EventClose, c.remote, "")
		c.l.log.Debug("connection closed", zap.String(logging.KeyRemoteAddr, c.remote))
	}
	return true
}

// SetReadDeadline is ignored: the listener owns read deadlines (sipgo's ReadTimeout must
// stay 0; the idle and message timers replace it).
func (c *streamCore) SetReadDeadline(time.Time) error { return nil }

// SetDeadline sets the write deadline only; see SetReadDeadline.
func (c *streamCore) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

// streamConn is a tcp or tls connection as sipgo sees it: bytes pass through untouched while
// a framer watches where messages begin and end.
type streamConn struct {
	streamCore
	f framer
	// refusing is set while a message the framer judged unfit for sipgo is read to the end of
	// its header section, to be answered (Verdict) before the connection closes.
	refusing *Verdict
	ready    bool // the refused message's header section is complete: answer on the next Read
}

func coreOf(c net.Conn) *streamCore {
	switch c := c.(type) {
	case *streamConn:
		return &c.streamCore
	case *wsConn:
		return &c.streamCore
	}
	panic("transport: foreign conn")
}

// Read reads into sipgo's buffer and lets the framer observe the bytes. It never returns
// (0, nil), which sipgo would spin on.
//
// A message sipgo's stream parser would fail on (a start line or header section CheckStartLine
// or CheckHeaders refuses) or that exceeds MaxMessageSize never reaches sipgo, which would
// close the connection without a word: the bytes before it are handed over, the message is
// read up to the end of its header section, answered from its own Via, From, To, Call-ID and
// CSeq (Reply: 400 naming the fault, 416, 505, or 513), and the connection is closed (the rest
// of the stream cannot be framed with confidence).
func (c *streamConn) Read(b []byte) (int, error) {
	if c.ready {
		return c.refuse()
	}
	for {
		n, err := c.readRaw(b)
		if n == 0 {
			var cr *closeReason
			if errors.As(err, &cr) {
				return c.fail(cr)
			}
			return 0, err
		}
		wasMid := c.f.mid()
		r := c.f.feed(b[:n])
		for range r.keepalives {
			c.l.emit(EventKeepalive, c.remote, "")
		}
		// Only bytes of messages count as activity; CRLF keepalives between messages keep a
		// connection open only while a pin (an authenticated flow) holds it anyway, or when it
		// is a trusted peer's.
		if now := time.Now(); wasMid || c.f.mid() || r.done > 0 || r.verdict.Code != 0 || c.kept(now) {
			c.touch(now)
		}
		if c.refusing == nil && r.verdict.Code != 0 {
			v := r.verdict
			c.refusing = &v
			if r.at > 0 {
				// Hand over the messages before it first; the next Read answers it, or reads
				// on to the end of its header section.
				c.ready = r.headDone || v.Code == 513
				return r.at, nil
			}
		}
		if c.refusing != nil {
			if r.headDone || c.refusing.Code == 513 || r.verdict.Code == 513 {
				return c.refuse()
			}
			continue // swallow the refused message's bytes until its header section ends
		}
		if mid := c.f.mid(); mid && (!wasMid || r.done > 0) {
			c.begin(time.Now())
		} else if !mid {
			c.mid = false
		}
		return n, nil
	}
}

// refuse answers the message the framer refused, when it has a Via to answer to, and closes.
func (c *streamConn) refuse() (int, error) {
	v := *c.refusing
	head := c.f.head
	if !c.f.headDone {
		// Cut inside the header section: answer from its complete lines.
		if i := bytes.LastIndex(head, crlf); i >= 0 {
			head = head[:i+2]
		} else {
			head = nil
		}
	}
	reason := ReasonMalformed
	switch {
	case v.Code == 513:
		reason = ReasonTooLarge
	case v.RetryAfter > 0 || v.Reason == rateReason:
		reason = ReasonRate
	}
	if v.Code > 0 {
		if res := ReplyRetry(head, v.Code, v.Reason, v.RetryAfter); res != nil {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Conn.Write(res); err == nil {
				c.touch(time.Now())
			}
		}
	}
	c.reject(reason, errors.New(v.Reason))
	// Drain what the peer still sends for a moment before closing: sipgo may still be
	// answering the requests handed over before this one, and closing over unread bytes
	// resets the connection, which can destroy answers the peer has not read yet.
	_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.raw, lingerBytes)
	c.abort()
	return 0, io.EOF
}

// fail closes the connection for r and ends sipgo's read loop quietly (io.EOF: we logged).
func (c *streamConn) fail(r *closeReason) (int, error) {
	c.reject(r.reason, nil)
	c.abort()
	return 0, io.EOF
}

// Write passes sipgo's bytes through and counts as activity, except sipgo's CRLF answer to a
// keepalive ping on a connection neither pinned nor a trusted peer's.
func (c *streamConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if now := time.Now(); n > 0 && (!onlyCRLF(b) || c.kept(now)) {
		c.touch(now)
	}
	return n, err
}

func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// rateReason is the reason of a message refused silently for its source's rate.
const rateReason = "Source Rate"

// rate asks the listener's Rate whether a message may begin on the connection. A trusted
// peer, by address or client certificate, is exempt.
func (c *streamCore) rate() (pass, answer bool) {
	if c.l.o.Rate == nil || !c.ip.IsValid() || c.trusted {
		return true, false
	}
	return c.l.o.Rate.Allow(c.ip, nil, time.Now())
}

// admitMessage asks whether a message may begin: over the source's rate it is refused with 503
// and Retry-After, or silently (Code -1) within a second of the last 503.
func (c *streamConn) admitMessage() Verdict {
	pass, answer := c.rate()
	switch {
	case pass:
		return Verdict{}
	case answer:
		return Verdict{Code: 503, Reason: "Service Unavailable", RetryAfter: RateRetryAfter}
	}
	return Verdict{Code: -1, Reason: rateReason}
}

// framer follows the SIP messages of a tcp or tls byte stream without keeping them: CRLFs
// between messages are skipped (a CRLFCRLF among them is a keepalive ping, RFC 5626 §3.5.1),
// the header section ends at the first empty line (lines end with CRLF, as sipgo's parser
// requires), and the body is the last well-formed Content-Length (or compact l) of the header
// section — none counts as 0. Continuation lines are not folded. sipgo decides what the bytes
// mean; the framer only tells when a message is in progress and when one is too large.
type framer struct {
	max    int64
	judge  bool // refuse what sipgo cannot parse (CheckStartLine, CheckHeaders)
	state  uint8
	ka     uint8 // how much of CRLFCRLF has been seen between messages
	cr     bool  // the previous byte was a CR, pending: it ends a line if LF follows
	first  bool  // in the start line
	filled bool  // the current line has content
	ls     uint8 // what the current header line is, as far as read
	nlen   uint8
	name   [14]byte
	size   int64  // bytes of the current message so far
	val    uint64 // Content-Length digits of the current line
	cl     int64  // the message's Content-Length, so far
	remain int64  // body bytes to come
	// head holds the current message's header section (start line included) up to
	// maxHead bytes, to judge it and to answer it when it is refused; headDone is set once
	// its empty line was seen.
	head     []byte
	headDone bool
	refused  bool // the current message was refused: stop at the end of its header section
	// admit, if set, is asked as each message begins; a verdict refuses the message.
	admit func() Verdict
}

// maxHead bounds the header section the framer keeps of a message.
const maxHead = 2 * MaxHeaderLine

const (
	frIdle = iota
	frHead
	frBody
)

// Header line states.
const (
	lsName   = iota // reading the name
	lsNameWS        // whitespace after the name
	lsLead          // Content-Length value: leading whitespace
	lsDigits        // its digits
	lsTrail         // its trailing whitespace
	lsSkip          // a line of no interest, or a malformed Content-Length
)

type frameResult struct {
	done       int // messages completed
	keepalives int // CRLFCRLF pings between messages
	// verdict is set when the current message is refused (Code 513 when it exceeds max); at is
	// where its bytes begin in the fed slice (0 when it began before), headDone whether its
	// header section is complete. Feeding stops at the end of the refused header section.
	verdict  Verdict
	at       int
	headDone bool
}

func (f *framer) mid() bool { return f.state != frIdle }

// feed observes the next bytes of the stream.
func (f *framer) feed(p []byte) (r frameResult) {
	start := 0 // where the current message begins in p
	seg := 0   // the first byte of p not yet kept in head (while in the header section)
	keep := func(end int) {
		if room := maxHead - len(f.head); room > 0 && end > seg {
			f.head = append(f.head, p[seg:min(end, seg+room)]...)
		}
		seg = end
	}
	refuse := func(v Verdict) {
		if r.verdict.Code == 0 && (!f.refused || v.Code == 513) {
			r.verdict, r.at = v, start
		}
		f.refused = true
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch f.state {
		case frIdle:
			if c == '\r' || c == '\n' {
				f.keepalive(c, &r)
				continue
			}
			f.ka = 0
			f.state, f.size, f.cl = frHead, 0, 0
			f.cr, f.first, f.filled, f.ls = false, true, false, lsSkip
			f.head, f.headDone, f.refused = f.head[:0], false, false
			start, seg = i, i
			if f.admit != nil {
				if v := f.admit(); v.Code != 0 {
					refuse(v)
				}
			}
			fallthrough
		case frHead:
			f.size++
			if f.size > f.max {
				keep(i + 1)
				refuse(Verdict{Code: 513, Reason: "Message Too Large"})
				return r
			}
			if f.cr {
				if c == '\n' {
					f.cr = false
					first := f.first
					if f.endLine() {
						keep(i + 1)
						if v, stop := f.endOfHead(&r); stop {
							if v.Code != 0 {
								refuse(v)
							}
							return r
						}
					} else if first && f.judge {
						keep(i + 1)
						if len(f.head) < maxHead {
							if v := CheckStartLine(f.head[:len(f.head)-2]); v.Code != 0 {
								refuse(v)
							}
						}
					}
					continue
				}
				f.cr = false
				f.content('\r')
			}
			if c == '\r' {
				f.cr = true
			} else {
				f.content(c)
			}
		case frBody:
			k := min(f.remain, int64(len(p)-i))
			i += int(k) - 1
			f.size += k
			f.remain -= k
			if f.remain == 0 {
				f.state = frIdle
				r.done++
			}
		}
	}
	if f.state == frHead {
		keep(len(p))
	}
	return r
}

// endOfHead handles the blank line that ends a message's header section: it judges the head
// and moves on to the body or the next message. stop means feed returns now, refusing the
// message with v when v has a code (a message already refused keeps its first verdict).
func (f *framer) endOfHead(r *frameResult) (v Verdict, stop bool) {
	f.headDone = true
	if f.refused {
		r.headDone = true
		return Verdict{}, true
	}
	if v := f.judgeHead(); f.judge && v.Code != 0 {
		r.headDone = true
		return v, true
	}
	if f.size+f.cl > f.max {
		r.headDone = true
		return Verdict{Code: 513, Reason: "Message Too Large"}, true
	}
	if f.cl == 0 {
		f.state = frIdle
		r.done++
	} else {
		f.state, f.remain = frBody, f.cl
	}
	return Verdict{}, false
}

// judgeHead judges the complete header section kept in head (when it was not cut at maxHead).
func (f *framer) judgeHead() Verdict {
	if len(f.head) >= maxHead {
		return Verdict{}
	}
	eol := bytes.Index(f.head, crlf)
	if eol < 0 || len(f.head) < eol+4 {
		return Verdict{}
	}
	return CheckHeaders(f.head[eol+2:len(f.head)-2], bytes.HasPrefix(f.head, []byte("SIP/")))
}

// keepalive runs the CRLFCRLF matcher over a byte between messages.
func (f *framer) keepalive(c byte, r *frameResult) {
	switch {
	case c == "\r\n\r\n"[f.ka]:
		f.ka++
		if f.ka == 4 {
			f.ka = 0
			r.keepalives++
		}
	case c == '\r':
		f.ka = 1
	default:
		f.ka = 0
	}
}

// endLine ends a header-section line; it reports whether it was the empty line.
func (f *framer) endLine() bool {
	if !f.filled && !f.first {
		return true
	}
	if f.ls == lsDigits || f.ls == lsTrail {
		f.cl = int64(f.val)
	}
	f.first, f.filled, f.ls, f.nlen = false, false, lsName, 0
	return false
}

// content observes one byte of a header-section line.
func (f *framer) content(c byte) {
	f.filled = true
	ws := c == ' ' || c == '\t'
	switch f.ls {
	case lsName:
		switch {
		case c == ':':
			f.colon()
		case ws:
			if f.nlen == 0 {
				f.ls = lsSkip // a continuation line
			} else {
				f.ls = lsNameWS
			}
		case int(f.nlen) < len(f.name):
			f.name[f.nlen] = c
			f.nlen++
		default:
			f.ls = lsSkip
		}
	case lsNameWS:
		if c == ':' {
			f.colon()
		} else if !ws {
			f.ls = lsSkip
		}
	case lsLead, lsDigits:
		switch {
		case c >= '0' && c <= '9':
			if f.ls == lsLead {
				f.val = 0
			}
			f.ls = lsDigits
			if f.val = f.val*10 + uint64(c-'0'); f.val > 1<<32-1 {
				f.ls = lsSkip // sipgo parses it as a uint32
			}
		case ws && f.ls == lsDigits:
			f.ls = lsTrail
		case !ws:
			f.ls = lsSkip
		}
	case lsTrail:
		if !ws {
			f.ls = lsSkip
		}
	}
}

func (f *framer) colon() {
	name := f.name[:f.nlen]
	if asciiFold(name, "content-length") || asciiFold(name, "l") {
		f.ls = lsLead
	} else {
		f.ls = lsSkip
	}
}

func asciiFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
