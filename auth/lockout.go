package auth

import (
	"container/list"
	"hash/maphash"
	"sync"
	"time"
)

// Lockout limits: the window failures are counted in, and the size of the table.
const (
	// lockoutWindow is the span the threshold's failures must fall in: a user who mistypes
	// a password now and then is never locked out.
	lockoutWindow = time.Minute
	// maxLockoutEntries bounds the table (one entry per AOR and source address with a recent
	// failure or a lockout running): about 200 bytes each, so a few MB at most under a
	// flood of random AORs or sources. The least recently failed entry is evicted first.
	// Source addresses longer than maxLockoutSource (not an IP) are cut.
	maxLockoutEntries = 16384
	maxLockoutSource  = 64
)

// lockKey is one AOR tried from one source address (IP, without the port). The AOR is kept
// as a keyed 64-bit hash (lockouts.key), so an entry has a bounded size whatever the AOR's
// length (a To URI may be as long as a message).
type lockKey struct {
	aor    uint64
	source string
}

// lockEntry is the failure count of one lockKey.
type lockEntry struct {
	key   lockKey
	first time.Time // first failure of the current window
	n     int       // failures since first
	until time.Time // locked out until; zero: not locked
}

// lockouts is the in-process lockout table of one node: failures (wrong response, unknown
// user) counted per AOR and source address; threshold of them within lockoutWindow lock that
// source out of that AOR for duration. It is a bounded LRU (maxLockoutEntries), so evicting
// an entry needs that many other failing (AOR, source) pairs after its last failure. Safe for
// concurrent use.
type lockouts struct {
	threshold int
	duration  time.Duration
	max       int
	seed      maphash.Seed

	mu    sync.Mutex
	m     map[lockKey]*list.Element // of *lockEntry
	order list.List                 // least recently failed first
}

func newLockouts(threshold int, duration time.Duration) *lockouts {
	return &lockouts{threshold: threshold, duration: duration, max: maxLockoutEntries, seed: maphash.MakeSeed(), m: map[lockKey]*list.Element{}}
}

// key returns the table key of aor tried from source (an IP).
func (l *lockouts) key(aor, source string) lockKey {
	if len(source) > maxLockoutSource {
		source = source[:maxLockoutSource]
	}
	return lockKey{aor: maphash.String(l.seed, aor), source: source}
}

// locked reports whether k is locked out at now. An attempt while locked counts as recent
// activity (the entry is not the next to be evicted).
func (l *lockouts) locked(k lockKey, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.m[k]
	if el == nil {
		return false
	}
	e := el.Value.(*lockEntry)
	if e.until.IsZero() || !now.Before(e.until) {
		return false
	}
	l.order.MoveToBack(el)
	return true
}

// failed counts a failure of k at now and reports whether it started a lockout.
func (l *lockouts) failed(k lockKey, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.m[k]
	if el == nil {
		if len(l.m) >= l.max {
			old := l.order.Front()
			delete(l.m, old.Value.(*lockEntry).key)
			l.order.Remove(old)
		}
		el = l.order.PushBack(&lockEntry{key: k, first: now})
		l.m[k] = el
	} else {
		l.order.MoveToBack(el)
	}
	e := el.Value.(*lockEntry)
	if !e.until.IsZero() && !now.Before(e.until) {
		e.until = time.Time{}
		e.first, e.n = now, 0
	}
	if now.Sub(e.first) > lockoutWindow {
		e.first, e.n = now, 0
	}
	e.n++
	if e.until.IsZero() && e.n >= l.threshold {
		e.until = now.Add(l.duration)
		return true
	}
	return false
}

// succeeded forgets the failures of k: the right password ends the count.
func (l *lockouts) succeeded(k lockKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el := l.m[k]; el != nil {
		delete(l.m, k)
		l.order.Remove(el)
	}
}

// len returns the number of entries (tests).
func (l *lockouts) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
