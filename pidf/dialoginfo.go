package pidf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// Namespace and media type of dialog information documents (RFC 4235), the dialog event
// package's (busy lamp field).
const (
	DialogInfoNamespace = "urn:ietf:params:xml:ns:dialog-info"
	DialogInfoMediaType = "application/dialog-info+xml"
)

// A DialogInfo is a dialog information document (RFC 4235 §4): the dialogs of one entity.
type DialogInfo struct {
	Version uint32 // incremented by one for each document sent in a subscription
	State   string // "full" or "partial"; Bytes writes "full" for ""
	Entity  string // the AOR whose dialogs these are (a URI)
	Dialogs []DialogEntry
}

// A DialogEntry is one <dialog> element.
type DialogEntry struct {
	ID        string // unique among the entity's dialogs
	CallID    string // "" for none; then LocalTag and RemoteTag are not written
	LocalTag  string
	RemoteTag string
	Direction string // "initiator", "recipient" or ""
	// State is trying, proceeding, early, confirmed or terminated; Event why it was entered
	// (cancelled, rejected, replaced, local-bye, remote-bye, error, timeout) or ""; Code the
	// response code that caused it, 0 for none.
	State string
	Event string
	Code  int
	// Duration is seconds since the dialog was confirmed, negative for none.
	Duration int
	Local    *Participant // nil: not written
	Remote   *Participant
}

// A Participant is <local> or <remote>: the party's identity URI and display name, and its
// target (Contact URI); any may be "".
type Participant struct {
	Identity, Display, Target string
}

// dialogStates and dialogEvents are the values RFC 4235's schema allows.
var (
	dialogStates = map[string]bool{"trying": true, "proceeding": true, "early": true, "confirmed": true, "terminated": true}
	dialogEvents = map[string]bool{"cancelled": true, "rejected": true, "replaced": true, "local-bye": true,
		"remote-bye": true, "error": true, "timeout": true}
)

// ParseDialogInfo reads a dialog information document from untrusted input, with the same
// checks as Parse before the vocabulary (size, DOCTYPE, depth, element count,
// well-formedness, namespaces). It refuses a root other than <dialog-info> in the
// dialog-info namespace, a missing or bad version, state or entity, and a dialog without id
// or with a missing or bad state, a bad event, code or direction, a bad duration, or an id
// used twice (ErrNamespace, ErrInvalid). Unknown elements and attributes are ignored.
func ParseDialogInfo(data []byte) (*DialogInfo, error) {
	root, err := load(data)
	if err != nil {
		return nil, err
	}
	if ns := nsURI(root); ns != DialogInfoNamespace {
		return nil, fmt.Errorf("%w: root element in namespace %s, want %s", ErrNamespace, quote(ns), DialogInfoNamespace)
	}
	if root.Tag != "dialog-info" {
		return nil, fmt.Errorf("%w: root element %s, want dialog-info", ErrInvalid, quote(root.Tag))
	}
	d := &DialogInfo{}
	v, _ := attr(root, "", "version")
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: dialog-info version %s", ErrInvalid, quote(v))
	}
	d.Version = uint32(n)
	d.State, _ = attr(root, "", "state")
	if d.State != "full" && d.State != "partial" {
		return nil, fmt.Errorf("%w: dialog-info state %s", ErrInvalid, quote(d.State))
	}
	if d.Entity, _ = attr(root, "", "entity"); d.Entity == "" {
		return nil, fmt.Errorf("%w: dialog-info without entity", ErrInvalid)
	}
	seen := map[string]bool{}
	for e := range root.ChildElementsSeq() {
		if e.Tag != "dialog" || nsURI(e) != DialogInfoNamespace {
			continue
		}
		x, err := parseDialogEntry(e)
		if err != nil {
			return nil, err
		}
		if seen[x.ID] {
			return nil, fmt.Errorf("%w: dialog id %s used twice", ErrInvalid, quote(x.ID))
		}
		seen[x.ID] = true
		d.Dialogs = append(d.Dialogs, x)
	}
	return d, nil
}

func parseDialogEntry(e *etree.Element) (DialogEntry, error) {
	x := DialogEntry{Duration: -1}
	if x.ID, _ = attr(e, "", "id"); x.ID == "" {
		return x, fmt.Errorf("%w: dialog without id", ErrInvalid)
	}
	x.CallID, _ = attr(e, "", "call-id")
	if x.CallID != "" {
		x.LocalTag, _ = attr(e, "", "local-tag")
		x.RemoteTag, _ = attr(e, "", "remote-tag")
	}
	x.Direction, _ = attr(e, "", "direction")
	if x.Direction != "" && x.Direction != "initiator" && x.Direction != "recipient" {
		return x, fmt.Errorf("%w: dialog %s: direction %s", ErrInvalid, quote(x.ID), quote(x.Direction))
	}
	hasState := false
	for c := range e.ChildElementsSeq() {
		if nsURI(c) != DialogInfoNamespace {
			continue
		}
		var err error
		switch c.Tag {
		case "state":
			hasState = true
			err = parseDialogState(c, &x)
		case "duration":
			n, perr := strconv.ParseUint(text(c), 10, 31)
			if perr != nil {
				err = fmt.Errorf("%w: dialog %s: duration %s", ErrInvalid, quote(x.ID), quote(text(c)))
			}
			x.Duration = int(n)
		case "local":
			x.Local = parseParticipant(c)
		case "remote":
			x.Remote = parseParticipant(c)
		}
		if err != nil {
			return x, err
		}
	}
	if !hasState {
		return x, fmt.Errorf("%w: dialog %s without state", ErrInvalid, quote(x.ID))
	}
	return x, nil
}

