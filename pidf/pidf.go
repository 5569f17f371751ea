package pidf

import (
	"fmt"

	"github.com/beevik/etree"
)

// Namespaces and media type of presence documents.
const (
	Namespace          = "urn:ietf:params:xml:ns:pidf"            // PIDF, RFC 3863
	DataModelNamespace = "urn:ietf:params:xml:ns:pidf:data-model" // dm, RFC 4479
	RPIDNamespace      = "urn:ietf:params:xml:ns:pidf:rpid"       // rpid, RFC 4480
	MediaType          = "application/pidf+xml"
)

// ClosedTupleID is the id of the tuple of Closed documents.
const ClosedTupleID = "closed"

// A Document is a PIDF presence document. It keeps the published XML tree, so that
// elements, prefixes, text and attributes it does not interpret are written back as they
// came.
//
// The zero Document is not usable; get one from Parse, New, Compose or Closed. Methods
// that only read a Document may be called concurrently (Compose only reads its inputs);
// SetEntity and AddTuple may not run concurrently with any other method.
type Document struct {
	root *etree.Element
	size int // input size, a hint for Bytes
}

// A Tuple is the part of a PIDF tuple most users need.
type Tuple struct {
	ID        string
	Basic     string // "open", "closed", or "" when the tuple has no <basic>
	Contact   string // <contact>, "" if absent
	Priority  string // the priority attribute of <contact>, e.g. "0.8"
	Timestamp string // <timestamp> as written
	DeviceID  string // <dm:deviceID> (RFC 4479)
	Notes     []Note
}

// A Person is an RFC 4479 <dm:person> element.
type Person struct {
	ID         string
	Activities []string // local names of the RPID activities, e.g. ["away"]; nil if none
	Timestamp  string
	Notes      []Note
}

// A Device is an RFC 4479 <dm:device> element.
type Device struct {
	ID        string
	DeviceID  string // <dm:deviceID>
	Timestamp string
	Notes     []Note
}

// A Note is a <note> element: its text and its xml:lang attribute.
type Note struct {
	Text, Lang string
}

// element kinds among the children of <presence>.
type kind uint8

const (
	kindOther kind = iota
	kindTuple
	kindNote
	kindPerson
	kindDevice
)

func kindOf(e *etree.Element) kind {
	switch e.Tag {
	case "tuple", "note", "person", "device":
	default:
		return kindOther
	}
	switch ns := nsURI(e); {
	case ns == Namespace && e.Tag == "tuple":
		return kindTuple
	case ns == Namespace && e.Tag == "note":
		return kindNote
	case ns == DataModelNamespace && e.Tag == "person":
		return kindPerson
	case ns == DataModelNamespace && e.Tag == "device":
		return kindDevice
	}
	return kindOther
}

// Parse reads a presence document from untrusted input.
//
// It refuses, with an error wrapping one of the package's Err values: input larger than
// MaxSize (ErrTooLarge); any DOCTYPE or other declaration, before parsing anything
// (ErrDoctype); more than MaxElements elements, nesting deeper than MaxDepth, more than
// 128 attributes on an element or 128 namespace declarations in scope (ErrTooComplex); XML that is not well-formed, or not namespace-well-formed, or not
// UTF-8 (ErrSyntax, ErrNamespace); a root other than <presence> in the PIDF namespace
// (ErrNamespace, ErrInvalid); a missing or empty entity (ErrNoEntity); a tuple without
// id, two tuples or two devices with the same id, a person or device without id, a tuple
// with more than one <status> or <basic>, or a <basic> other than open or closed
// (ErrInvalid).
//
// A document with neither tuple nor <dm:person> is refused with ErrNoTuple. RFC 4479 lets
// a document describe only the person, so a document with a person and no tuple is
// accepted.
//
// Comments and processing instructions are dropped; everything else is kept.
func Parse(data []byte) (*Document, error) {
	root, err := load(data)
	if err != nil {
		return nil, err
	}
	if err := validate(root); err != nil {
		return nil, err
	}
	return &Document{root: root, size: len(data)}, nil
}

func validate(root *etree.Element) error {
	if ns := nsURI(root); ns != Namespace {
		return fmt.Errorf("%w: root element in namespace %s, want %s", ErrNamespace, quote(ns), Namespace)
	}
	if root.Tag != "presence" {
		return fmt.Errorf("%w: root element %s, want presence", ErrInvalid, quote(root.Tag))
	}
	if v, _ := attr(root, "", "entity"); v == "" {
		return fmt.Errorf("%w", ErrNoEntity)
	}
	var tuples, devices idSet
	person := false
	for _, t := range root.Child {
		e, ok := t.(*etree.Element)
		if !ok {
			continue
		}
		switch kindOf(e) {
		case kindTuple:
			id, _ := attr(e, "", "id")
			if id == "" {
				return fmt.Errorf("%w: tuple without id", ErrInvalid)
			}
			if !tuples.add(id) {
				return fmt.Errorf("%w: duplicate tuple id %s", ErrInvalid, quote(id))
			}
			if err := validateTuple(e, id); err != nil {
				return err
			}
		case kindPerson:
			if id, _ := attr(e, "", "id"); id == "" {
				return fmt.Errorf("%w: person without id", ErrInvalid)
			}
			person = true
		case kindDevice:
			id, _ := attr(e, "", "id")
			if id == "" {
				return fmt.Errorf("%w: device without id", ErrInvalid)
			}
			if !devices.add(id) {
				return fmt.Errorf("%w: duplicate device id %s", ErrInvalid, quote(id))
			}
		}
	}
	if tuples.n == 0 && !person {
		return fmt.Errorf("%w", ErrNoTuple)
	}
	return nil
}

