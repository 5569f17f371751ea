package delivery

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Target is one place a branch goes: the Request-URI it carries, the Route set to put in front
// (a binding's Path), and where and how the request is sent.
type Target struct {
	URI       sip.Uri
	Routes    []string       // Route header values to add (Path), in order
	Dest      netip.AddrPort // where the request is sent
	Transport string         // udp, tcp, tls, ws, wss
	// Domain is the host of the URI Dest was resolved from (a Route, the Request-URI, a
	// contact): the name a TLS server's certificate must prove (RFC 5922 §4); "" when Dest
	// came from a flow or node address, which is then checked as an IP literal.
	Domain  string
	Contact bool // a registered device (a transport failure means "unavailable")
	// Flow: Dest is a client's flow (RFC 5626): over a stream transport, only the connection
	// it opened is used, never a new one.
	Flow bool
	// Node: Dest is the node of this deployment that holds the client's flow, Routes[0] the
	// Route naming it; the branch carries our proof for that node (sipx.NodeProofParam).
	Node bool
	// Alts are the same device's other flows (outbound: one per reg-id), tried in order when
	// this one cannot be sent on.
	Alts []Target
	// Fresh is when the device was last known to be reachable here: its binding's last
	// refresh, or a later keepalive on its UDP flow. The freshest of a device's flows leads.
	Fresh time.Time
	// Retransmits, when > 0, caps the Timer E retransmissions of a non-INVITE over UDP
	// (Dialog.Retransmits); 0 keeps RFC 3261's schedule.
	Retransmits int
}

// errNoRoute: the next hop cannot be reached at all (unknown host, .invalid, no listener for
// its transport).
var errNoRoute = fmt.Errorf("delivery: %w", sipx.ErrNoRoute)

// HopTarget is the target for a next hop named by a URI (a Route or a foreign Request-URI):
// an IP literal is used as it is, a name goes through the resolver (RFC 3263). Its errors
// wrap sipx.ErrNoRoute or one of the resolver's, so sipx.ErrorStatus answers them.
func (d *Delivery) HopTarget(ctx context.Context, hop *sip.Uri, ruri sip.Uri) (Target, error) {
	tp := uriTransport(hop)
	host := strings.Trim(hop.Host, "[]")
	t := Target{URI: ruri, Domain: strings.ToLower(host)}
	if ip, err := netip.ParseAddr(host); err == nil {
		port := hop.Port
		if port == 0 {
			port = DefaultPort(tp)
		}
		t.Dest = netip.AddrPortFrom(ip.Unmap(), uint16(port))
		t.Transport = tp
		return t, nil
	}
	if d.opts.Resolver == nil || strings.HasSuffix(strings.ToLower(host), ".invalid") {
		return t, fmt.Errorf("%w: %s", errNoRoute, hop.Host)
	}
	tgts, err := d.opts.Resolver.Resolve(ctx, *hop)
	if err != nil {
		return t, err
	}
	for _, rt := range tgts {
		if d.flows.Listener(rt.Transport).IsValid() {
			t.Dest, t.Transport = rt.Addr, rt.Transport
			return t, nil
		}
	}
	return t, fmt.Errorf("%w: no listener for the transports of %s", errNoRoute, hop.Host)
}

// uriTransport is the transport a URI asks for (RFC 3263 §4.1 with the URI's own parameter),
// lower case.
func uriTransport(u *sip.Uri) string {
	if tp, ok := u.UriParams.Get("transport"); ok && tp != "" {
		tp = strings.ToLower(tp)
		if u.IsEncrypted() && tp == "tcp" {
			return "tls"
		}
		return tp
	}
	if u.IsEncrypted() {
		return "tls"
	}
	return "udp"
}

// DefaultPort is the port of a SIP URI without one, by transport.
func DefaultPort(tp string) int {
	switch tp {
	case "tls", "wss":
		return 5061
	case "ws":
		return 80
	}
	return 5060
}

// IsStream reports whether tp is a connection-oriented transport.
func IsStream(tp string) bool {
	switch tp {
	case "tcp", "tls", "ws", "wss":
		return true
	}
	return false
}

