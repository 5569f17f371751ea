package pidf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// Limits applied by Parse and ParseWatcherInfo before and while reading a document.
const (
	// MaxSize is the largest document accepted, in bytes.
	MaxSize = 256 << 10
	// MaxDepth is the deepest element nesting accepted; the root is at depth 1.
	MaxDepth = 32
	// MaxElements is the largest number of elements accepted in one document.
	MaxElements = 10000
)

// Errors returned by Parse and ParseWatcherInfo, wrapped with a detail naming the fault.
// Test for them with errors.Is. Error messages are short and printable ASCII (text taken
// from the document is quoted and truncated), so they can go into a SIP reason phrase or
// Warning header as they are.
var (
	ErrTooLarge   = errors.New("pidf: document too large")
	ErrTooComplex = errors.New("pidf: document too complex")
	ErrDoctype    = errors.New("pidf: DOCTYPE and declarations not allowed")
	ErrSyntax     = errors.New("pidf: XML syntax error")
	ErrNamespace  = errors.New("pidf: wrong namespace")
	ErrNoEntity   = errors.New("pidf: presence without entity")
	ErrNoTuple    = errors.New("pidf: presence without tuple")
	ErrInvalid    = errors.New("pidf: invalid document")
	// ErrBadTuple: AddTuple was given an empty id or a basic status other than open or closed.
	ErrBadTuple = errors.New("pidf: bad tuple")
)

const (
	xmlNS   = "http://www.w3.org/XML/1998/namespace"
	xmlnsNS = "http://www.w3.org/2000/xmlns/"
)

// writeSettings escape what the decoder would otherwise normalise away (CR in text, TAB,
// LF and CR in attribute values), so that a document reads back exactly as it was.
var writeSettings = etree.WriteSettings{CanonicalText: true, CanonicalAttrVal: true}

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

var (
	bom         = []byte("\xef\xbb\xbf")
	errCharset  = errors.New("only UTF-8 is supported")
	commentOpen = []byte("!--")
	cdataOpen   = []byte("![CDATA[")
)

// load reads one untrusted XML document and returns its root element after checking
// everything that does not depend on the vocabulary: size, no DOCTYPE or other
// declaration, element count and depth, well-formedness, a single root, namespace
// well-formedness (every prefix declared, no duplicate attribute). Comments, processing
// instructions and empty CDATA sections are dropped.
//
// It builds the element tree itself from encoding/xml's raw tokens, in one pass: etree's
// reader would check less and allocate a buffered reader per document.
func load(data []byte) (*etree.Element, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxSize)
	}
	data = bytes.TrimPrefix(data, bom)
	if err := prescan(data); err != nil {
		return nil, err
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = func(string, io.Reader) (io.Reader, error) { return nil, errCharset }
	var (
		root  *etree.Element
		stack []*etree.Element // open elements
		marks []int            // scope length before each open element
		c     checker
		n     int
	)
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, readError(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && root != nil {
				return nil, fmt.Errorf("%w: more than one root element", ErrSyntax)
			}
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("%w: elements nested deeper than %d", ErrTooComplex, MaxDepth)
			}
			if n++; n > MaxElements {
				return nil, fmt.Errorf("%w: more than %d elements", ErrTooComplex, MaxElements)
			}
			marks = append(marks, len(c.scope))
			e, err := c.element(t)
			if err != nil {
				return nil, err
			}
			if len(stack) == 0 {
				root = e
			} else {
				stack[len(stack)-1].AddChild(e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unexpected end element", ErrSyntax)
			}
			top := stack[len(stack)-1]
			if top.Space != t.Name.Space || top.Tag != t.Name.Local {
				line, _ := dec.InputPos()
				return nil, fmt.Errorf("%w: line %d: element %s closed by %s", ErrSyntax,
					line, quote(top.FullTag()), quote(fullName(t.Name)))
			}
			stack = stack[:len(stack)-1]
			c.scope = c.scope[:marks[len(marks)-1]]
			marks = marks[:len(marks)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if !isSpace(t) {
					return nil, fmt.Errorf("%w: text outside the root element", ErrSyntax)
				}
			} else if len(t) > 0 {
				stack[len(stack)-1].AddChild(etree.NewText(string(t)))
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w", ErrDoctype)
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("%w: unexpected end of document", ErrSyntax)
	}
	if root == nil {
		return nil, fmt.Errorf("%w: no root element", ErrSyntax)
	}
	return root, nil
}

func fullName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// prescan refuses, before any parsing, any markup declaration (<!DOCTYPE, <!ENTITY, ...)
// and documents with more than MaxElements start tags. It skips comments, CDATA sections
// and processing instructions the way the decoder does; '<' cannot appear elsewhere in
// well-formed XML. A truncated construct is left for the decoder to report.
func prescan(b []byte) error {
	n := 0
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return nil
		}
		i += j + 1
		rest := b[i:]
		end := ""
		switch {
		case bytes.HasPrefix(rest, commentOpen):
			end = "-->"
			i += len(commentOpen)
		case bytes.HasPrefix(rest, cdataOpen):
			end = "]]>"
			i += len(cdataOpen)
		case len(rest) > 0 && rest[0] == '!':
			return fmt.Errorf("%w: found \"<!\" outside a comment or CDATA section", ErrDoctype)
		case len(rest) > 0 && rest[0] == '?':
			end = "?>"
			i++
		case len(rest) > 0 && rest[0] == '/':
		default:
			if n++; n > MaxElements {
				return fmt.Errorf("%w: more than %d elements", ErrTooComplex, MaxElements)
			}
		}
		if end != "" {
			k := bytes.Index(b[i:], []byte(end))
			if k < 0 {
				return nil
			}
			i += k + len(end)
		}
	}
	return nil
}

