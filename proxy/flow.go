package proxy

import (
	"crypto/sha256"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// errFlowGone: the connection a client registered or subscribed over has closed. A request
// for the client is never sent by opening a new connection to the address in its Contact
// (behind a NAT or in a browser it reaches nothing, or the wrong host): the device is
// unreachable until it connects again (RFC 5626 §5.3).
var errFlowGone = errors.New("proxy: the client's connection has closed")

// flowKey derives the key of flow tokens from the proxy's secret (nodes sharing a store share
// it), apart from the Record-Route key.
func flowKey(secret []byte) []byte {
	h := sha256.Sum256(append([]byte("simpled flow token\x00"), secret...))
	return h[:]
}

// arrival is the flow a request came in on, as the transport layer reports it.
type arrival struct {
	transport string // lower case
	source    string // host:port
	// vouched: the sender is an authenticated user or a trusted peer (sipx.Rule.MayRelay),
	// so the Contact it gives in a dialog-creating request is its own business.
	vouched bool
}

// flowOf is the Flow of a request that came over transport from source, with the listener of
// ours it reached; ok is false when there is no such listener or source is not an address.
func (p *Proxy) flowOf(tp, source string) (transport.Flow, bool) {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return transport.Flow{}, false
	}
	tp = strings.ToLower(tp)
	l := p.listener(tp)
	if !l.IsValid() {
		return transport.Flow{}, false
	}
	remote := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return transport.Flow{Transport: tp, Remote: remote, Local: netip.AddrPortFrom(p.advertised(l, remote.Addr()), l.Port())}, true
}

// FlowToken names, for the registrar, the flow a request came over (transport, source
// host:port): "" when it cannot be named.
func (p *Proxy) FlowToken(tp, source string) string {
	f, ok := p.flowOf(tp, source)
	if !ok {
		return ""
	}
	return f.Token(p.flowKey)
}

// holds reports whether f ends at one of this node's listeners.
func (p *Proxy) holds(f transport.Flow) bool {
	for _, l := range p.opts.Listeners() {
		if l.Transport == f.Transport && l.Addr.Port() == f.Local.Port() &&
			(l.Addr.Addr() == f.Local.Addr() || l.Addr.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

// bindingFlow is the flow of a flow-bound binding: its token, or — for a token written under
// another key (a node restarted with a random secret) — the source and transport the binding
// recorded.
func (p *Proxy) bindingFlow(b *storage.Binding) (transport.Flow, string, bool) {
	if f, ok := transport.ParseFlowToken(b.Flow, p.flowKey); ok {
		return f, b.Flow, true
	}
	f, ok := p.flowOf(b.Transport, b.Received)
	if !ok {
		return f, "", false
	}
	return f, f.Token(p.flowKey), true
}

// flowTarget is where a request for a client on flow f goes: down the flow itself when this
// node holds it; else to the node that does, with a Route naming the flow (RFC 5626 §5.3: the
// edge proxy recognises its token and forwards over the flow).
func (p *Proxy) flowTarget(uri sip.Uri, f transport.Flow, token string) target {
	if p.holds(f) {
		return target{uri: uri, dest: f.Remote, transport: f.Transport, contact: true, flow: true}
	}
	route := "<sip:" + token + "@" + hostLiteral(f.Local.Addr()) + ":" + strconv.Itoa(int(f.Local.Port())) +
		";transport=" + f.Transport + ";lr;ob>"
	return target{uri: uri, dest: f.Local, transport: f.Transport, contact: true, routes: []string{route}, node: true}
}

// connected reports whether the connection of a stream flow target is still open.
func (p *Proxy) connected(t target) bool {
	pool := p.opts.Client.TransportLayer().Pool(t.transport)
	if pool == nil {
		return false
	}
	c := pool.Get(t.dest.String())
	if c == nil {
		return false
	}
	_, _ = c.TryClose() // Get took a reference
	return true
}

// same reports whether f is the flow the request arrived on.
func (a arrival) same(f transport.Flow) bool {
	if a.transport != f.Transport {
		return false
	}
	ap, err := netip.ParseAddrPort(a.source)
	return err == nil && netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) == f.Remote
}

// namedFlow is a flow named by a token in one of our Routes.
type namedFlow struct {
	f     transport.Flow
	token string
}

// ftParam carries, in a Record-Route of ours that already names one client's flow in its
// user part, the flow of the client on the other side of the dialog.
const ftParam = "ft"

// namedFlows appends the flows u names: the token in its user part and in its ft parameter.
func (p *Proxy) namedFlows(u *sip.Uri, flows []namedFlow) []namedFlow {
	for _, tok := range [2]string{u.User, u.UriParams.GetOr(ftParam, "")} {
		if tok == "" {
			continue
		}
		if f, ok := transport.ParseFlowToken(tok, p.flowKey); ok {
			flows = append(flows, namedFlow{f: f, token: tok})
		}
	}
	return flows
}

// elsewhere is the first of flows that is not the one the request arrived on: a request of a
// dialog with a client on a flow goes down that flow when it comes from the other side.
func (a arrival) elsewhere(flows []namedFlow) (namedFlow, bool) {
	for _, nf := range flows {
		if !a.same(nf.f) {
			return nf, true
		}
	}
	return namedFlow{}, false
}

// FlowOpen reports whether the connection from source over stream transport tp is open
// (admin and tests; UDP flows are always "open").
func (p *Proxy) FlowOpen(tp, source string) bool {
	f, ok := p.flowOf(tp, source)
	if !ok {
		return false
	}
	return !f.Stream() || p.connected(target{transport: f.Transport, dest: f.Remote})
}