func validateTuple(t *etree.Element, id string) error {
	var status *etree.Element
	for _, tok := range t.Child {
		if e, ok := tok.(*etree.Element); ok && e.Tag == "status" && nsURI(e) == Namespace {
			if status != nil {
				return fmt.Errorf("%w: tuple %s has more than one status", ErrInvalid, quote(id))
			}
			status = e
		}
	}
	if status == nil {
		return nil // required by RFC 3863, tolerated: the tuple says nothing
	}
	seen := false
	for _, tok := range status.Child {
		e, ok := tok.(*etree.Element)
		if !ok || e.Tag != "basic" || nsURI(e) != Namespace {
			continue
		}
		if seen {
			return fmt.Errorf("%w: tuple %s has more than one basic", ErrInvalid, quote(id))
		}
		seen = true
		if v := text(e); (v != "open" && v != "closed") || hasChildElement(e) {
			return fmt.Errorf("%w: tuple %s: basic %s is neither open nor closed", ErrInvalid, quote(id), quote(v))
		}
	}
	return nil
}

// idSet is a set of ids, a slice while small.
type idSet struct {
	n    int
	list []string
	m    map[string]struct{}
}

func (s *idSet) add(id string) bool {
	if s.m == nil && len(s.list) < 16 {
		for _, x := range s.list {
			if x == id {
				return false
			}
		}
		s.list = append(s.list, id)
		s.n++
		return true
	}
	if s.m == nil {
		s.m = make(map[string]struct{}, 2*len(s.list))
		for _, x := range s.list {
			s.m[x] = struct{}{}
		}
		s.list = nil
	}
	if _, ok := s.m[id]; ok {
		return false
	}
	s.m[id] = struct{}{}
	s.n++
	return true
}

// New returns a presence document for entity without any tuple. Its root declares the
// PIDF namespace as default namespace.
func New(entity string) *Document {
	root := etree.NewElement("presence")
	root.CreateAttr("xmlns", Namespace)
	root.CreateAttr("entity", entity)
	return &Document{root: root}
}

// Closed returns the neutral document of an unavailable presentity: one tuple, with id
// ClosedTupleID and basic status closed, and nothing else. A presence agent sends it to
// politely blocked watchers; sending the same document when the presentity is really
// offline keeps the two indistinguishable.
func Closed(entity string) *Document {
	d := New(entity)
	_ = d.AddTuple(ClosedTupleID, "closed", "") // a fixed id and basic: never ErrBadTuple
	return d
}

// Entity returns the presentity URI of the document (the entity attribute).
func (d *Document) Entity() string {
	v, _ := attr(d.root, "", "entity")
	return v
}

// SetEntity sets the entity attribute, e.g. to the presentity's address-of-record when a
// presence agent passes on a document published under another URI.
func (d *Document) SetEntity(uri string) {
	setAttr(d.root, "", "entity", uri)
}

// AddTuple adds a tuple with a <status>, holding <basic>basic</basic> unless basic is
// empty, and a <contact> unless contact is empty. The tuple replaces any tuple with the
// same id; otherwise it goes after the last tuple, or first when there is none. Its
// elements use the prefix of the root element. It returns ErrBadTuple, and leaves the
// document as it was, if id is empty or basic is not "open", "closed" or "" (RFC 3863 §4.1.4).
func (d *Document) AddTuple(id, basic, contact string) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrBadTuple)
	}
	if basic != "" && basic != "open" && basic != "closed" {
		return fmt.Errorf("%w: basic %s", ErrBadTuple, quote(basic))
	}
	root := d.root
	prefix := root.Space // bound to the PIDF namespace on the root
	newEl := func(parent *etree.Element, tag string) *etree.Element {
		e := etree.NewElement(tag)
		e.Space = prefix
		if parent != nil {
			parent.AddChild(e)
		}
		return e
	}
	t := newEl(nil, "tuple")
	t.CreateAttr("id", id)
	status := newEl(t, "status")
	if basic != "" {
		newEl(status, "basic").SetText(basic)
	}
	if contact != "" {
		newEl(t, "contact").SetText(contact)
	}

	lastTuple, firstElem := -1, -1
	for i, tok := range root.Child {
		e, ok := tok.(*etree.Element)
		if !ok {
			continue
		}
		if firstElem < 0 {
			firstElem = i
		}
		if kindOf(e) != kindTuple {
			continue
		}
		if v, _ := attr(e, "", "id"); v == id {
			root.RemoveChildAt(i)
			root.InsertChildAt(i, t)
			return nil
		}
		lastTuple = i
	}
	switch {
	case lastTuple >= 0:
		root.InsertChildAt(lastTuple+1, etree.NewText(indent))
		root.InsertChildAt(lastTuple+2, t)
	case firstElem >= 0:
		root.InsertChildAt(firstElem, t)
		root.InsertChildAt(firstElem+1, etree.NewText(indent))
	default:
		root.AddChild(etree.NewText(indent))
		root.AddChild(t)
		root.AddChild(etree.NewText("\n"))
	}
	return nil
}