// Targets turns bindings into fork groups: highest q first, equal q in parallel (RFC 3261
// §16.6 with the q ordering of §16.5).
func (d *Delivery) Targets(ctx context.Context, bindings []storage.Binding) [][]Target {
	sorted := slices.Clone(bindings)
	slices.SortStableFunc(sorted, func(a, b storage.Binding) int {
		if c := cmp.Compare(qOf(b), qOf(a)); c != 0 {
			return c
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)
	})
	var groups [][]Target
	// A device registered over several flows (RFC 5626: one binding per reg-id of one
	// +sip.instance) is one target: its most recently refreshed flow first, the others as
	// alternatives when it cannot be sent on (§5.3: "the first that works").
	device := map[string][2]int{}
	lastQ := -2
	for i := range sorted {
		b := &sorted[i]
		t, ok := d.BindingTarget(ctx, b)
		if !ok {
			continue
		}
		t.Fresh = b.UpdatedAt
		if t.Flow && t.Transport == "udp" && d.opts.LastSeen != nil {
			if seen := d.opts.LastSeen(t.Dest); seen.After(t.Fresh) {
				t.Fresh = seen
			}
		}
		if b.InstanceID != "" && b.RegID > 0 {
			if at, seen := device[b.InstanceID]; seen {
				first := &groups[at[0]][at[1]]
				first.Alts = append(first.Alts, t)
				continue
			}
		}
		if q := qOf(*b); q != lastQ || len(groups) == 0 {
			groups = append(groups, nil)
			lastQ = q
		}
		if b.InstanceID != "" && b.RegID > 0 {
			device[b.InstanceID] = [2]int{len(groups) - 1, len(groups[len(groups)-1])}
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
	}
	if len(device) > 0 {
		freshestFirst(groups)
	}
	return groups
}

// freshestFirst puts, for each device with several flows, the freshest flow first.
func freshestFirst(groups [][]Target) {
	for gi := range groups {
		for ti := range groups[gi] {
			if t := &groups[gi][ti]; len(t.Alts) > 0 {
				all := append([]Target{*t}, t.Alts...)
				all[0].Alts = nil
				slices.SortStableFunc(all, func(a, b Target) int { return b.Fresh.Compare(a.Fresh) })
				*t = all[0]
				t.Alts = all[1:]
			}
		}
	}
}

// qOf is a binding's q-value for ordering: no q-value counts as 1.0 (RFC 3261 §16.6 leaves it
// to the proxy; Kamailio does the same).
func qOf(b storage.Binding) int {
	if b.Q < 0 {
		return 1000
	}
	return b.Q
}

// BindingTarget is where a registered contact is reached: the contact URI as Request-URI, its
// Path as Route set, and the address to send to — the first Path hop; else the flow the
// registrar bound it to (the connection or NAT binding the REGISTER came from); else the
// contact's own address (over a connection to it that is already open, if any).
func (d *Delivery) BindingTarget(ctx context.Context, b *storage.Binding) (Target, bool) {
	var t Target
	if err := sip.ParseUri(b.URI, &t.URI); err != nil {
		d.log.Warn("unusable binding", zap.String(logging.KeyContact, b.URI), zap.Error(err))
		return t, false
	}
	t.Contact = true
	t.Routes = b.Path
	if len(b.Path) > 0 {
		if route, err := ParseRoute(b.Path[0]); err == nil {
			hop, err := d.HopTarget(ctx, &route.Address, t.URI)
			if err == nil {
				hop.Routes, hop.Contact = b.Path, true
				return hop, true
			}
		}
		d.log.Warn("unusable Path", zap.String("path", b.Path[0]))
		return t, false
	}
	if b.Flow != "" {
		f, token, ok := d.flows.OfBinding(b)
		if !ok {
			d.log.Warn("unusable flow", zap.String(logging.KeyContact, b.URI), zap.String("received", b.Received))
			return t, false
		}
		return d.FlowTarget(t.URI, f, token), true
	}
	hop, err := d.HopTarget(ctx, &t.URI, t.URI)
	if err != nil {
		// A contact we cannot resolve (".invalid", a name without DNS): reach it where it
		// registered from — over a connection, only the one it registered on.
		if ap, perr := netip.ParseAddrPort(b.Received); perr == nil {
			t.Dest = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			t.Transport = cmp.Or(b.Transport, "udp")
			t.Flow = IsStream(t.Transport)
			return t, true
		}
		return t, false
	}
	hop.Contact = true
	return hop, true
}

// FlowTarget is where a request for a client on flow f goes: down the flow itself when this
// node holds it; else to the node that does, with a Route naming the flow (RFC 5626 §5.3: the
// edge proxy recognises its token and forwards over the flow).
func (d *Delivery) FlowTarget(uri sip.Uri, f transport.Flow, token string) Target {
	if d.flows.Holds(f) {
		return Target{URI: uri, Dest: f.Remote, Transport: f.Transport, Contact: true, Flow: true}
	}
	route := "<sip:" + token + "@" + HostLiteral(f.Local.Addr()) + ":" + strconv.Itoa(int(f.Local.Port())) +
		";transport=" + f.Transport + ";lr;ob>"
	return Target{URI: uri, Dest: f.Local, Transport: f.Transport, Contact: true, Routes: []string{route}, Node: true}
}

// GRUU reads a GRUU of our domain (RFC 5627): a URI with the gr parameter names one device —
// the instance in its value (public GRUU), or, with an empty value, the AOR and instance a
// temporary GRUU of ours seals in its user part. isGRUU with an empty instance: a GRUU we did
// not issue. A URI without gr returns aor unchanged.
func (d *Delivery) GRUU(uri *sip.Uri, aor string) (string, string, bool) {
	gr, ok := uri.UriParams.Get("gr")
	if !ok {
		return aor, "", false
	}
	if gr != "" {
		return aor, strings.Trim(gr, "<>\""), true
	}
	if d.opts.GRUUs != nil {
		if a, inst, ok := d.opts.GRUUs.Open(uri.User); ok {
			_, domain, _ := strings.Cut(a, "@")
			if d.domains[domain] {
				return a, strings.Trim(inst, "<>\""), true
			}
		}
	}
	return aor, "", true
}

// OfInstance keeps the bindings of one device (its +sip.instance, without brackets).
func OfInstance(bindings []storage.Binding, instance string) []storage.Binding {
	return slices.DeleteFunc(bindings, func(b storage.Binding) bool {
		return strings.Trim(b.InstanceID, "<>\"") != instance
	})
}

// locate resolves a URI of our domain to one registered device: the one a GRUU's gr
// parameter names (its +sip.instance), else the device with the highest q-value, most
// recently registered.
func (d *Delivery) locate(ctx context.Context, uri *sip.Uri) (Target, bool, error) {
	aor, instance, gruu := d.GRUU(uri, sipx.AOR(uri))
	if gruu && instance == "" {
		return Target{}, false, nil
	}
	bindings, err := d.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return Target{}, false, err
	}
	if gruu {
		bindings = OfInstance(bindings, instance)
	}
	slices.SortStableFunc(bindings, func(a, b storage.Binding) int {
		if qa, qb := qOf(a), qOf(b); qa != qb {
			return qb - qa
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)
	})
	for i := range bindings {
		if t, ok := d.BindingTarget(ctx, &bindings[i]); ok {
			return t, true, nil
		}
	}
	return Target{}, false, nil
}
