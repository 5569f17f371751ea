package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// ConnectTimeout bounds opening a connection to a next hop.
const ConnectTimeout = 5 * time.Second

// BranchMagic starts every branch parameter simpled generates: RFC 3261's cookie, then "sd"
// and the loop hash (BranchOptions.Hash).
const BranchMagic = "z9hG4bKsd"

// ErrFlowGone means the connection a client registered or subscribed over has closed. A request
// for the client is never sent by opening a new connection to the address in its Contact
// (behind a NAT or in a browser it reaches nothing, or the wrong host): the device is
// unreachable until it connects again (RFC 5626 §5.3).
var ErrFlowGone = errors.New("delivery: the client's connection has closed")

// Branch is one request sent to one target and its client transaction.
type Branch struct {
	Target Target
	Req    *sip.Request
	Tx     sip.ClientTransaction
}

// BranchOptions say how a branch is built from the request it copies.
type BranchOptions struct {
	// Hash follows BranchMagic in the branch parameter: the proxy's loop hash of the request
	// it relays (RFC 3261 §16.6 step 8); "0" for a request simpled originates.
	Hash string
	// Only: the request is the only branch's, and is modified in place rather than copied.
	Only bool
	// RecordRoute, when set, adds the proxy's Record-Route to a branch before its Via: it is
	// given the branch, the listener the branch leaves from, and the target.
	RecordRoute func(r *sip.Request, l netip.AddrPort, t Target)
}

// Build builds the request for one target from base (RFC 3261 §16.6 steps 1-8; what all
// branches share is already in base): its Request-URI, Route set, the node proof for a target
// held by another node, our Via, and where sipgo sends it.
func (d *Delivery) Build(base *sip.Request, t Target, o BranchOptions) (*sip.Request, error) {
	l := d.flows.Listener(t.Transport)
	if !l.IsValid() {
		return nil, fmt.Errorf("%w: no %s listener", errNoRoute, t.Transport)
	}
	r := base
	if !o.Only {
		r = base.Clone()
	}
	r.Recipient = *t.URI.Clone()
	for i := len(t.Routes) - 1; i >= 0; i-- {
		route, err := ParseRoute(t.Routes[i])
		if err != nil {
			return nil, fmt.Errorf("delivery: Path %q: %w", t.Routes[i], err)
		}
		r.PrependHeader(route)
	}
	if t.Node && len(t.Routes) > 0 {
		// The Route to the node holding the callee's flow: our proof that we accepted this
		// request, so that node takes it as a trusted peer's (sipx.NodeProofParam).
		if top := r.Route(); top != nil {
			tag, _ := base.From().Params.Get("tag")
			top.Address.UriParams = append(top.Address.UriParams, sip.HeaderKV{K: sipx.NodeProofParam,
				V: d.opts.Seals.NodeProof(base.CallID().Value(), base.CSeq().SeqNo, tag, d.opts.Now())})
		}
	}
	if o.RecordRoute != nil {
		o.RecordRoute(r, l, t)
	}
	d.setVia(r, l, t, o.Hash)
	return r, nil
}

// setVia puts our Via on top of r and addresses r to t from listener l.
func (d *Delivery) setVia(r *sip.Request, l netip.AddrPort, t Target, hash string) {
	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       strings.ToUpper(t.Transport),
		Host:            HostLiteral(d.flows.Advertised(l, t.Dest.Addr())),
		Port:            int(l.Port()),
		// Unique per branch (RFC 3261 §8.1.1.7), not secret: math/rand/v2's per-thread
		// ChaCha8 costs no system call, crypto/rand's getrandom does.
		Params: sip.HeaderParams{{K: "branch", V: BranchMagic + hash + "." + strconv.FormatUint(rand.Uint64(), 36)}},
	}
	r.PrependHeader(via)
	address(r, l, t)
}

// address sets where sipgo sends r: the target's address over its transport, from our UDP
// listening socket for UDP.
func address(r *sip.Request, l netip.AddrPort, t Target) {
	r.SetTransport(strings.ToUpper(t.Transport))
	r.SetDestination(t.Dest.String())
	if t.Transport == "udp" {
		r.Laddr = sip.Addr{IP: net.IP(l.Addr().AsSlice()), Port: int(l.Port())}
	} else {
		r.Laddr = sip.Addr{}
	}
}

// Start builds and sends the request for t, or for the first of t's alternative flows that
// can be sent on. A request too big for UDP goes over TCP when we listen on TCP, back to UDP
// if TCP cannot connect (RFC 3261 §18.1.1).
func (d *Delivery) Start(base *sip.Request, t Target, o BranchOptions) (*Branch, error) {
	first := o
	first.Only = o.Only && len(t.Alts) == 0
	b, err := d.startOne(base, t, first)
	o.Only = false
	for _, alt := range t.Alts {
		if err == nil {
			break
		}
		b, err = d.startOne(base, alt, o)
	}
	return b, err
}

