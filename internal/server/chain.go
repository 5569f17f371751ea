package server

import (
	"github.com/simpled/simpled/base/sipx"
)

// chain is the chain of stages, first to last. Its order is fixed here and only here; each
// stage either answers (and the request stops) or passes the request on.
//
//	sanity     first: malformed, looping or oversized requests cost nothing further, and every
//	           later stage may rely on the mandatory headers being present and well-formed.
//	options    OPTIONS to the server itself, before auth: phones and monitors ping their
//	           server without credentials.
//	auth       before anything that changes state or relays: a REGISTER must prove its AOR,
//	           a request from a local user its From (401/407/403).
//	registrar  REGISTER for a local domain.
//	presence   PUBLISH and SUBSCRIBE to a presentity of a local domain, and SUBSCRIBEs
//	           within its subscriptions: after auth (only the presentity publishes), before
//	           the proxy (which would otherwise route them to the user's devices). Those a
//	           rule of proxy.routes takes pass by it to the proxy (routedPast).
//	proxy      last: everything else — MESSAGE (relayed, or stored for an offline user),
//	           INVITE and in-dialog requests by Route, other domains by DNS for those
//	           allowed to relay. It answers every request that reaches it.
//
// Every REGISTER stops at the registrar at the latest, and on the memory store nothing on its
// way there waits on the network or another process: over UDP it then runs on the socket's
// read loop (registerDispatch, sipgox.UDPTransactions.Inline). A stage that would make a
// REGISTER wait (a remote user directory, a push before the answer) must end that.
var chain = []stage{
	{"sanity", (*Server).setupSanity},
	{"options", (*Server).setupOptions},
	{"auth", (*Server).setupAuth},
	{"registrar", (*Server).setupRegistrar},
	{"presence", (*Server).setupPresence},
	{"proxy", (*Server).setupProxy},
}

// stage is one entry of the chain: its name (in errors) and the function that builds it from
// its section of the configuration and the shared services (setup.go, setup_proxy.go). New
// calls them in this order.
type stage struct {
	name  string
	setup func(*Server) (sipx.Plugin, error)
}

// buildChain composes the stages backwards once at start-up, so a request walks them in the
// order chain lists.
func buildChain(plugins []sipx.Plugin) sipx.Handler {
	var h sipx.Handler
	for i := len(plugins) - 1; i >= 0; i-- {
		h = plugins[i](h)
	}
	return h
}
