package server

import (
	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/registrar"
	"github.com/simpled/simpled/sanity"
)

// The setup functions of the chain table (chain.go): each hands a stage its section of the
// configuration and the shared services New built first. The proxy's and the presence
// agent's are in setup_proxy.go.

func (s *Server) setupSanity() (sipx.Plugin, error) {
	return sanity.Setup(sanity.Config{MaxBodySize: s.opts.Limits.MaxBodySize},
		sanity.Deps{IsOurs: s.isOurs, Log: s.log.Named("sanity").WithOptions(sampled())})
}

func (s *Server) setupOptions() (sipx.Plugin, error) {
	return sanity.SetupOptions(sanity.DefaultOptionsConfig(), sanity.OptionsDeps{IsOurs: s.isOurs, Allow: s.allow})
}

func (s *Server) setupAuth() (sipx.Plugin, error) {
	cfg := s.opts.Auth
	cfg.Mode = s.opts.AuthMode() // "" resolved from the listeners and the users file
	if auth.Mode(cfg.Mode) == auth.ModeOff {
		s.log.Warn("auth.mode is off: requests that claim a local identity are not authenticated")
	}
	a, err := auth.Setup(cfg, auth.Deps{
		Domains:     s.opts.Domains,
		Users:       s.users,
		Store:       s.store,
		Secret:      s.secret,
		IsOurs:      s.isOurs,
		TrustedPeer: s.trusted.Trusted,
		Seals:       s.seals,
		Log:         s.log.Named("auth"),
		Registerer:  s.registry,
	})
	if err != nil {
		return nil, err
	}
	s.auth = a
	return a.Plugin(), nil
}

func (s *Server) setupRegistrar() (sipx.Plugin, error) {
	r, err := registrar.Setup(s.opts.Registrar, registrar.Deps{
		Domains:      s.opts.Domains,
		FlowTimer:    s.opts.Transport.FlowTimer,
		UDPFlowTimer: s.opts.Transport.UDPFlowTimer,
		Flow:         s.flows.Token,
		FlowOpen:     s.streamOpen,
		Liveness:     s.live,
		Node:         s.opts.NodeID,
		GRUUs:        s.gruus,
		TrustedPeer:  s.trusted.Trusted,
		Limited:      s.limited,
		Store:        s.store,
		Bus:          s.cluster,
		Log:          s.log.Named("registrar"),
		Registerer:   s.registry,
		StoreLatency: s.storeLatency,
	})
	if err != nil {
		return nil, err
	}
	s.registrar = r
	// A connection that closes takes what was registered over it (RFC 5626 flows).
	s.flows.OnClosed(r.FlowClosed)
	return r.Plugin(), nil
}
