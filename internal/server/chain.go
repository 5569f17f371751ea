package server

import (
	"github.com/simpled/simpled/base/sipx"
)

// The chain, first stage to last. Its order is fixed here and only here; each stage either
// answers (and the request stops) or passes the request on.
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
//	           the proxy (which would otherwise route them to the user's devices).
//	proxy      last: everything else — MESSAGE (relayed, or stored for an offline user),
//	           INVITE and in-dialog requests by Route, other domains by DNS for those
//	           allowed to relay. It answers every request that reaches it.
func (s *Server) stages() []sipx.Plugin {
	return []sipx.Plugin{
		func(next sipx.Handler) sipx.Handler {
			return &sanity{next: next, maxBody: s.opts.Limits.MaxBodySize, isOurs: s.isOurs,
				supported: nil, log: s.log.Named("sanity").WithOptions(sampled())}
		},
		func(next sipx.Handler) sipx.Handler {
			return &options{next: next, isOurs: s.isOurs, allow: s.allow,
				accept:    "application/sdp, text/plain, message/cpim, application/pidf+xml",
				supported: "path"}
		},
		s.auth.Plugin(),
		s.registrar.Plugin(),
		s.presence.Plugin(),
		s.proxy.Plugin(),
	}
}

// buildChain composes the stages backwards once at start-up, so a request walks them in the
// order stages lists.
func buildChain(plugins []sipx.Plugin) sipx.Handler {
	var h sipx.Handler
	for i := len(plugins) - 1; i >= 0; i-- {
		h = plugins[i](h)
	}
	return h
}
