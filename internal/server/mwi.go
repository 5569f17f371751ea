package server

import (
	"github.com/simpled/simpled/presence/mwi"
	"github.com/simpled/simpled/routes"

	"github.com/emiago/sipgo/sip"
)

// setupMWI serves the message-summary package on the presence agent, unless mwi.server names a
// voicemail server that answers those SUBSCRIBEs itself: then they are the first rule of the
// route table (mwiRoute), which the presence agent leaves to the proxy.
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

// mwiRoute is the rule mwi.server stands for: out-of-dialog message-summary SUBSCRIBEs go to
// the voicemail server, which answers them and sends their NOTIFYs back through simpled.
func mwiRoute(server string) routes.Rule {
	return routes.Rule{
		Match:       routes.Match{Method: []string{sip.SUBSCRIBE.String()}, Event: mwi.Event},
		To:          []string{server},
		RecordRoute: true,
	}
}

// routed is presence.Deps.Routed: whether a rule of the route table takes a request.
func (s *Server) routed() func(*sip.Request) bool {
	if len(s.routes.Routes()) == 0 {
		return nil
	}
	return s.routes.Routed
}
