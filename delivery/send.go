package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Devices are the registered devices of a user, in the order a request tries them.
type Devices struct {
	// Groups: highest q-value first; the devices of a group are tried in parallel.
	Groups [][]Target
	// Bindings is how many bindings the user has, usable or not: with none the user is not
	// registered at all (Groups may be empty for bindings that cannot be reached).
	Bindings int
}

// Reach returns the registered devices of aor.
func (d *Delivery) Reach(ctx context.Context, aor string) (Devices, error) {
	bindings, err := d.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return Devices{}, fmt.Errorf("delivery: lookup %s: %w", aor, err)
	}
	if len(bindings) == 0 {
		return Devices{}, nil
	}
	return Devices{Groups: d.Targets(ctx, bindings), Bindings: len(bindings)}, nil
}

// Send sends req, a request simpled originates (an offline delivery, the admin API's
// MESSAGE), to the devices, group after group (a group's devices in parallel), and returns
// the final status: the first 2xx, a 6xx, else the best failure as RFC 3261 §16.7 chooses it
// (a device's 503 counts as 500; 480 when there was no device); 0 if ctx ended first. req is
// not modified; it must not be an INVITE.
func (d *Delivery) Send(ctx context.Context, req *sip.Request, to Devices) int {
	if len(to.Groups) == 1 && len(to.Groups[0]) == 1 {
		return d.sendOne(ctx, req, to.Groups[0][0])
	}
	var finals, synthetic []int
	events := make(chan outcome, 8)
	stop := make(chan struct{})
	defer close(stop)
	for _, group := range to.Groups {
		live := 0
		for _, t := range group {
			b, err := d.Start(req, t, BranchOptions{Hash: "0"})
			if err != nil {
				d.log.Info("branch not sent", zap.String("target", t.Dest.String()), zap.Error(err))
				synthetic = append(synthetic, TransportFailure(t))
				d.CountBranch(req.Method, 0)
				continue
			}
			live++
			go watch(b, events, stop)
		}
		for ; live > 0; live-- {
			var o outcome
			select {
			case o = <-events:
			case <-ctx.Done():
				return 0
			}
			d.CountBranch(req.Method, o.status)
			switch {
			case o.status == 0:
				synthetic = append(synthetic, o.failure)
			case o.status < 300:
				return o.status // the first 2xx ends it
			case o.status >= 600:
				return bestStatus(append(finals, o.status), synthetic)
			default:
				finals = append(finals, o.status)
			}
		}
	}
	return bestStatus(finals, synthetic)
}

// sendOne is Send for one device: the same outcome without a watcher goroutine.
func (d *Delivery) sendOne(ctx context.Context, req *sip.Request, t Target) int {
	b, err := d.Start(req, t, BranchOptions{Hash: "0"})
	if err != nil {
		d.log.Info("branch not sent", zap.String("target", t.Dest.String()), zap.Error(err))
		d.CountBranch(req.Method, 0)
		return TransportFailure(t)
	}
	for {
		select {
		case res := <-b.Tx.Responses():
			if res.IsProvisional() {
				continue
			}
			d.CountBranch(req.Method, res.StatusCode)
			return bestStatus([]int{res.StatusCode}, nil)
		case <-b.Tx.Done():
			d.CountBranch(req.Method, 0)
			return failure(b)
		case <-ctx.Done():
			go watch(b, nil, closedChan) // keep draining: the channel is unbuffered
			return 0
		}
	}
}

// outcome is how a branch ended: its final status, or 0 and the status its failure counts as.
type outcome struct {
	status, failure int
}

// failure is the status of a branch whose transaction ended without a final response: 408
// when it timed out, else a transport failure.
func failure(b *Branch) int {
	if errors.Is(b.Tx.Err(), sip.ErrTransactionTimeout) {
		return 408
	}
	return TransportFailure(b.Target)
}

