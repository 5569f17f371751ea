package presence

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"
)

// subRecord is the notifier's copy of a storage.Subscription, kept for every subscription it
// notifies: its strings in one, each behind its length (a uvarint), then Accept and RouteSet
// as a count and their strings. A storage.Subscription is 320 bytes of headers pointing at a
// dozen separate strings, some of them slices of the SUBSCRIBE's parsed headers (which they
// keep alive); a record is 72 bytes and one string of about the length of the text. What a
// NOTIFY needs is unpacked when it is sent (sub), the few fields the notifier looks at under
// its lock are read in place.
type subRecord struct {
	packed               string
	expiresAt, createdAt time.Time
	remoteCSeq, notify   uint32
}

// The strings of a record, in their order.
const (
	recID = iota
	recAOR
	recEvent
	recWatcher
	recWatcherURI
	recWatcherName
	recCallID
	recFromTag
	recRemoteTarget
	recTransport
	recSource
	recState
	recNode
	recStrings // the number of single strings; Accept and RouteSet follow
)

// recStringsOf lists sub's single strings in record order.
func recStringsOf(sub *storage.Subscription) [recStrings]string {
	return [recStrings]string{sub.ID, sub.AOR, sub.Event, sub.Watcher, sub.WatcherURI, sub.WatcherName,
		sub.CallID, sub.FromTag, sub.RemoteTarget, sub.Transport, sub.Source, sub.State, sub.Node}
}

// packSub makes the record of sub.
func packSub(sub *storage.Subscription) subRecord {
	fields, lists := recStringsOf(sub), [2][]string{sub.Accept, sub.RouteSet}
	size := 0
	for _, f := range fields {
		size += uvarintLen(len(f)) + len(f)
	}
	for _, l := range lists {
		size += uvarintLen(len(l))
		for _, f := range l {
			size += uvarintLen(len(f)) + len(f)
		}
	}
	var b strings.Builder // one allocation of the exact size: String does not copy
	b.Grow(size)
	var tmp [binary.MaxVarintLen64]byte
	put := func(n int) { b.Write(binary.AppendUvarint(tmp[:0], uint64(n))) }
	for _, f := range fields {
		put(len(f))
		b.WriteString(f)
	}
	for _, l := range lists {
		put(len(l))
		for _, f := range l {
			put(len(f))
			b.WriteString(f)
		}
	}
	r := subRecord{packed: b.String()}
	r.setNumbers(sub)
	return r
}

// uvarintLen is the length of n as a uvarint.
func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// setNumbers copies what of sub is not text.
func (r *subRecord) setNumbers(sub *storage.Subscription) {
	r.expiresAt, r.createdAt = sub.ExpiresAt, sub.CreatedAt
	r.remoteCSeq, r.notify = sub.RemoteCSeq, sub.NotifyCSeq
}

// set makes r the record of sub; its text is packed again only when it changed (most updates
// are a store read of the same subscription, whose expiry or CSeq reservation moved).
func (r *subRecord) set(sub *storage.Subscription) {
	if r.packed == "" || !r.sameText(sub) {
		*r = packSub(sub)
		return
	}
	r.setNumbers(sub)
}

// sameText reports whether sub's strings are those of r.
func (r *subRecord) sameText(sub *storage.Subscription) bool {
	rest := r.packed
	for _, f := range recStringsOf(sub) {
		var s string
		if s, rest = nextString(rest); s != f {
			return false
		}
	}
	for _, l := range [][]string{sub.Accept, sub.RouteSet} {
		var n int
		if n, rest = nextCount(rest); n != len(l) {
			return false
		}
		for _, f := range l {
			var s string
			if s, rest = nextString(rest); s != f {
				return false
			}
		}
	}
	return true
}

// field returns the string of r at index i (recID ... recNode).
func (r *subRecord) field(i int) string {
	rest := r.packed
	var s string
	for range i + 1 {
		s, rest = nextString(rest)
	}
	return s
}

// sub unpacks r: its strings share the record's text, Accept and RouteSet are the caller's.
func (r *subRecord) sub() storage.Subscription {
	var f [recStrings]string
	rest := r.packed
	for i := range f {
		f[i], rest = nextString(rest)
	}
	var lists [2][]string
	for i := range lists {
		var n int
		n, rest = nextCount(rest)
		if n > 0 {
			lists[i] = make([]string, n)
			for j := range lists[i] {
				lists[i][j], rest = nextString(rest)
			}
		}
	}
	return storage.Subscription{ID: f[recID], AOR: f[recAOR], Event: f[recEvent], Watcher: f[recWatcher],
		WatcherURI: f[recWatcherURI], WatcherName: f[recWatcherName], CallID: f[recCallID], FromTag: f[recFromTag],
		Accept: lists[0], RouteSet: lists[1], RemoteTarget: f[recRemoteTarget], RemoteCSeq: r.remoteCSeq,
		Transport: f[recTransport], Source: f[recSource], State: f[recState], ExpiresAt: r.expiresAt,
		CreatedAt: r.createdAt, Node: f[recNode], NotifyCSeq: r.notify}
}

// setNode records a new owner (and its CSeq reservation) of the subscription.
func (r *subRecord) setNode(node string, notifyCSeq uint32) {
	if r.field(recNode) != node {
		sub := r.sub()
		sub.Node = node
		*r = packSub(&sub)
	}
	r.notify = notifyCSeq
}

// expired reports whether the subscription has expired at now (storage.Subscription.Expired).
func (r *subRecord) expired(now time.Time) bool { return !now.Before(r.expiresAt) }

// nextString reads one length and string from rest; a record is only ever read as it was
// written, so a short one (which cannot happen) reads as empty strings, never a panic.
func nextString(rest string) (string, string) {
	n, rest := nextCount(rest)
	if n > len(rest) {
		return "", ""
	}
	return rest[:n], rest[n:]
}

// nextCount reads one uvarint from rest.
func nextCount(rest string) (int, string) {
	var v uint64
	for i := 0; i < len(rest) && i < binary.MaxVarintLen32; i++ {
		c := rest[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int(v), rest[i+1:]
		}
	}
	return 0, ""
}
