package memory

import (
	"strings"

	"github.com/simpled/simpled/storage"
)

// The store keeps what it is given for as long as it is stored, and a string parsed from a
// request may share its memory with the request's header section (sipx.LeanParser hands
// out sub-strings of one conversion of it): every string the store keeps is therefore its
// own copy, so that a stored binding or subscription costs its own bytes and not its
// request's. A refreshed binding keeps the strings it had where they did not change, so a
// refresh, the REGISTER a server sees most, copies nothing.

// own returns s in memory of its own: old when it is equal to s (old is the store's already).
func own(s, old string) string {
	if s == old {
		return old
	}
	return strings.Clone(s)
}

// ownAll returns l with each string in memory of its own, reusing old's equal strings.
func ownAll(l, old []string) []string {
	for i, s := range l {
		prev := ""
		if i < len(old) {
			prev = old[i]
		}
		l[i] = own(s, prev)
	}
	return l
}

// detachBinding gives the strings of b, about to be stored, memory of their own; old is the
// binding b replaces (nil: none). b.Path must be b's own slice already.
func detachBinding(b *storage.Binding, old *storage.Binding) {
	var o storage.Binding
	if old != nil {
		o = *old
	}
	b.Key = own(b.Key, o.Key)
	b.Contact = own(b.Contact, o.Contact)
	b.URI = own(b.URI, o.URI)
	b.CallID = own(b.CallID, o.CallID)
	b.Path = ownAll(b.Path, o.Path)
	b.InstanceID = own(b.InstanceID, o.InstanceID)
	b.Received = own(b.Received, o.Received)
	b.Transport = own(b.Transport, o.Transport)
	b.Flow = own(b.Flow, o.Flow)
	b.Node = own(b.Node, o.Node)
	b.UserAgent = own(b.UserAgent, o.UserAgent)
}

// detachMessage gives the strings of m, about to be stored, memory of their own.
func detachMessage(m *storage.Message) {
	for _, p := range []*string{&m.ID, &m.DedupKey, &m.Sender, &m.CallID, &m.From, &m.To,
		&m.Date, &m.ContentType, &m.ContentEncoding} {
		*p = strings.Clone(*p)
	}
}

// detachPublication gives the strings of p, about to be stored, memory of their own.
func detachPublication(p *storage.Publication) {
	p.ETag = strings.Clone(p.ETag)
	p.ContentType = strings.Clone(p.ContentType)
	p.Source = strings.Clone(p.Source)
}
