package server

import (
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/presence/reg"
	"github.com/simpled/simpled/proxy"
)

// setupPresence builds the presence agent: it sends its NOTIFYs through delivery
// (notifySender), takes delivery's Contact URI and asks offline whether a user is known.
func (s *Server) setupPresence() (sipx.Plugin, error) {
	opts := s.opts
	var err error
	s.presence, err = presence.Setup(opts.Presence, presence.Deps{
		Domains:        opts.Domains,
		Store:          s.store,
		Locator:        s.location,
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
		Bus:            s.cluster,
		Nodes:          s.cluster,
		Log:            s.log.Named("presence"),
		Registerer:     s.registry,
		Routed:         s.routed(),
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.presence.Close)
	if err := s.setupMWI(); err != nil {
		return nil, err
	}
	regPkg, err := reg.New(opts.Reg, reg.Deps{Locator: s.location})
	if err != nil {
		return nil, err
	}
	if err := s.presence.Serve(regPkg); err != nil {
		return nil, err
	}
	if err := s.setupDialog(); err != nil {
		return nil, err
	}
	return s.presence.Plugin(), nil
}

// setupProxy builds the proxy stage on delivery and offline, and hands it the 2xx responses
// to INVITEs that outlived their transaction (s.strays).
func (s *Server) setupProxy() (sipx.Plugin, error) {
	var err error
	s.proxy, err = proxy.New(proxy.Options{
		Domains:       s.opts.Domains,
		IsOurs:        s.isOurs,
		Locator:       s.location,
		Client:        s.client,
		Delivery:      s.delivery,
		Offline:       s.offline,
		Messages:      s.rules,
		Seals:         s.seals,
		InviteTimeout: s.opts.Proxy.InviteTimeout,
		Routes:        s.routes,
		Allow:         s.allow,
		Calls:         s.callObserver(),
		Log:           s.log.Named("proxy"),
		Registerer:    s.registry,
	})
	if err != nil {
		return nil, err
	}
	s.strays.Handle(s.proxy.ServeStrayResponse)
	return s.proxy.Plugin(), nil
}
