package cpim

import (
	"strings"
	"time"
)

const (
	// MediaType is the Content-Type of a CPIM body.
	MediaType = "message/cpim"
	// NamespaceCPIM is the namespace of unprefixed message headers (RFC 3862 §3.4).
	NamespaceCPIM = "urn:ietf:params:cpim-headers:"
	// NamespaceIMDN is the namespace of the RFC 5438 headers (imdn.Message-ID, ...).
	NamespaceIMDN = "urn:ietf:params:imdn"

	// MaxHeaders is the most headers Parse accepts in the message headers, and again in the
	// MIME part.
	MaxHeaders = 100
	// MaxLineLength is the longest header line Parse accepts, in bytes without the line end;
	// for a folded MIME header, the length once unfolded.
	MaxLineLength = 8 << 10
)

// imdnPrefix is the prefix RFC 5438 writes for NamespaceIMDN; it needs no NS declaration here
// (see the package doc) and New declares it.
const imdnPrefix = "imdn"

// Header is one header line: Name as written, with its prefix ("imdn.Message-ID"), and Value
// as sent without the white space around it (";lang=" and other parameters stay in Value).
type Header struct {
	Name  string
	Value string
}

// Message is a parsed or built message/cpim body. The zero value is not useful: get one from
// Parse or New. A Message is not safe for concurrent modification.
type Message struct {
	headers []Header // message headers, in order, NS declarations included
	mime    []Header // headers of the encapsulated MIME part, in order
	content []byte   // content of the MIME part, byte-exact
}

// Headers returns a copy of the message headers, in order.
func (m *Message) Headers() []Header { return append([]Header(nil), m.headers...) }

// MIMEHeaders returns a copy of the headers of the encapsulated MIME part, in order.
func (m *Message) MIMEHeaders() []Header { return append([]Header(nil), m.mime...) }

// Header returns the value of the first message header called name, ignoring case; name
// includes any prefix as written ("imdn.Message-ID"). Prefer HeaderNS for prefixed headers:
// the sender chooses the prefix.
func (m *Message) Header(name string) (string, bool) { return lookup(m.headers, name) }

// Values returns the values of every message header called name, ignoring case, in order
// (To and cc may repeat).
func (m *Message) Values(name string) []string {
	var vs []string
	for _, h := range m.headers {
		if strings.EqualFold(h.Name, name) {
			vs = append(vs, h.Value)
		}
	}
	return vs
}

// MIMEHeader returns the value of the first header of the MIME part called name, ignoring case.
func (m *Message) MIMEHeader(name string) (string, bool) { return lookup(m.mime, name) }

// HeaderNS returns the value of the first message header whose name is name (ignoring case)
// in the namespace uri, whatever prefix the sender bound to it: HeaderNS(NamespaceIMDN,
// "Message-ID") finds "imdn.Message-ID" as well as "x.Message-ID" after "NS: x
// <urn:ietf:params:imdn>". Unprefixed headers are in NamespaceCPIM.
func (m *Message) HeaderNS(uri, name string) (string, bool) {
	for i, h := range m.headers {
		prefix, local := splitName(h.Name)
		if !strings.EqualFold(local, name) {
			continue
		}
		ns := NamespaceCPIM
		if prefix != "" {
			ns = m.resolve(i, prefix)
		}
		if strings.EqualFold(ns, uri) {
			return h.Value, true
		}
	}
	return "", false
}

// From returns the CPIM From value ("" when absent), e.g. "<sip:dave@example.test>".
func (m *Message) From() string { v, _ := m.Header("From"); return v }

// To returns the first CPIM To value ("" when absent); Values("To") gives them all.
func (m *Message) To() string { v, _ := m.Header("To"); return v }

// DateTime returns the DateTime header as a time, and false when it is absent or not an
// RFC 3339 date-time.
func (m *Message) DateTime() (time.Time, bool) {
	v, ok := m.Header("DateTime")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// MessageID returns the RFC 5438 Message-ID (the imdn.Message-ID header, resolved through the
// NS declarations), or "" when there is none.
func (m *Message) MessageID() string {
	v, _ := m.HeaderNS(NamespaceIMDN, "Message-ID")
	return v
}

// DispositionNotification returns the notifications the sender asks for (RFC 5438:
// "positive-delivery", "negative-delivery", "display", "processing"), as written, from every
// imdn.Disposition-Notification header; nil when there are none.
func (m *Message) DispositionNotification() []string {
	var out []string
	for i, h := range m.headers {
		prefix, local := splitName(h.Name)
		if prefix == "" || !strings.EqualFold(local, "Disposition-Notification") ||
			!strings.EqualFold(m.resolve(i, prefix), NamespaceIMDN) {
			continue
		}
		for _, v := range strings.Split(h.Value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// ContentType returns the Content-Type of the MIME part, e.g. "text/plain;charset=UTF-8".
func (m *Message) ContentType() string { v, _ := m.MIMEHeader("Content-Type"); return v }

// Content returns the content of the MIME part, byte-exact. It shares memory with m: do not
// modify it.
func (m *Message) Content() []byte { return m.content }

// resolve returns the namespace URI that prefix stands for in the header at index i: the
// closest NS declaration before it, else the first after it, else NamespaceIMDN for "imdn";
// "" when none.
func (m *Message) resolve(i int, prefix string) string {
	for j := i - 1; j >= 0; j-- {
		if p, uri, ok := m.nsAt(j); ok && strings.EqualFold(p, prefix) {
			return uri
		}
	}
	for j := i + 1; j < len(m.headers); j++ {
		if p, uri, ok := m.nsAt(j); ok && strings.EqualFold(p, prefix) {
			return uri
		}
	}
	if strings.EqualFold(prefix, imdnPrefix) {
		return NamespaceIMDN
	}
	return ""
}

// nsAt returns the declaration of the header at index j when it is a well-formed NS header.
func (m *Message) nsAt(j int) (prefix, uri string, ok bool) {
	h := m.headers[j]
	if !strings.EqualFold(h.Name, "NS") {
		return "", "", false
	}
	prefix, uri, why := parseNS(h.Value)
	return prefix, uri, why == ""
}

// lookup returns the value of the first header called name, ignoring case.
func lookup(hs []Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// splitName splits a message header name at its first ".": "imdn.Message-ID" → "imdn",
// "Message-ID"; a name without a dot has no prefix.
func splitName(name string) (prefix, local string) {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}
