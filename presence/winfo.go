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
// presence.winfo events gets the list of its watchers and their states in full first (and on
// every refresh), then partial documents with the watchers that changed (subscribed, were
// authorized, left: terminated). A pending watcher shows up here so
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

// watcherInfo builds aor's full watcherinfo document with the given version, at most
// winfoBudget bytes.
func (p *Presence) watcherInfo(ctx context.Context, aor string, version uint32) ([]byte, error) {
	doc, _, err := p.winfoDocument(ctx, aor, version, nil)
	return doc, err
}

// winfoDocument builds the next watcherinfo document of aor's winfo subscription. sent is
// what its watcher knows, as the documents sent so far told it (nil: nothing yet, or a
// refresh: a full document). Otherwise the document is partial (RFC 3858 §4.4): the watchers
// whose status or event changed, and those that left as terminated, unless a full one would
// not be larger. It returns nil when nothing changed, and what the watcher knows after it.
func (p *Presence) winfoDocument(ctx context.Context, aor string, version uint32, sent map[string]pidf.Watcher) ([]byte, map[string]pidf.Watcher, error) {
	now := p.opts.Now()
	subs, err := p.opts.Store.Subscriptions(ctx, aor, now)
	if err != nil {
		return nil, nil, err
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
	var full []byte
	n := len(watching)
	for {
		full = p.watcherDoc(aor, version, "full", watchersOf(watching[:n], now))
		if len(full) <= budget || n == 0 {
			break
		}
		n = min(n-1, n*budget/len(full)) // proportionally fewer, at least one fewer
	}
	kept := watching[:n]
	known := make(map[string]pidf.Watcher, n)
	for _, s := range kept {
		known[s.ID] = watcherOf(s, now)
	}
	if sent == nil {
		return full, known, nil
	}
	// Partial: what changed among the kept watchers, and who left. A watcher the client knows
	// that is still subscribed but no longer kept stays known (it was not terminated).
	live := make(map[string]*storage.Subscription, len(watching))
	for _, s := range watching {
		live[s.ID] = s
	}
	var changes []pidf.Watcher
	for _, s := range kept {
		w := known[s.ID]
		if old, ok := sent[s.ID]; !ok || old.Status != w.Status || old.Event != w.Event {
			changes = append(changes, w)
		}
	}
	for id, old := range sent {
		if _, ok := known[id]; ok {
			continue
		}
		if s, ok := live[id]; ok {
			known[id] = watcherOf(s, now)
			continue
		}
		old.Status, old.Event, old.DurationSubscribed, old.Expiration = "terminated", "timeout", -1, -1
		changes = append(changes, old)
	}
	if len(changes) == 0 {
		return nil, sent, nil
	}
	partial := p.watcherDoc(aor, version, "partial", changes)
	if len(partial) >= len(full) {
		return full, known, nil
	}
	return partial, known, nil
}

// watchersOf describes subs as watcher elements.
func watchersOf(subs []*storage.Subscription, now time.Time) []pidf.Watcher {
	out := make([]pidf.Watcher, len(subs))
	for i, s := range subs {
		out[i] = watcherOf(s, now)
	}
	return out
}

// watcherDoc is a watcherinfo document of aor in state (full or partial) listing watchers,
// ordered by ID.
func (p *Presence) watcherDoc(aor string, version uint32, state string, watchers []pidf.Watcher) []byte {
	watchers = slices.Clone(watchers)
	slices.SortFunc(watchers, func(a, b pidf.Watcher) int { return cmp.Compare(a.ID, b.ID) })
	list := pidf.WatcherList{Resource: "sip:" + aor, Package: EventPresence, Watchers: watchers}
	w := pidf.WatcherInfo{Version: version, State: state, Lists: []pidf.WatcherList{list}}
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
