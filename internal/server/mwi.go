package server

import (
	"context"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/presence/mwi"

	"github.com/emiago/sipgo/sip"
)

// setupMWI serves the message-summary package on the presence agent, unless mwi.server names a
// voicemail server that answers those SUBSCRIBEs itself (then presence passes them on, see
// mwiRouted, and routeMWI has the proxy forward them there).
func (s *Server) setupMWI() error {
	if s.opts.MWI.Server != "" {
		return nil
	}
	m, err := mwi.New(mwi.Options{
		Presence:    s.presence,
		Store:       s.store,
		Devices:     s.delivery,
		Unsolicited: s.opts.MWI.Unsolicited,
		MaxBodySize: s.opts.Limits.MaxBodySize,
		Log:         s.log.Named("mwi"),
	})
	if err != nil {
		return err
	}
	if err := s.presence.Serve(m); err != nil {
		return err
	}
	s.mwi = m
	s.closers = append(s.closers, m.Close)
	return nil
}

// isMWISubscribe reports whether req is an out-of-dialog message-summary SUBSCRIBE.
func isMWISubscribe(req *sip.Request) bool {
	if req.Method != sip.SUBSCRIBE || req.To() == nil || req.To().Params.Has("tag") {
		return false
	}
	ev := sipx.Header(req, "Event")
	if ev == nil {
		return false
	}
	name, _, _ := strings.Cut(ev.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(name), mwi.Event)
}

// mwiRouted is presence.Deps.Routed with mwi.server set: message-summary SUBSCRIBEs are the
// voicemail server's.
func (s *Server) mwiRouted() func(*sip.Request) bool {
	if s.opts.MWI.Server == "" {
		return nil
	}
	return isMWISubscribe
}

// routeMWI wraps the proxy stage: with mwi.server set, an out-of-dialog message-summary
// SUBSCRIBE to a user of ours that carries no Route of its own gets a pre-loaded Route to the
// voicemail server, so the proxy forwards it there (loose routing, RFC 3261 §16.4) and
// record-routes it as any dialog-creating request; the server's NOTIFYs come back through
// simpled in that dialog.
func (s *Server) routeMWI(next sipx.Plugin) sipx.Plugin {
	server := s.opts.MWI.Server
	if server == "" {
		return next
	}
	return func(h sipx.Handler) sipx.Handler {
		return mwiRoute{next: next(h), server: server, domains: s.opts.Domains}
	}
}

type mwiRoute struct {
	next    sipx.Handler
	server  string
	domains []string
}

func (m mwiRoute) Name() string { return m.next.Name() }

func (m mwiRoute) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if isMWISubscribe(req) && req.Route() == nil && req.Recipient.User != "" && m.local(req.Recipient.Host) {
		route := sip.NewHeader("Route", "<"+strings.TrimSuffix(strings.TrimPrefix(m.server, "<"), ">")+";lr>")
		req.PrependHeader(route)
	}
	return m.next.ServeSIP(ctx, tx, req)
}

func (m mwiRoute) local(host string) bool {
	for _, d := range m.domains {
		if strings.EqualFold(d, host) {
			return true
		}
	}
	return false
}
