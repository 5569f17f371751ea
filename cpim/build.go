package cpim

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// New builds a message from from to to (CPIM From and To values, e.g. "<sip:simpled@example.test>";
// empty to leave the header out) carrying content of type contentType; the MIME part gets
// Content-Type and Content-Length. Add a DateTime and IMDN headers with SetDateTime and SetIMDN.
// content is copied.
func New(from, to, contentType string, content []byte) (*Message, error) {
	m := &Message{content: append([]byte(nil), content...)}
	if from != "" {
		if err := m.Add("From", from); err != nil {
			return nil, err
		}
	}
	if to != "" {
		if err := m.Add("To", to); err != nil {
			return nil, err
		}
	}
	ct := Header{Name: "Content-Type", Value: trimWS(contentType)}
	if why := checkValue(ct.Value); why != "" {
		return nil, &ParseError{Err: ErrContentType, Detail: why}
	}
	m.mime = []Header{ct, {Name: "Content-Length", Value: strconv.Itoa(len(content))}}
	if err := m.checkMIME([]int{0, 0}, 0); err != nil {
		return nil, err
	}
	return m, nil
}

// Add appends a message header. name may carry a prefix ("imdn.Message-ID") that an NS header
// declares, or "imdn"; an NS value must be "[prefix] <uri>". The value is trimmed of white space.
func (m *Message) Add(name, value string) error {
	h, err := m.check(name, value, true)
	if err != nil {
		return err
	}
	m.headers = append(m.headers, h)
	return nil
}

// Set replaces the first message header called name (ignoring case) by name: value and removes
// any other, or appends it when there is none. It validates like Add.
func (m *Message) Set(name, value string) error {
	_, replacing := m.Header(name)
	h, err := m.check(name, value, !replacing)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(m.headers, func(old Header) bool { return strings.EqualFold(old.Name, name) })
	if i < 0 {
		m.headers = append(m.headers, h)
		return nil
	}
	m.headers[i] = h
	out := m.headers[:i+1]
	for _, old := range m.headers[i+1:] {
		if !strings.EqualFold(old.Name, name) {
			out = append(out, old)
		}
	}
	clear(m.headers[len(out):])
	m.headers = out
	return nil
}

// SetDateTime sets the DateTime header to t in UTC, to the second (RFC 3339, as linphone writes it).
func (m *Message) SetDateTime(t time.Time) {
	// Cannot fail: the name and the formatted time are valid.
	_ = m.Set("DateTime", t.UTC().Format(time.RFC3339))
}

// SetIMDN sets the RFC 5438 Message-ID and, when dispositions are given ("positive-delivery",
// "negative-delivery", "display", "processing"), Disposition-Notification. It uses the prefix
// an NS header binds to NamespaceIMDN, else declares "NS: imdn <urn:ietf:params:imdn>".
// messageID must be a non-empty token (RFC 5438 wants at least 32 bits of randomness in it).
func (m *Message) SetIMDN(messageID string, dispositions ...string) error {
	if messageID == "" || strings.ContainsAny(messageID, " \t,") {
		return &ParseError{Err: ErrMalformedHeader, Detail: "Message-ID must be a non-empty token, not " + quote(messageID)}
	}
	disposition := strings.Join(dispositions, ", ")
	for _, v := range []string{messageID, disposition} {
		if why := checkValue(v); why != "" {
			return &ParseError{Err: ErrMalformedHeader, Detail: why}
		}
	}
	prefix := ""
	for j := range m.headers {
		if p, uri, ok := m.nsAt(j); ok && p != "" && strings.EqualFold(uri, NamespaceIMDN) {
			prefix = p
			break
		}
	}
	if prefix == "" {
		prefix = imdnPrefix
		if err := m.Add("NS", imdnPrefix+" <"+NamespaceIMDN+">"); err != nil {
			return err
		}
	}
	if err := m.Set(prefix+".Message-ID", messageID); err != nil {
		return err
	}
	if len(dispositions) == 0 {
		return nil
	}
	return m.Set(prefix+".Disposition-Notification", disposition)
}

// check validates one message header for Add and Set with Parse's rules; adding says whether
// it adds to the header count.
func (m *Message) check(name, value string, adding bool) (Header, error) {
	h, why := parseHeader(name+":"+value, false)
	if why == "" && strings.Contains(name, ":") {
		why = "colon in name " + quote(name)
	}
	if why != "" {
		return Header{}, &ParseError{Err: ErrMalformedHeader, Detail: why}
	}
	if n := lineLength(h); n > MaxLineLength {
		return Header{}, &ParseError{Err: ErrLineTooLong, Detail: strconv.Itoa(n) + " bytes"}
	}
	if adding && len(m.headers) >= MaxHeaders {
		return Header{}, &ParseError{Err: ErrTooManyHeaders, Detail: "limit " + strconv.Itoa(MaxHeaders)}
	}
	if strings.EqualFold(h.Name, "NS") {
		if _, _, why := parseNS(h.Value); why != "" {
			return Header{}, &ParseError{Err: ErrBadNS, Detail: why + " in " + quote(h.Value)}
		}
	}
	if prefix, _ := splitName(h.Name); prefix != "" && !strings.EqualFold(prefix, imdnPrefix) {
		declared := false
		for j := range m.headers {
			if p, _, ok := m.nsAt(j); ok && strings.EqualFold(p, prefix) {
				declared = true
				break
			}
		}
		if !declared {
			return Header{}, &ParseError{Err: ErrUndeclaredPrefix, Detail: quote(prefix) + " in " + quote(h.Name)}
		}
	}
	return h, nil
}

// Bytes serializes m: message headers, blank line, MIME headers, blank line, content, with
// CRLF line ends. For a Message from Parse, Parse(m.Bytes()) equals m.
func (m *Message) Bytes() []byte {
	n := 4 + len(m.content)
	for _, hs := range [][]Header{m.headers, m.mime} {
		for _, h := range hs {
			n += lineLength(h) + 2
		}
	}
	b := make([]byte, 0, n)
	b = appendHeaders(b, m.headers)
	b = append(b, "\r\n"...)
	b = appendHeaders(b, m.mime)
	b = append(b, "\r\n"...)
	return append(b, m.content...)
}

// WriteTo writes m.Bytes() to w; it implements io.WriterTo.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m.Bytes())
	return int64(n), err
}

func appendHeaders(b []byte, hs []Header) []byte {
	for _, h := range hs {
		b = append(b, h.Name...)
		b = append(b, ':')
		if spaceAfterColon(h.Value) {
			b = append(b, ' ')
		}
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	return b
}