// indent goes before each child element of <presence> that the package adds.
const indent = "\n  "

// Tuples returns the document's tuples in document order.
func (d *Document) Tuples() []Tuple {
	var out []Tuple
	for _, tok := range d.root.Child {
		e, ok := tok.(*etree.Element)
		if !ok || kindOf(e) != kindTuple {
			continue
		}
		t := Tuple{}
		t.ID, _ = attr(e, "", "id")
		for c := range e.ChildElementsSeq() {
			ns := nsURI(c)
			switch {
			case ns == Namespace && c.Tag == "status":
				for b := range c.ChildElementsSeq() {
					if b.Tag == "basic" && nsURI(b) == Namespace {
						t.Basic = text(b)
					}
				}
			case ns == Namespace && c.Tag == "contact":
				if t.Contact == "" {
					t.Contact = text(c)
					t.Priority, _ = attr(c, "", "priority")
				}
			case ns == Namespace && c.Tag == "timestamp":
				t.Timestamp = text(c)
			case ns == Namespace && c.Tag == "note":
				t.Notes = append(t.Notes, note(c))
			case ns == DataModelNamespace && c.Tag == "deviceID":
				t.DeviceID = text(c)
			}
		}
		out = append(out, t)
	}
	return out
}

// Persons returns the document's <dm:person> elements in document order. Their
// <timestamp> and <note> may be in the data model or the PIDF namespace (liblinphone
// writes <timestamp> in the PIDF one).
func (d *Document) Persons() []Person {
	var out []Person
	for _, tok := range d.root.Child {
		e, ok := tok.(*etree.Element)
		if !ok || kindOf(e) != kindPerson {
			continue
		}
		p := Person{}
		p.ID, _ = attr(e, "", "id")
		for c := range e.ChildElementsSeq() {
			ns := nsURI(c)
			switch {
			case ns == RPIDNamespace && c.Tag == "activities":
				for a := range c.ChildElementsSeq() {
					if a.Tag != "note" && nsURI(a) == RPIDNamespace {
						p.Activities = append(p.Activities, a.Tag)
					}
				}
			case (ns == DataModelNamespace || ns == Namespace) && c.Tag == "timestamp":
				p.Timestamp = text(c)
			case (ns == DataModelNamespace || ns == Namespace) && c.Tag == "note":
				p.Notes = append(p.Notes, note(c))
			}
		}
		out = append(out, p)
	}
	return out
}

// Devices returns the document's <dm:device> elements in document order.
func (d *Document) Devices() []Device {
	var out []Device
	for _, tok := range d.root.Child {
		e, ok := tok.(*etree.Element)
		if !ok || kindOf(e) != kindDevice {
			continue
		}
		v := Device{}
		v.ID, _ = attr(e, "", "id")
		for c := range e.ChildElementsSeq() {
			ns := nsURI(c)
			switch {
			case ns == DataModelNamespace && c.Tag == "deviceID":
				v.DeviceID = text(c)
			case (ns == DataModelNamespace || ns == Namespace) && c.Tag == "timestamp":
				v.Timestamp = text(c)
			case (ns == DataModelNamespace || ns == Namespace) && c.Tag == "note":
				v.Notes = append(v.Notes, note(c))
			}
		}
		out = append(out, v)
	}
	return out
}

// Notes returns the document's top-level <note> elements.
func (d *Document) Notes() []Note {
	var out []Note
	for _, tok := range d.root.Child {
		if e, ok := tok.(*etree.Element); ok && kindOf(e) == kindNote {
			out = append(out, note(e))
		}
	}
	return out
}

func note(e *etree.Element) Note {
	lang, _ := attr(e, "xml", "lang")
	return Note{Text: text(e), Lang: lang}
}

// Bytes returns the document as UTF-8 XML, starting with an XML declaration.
//
// Elements and attributes keep the namespace prefixes they were published with, empty
// elements are written self-closed (<rpid:away/>), text, white space and attribute order
// are kept. Characters the parser would normalise (CR, and TAB and LF in attribute
// values) are written as character references, so Parse(d.Bytes()) reads the same
// document.
func (d *Document) Bytes() []byte {
	return writeDoc(d.root, max(d.size+64, 512))
}
