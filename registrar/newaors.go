package registrar

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/simpled/simpled/storage"
)

// newAORs bounds, in open mode (auth.mode off), how many AORs one source registers for the
// first time per minute: without it 3,000 anonymous REGISTERs of made-up AORs, 10 contacts
// each, took simpled from 34 to 419 MB in 14 s. An AOR counts once per window; refreshes,
// removals and AORs that already have bindings do not count. Per node, in memory: a window
// per source group (IPv4 address, IPv6 /64), at most maxNewAORSources of them, each holding
// at most limit 8-byte hashes of the AORs it counted.
type newAORs struct {
	limit  int
	window time.Duration
	seed   maphash.Seed

	mu      sync.Mutex
	sources map[string]*aorWindow
}

// aorWindow is one source's current window.
type aorWindow struct {
	start time.Time
	aors  []uint64 // hashes of the AORs counted in this window, at most limit
}

// maxNewAORSources bounds the sources tracked (about 16 MB at a limit of 60, much less in
// practice): past it, windows that ended are dropped, then arbitrary ones — so a flood
// from forged sources costs bounded memory, and evicting a real source's window needs as many
// other sources registering new AORs within the minute.
const maxNewAORSources = 16384

func newNewAORs(limit int, window time.Duration) *newAORs {
	return &newAORs{limit: limit, window: window, seed: maphash.MakeSeed(), sources: map[string]*aorWindow{}}
}

// reserve counts aor as new for source group at now. ok is false when the source's budget
// for this window is spent (retry: when the window ends); counted reports whether this call
// counted aor (release undoes it when it turns out not new).
func (n *newAORs) reserve(group, aor string, now time.Time) (ok, counted bool, retry time.Duration) {
	h := maphash.String(n.seed, aor)
	n.mu.Lock()
	defer n.mu.Unlock()
	w := n.sources[group]
	if w == nil || now.Sub(w.start) >= n.window {
		if w == nil && len(n.sources) >= maxNewAORSources {
			n.evict(now)
		}
		w = &aorWindow{start: now}
		n.sources[group] = w
	}
	if slices.Contains(w.aors, h) {
		return true, false, 0
	}
	if len(w.aors) >= n.limit {
		return false, false, w.start.Add(n.window).Sub(now)
	}
	w.aors = append(w.aors, h)
	return true, true, 0
}

// release uncounts aor, counted by reserve for group but not new after all.
func (n *newAORs) release(group, aor string) {
	h := maphash.String(n.seed, aor)
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.sources[group]; w != nil {
		if i := slices.Index(w.aors, h); i >= 0 {
			w.aors = slices.Delete(w.aors, i, i+1)
		}
	}
}

// evict makes room: it drops the windows that ended and, if that freed less than an eighth
// of the table, arbitrary ones until it has (so a flood pays for a scan once per eighth of
// the table, not once per source). Call with n.mu held.
func (n *newAORs) evict(now time.Time) {
	for k, w := range n.sources {
		if now.Sub(w.start) >= n.window {
			delete(n.sources, k)
		}
	}
	for k := range n.sources {
		if len(n.sources) <= maxNewAORSources*7/8 {
			return
		}
		delete(n.sources, k)
	}
}

// newAOR reports whether an update's result made aor exist: it had no binding before and
// has one now.
func newAOR(res storage.BindingResult) bool {
	return len(res.Added) > 0 && len(res.Refreshed) == 0 && len(res.Bindings) <= len(res.Added)
}

// adds reports whether a REGISTER's changes add or refresh a binding (not only removals).
func adds(changes []storage.BindingChange, now time.Time) bool {
	for i := range changes {
		if changes[i].Binding.ExpiresAt.After(now) {
			return true
		}
	}
	return false
}
