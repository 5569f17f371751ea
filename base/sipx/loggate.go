package sipx

import (
	"sync"
	"time"
)

// LogGate lets a limit log its refusals at most once per key (a source, a presentity) per
// interval, so a flood writes a line per key per interval, not one per packet. It remembers
// at most maxLogKeys keys: past that, keys not seen within the interval are forgotten and, if
// none is, new keys are not logged until one is — a flood from forged sources cannot grow it
// or the log. K is the key's type: netip.Addr on the packet paths, where a string would cost
// an allocation per refusal. The zero value is not usable; build it with NewLogGate. Safe for
// concurrent use.
type LogGate[K comparable] struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[K]time.Time
}

// maxLogKeys bounds a LogGate's memory (a few hundred KB).
const maxLogKeys = 4096

// NewLogGate returns a gate that opens once per key per interval.
func NewLogGate[K comparable](interval time.Duration) *LogGate[K] {
	return &LogGate[K]{interval: interval, last: map[K]time.Time{}}
}

// Allow reports whether a refusal for key at now should be logged, and if so records it.
func (g *LogGate[K]) Allow(key K, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < g.interval {
		return false
	}
	if _, ok := g.last[key]; !ok && len(g.last) >= maxLogKeys {
		for k, t := range g.last {
			if now.Sub(t) >= g.interval {
				delete(g.last, k)
			}
		}
		if len(g.last) >= maxLogKeys {
			return false
		}
	}
	g.last[key] = now
	return true
}
