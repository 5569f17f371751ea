package transport

import (
	"net/netip"
	"sync"
	"time"
)

// Liveness remembers when each UDP client address was last heard from — a SIP request, a STUN
// keepalive or a CRLF datagram (RFC 5626 §4.4) — so that of a device's several UDP flows the
// one still kept alive is tried first. A UDP flow has no connection whose end would say it is
// gone; its keepalives are the only sign it still works.
//
// It is bounded: past max entries an address not yet known is not recorded (known ones still
// are), and Prune drops what has not been heard from for a while.
type Liveness struct {
	max    int
	shards [livenessShards]struct {
		mu sync.Mutex
		m  map[netip.AddrPort]int64 // unix nanoseconds
	}
}

const livenessShards = 32

// NewLiveness returns an empty table holding at most max addresses (at least one per shard).
func NewLiveness(max int) *Liveness {
	l := &Liveness{max: max/livenessShards + 1}
	for i := range l.shards {
		l.shards[i].m = make(map[netip.AddrPort]int64)
	}
	return l
}

func (l *Liveness) shard(ap netip.AddrPort) int {
	a := ap.Addr().As16()
	h := uint32(ap.Port())
	for _, b := range a[12:] {
		h = h*31 + uint32(b)
	}
	return int(h % livenessShards)
}

// Touch records that ap was heard from at now.
func (l *Liveness) Touch(ap netip.AddrPort, now time.Time) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s := &l.shards[l.shard(ap)]
	s.mu.Lock()
	if _, ok := s.m[ap]; ok || len(s.m) < l.max {
		s.m[ap] = now.UnixNano()
	}
	s.mu.Unlock()
}

// Keep is Touch for an address the caller watches (a UDP flow whose keepalives decide
// whether the registrations over it live): it is recorded even when the table is full, so
// that a full table never makes a live flow look dead. The caller bounds how many addresses
// it keeps; Prune forgets them like any other.
func (l *Liveness) Keep(ap netip.AddrPort, now time.Time) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s := &l.shards[l.shard(ap)]
	s.mu.Lock()
	if ns, ok := s.m[ap]; !ok || ns < now.UnixNano() {
		s.m[ap] = now.UnixNano()
	}
	s.mu.Unlock()
}

// Seen returns when ap was last heard from, or the zero time.
func (l *Liveness) Seen(ap netip.AddrPort) time.Time {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s := &l.shards[l.shard(ap)]
	s.mu.Lock()
	ns, ok := s.m[ap]
	s.mu.Unlock()
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Prune forgets the addresses last heard from before cutoff and returns how many it dropped.
func (l *Liveness) Prune(cutoff time.Time) int {
	c := cutoff.UnixNano()
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for ap, ns := range s.m {
			if ns < c {
				delete(s.m, ap)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of addresses remembered.
func (l *Liveness) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