// readError maps a read error from encoding/xml to one of the package's errors.
func readError(err error) error {
	var se *xml.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w: line %d: %s", ErrSyntax, se.Line, printable(se.Msg, 80))
	case errors.Is(err, errCharset):
		return fmt.Errorf("%w: %w", ErrSyntax, errCharset)
	}
	return fmt.Errorf("%w: %s", ErrSyntax, printable(strings.TrimPrefix(err.Error(), "xml: "), 80))
}

// printable returns s cut to at most n bytes with anything but printable ASCII replaced.
func printable(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}

// quote returns s, cut to a short length, as an ASCII Go string literal for an error
// message.
func quote(s string) string {
	const n = 40
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strconv.QuoteToASCII(s)
}

// binding is one namespace declaration in scope.
type binding struct{ prefix, uri string }

// Limits that keep namespace checks linear.
const (
	maxAttrs    = 128 // attributes of one element
	maxBindings = 128 // namespace declarations in scope
)

// checker builds elements from start tags, checking names, namespace declarations, that
// every prefix is declared and that no attribute is duplicated.
type checker struct {
	scope []binding
	seen  map[[2]string]struct{}
}

func (c *checker) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return xmlNS, true
	}
	for i := len(c.scope) - 1; i >= 0; i-- {
		if c.scope[i].prefix == prefix {
			return c.scope[i].uri, true
		}
	}
	return "", prefix == ""
}

// element returns the element of start tag t, and pushes its declarations on the scope.
func (c *checker) element(t xml.StartElement) (*etree.Element, error) {
	if len(t.Attr) > maxAttrs {
		return nil, fmt.Errorf("%w: more than %d attributes", ErrTooComplex, maxAttrs)
	}
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "xmlns":
			switch {
			case a.Name.Local == "xmlns" || a.Value == xmlnsNS:
				return nil, fmt.Errorf("%w: the xmlns prefix and namespace cannot be declared", ErrNamespace)
			case (a.Name.Local == "xml") != (a.Value == xmlNS):
				return nil, fmt.Errorf("%w: the xml prefix is only for the XML namespace", ErrNamespace)
			case a.Value == "":
				return nil, fmt.Errorf("%w: empty namespace for prefix %s", ErrNamespace, quote(a.Name.Local))
			}
			c.scope = append(c.scope, binding{a.Name.Local, a.Value})
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == xmlNS || a.Value == xmlnsNS {
				return nil, fmt.Errorf("%w: reserved namespace as default", ErrNamespace)
			}
			c.scope = append(c.scope, binding{"", a.Value})
		}
	}
	if len(c.scope) > maxBindings {
		return nil, fmt.Errorf("%w: more than %d namespace declarations", ErrTooComplex, maxBindings)
	}
	name := t.Name
	if name.Local == "" || strings.IndexByte(name.Local, ':') >= 0 || name.Space == "xmlns" {
		return nil, fmt.Errorf("%w: bad element name %s", ErrSyntax, quote(fullName(name)))
	}
	if _, ok := c.lookup(name.Space); !ok {
		return nil, fmt.Errorf("%w: undeclared prefix %s", ErrNamespace, quote(name.Space))
	}
	if err := c.checkAttrs(t.Attr); err != nil {
		return nil, err
	}
	e := etree.NewElement(name.Local)
	e.Space = name.Space
	if len(t.Attr) > 0 {
		// Appended rather than created with CreateAttr, which searches for a duplicate
		// each time; the attributes' element field stays nil (only etree's
		// Attr.Element and Attr.NamespaceURI use it, and this package does not).
		e.Attr = make([]etree.Attr, len(t.Attr))
		for i, a := range t.Attr {
			e.Attr[i] = etree.Attr{Space: a.Name.Space, Key: a.Name.Local, Value: a.Value}
		}
	}
	return e, nil
}

