package server

import (
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/presence"
)

// setupPresence builds what sends and routes (buildDelivery: dns, delivery, offline, proxy)
// and then the presence agent: presence sends its NOTIFYs through delivery (notifySender),
// takes its Contact URI and asks offline whether a user is known, so those are built first
// although the proxy comes last in the chain.
func (s *Server) setupPresence() (sipx.Plugin, error) {
	if err := s.buildDelivery(s.store, s.seals, s.gruus); err != nil {
		return nil, err
	}
	opts := s.opts
	var err error
	s.presence, err = presence.Setup(opts.Presence, presence.Deps{
		Domains:        opts.Domains,
		Store:          s.store,
		Locator:        s.registrar,
		Sender:         notifySender{s.delivery},
		Contact:        s.delivery.ContactURI,
		IsOurs:         s.isOurs,
		Known:          s.offline.Known,
		MinExpires:     opts.Registrar.MinExpires,
		DefaultExpires: opts.Registrar.DefaultExpires,
		MaxExpires:     opts.Registrar.MaxExpires,
		MaxBodySize:    opts.Limits.MaxBodySize,
		Limited:        s.limited,
		NodeID:         opts.NodeID,
		SweepInterval:  opts.Registrar.SweepInterval,
		Bus:            s.bus,
		Log:            s.log.Named("presence"),
		Registerer:     s.registry,
	})
	if err != nil {
		return nil, err
	}
	return s.presence.Plugin(), nil
}

// setupProxy returns the proxy stage, built with delivery before the presence agent
// (setupPresence).
func (s *Server) setupProxy() (sipx.Plugin, error) {
	return s.proxy.Plugin(), nil
}
