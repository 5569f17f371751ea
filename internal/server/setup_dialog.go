package server

import (
	"context"
	"time"

	"github.com/simpled/simpled/presence/dialog"
	"github.com/simpled/simpled/proxy"
)

// setupDialog serves the dialog event package (BLF) on the presence agent and builds the call
// tracker the proxy reports its calls to (unless dialog.track_calls is off). A call not
// answered is bounded by the proxy's Timer C, plus a margin for its end to be reported.
func (s *Server) setupDialog() error {
	cfg, log := s.opts.Dialog, s.log.Named("dialog")
	if cfg.TrackCalls {
		ringing := s.opts.Proxy.InviteTimeout + 32*time.Second
		changed := func(aor string) { s.presence.Changed(aor, dialog.Event) }
		watched := func(ctx context.Context, aor string) (bool, error) { return s.presence.Watched(ctx, dialog.Event, aor) }
		s.calls = dialog.NewTracker(s.store, cfg, ringing, changed, watched, log)
		s.closers = append(s.closers, s.calls.Close)
	}
	return s.presence.Serve(dialog.New(s.presence, s.store, cfg, log))
}

// callObserver is the proxy's CallObserver: the tracker, or none.
func (s *Server) callObserver() proxy.CallObserver {
	if s.calls == nil {
		return nil
	}
	return s.calls
}