// checkAttrs refuses bad attribute names, undeclared prefixes and duplicate attributes
// (same qualified name, or same namespace and local name).
func (c *checker) checkAttrs(attrs []xml.Attr) error {
	for _, a := range attrs {
		if a.Name.Local == "" || strings.IndexByte(a.Name.Local, ':') >= 0 {
			return fmt.Errorf("%w: bad attribute name %s", ErrSyntax, quote(fullName(a.Name)))
		}
		if a.Name.Space != "" && a.Name.Space != "xmlns" {
			if _, ok := c.lookup(a.Name.Space); !ok {
				return fmt.Errorf("%w: undeclared prefix %s", ErrNamespace, quote(a.Name.Space))
			}
		}
	}
	if len(attrs) < 2 {
		return nil
	}
	name := func(a *xml.Attr) [2]string {
		if a.Name.Space == "" || a.Name.Space == "xmlns" {
			return [2]string{a.Name.Space, a.Name.Local} // "" and "xmlns" are not namespace URIs
		}
		uri, _ := c.lookup(a.Name.Space)
		return [2]string{uri, a.Name.Local}
	}
	dup := func(a *xml.Attr) error {
		return fmt.Errorf("%w: duplicate attribute %s", ErrSyntax, quote(fullName(a.Name)))
	}
	if len(attrs) <= 8 {
		for i := range attrs {
			ni := name(&attrs[i])
			for j := range i {
				if name(&attrs[j]) == ni {
					return dup(&attrs[i])
				}
			}
		}
		return nil
	}
	if c.seen == nil {
		c.seen = make(map[[2]string]struct{}, len(attrs))
	}
	defer clear(c.seen)
	for i := range attrs {
		n := name(&attrs[i])
		if _, ok := c.seen[n]; ok {
			return dup(&attrs[i])
		}
		c.seen[n] = struct{}{}
	}
	return nil
}

// attr returns the value of e's attribute with exactly this prefix and name.
func attr(e *etree.Element, space, key string) (string, bool) {
	for i := range e.Attr {
		if a := &e.Attr[i]; a.Key == key && a.Space == space {
			return a.Value, true
		}
	}
	return "", false
}

// setAttr sets e's attribute with exactly this prefix and name.
func setAttr(e *etree.Element, space, key, value string) {
	for i := range e.Attr {
		if a := &e.Attr[i]; a.Key == key && a.Space == space {
			a.Value = value
			return
		}
	}
	if space != "" {
		key = space + ":" + key
	}
	e.CreateAttr(key, value)
}

// text returns e's leading character data without surrounding white space.
func text(e *etree.Element) string {
	return strings.TrimSpace(e.Text())
}

// hasChildElement reports whether e has an element child.
func hasChildElement(e *etree.Element) bool {
	for _, t := range e.Child {
		if _, ok := t.(*etree.Element); ok {
			return true
		}
	}
	return false
}

// lookupNS resolves prefix from e upwards; "" is the default namespace.
func lookupNS(e *etree.Element, prefix string) (string, bool) {
	if prefix == "xml" {
		return xmlNS, true
	}
	for ; e != nil; e = e.Parent() {
		for i := range e.Attr {
			a := &e.Attr[i]
			if (prefix == "" && a.Space == "" && a.Key == "xmlns") ||
				(prefix != "" && a.Space == "xmlns" && a.Key == prefix) {
				return a.Value, true
			}
		}
	}
	return "", prefix == ""
}

// nsURI returns e's namespace URI.
func nsURI(e *etree.Element) string {
	uri, _ := lookupNS(e, e.Space)
	return uri
}

// writeDoc serialises root after the XML declaration.
func writeDoc(root *etree.Element, sizeHint int) []byte {
	var b bytes.Buffer
	b.Grow(sizeHint)
	b.WriteString(xmlHeader)
	root.WriteTo(&b, &writeSettings)
	return b.Bytes()
}
