package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// Dialog is where a request simpled sends as a party of a dialog goes (the presence agent's
// NOTIFYs, RFC 3261 §12.2.1.1): the peer's remote target (its Contact) and the dialog's route
// set, plus the flow the dialog-creating request came over (its transport and source address).
type Dialog struct {
	RemoteTarget string
	RouteSet     []string
	Transport    string
	Source       string
	// Retransmits, when > 0, caps the request's retransmissions over UDP (the presence
	// agent's NOTIFYs to a watcher that has not answered one yet); 0 keeps RFC 3261's.
	Retransmits int
}

// SendInDialog sends req, a request simpled originates within a dialog, and returns the final
// status: the peer's answer, 408 when it never answered, 503 when no transport reached it.
// The Request-URI is the remote target; the next hop is chosen as a proxy beside the peer
// would:
//
//   - a route set: its first hop (loose routing);
//   - a remote target of one of our domains (a GRUU, RFC 5627, or an AOR): the registered
//     device it names, through the location service;
//   - else the flow the dialog came over (RFC 5626 §5.3 in spirit): the same connection for
//     stream transports — and nothing else when it has closed —, the NAT binding's public
//     address for UDP, then, when nothing answers there at transport level, the remote
//     target's own address.
//
// req's Via is added here; the caller sets every other header. req itself is not modified.
func (p *Proxy) SendInDialog(ctx context.Context, req *sip.Request, d Dialog) (int, error) {
	var uri sip.Uri
	if err := sip.ParseUri(d.RemoteTarget, &uri); err != nil {
		return 0, fmt.Errorf("proxy: remote target %q: %w", d.RemoteTarget, err)
	}
	send := func(t target) int {
		t.retransmits = d.Retransmits
		for i := range t.alts {
			t.alts[i].retransmits = d.Retransmits
		}
		return p.request(ctx, req, [][]target{{t}})
	}
	if len(d.RouteSet) > 0 {
		route, err := parseRoute(d.RouteSet[0])
		if err != nil {
			return 0, fmt.Errorf("proxy: route set %q: %w", d.RouteSet[0], err)
		}
		t, err := p.hopTarget(ctx, &route.Address, uri)
		if err != nil {
			return 404, nil
		}
		t.routes = d.RouteSet
		return send(t), nil
	}
	if host := strings.ToLower(uri.Host); p.domains[host] {
		t, ok, err := p.locate(ctx, &uri)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 480, nil
		}
		return send(t), nil
	}
	var tries []target
	if f, ok := p.flowOf(d.Transport, d.Source); ok {
		if f.Stream() {
			// The dialog's connection, or nothing: a new connection to the peer's Contact
			// would reach a NAT, a browser's ".invalid" name or an ephemeral port (RFC 5626).
			t := target{uri: uri, transport: f.Transport, dest: f.Remote, flow: true}
			return send(t), nil
		}
		tries = append(tries, target{uri: uri, transport: f.Transport, dest: f.Remote})
	}
	if t, err := p.hopTarget(ctx, &uri, uri); err == nil &&
		(len(tries) == 0 || t.dest != tries[0].dest || t.transport != tries[0].transport) {
		tries = append(tries, t)
	}
	status := 404
	for _, t := range tries {
		if status = send(t); status != 503 {
			break
		}
	}
	return status, nil
}

// locate resolves a URI of our domain to one registered device: the one a GRUU's gr
// parameter names (its +sip.instance), else the device with the highest q-value, most
// recently registered.
func (p *Proxy) locate(ctx context.Context, uri *sip.Uri) (target, bool, error) {
	aor, instance, gruu := p.gruu(uri, sipx.AOR(uri))
	if gruu && instance == "" {
		return target{}, false, nil
	}
	bindings, err := p.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return target{}, false, err
	}
	if gruu {
		bindings = ofInstance(bindings, instance)
	}
	slices.SortStableFunc(bindings, func(a, b storage.Binding) int {
		if qa, qb := qOf(a), qOf(b); qa != qb {
			return qb - qa
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)
	})
	for i := range bindings {
		if t, ok := p.bindingTarget(ctx, &bindings[i]); ok {
			return t, true, nil
		}
	}
	return target{}, false, nil
}

// gruu reads a GRUU of our domain (RFC 5627): a URI with the gr parameter names one device —
// the instance in its value (public GRUU), or, with an empty value, the AOR and instance a
// temporary GRUU of ours seals in its user part. isGRUU with an empty instance: a GRUU we did
// not issue. A URI without gr returns aor unchanged.
func (p *Proxy) gruu(uri *sip.Uri, aor string) (string, string, bool) {
	gr, ok := uri.UriParams.Get("gr")
	if !ok {
		return aor, "", false
	}
	if gr != "" {
		return aor, strings.Trim(gr, "<>\""), true
	}
	if p.opts.GRUUs != nil {
		if a, inst, ok := p.opts.GRUUs.Open(uri.User); ok {
			_, domain, _ := strings.Cut(a, "@")
			if p.domains[domain] {
				return a, strings.Trim(inst, "<>\""), true
			}
		}
	}
	return aor, "", true
}

// ofInstance keeps the bindings of one device (its +sip.instance, without brackets).
func ofInstance(bindings []storage.Binding, instance string) []storage.Binding {
	return slices.DeleteFunc(bindings, func(b storage.Binding) bool {
		return strings.Trim(b.InstanceID, "<>\"") != instance
	})
}

// ContactURI is our Contact for a dialog simpled is a party of (the presence agent's
// subscriptions), created over transport by a request from remote (host:port): the
// listener of that transport, with the address remote reaches us at.
func (p *Proxy) ContactURI(transport, remote string) string {
	tp := strings.ToLower(transport)
	l := p.listener(tp)
	if !l.IsValid() {
		tp = "udp"
		if l = p.listener(tp); !l.IsValid() {
			return "sip:" + p.defaultDom
		}
	}
	dest := netip.MustParseAddr("127.0.0.1")
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		dest = ap.Addr().Unmap()
	}
	u := sip.Uri{Scheme: "sip", Host: hostLiteral(p.advertised(l, dest)), Port: int(l.Port())}
	if tp != "udp" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: tp}}
	}
	return u.String()
}

// Known reports whether aor is a user of ours: one with credentials, or one who registered
// within the offline max age.
func (p *Proxy) Known(ctx context.Context, aor string) (bool, error) { return p.known(ctx, aor) }
