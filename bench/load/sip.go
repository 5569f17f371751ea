package main

import (
	"bytes"
	"strconv"
)

// maxVias bounds the Via header lines a message may carry; a request with more is not
// answered (a real one through one proxy has two).
const maxVias = 8

// span is a byte range of a datagram.
type span struct{ from, to int32 }

// sipMsg is what the generator and the responder read from a datagram: offsets into it,
// no copies. parse fills it; every field is empty when its header is absent.
type sipMsg struct {
	buf     []byte
	request bool
	status  int
	method  []byte
	ruri    []byte
	via     [maxVias]span // whole header lines, for answers
	nvia    int
	from    []byte
	to      []byte
	callID  []byte
	cseq    []byte
	contact []byte
	etag    []byte
	authn   []byte // WWW-Authenticate or Proxy-Authenticate
	authz   bool   // Authorization or Proxy-Authorization present
	subst   []byte // Subscription-State
	expires []byte
}

// parse reads b's start line and headers into m. It reports false for anything that is not
// a SIP/2.0 message it can use; it never panics and keeps no reference beyond b.
func parse(b []byte, m *sipMsg) bool {
	*m = sipMsg{buf: b}
	line, rest, ok := nextLine(b, 0)
	if !ok || line.to-line.from < 12 {
		return false
	}
	first := b[line.from:line.to]
	if hasPrefix(first, "SIP/2.0 ") {
		code := 0
		for _, c := range first[8:11] {
			if c < '0' || c > '9' {
				return false
			}
			code = code*10 + int(c-'0')
		}
		if code < 100 || code > 699 {
			return false
		}
		m.status = code
	} else if !parseRequestLine(first, m) {
		return false
	}
	for {
		line, rest, ok = nextLine(b, rest)
		if !ok {
			return false // no empty line ends the headers
		}
		if line.from == line.to {
			return len(m.callID) > 0 && len(m.cseq) > 0 && m.nvia > 0
		}
		if !m.header(line) {
			return false
		}
	}
}

// parseRequestLine reads "METHOD URI SIP/2.0".
func parseRequestLine(first []byte, m *sipMsg) bool {
	sp := bytes.IndexByte(first, ' ')
	if sp <= 0 || !hasSuffix(first, " SIP/2.0") || sp+1 > len(first)-len(" SIP/2.0") {
		return false
	}
	m.request = true
	m.method = first[:sp]
	m.ruri = trim(first[sp+1 : len(first)-len(" SIP/2.0")])
	return len(m.ruri) > 0
}

// header records one header line of interest; false for a line with no colon or too many Vias.
func (m *sipMsg) header(line span) bool {
	b := m.buf[line.from:line.to]
	if b[0] == ' ' || b[0] == '\t' {
		return true // a folded continuation: none of the headers read here is folded
	}
	c := bytes.IndexByte(b, ':')
	if c <= 0 {
		return false
	}
	name, val := trim(b[:c]), trim(b[c+1:])
	switch {
	case eqFold(name, "via") || eqFold(name, "v"):
		if m.nvia == maxVias {
			return false
		}
		m.via[m.nvia] = line
		m.nvia++
	case eqFold(name, "from") || eqFold(name, "f"):
		m.from = val
	case eqFold(name, "to") || eqFold(name, "t"):
		m.to = val
	case eqFold(name, "call-id") || eqFold(name, "i"):
		m.callID = val
	case eqFold(name, "cseq"):
		m.cseq = val
	case eqFold(name, "contact") || eqFold(name, "m"):
		if m.contact == nil {
			m.contact = val
		}
	case eqFold(name, "sip-etag"):
		m.etag = val
	case eqFold(name, "www-authenticate") || eqFold(name, "proxy-authenticate"):
		if m.authn == nil {
			m.authn = val
		}
	case eqFold(name, "authorization") || eqFold(name, "proxy-authorization"):
		m.authz = true
	case eqFold(name, "subscription-state"):
		m.subst = val
	case eqFold(name, "expires"):
		m.expires = val
	}
	return true
}

// topVia returns the value of the first Via (up to a comma joining a second one).
func (m *sipMsg) topVia() []byte {
	if m.nvia == 0 {
		return nil
	}
	l := m.buf[m.via[0].from:m.via[0].to]
	v := trim(l[bytes.IndexByte(l, ':')+1:])
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = trim(v[:i])
	}
	return v
}

// cseqMethod returns the method of the CSeq header.
func (m *sipMsg) cseqMethod() []byte {
	if i := bytes.IndexByte(m.cseq, ' '); i >= 0 {
		return trim(m.cseq[i+1:])
	}
	return nil
}

// param returns the value of ;name= in a header value (after the URI's closing '>' when the
// URI is bracketed), ending at ';', ',' or the end; nil when absent.
func param(v []byte, name string) []byte {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for i := 0; i < len(v); i++ {
		if v[i] != ';' {
			continue
		}
		p := trim(v[i+1:])
		if len(p) > len(name) && eqFold(p[:len(name)], name) && p[len(name)] == '=' {
			p = p[len(name)+1:]
			end := 0
			for end < len(p) && p[end] != ';' && p[end] != ',' && p[end] != ' ' && p[end] != '\t' {
				end++
			}
			return p[:end]
		}
	}
	return nil
}

// uriOf returns the URI of a name-addr (between < and >), or the value up to its first ';'.
func uriOf(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
		return nil
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		return trim(v[:i])
	}
	return v
}

// nextLine returns the line starting at off (without its CRLF or LF) and where the next starts.
func nextLine(b []byte, off int32) (span, int32, bool) {
	for i := int(off); i < len(b); i++ {
		if b[i] == '\n' {
			end := i
			if end > int(off) && b[end-1] == '\r' {
				end--
			}
			return span{off, int32(end)}, int32(i + 1), true
		}
	}
	return span{}, off, false
}

func trim(b []byte) []byte { return bytes.Trim(b, " \t") }

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }
func hasSuffix(b []byte, s string) bool { return len(b) >= len(s) && string(b[len(b)-len(s):]) == s }

// eqFold compares case-insensitively (header names and tokens are ASCII).
func eqFold(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }

// containsFold reports whether s occurs in b, ASCII case-insensitively.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if eqFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

// appendAnswer appends the start of a response to request m: status line, its Via lines,
// From, To (with toTag added when the To has no tag), Call-ID and CSeq. The caller adds any
// further headers and ends it with appendEnd.
func appendAnswer(b []byte, m *sipMsg, code int, reason, toTag string) []byte {
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	for i := 0; i < m.nvia; i++ {
		b = append(b, m.buf[m.via[i].from:m.via[i].to]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	b = append(b, m.from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, m.to...)
	if param(m.to, "tag") == nil && toTag != "" {
		b = append(b, ";tag="...)
		b = append(b, toTag...)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, m.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = append(b, m.cseq...)
	b = append(b, "\r\n"...)
	return b
}

// appendEnd ends a message with Content-Length and its body.
func appendEnd(b []byte, body []byte) []byte {
	if len(body) > 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n\r\n"...)
		return append(b, body...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}
