package presence

import (
	"context"
	"time"

	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"
)

// Watcher information (RFC 3857, RFC 3858): a presentity subscribed to its own
// presence.winfo events gets the list of its watchers and their states, in full, on every
// change (a watcher subscribes, is authorized, leaves). A pending watcher shows up here so
// the presentity (or an operator, through the admin API) can decide with a rule.

// watcherInfo builds aor's watcherinfo document with the given version.
func (p *Presence) watcherInfo(ctx context.Context, aor string, version uint32) ([]byte, error) {
	now := p.opts.Now()
	subs, err := p.opts.Store.Subscriptions(ctx, aor, now)
	if err != nil {
		return nil, err
	}
	list := pidf.WatcherList{Resource: "sip:" + aor, Package: EventPresence}
	for i := range subs {
		s := &subs[i]
		if s.Event != EventPresence {
			continue
		}
		list.Watchers = append(list.Watchers, watcherOf(s, now))
	}
	w := pidf.WatcherInfo{Version: version, State: "full", Lists: []pidf.WatcherList{list}}
	return w.Bytes(), nil
}

// watcherOf describes one subscription as a watcher element.
func watcherOf(s *storage.Subscription, now time.Time) pidf.Watcher {
	event := "approved"
	if s.State == storage.SubPending {
		event = "subscribe"
	}
	return pidf.Watcher{
		ID:                 s.ID,
		Status:             s.State,
		Event:              event,
		URI:                "sip:" + s.Watcher,
		DisplayName:        s.WatcherName,
		DurationSubscribed: int(now.Sub(s.CreatedAt).Seconds()),
		Expiration:         max(int(s.ExpiresAt.Sub(now).Seconds()), 0),
	}
}
