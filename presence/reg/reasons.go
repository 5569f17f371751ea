package reg

import (
	"sync"
	"time"

	"github.com/simpled/simpled/storage"
)

// Why each binding event ends a contact (RFC 3680 §5.1.2). A removal the client did not ask
// for is deactivated: the device may register again at once and will be taken (a new
// connection, a refresh after the admin API cleared it). An eviction is rejected: the
// registrar's contact limit (registrar.max_contacts) removed it by policy.
func removalEvent(ev storage.Event) string {
	switch ev.Kind {
	case storage.BindingExpired:
		return EvExpired
	case storage.BindingEvicted:
		return EvRejected
	case storage.BindingRemoved:
		if ev.Reason == "" {
			return EvUnregistered
		}
		return EvDeactivated
	}
	return ""
}

// Bounds of the memory of removals: a partial document names why a contact went, and the
// contact is gone from the store by the time it is built, so the reason comes from the bus
// event, kept for reasonTTL (a NOTIFY delayed by rate control or a slow watcher is well
// within it) and for at most maxReasons contacts (the oldest go first). A contact whose
// reason is forgotten is reported expired when its expiry time has passed, else deactivated.
const (
	reasonTTL  = 2 * time.Minute
	maxReasons = 8192
)

type reason struct {
	event string
	at    time.Time
	seq   uint64
}

type queued struct {
	key reasonKey
	seq uint64
}

// reasons remembers, per (aor, contact id), why a contact was removed.
type reasons struct {
	mu    sync.Mutex
	m     map[reasonKey]reason
	order []queued // oldest first; an entry whose seq is no longer m's is stale
	seq   uint64
}

func newReasons() *reasons { return &reasons{m: map[reasonKey]reason{}} }

// reasonKey names a contact of an AOR: a pair rather than one joined string, so that a
// look-up builds nothing (BindingChanged forgets a contact on every registration).
type reasonKey struct{ aor, id string }

// put remembers why aor's contact id went at now, and forgets what is too old or too many.
func (r *reasons) put(aor, id, event string, now time.Time) {
	k := reasonKey{aor, id}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.m[k] = reason{event: event, at: now, seq: r.seq}
	r.order = append(r.order, queued{k, r.seq})
	for len(r.order) > 0 {
		q := r.order[0]
		e, ok := r.m[q.key]
		live := ok && e.seq == q.seq
		if live && len(r.m) <= maxReasons && e.at.After(now.Add(-reasonTTL)) {
			break
		}
		if live {
			delete(r.m, q.key)
		}
		r.order = r.order[1:]
	}
	if len(r.order) > 2*maxReasons { // one contact removed again and again: drop the stale
		kept := make([]queued, 0, len(r.m))
		for _, q := range r.order {
			if e, ok := r.m[q.key]; ok && e.seq == q.seq {
				kept = append(kept, q)
			}
		}
		r.order = kept
	}
}

// get returns why aor's contact id went, "" when not remembered (or too long ago).
func (r *reasons) get(aor, id string, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[reasonKey{aor, id}]
	if !ok || !e.at.After(now.Add(-reasonTTL)) {
		return ""
	}
	return e.event
}

// forget drops what is remembered of aor's contact id (it registered again).
func (r *reasons) forget(aor, id string) {
	r.mu.Lock()
	delete(r.m, reasonKey{aor, id})
	r.mu.Unlock()
}

// size is how many contacts are remembered.
func (r *reasons) size() (entries, queued int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m), len(r.order)
}
