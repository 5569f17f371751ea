package presence

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"
)

// Watcher information (RFC 3857, RFC 3858): a presentity subscribed to its own
// presence.winfo events gets the list of its watchers and their states, in full, on every
// change (a watcher subscribes, is authorized, leaves). A pending watcher shows up here so
// the presentity (or an operator, through the admin API) can decide with a rule.
//
// The document is bounded (winfoBudget) so the presentity's own subscription survives a
// flood of watchers: 3,000 SUBSCRIBEs to one user once grew it past what the presentity's
// client accepted, which refused the NOTIFY and so ended its winfo subscription. Past the
// bound the pending watchers (the ones awaiting a decision) are kept first, then the newest.

// maxWinfoDoc bounds a watcherinfo document: a NOTIFY carrying it, with its headers, still
// fits one UDP datagram (at most 65,507 bytes) with room for the Vias and Record-Routes of
// proxies on the way. About 250 watchers.
const maxWinfoDoc = 48 << 10

// winfoBudget is the size bound of watcherinfo documents: maxWinfoDoc, or the body limit
// when that is smaller.
func (p *Presence) winfoBudget() int { return min(maxWinfoDoc, p.opts.MaxBodySize) }

// watcherInfo builds aor's watcherinfo document with the given version, at most
// winfoBudget bytes.
func (p *Presence) watcherInfo(ctx context.Context, aor string, version uint32) ([]byte, error) {
	now := p.opts.Now()
	subs, err := p.opts.Store.Subscriptions(ctx, aor, now)
	if err != nil {
		return nil, err
	}
	var watching []*storage.Subscription
	for i := range subs {
		if subs[i].Event == EventPresence {
			watching = append(watching, &subs[i])
		}
	}
	// Kept first: pending watchers, then the newest (ties by ID, the store's order).
	slices.SortStableFunc(watching, func(a, b *storage.Subscription) int {
		if ap, bp := a.State == storage.SubPending, b.State == storage.SubPending; ap != bp {
			if ap {
				return -1
			}
			return 1
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	budget := p.winfoBudget()
	for n := len(watching); ; {
		doc := p.watcherDoc(aor, version, watching[:n], now)
		if len(doc) <= budget || n == 0 {
			return doc, nil
		}
		n = min(n-1, n*budget/len(doc)) // proportionally fewer, at least one fewer
	}
}

// watcherDoc is the full watcherinfo document of aor listing subs, ordered by ID.
func (p *Presence) watcherDoc(aor string, version uint32, subs []*storage.Subscription, now time.Time) []byte {
	subs = slices.Clone(subs)
	slices.SortFunc(subs, func(a, b *storage.Subscription) int { return cmp.Compare(a.ID, b.ID) })
	list := pidf.WatcherList{Resource: "sip:" + aor, Package: EventPresence}
	for _, s := range subs {
		list.Watchers = append(list.Watchers, watcherOf(s, now))
	}
	w := pidf.WatcherInfo{Version: version, State: "full", Lists: []pidf.WatcherList{list}}
	return w.Bytes()
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
