package proxy

import (
	"net/netip"

	"github.com/simpled/simpled/base/transport"

	"github.com/emiago/sipgo/sip"
)

// arrival is the flow a request came in on, as the transport layer reports it.
type arrival struct {
	transport string // lower case
	source    string // host:port
	// vouched: the sender is an authenticated user or a trusted peer (sipx.Rule.MayRelay),
	// so the Contact it gives in a dialog-creating request is its own business.
	vouched bool
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
		if f, ok := p.flows.Parse(tok); ok {
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
