package storage

import "strings"

// Detach gives every string of s memory of its own. A value parsed from a request may share
// its memory with the request's whole header section (sipx.LeanParser hands out sub-strings of
// one conversion of it); a subscription outlives its SUBSCRIBE by hours in the stores, the
// notifier and the events that carry it, and must not hold the request alive. Its slices must
// be its own already.
func (s *Subscription) Detach() {
	for _, p := range []*string{&s.ID, &s.AOR, &s.Event, &s.Watcher, &s.WatcherURI,
		&s.WatcherName, &s.CallID, &s.FromTag, &s.RemoteTarget, &s.Transport,
		&s.Source, &s.State, &s.Node} {
		*p = strings.Clone(*p)
	}
	for i := range s.Accept {
		s.Accept[i] = strings.Clone(s.Accept[i])
	}
	for i := range s.RouteSet {
		s.RouteSet[i] = strings.Clone(s.RouteSet[i])
	}
}