func (d *Delivery) startOne(base *sip.Request, t Target, o BranchOptions) (*Branch, error) {
	if t.Flow {
		if IsStream(t.Transport) && !d.Connected(t) {
			d.flowRequests.WithLabelValues(t.Transport, "closed").Inc()
			return nil, ErrFlowGone
		}
		d.flowRequests.WithLabelValues(t.Transport, "sent").Inc()
	}
	r, err := d.Build(base, t, o)
	if err != nil {
		return nil, err
	}
	if !t.Flow && (t.Transport == "tls" || t.Transport == "wss") {
		if err := d.verifyPeer(r, t); err != nil {
			return nil, err
		}
	}
	if t.Transport == "udp" && d.overMTU(r) {
		if r2, t2, ok := d.toTCP(r, t); ok {
			if tx, err := d.start(r2, t.Retransmits); err == nil {
				return &Branch{Target: t2, Req: r2, Tx: tx}, nil
			}
		}
	}
	tx, err := d.start(r, t.Retransmits)
	if err != nil {
		return nil, err
	}
	return &Branch{Target: t, Req: r, Tx: tx}, nil
}

// start starts the client transaction of a branch: INVITEs in sipgo's transaction layer (ACK
// generation, 2xx handling), everything else in simpled's own (sipgox.ClientTxs), with at most
// retransmits Timer E retransmissions over UDP when retransmits > 0.
func (d *Delivery) start(r *sip.Request, retransmits int) (sip.ClientTransaction, error) {
	if r.IsInvite() {
		return d.send(r)
	}
	return d.txs.Start(r, retransmits)
}

// AsBuilt is a sipgo request option that leaves the request exactly as we built it (without
// options sipgo would add its own Via, From, To...).
func AsBuilt(*sipgo.Client, *sip.Request) error { return nil }

// send starts a sipgo client transaction for r. Only a stream transport may have to connect
// (and bounds it); UDP sends from our listening socket.
func (d *Delivery) send(r *sip.Request) (sip.ClientTransaction, error) {
	if r.Transport() == "UDP" {
		return d.opts.Client.TransactionRequest(context.Background(), r, AsBuilt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	return d.opts.Client.TransactionRequest(ctx, r, AsBuilt)
}

// overMTU reports whether r is too big for UDP (RFC 3261 §18.1.1).
func (d *Delivery) overMTU(r *sip.Request) bool {
	if len(r.Body()) < d.opts.UDPMTU/2 {
		return false // headers alone never come near the MTU: skip serialising
	}
	return len(r.String()) > d.opts.UDPMTU
}

// toTCP moves a branch from UDP to TCP: same address, TCP listener in Via.
func (d *Delivery) toTCP(r *sip.Request, t Target) (*sip.Request, Target, bool) {
	l := d.flows.Listener("tcp")
	if !l.IsValid() {
		return r, t, false
	}
	t.Transport = "tcp"
	c := r.Clone()
	via := c.Via()
	via.Transport = "TCP"
	via.Host = HostLiteral(d.flows.Advertised(l, t.Dest.Addr()))
	via.Port = int(l.Port())
	address(c, l, t)
	return c, t, true
}

// verifyPeer opens (or reuses) the TLS connection r goes over and checks that the server's
// certificate names t's SIP domain (RFC 5922 §4, §7.2), or t's address when t has no domain
// (a flow or node address). The chain was verified when the connection was made
// (transport.ClientTLS); a reused connection is checked again for each request, so a
// connection made for one domain never carries requests for another its certificate does
// not name. A flow (the client's own connection) is not checked: it is the client's.
func (d *Delivery) verifyPeer(r *sip.Request, t Target) error {
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	conn, err := d.opts.Client.TransportLayer().ClientRequestConnection(ctx, r)
	if err != nil {
		return err
	}
	defer conn.TryClose()
	var nc net.Conn
	switch c := conn.(type) {
	case *sip.TCPConnection:
		nc = c.Conn
	case *sip.WSConnection:
		nc = c.Conn
	}
	name := t.Domain
	if name == "" {
		name = t.Dest.Addr().String()
	}
	if err := transport.VerifyPeerName(nc, name); err != nil {
		d.log.Warn("TLS peer refused", zap.String("target", t.Dest.String()), zap.Error(err))
		return err
	}
	return nil
}

// Connected reports whether the connection of a stream flow target is still open.
func (d *Delivery) Connected(t Target) bool {
	pool := d.opts.Client.TransportLayer().Pool(t.Transport)
	if pool == nil {
		return false
	}
	c := pool.Get(t.Dest.String())
	if c == nil {
		return false
	}
	_, _ = c.TryClose() // Get took a reference
	return true
}

// FlowOpen reports whether the connection from source over stream transport tp is open
// (admin and tests; UDP flows are always "open").
func (d *Delivery) FlowOpen(tp, source string) bool {
	f, ok := d.flows.Of(tp, source)
	if !ok {
		return false
	}
	return !f.Stream() || d.Connected(Target{Transport: f.Transport, Dest: f.Remote})
}

// TransportFailure is the status of a branch that could not be sent or whose transport failed
// (RFC 3261 §16.9 says "as if 503"): for a registered device that means it is not reachable
// now (480, which also sends a MESSAGE to the offline store); for another server, 503.
func TransportFailure(t Target) int {
	if t.Contact {
		return 480
	}
	return 503
}

// ParseRoute parses one Route or Path value ("<sip:host;lr>").
func ParseRoute(v string) (*sip.RouteHeader, error) {
	var route sip.RouteHeader
	var params sip.HeaderParams
	if _, err := sip.ParseAddressValue(v, &route.Address, &params); err != nil {
		return nil, err
	}
	return &route, nil
}

// HostLiteral renders an IP for a URI or Via host (IPv6 in brackets).
func HostLiteral(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[" + ip.String() + "]"
	}
	return ip.Unmap().String()
}
