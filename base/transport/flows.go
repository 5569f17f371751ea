package transport

import (
	"crypto/rand"
	"crypto/sha256"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/simpled/simpled/storage"
)

// Listener is one bound SIP socket of this node: requests leave from it (a NATed client only
// accepts packets from the address it talks to) and name it in Via, Path and Record-Route.
type Listener struct {
	Transport string // udp, tcp, tls, ws, wss
	Addr      netip.AddrPort
}

// Flows is the flows service (RFC 5626): it names the flow a request came over with a token
// (for the registrar's Path and bindings, the proxy's Record-Routes), reads tokens back,
// knows this node's listeners and the address each advertises, and tells who asks (OnClosed)
// when a connection of this node closes. It is built before the stages
// and shared by them; safe for concurrent use.
type Flows struct {
	key       []byte
	listeners func() []Listener
	localIPs  sync.Map // destination IP → our source IP, for wildcard listeners

	closedMu sync.RWMutex
	onClosed []func(tp, remote string)
}

// NewFlows returns the flows service. secret keys the tokens (nodes sharing a store must
// share it: auth.nonce_secret); empty draws a random one. listeners returns the bound SIP
// sockets, known only once the server started.
func NewFlows(secret []byte, listeners func() []Listener) *Flows {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	// Derived apart from the other keys the same secret gives (Record-Route, GRUU, nonces).
	h := sha256.Sum256(append([]byte("simpled flow token\x00"), secret...))
	return &Flows{key: h[:], listeners: listeners}
}

// Listeners returns this node's bound SIP sockets.
func (fs *Flows) Listeners() []Listener { return fs.listeners() }

// Listener returns our socket for transport tp, or the zero AddrPort.
func (fs *Flows) Listener(tp string) netip.AddrPort {
	for _, l := range fs.listeners() {
		if l.Transport == tp {
			return l.Addr
		}
	}
	return netip.AddrPort{}
}

// Advertised is the address we put in Via, Contact and Record-Route for a listener: the
// listener's own, or — for a wildcard listener — the local address the kernel uses to reach
// dest (remembered per destination).
func (fs *Flows) Advertised(l netip.AddrPort, dest netip.Addr) netip.Addr {
	if !l.Addr().IsUnspecified() {
		return l.Addr()
	}
	if v, ok := fs.localIPs.Load(dest); ok {
		return v.(netip.Addr)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	if c, err := net.Dial("udp", netip.AddrPortFrom(dest, 9).String()); err == nil {
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if v, ok := netip.AddrFromSlice(a.IP); ok {
				ip = v.Unmap()
			}
		}
		c.Close()
	}
	fs.localIPs.Store(dest, ip)
	return ip
}

// Of is the Flow of a request that came over transport tp from source (host:port), with the
// listener of ours it reached; ok is false when there is no such listener or source is not an
// address.
func (fs *Flows) Of(tp, source string) (Flow, bool) {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return Flow{}, false
	}
	tp = strings.ToLower(tp)
	l := fs.Listener(tp)
	if !l.IsValid() {
		return Flow{}, false
	}
	remote := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return Flow{Transport: tp, Remote: remote, Local: netip.AddrPortFrom(fs.Advertised(l, remote.Addr()), l.Port())}, true
}

// Token names the flow a request came over (transport, source host:port): "" when it cannot
// be named. The registrar binds contacts to it.
func (fs *Flows) Token(tp, source string) string {
	f, ok := fs.Of(tp, source)
	if !ok {
		return ""
	}
	return f.Token(fs.key)
}

// TokenOf is f's token under this deployment's key.
func (fs *Flows) TokenOf(f Flow) string { return f.Token(fs.key) }

// Parse reads a token written by a node of this deployment.
func (fs *Flows) Parse(token string) (Flow, bool) { return ParseFlowToken(token, fs.key) }

// OnClosed asks that fn learn of every connection of this node that closes, by its transport
// and the client's address (host:port), as Of and Token take them for a request that came
// over it: what was registered over the connection can go with it. fn is called
// synchronously from the listener that saw the close, possibly from many goroutines at once:
// it must be cheap and must not block.
func (fs *Flows) OnClosed(fn func(tp, remote string)) {
	fs.closedMu.Lock()
	fs.onClosed = append(fs.onClosed, fn)
	fs.closedMu.Unlock()
}

// Closed reports that the connection from remote (host:port) on a stream listener of
// transport tp closed, by either side: the wiring calls it from the listeners' EventClose,
// and it tells whoever asked with OnClosed. It names no token: every connection closes, most
// carried nothing anyone remembers.
func (fs *Flows) Closed(tp, remote string) {
	fs.closedMu.RLock()
	fns := fs.onClosed
	fs.closedMu.RUnlock()
	for _, fn := range fns {
		fn(tp, remote)
	}
}

// Holds reports whether f ends at one of this node's listeners.
func (fs *Flows) Holds(f Flow) bool {
	for _, l := range fs.listeners() {
		if l.Transport == f.Transport && l.Addr.Port() == f.Local.Port() &&
			(l.Addr.Addr() == f.Local.Addr() || l.Addr.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

// OfBinding is the flow of a flow-bound binding and its token: the token it stored, or — for
// a token written under another key (a node restarted with a random secret) — the source and
// transport the binding recorded.
func (fs *Flows) OfBinding(b *storage.Binding) (Flow, string, bool) {
	if f, ok := ParseFlowToken(b.Flow, fs.key); ok {
		return f, b.Flow, true
	}
	f, ok := fs.Of(b.Transport, b.Received)
	if !ok {
		return f, "", false
	}
	return f, f.Token(fs.key), true
}