// watch passes b's outcome to events (unless stop closes first), draining its responses:
// sipgo's Responses channel is unbuffered.
func watch(b *Branch, events chan<- outcome, stop <-chan struct{}) {
	var o outcome
	for o == (outcome{}) {
		select {
		case res := <-b.Tx.Responses():
			if !res.IsProvisional() {
				o.status = res.StatusCode
			}
		case <-b.Tx.Done():
			o.failure = failure(b)
		}
	}
	select {
	case events <- o:
	case <-stop:
	}
}

// closedChan lets watch drain a transaction nobody listens to any more.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// bestStatus is the status RFC 3261 §16.7 step 6 chooses when no branch succeeded: a 6xx if
// any, else the lowest class (first received within a class), a branch that failed without
// an answer counting only when its class is lower; a 503 from downstream becomes 500 (it is
// about that server, not us); 480 when there was no branch. A 2xx is returned as it is.
func bestStatus(finals, synthetic []int) int {
	pick := 0
	for _, s := range finals {
		if s >= 600 {
			pick = s
			break
		}
		if pick == 0 || s/100 < pick/100 {
			pick = s
		}
	}
	if pick < 600 {
		for _, code := range synthetic {
			if pick == 0 || code/100 < pick/100 {
				return code
			}
		}
	}
	switch pick {
	case 0:
		return 480
	case 503:
		return 500
	}
	return pick
}

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
func (d *Delivery) SendInDialog(ctx context.Context, req *sip.Request, dlg Dialog) (int, error) {
	var uri sip.Uri
	if err := sip.ParseUri(dlg.RemoteTarget, &uri); err != nil {
		return 0, fmt.Errorf("delivery: remote target %q: %w", dlg.RemoteTarget, err)
	}
	send := func(t Target) int {
		t.Retransmits = dlg.Retransmits
		for i := range t.Alts {
			t.Alts[i].Retransmits = dlg.Retransmits
		}
		return d.Send(ctx, req, Devices{Groups: [][]Target{{t}}, Bindings: 1})
	}
	if len(dlg.RouteSet) > 0 {
		route, err := ParseRoute(dlg.RouteSet[0])
		if err != nil {
			return 0, fmt.Errorf("delivery: route set %q: %w", dlg.RouteSet[0], err)
		}
		t, err := d.HopTarget(ctx, &route.Address, uri)
		if err != nil {
			// The first route names nowhere we can go: the answer says so (404); it is no
			// failure of simpled's.
			return 404, nil //nolint:nilerr // the status carries it
		}
		t.Routes = dlg.RouteSet
		return send(t), nil
	}
	if host := strings.ToLower(uri.Host); d.domains[host] {
		t, ok, err := d.locate(ctx, &uri)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 480, nil
		}
		return send(t), nil
	}
	var tries []Target
	if f, ok := d.flows.Of(dlg.Transport, dlg.Source); ok {
		if f.Stream() {
			// The dialog's connection, or nothing: a new connection to the peer's Contact
			// would reach a NAT, a browser's ".invalid" name or an ephemeral port (RFC 5626).
			return send(Target{URI: uri, Transport: f.Transport, Dest: f.Remote, Flow: true}), nil
		}
		tries = append(tries, Target{URI: uri, Transport: f.Transport, Dest: f.Remote})
	}
	if t, err := d.HopTarget(ctx, &uri, uri); err == nil &&
		(len(tries) == 0 || t.Dest != tries[0].Dest || t.Transport != tries[0].Transport) {
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

// ContactURI is our Contact for a dialog simpled is a party of (the presence agent's
// subscriptions), created over transport by a request from remote (host:port): the
// listener of that transport, with the address remote reaches us at.
func (d *Delivery) ContactURI(transport, remote string) string {
	tp := strings.ToLower(transport)
	l := d.flows.Listener(tp)
	if !l.IsValid() {
		tp = "udp"
		if l = d.flows.Listener(tp); !l.IsValid() {
			return "sip:" + d.defaultDom
		}
	}
	dest := netip.MustParseAddr("127.0.0.1")
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		dest = ap.Addr().Unmap()
	}
	u := sip.Uri{Scheme: "sip", Host: HostLiteral(d.flows.Advertised(l, dest)), Port: int(l.Port())}
	if tp != "udp" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: tp}}
	}
	return u.String()
}
