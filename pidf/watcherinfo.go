package pidf

import (
	"fmt"
	"strconv"

	"github.com/beevik/etree"
)

// Namespace and media type of watcher information documents (RFC 3858).
const (
	WatcherInfoNamespace = "urn:ietf:params:xml:ns:watcherinfo"
	WatcherInfoMediaType = "application/watcherinfo+xml"
)

// A WatcherInfo is a watcher information document (RFC 3858): the watchers of one or
// more resources, as sent in NOTIFYs of the presence.winfo event package.
type WatcherInfo struct {
	Version uint32 // incremented by one for each document sent in a subscription
	State   string // "full" or "partial"; Bytes writes "full" for ""
	Lists   []WatcherList
}

// A WatcherList is the <watcher-list> of one resource and event package.
type WatcherList struct {
	Resource string // the watched resource's URI
	Package  string // the event package, e.g. "presence"
	Watchers []Watcher
}

// A Watcher is one subscription to a resource.
type Watcher struct {
	ID          string // identifies the subscription, stable across documents
	Status      string // pending, active, waiting or terminated
	Event       string // the event that caused the status: subscribe, approved, deactivated, probation, rejected, timeout, giveup or noresource
	URI         string // the watcher's URI
	DisplayName string // "" for none

	// Seconds the subscription has lasted and seconds until it expires; negative for
	// none (ParseWatcherInfo returns -1 for an absent attribute).
	DurationSubscribed, Expiration int
}

// ParseWatcherInfo reads a watcher information document from untrusted input, with the
// same checks as Parse before the vocabulary (size, DOCTYPE, depth, element count,
// well-formedness, namespaces). It refuses a root other than <watcherinfo> in the
// watcherinfo namespace, a missing or bad version or state, a watcher list without
// resource or package, and a watcher without id, URI, valid status or valid event, or
// with a bad duration-subscribed or expiration (ErrNamespace, ErrInvalid). Unknown
// elements and attributes are ignored.
func ParseWatcherInfo(data []byte) (*WatcherInfo, error) {
	root, err := load(data)
	if err != nil {
		return nil, err
	}
	if ns := nsURI(root); ns != WatcherInfoNamespace {
		return nil, fmt.Errorf("%w: root element in namespace %s, want %s", ErrNamespace, quote(ns), WatcherInfoNamespace)
	}
	if root.Tag != "watcherinfo" {
		return nil, fmt.Errorf("%w: root element %s, want watcherinfo", ErrInvalid, quote(root.Tag))
	}
	w := &WatcherInfo{}
	v, _ := attr(root, "", "version")
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: watcherinfo version %s", ErrInvalid, quote(v))
	}
	w.Version = uint32(n)
	w.State, _ = attr(root, "", "state")
	if w.State != "full" && w.State != "partial" {
		return nil, fmt.Errorf("%w: watcherinfo state %s", ErrInvalid, quote(w.State))
	}
	for le := range root.ChildElementsSeq() {
		if le.Tag != "watcher-list" || nsURI(le) != WatcherInfoNamespace {
			continue
		}
		var l WatcherList
		l.Resource, _ = attr(le, "", "resource")
		l.Package, _ = attr(le, "", "package")
		if l.Resource == "" || l.Package == "" {
			return nil, fmt.Errorf("%w: watcher-list without resource or package", ErrInvalid)
		}
		for we := range le.ChildElementsSeq() {
			if we.Tag != "watcher" || nsURI(we) != WatcherInfoNamespace {
				continue
			}
			x, err := parseWatcher(we)
			if err != nil {
				return nil, err
			}
			l.Watchers = append(l.Watchers, x)
		}
		w.Lists = append(w.Lists, l)
	}
	return w, nil
}

func parseWatcher(e *etree.Element) (Watcher, error) {
	var w Watcher
	w.ID, _ = attr(e, "", "id")
	if w.ID == "" {
		return w, fmt.Errorf("%w: watcher without id", ErrInvalid)
	}
	w.Status, _ = attr(e, "", "status")
	switch w.Status {
	case "pending", "active", "waiting", "terminated":
	default:
		return w, fmt.Errorf("%w: watcher %s: status %s", ErrInvalid, quote(w.ID), quote(w.Status))
	}
	w.Event, _ = attr(e, "", "event")
	switch w.Event {
	case "subscribe", "approved", "deactivated", "probation", "rejected", "timeout", "giveup", "noresource":
	default:
		return w, fmt.Errorf("%w: watcher %s: event %s", ErrInvalid, quote(w.ID), quote(w.Event))
	}
	w.DisplayName, _ = attr(e, "", "display-name")
	for _, p := range []struct {
		name string
		v    *int
	}{{"duration-subscribed", &w.DurationSubscribed}, {"expiration", &w.Expiration}} {
		*p.v = -1
		s, ok := attr(e, "", p.name)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return w, fmt.Errorf("%w: watcher %s: %s %s", ErrInvalid, quote(w.ID), p.name, quote(s))
		}
		*p.v = int(n)
	}
	w.URI = text(e)
	if w.URI == "" || hasChildElement(e) {
		return w, fmt.Errorf("%w: watcher %s without URI", ErrInvalid, quote(w.ID))
	}
	return w, nil
}

// Bytes returns the document as UTF-8 XML, starting with an XML declaration, one element
// per line.
func (w *WatcherInfo) Bytes() []byte {
	root := etree.NewElement("watcherinfo")
	root.CreateAttr("xmlns", WatcherInfoNamespace)
	root.CreateAttr("version", strconv.FormatUint(uint64(w.Version), 10))
	state := w.State
	if state == "" {
		state = "full"
	}
	root.CreateAttr("state", state)
	size := 160
	for _, l := range w.Lists {
		root.AddChild(etree.NewText("\n  "))
		le := root.CreateElement("watcher-list")
		le.CreateAttr("resource", l.Resource)
		le.CreateAttr("package", l.Package)
		size += 64 + len(l.Resource)
		for _, x := range l.Watchers {
			le.AddChild(etree.NewText("\n    "))
			we := le.CreateElement("watcher")
			we.CreateAttr("id", x.ID)
			we.CreateAttr("status", x.Status)
			we.CreateAttr("event", x.Event)
			if x.DisplayName != "" {
				we.CreateAttr("display-name", x.DisplayName)
			}
			if x.DurationSubscribed >= 0 {
				we.CreateAttr("duration-subscribed", strconv.Itoa(x.DurationSubscribed))
			}
			if x.Expiration >= 0 {
				we.CreateAttr("expiration", strconv.Itoa(x.Expiration))
			}
			we.SetText(x.URI)
			size += 128 + len(x.ID) + len(x.URI) + len(x.DisplayName)
		}
		if len(l.Watchers) > 0 {
			le.AddChild(etree.NewText("\n  "))
		}
	}
	if len(w.Lists) > 0 {
		root.AddChild(etree.NewText("\n"))
	}
	return writeDoc(root, size)
}