// parseDialogState reads a <state>. Its value is taken in any case: RFC 4235's schema has
// lower case, but Kamailio's pua_dialoginfo (5.6) publishes "Trying" for a call not yet
// answered; it is kept in lower case.
func parseDialogState(c *etree.Element, x *DialogEntry) error {
	if x.State = strings.ToLower(text(c)); !dialogStates[x.State] || hasChildElement(c) {
		return fmt.Errorf("%w: dialog %s: state %s", ErrInvalid, quote(x.ID), quote(x.State))
	}
	if x.Event, _ = attr(c, "", "event"); x.Event != "" && !dialogEvents[x.Event] {
		return fmt.Errorf("%w: dialog %s: event %s", ErrInvalid, quote(x.ID), quote(x.Event))
	}
	if s, ok := attr(c, "", "code"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 699 {
			return fmt.Errorf("%w: dialog %s: code %s", ErrInvalid, quote(x.ID), quote(s))
		}
		x.Code = n
	}
	return nil
}

func parseParticipant(e *etree.Element) *Participant {
	p := &Participant{}
	for c := range e.ChildElementsSeq() {
		if nsURI(c) != DialogInfoNamespace {
			continue
		}
		switch c.Tag {
		case "identity":
			p.Identity = text(c)
			p.Display, _ = attr(c, "", "display")
		case "target":
			p.Target, _ = attr(c, "", "uri")
		}
	}
	return p
}

// Bytes returns the document as UTF-8 XML, starting with an XML declaration, one dialog per
// line. Every value is escaped: they come from the network.
func (d *DialogInfo) Bytes() []byte {
	root := etree.NewElement("dialog-info")
	root.CreateAttr("xmlns", DialogInfoNamespace)
	root.CreateAttr("version", strconv.FormatUint(uint64(d.Version), 10))
	state := d.State
	if state == "" {
		state = "full"
	}
	root.CreateAttr("state", state)
	root.CreateAttr("entity", xmlChars(d.Entity))
	size := 160 + len(d.Entity)
	for i := range d.Dialogs {
		x := &d.Dialogs[i]
		root.AddChild(etree.NewText("\n  "))
		writeDialogEntry(root.CreateElement("dialog"), x)
		size += 256 + len(x.ID) + len(x.CallID)
		for _, p := range []*Participant{x.Local, x.Remote} {
			if p != nil {
				size += 64 + len(p.Identity) + len(p.Display) + len(p.Target)
			}
		}
	}
	if len(d.Dialogs) > 0 {
		root.AddChild(etree.NewText("\n"))
	}
	return writeDoc(root, size)
}

func writeDialogEntry(e *etree.Element, x *DialogEntry) {
	e.CreateAttr("id", xmlChars(x.ID))
	if x.CallID != "" {
		e.CreateAttr("call-id", xmlChars(x.CallID))
		e.CreateAttr("local-tag", xmlChars(x.LocalTag))
		e.CreateAttr("remote-tag", xmlChars(x.RemoteTag))
	}
	if x.Direction != "" {
		e.CreateAttr("direction", x.Direction)
	}
	st := e.CreateElement("state")
	if x.Event != "" {
		st.CreateAttr("event", x.Event)
	}
	if x.Code != 0 {
		st.CreateAttr("code", strconv.Itoa(x.Code))
	}
	st.SetText(x.State)
	if x.Duration >= 0 {
		e.CreateElement("duration").SetText(strconv.Itoa(x.Duration))
	}
	for _, p := range []struct {
		tag string
		p   *Participant
	}{{"local", x.Local}, {"remote", x.Remote}} {
		if p.p == nil {
			continue
		}
		pe := e.CreateElement(p.tag)
		if p.p.Identity != "" {
			id := pe.CreateElement("identity")
			if p.p.Display != "" {
				id.CreateAttr("display", xmlChars(p.p.Display))
			}
			id.SetText(xmlChars(p.p.Identity))
		}
		if p.p.Target != "" {
			pe.CreateElement("target").CreateAttr("uri", xmlChars(p.p.Target))
		}
	}
}

// xmlChars is s with what XML 1.0 cannot carry (invalid UTF-8, control characters but TAB,
// LF and CR, U+FFFE, U+FFFF) dropped: values from SIP headers may hold any byte, and the
// escaping of the writer covers only what XML can represent.
func xmlChars(s string) string {
	ok := func(r rune) bool {
		return r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r != 0xFFFE && r != 0xFFFF && r != 0xFFFD)
	}
	clean := true
	for _, r := range s {
		if !ok(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if ok(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
}
