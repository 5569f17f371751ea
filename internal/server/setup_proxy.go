package server

import (
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/proxy"
)

// setupPresence builds the proxy and the presence agent together: presence sends its NOTIFYs
// through the proxy (notifySender), takes its Contact URI and asks it whether a user is known,
// so the proxy is built first although it comes last in the chain.
func (s *Server) setupPresence() (sipx.Plugin, error) {
	if err := s.buildProxyAndPresence(); err != nil {
		return nil, err
	}
	return s.presence.Plugin(), nil
}

// setupProxy returns the proxy stage, built with the presence agent (setupPresence).
func (s *Server) setupProxy() (sipx.Plugin, error) {
	return s.proxy.Plugin(), nil
}

// buildProxyAndPresence builds the proxy, then the presence agent that sends through it.
func (s *Server) buildProxyAndPresence() error {
	opts, log, store := s.opts, s.log, s.store
	var err error
	s.sockets.Store(&[]proxy.Listener{})
	s.proxy, err = proxy.New(proxy.Options{
		Domains:        opts.Domains,
		IsOurs:         s.isOurs,
		Listeners:      func() []proxy.Listener { return *s.sockets.Load() },
		Locator:        s.registrar,
		Client:         s.client,
		Messages:       store,
		HasCredentials: s.users.Known,
		Resolver:       proxy.NewResolver(opts.Proxy.DNS, dnsTimeout),
		Seals:          s.seals,
		MessageTypes:   opts.Messages.ContentTypes,
		UDPMTU:         opts.Proxy.UDPMTU,
		MaxBodySize:    opts.Limits.MaxBodySize,
		InviteTimeout:  opts.Proxy.InviteTimeout,
		Offline: proxy.OfflineOptions{
			MaxCount: opts.Messages.OfflineMaxCount,
			MaxBytes: opts.Messages.OfflineMaxBytes,
			MaxAge:   opts.Messages.OfflineMaxAge,
			// Per sender and for foreign senders together: spam cannot lock a mailbox.
			MaxPerSender: opts.Messages.OfflineMaxPerSender,
			ForeignShare: opts.Messages.OfflineForeignShare,
		},
		Secret:     s.secret,
		GRUUs:      s.gruus,
		LastSeen:   s.live.Seen,
		Allow:      s.allow,
		Bus:        s.bus,
		Limited:    s.limited,
		Log:        log.Named("proxy"),
		Registerer: s.registry,
	})
	if err != nil {
		return err
	}
	s.presence, err = presence.Setup(opts.Presence, presence.Deps{
		Domains:        opts.Domains,
		Store:          store,
		Locator:        s.registrar,
		Sender:         notifySender{s.proxy},
		Contact:        s.proxy.ContactURI,
		IsOurs:         s.isOurs,
		Known:          s.proxy.Known,
		MinExpires:     opts.Registrar.MinExpires,
		DefaultExpires: opts.Registrar.DefaultExpires,
		MaxExpires:     opts.Registrar.MaxExpires,
		MaxBodySize:    opts.Limits.MaxBodySize,
		Limited:        s.limited,
		NodeID:         s.opts.NodeID,
		SweepInterval:  opts.Registrar.SweepInterval,
		Bus:            s.bus,
		Log:            log.Named("presence"),
		Registerer:     s.registry,
	})
	if err != nil {
		return err
	}
	return nil
}
