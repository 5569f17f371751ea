package cpim

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parse parses a message/cpim body (the body of a SIP MESSAGE with that Content-Type). The
// returned Message holds copies: body may be reused afterwards. Errors are *ParseError values
// wrapping one of the Err* sentinels; see the package doc for what is checked.
func Parse(body []byte) (*Message, error) {
	if len(body) == 0 {
		return nil, &ParseError{Err: ErrEmpty}
	}
	// Framing pass over the bytes: find where each header block ends, with the line limits,
	// so that only the header blocks become a string (header names and values are substrings
	// of it) and the content is copied once.
	msgEnd, mimeStart, line, err := frame(body, 0, 1, false)
	if err != nil {
		return nil, err
	}
	if mimeStart == len(body) {
		return nil, &ParseError{Err: ErrNoMIMEPart}
	}
	mimeEnd, contentStart, _, err := frame(body, mimeStart, line, true)
	if err != nil {
		return nil, err
	}

	text := string(body[:mimeEnd])
	m := &Message{}
	p := headerParser{text: text, line: 1}
	var linesBuf [16]int
	lines := linesBuf[:0] // line number of each header, for the checks after parsing
	if m.headers, lines, err = p.headers(0, msgEnd, false, lines); err != nil {
		return nil, err
	}
	if err := checkNamespaces(m.headers, lines); err != nil {
		return nil, err
	}
	p.line = line
	if m.mime, lines, err = p.headers(mimeStart, mimeEnd, true, lines[:0]); err != nil {
		return nil, err
	}
	m.content = append([]byte(nil), body[contentStart:]...)
	if err := m.checkMIME(lines, line); err != nil {
		return nil, err
	}
	return m, nil
}

// frame scans the header block starting at off (whose first line is number line) up to its
// blank line. It returns the offset where the block's lines end (the blank line's start, or
// len(body)), the offset after the blank line, and the number of the line after the blank
// line. Without a blank line, the message headers are an error (ErrNoBlankLine) and the MIME
// headers simply end with the body.
func frame(body []byte, off, line int, mime bool) (end, next, nextLine int, err error) {
	headers := 0
	for off < len(body) {
		rest := body[off:]
		n := bytes.IndexByte(rest, '\n')
		lineLen, adv := n, n+1
		if n < 0 {
			lineLen, adv = len(rest), len(rest)
		}
		if lineLen > 0 && rest[lineLen-1] == '\r' {
			lineLen--
		}
		if lineLen == 0 {
			return off, off + adv, line + 1, nil
		}
		if lineLen > MaxLineLength {
			return 0, 0, 0, &ParseError{Line: line, Err: ErrLineTooLong,
				Detail: strconv.Itoa(lineLen) + " bytes, limit " + strconv.Itoa(MaxLineLength)}
		}
		if c := rest[0]; c != ' ' && c != '\t' {
			if headers++; headers > MaxHeaders {
				return 0, 0, 0, &ParseError{Line: line, Err: ErrTooManyHeaders,
					Detail: "limit " + strconv.Itoa(MaxHeaders)}
			}
		}
		off += adv
		line++
	}
	if !mime {
		return 0, 0, 0, &ParseError{Err: ErrNoBlankLine}
	}
	return len(body), len(body), line, nil
}

// headerParser turns the lines of a header block, already framed, into Headers.
type headerParser struct {
	text string
	line int             // number of the next line
	fold strings.Builder // value of a folded MIME header being unfolded
}

// headers parses the lines of text[off:end] (each ends in LF or CRLF, the last one may end
// with the block). mime selects the MIME part's rules: RFC 5322 field names and folding. It
// appends the line number of each header to lines.
func (p *headerParser) headers(off, end int, mime bool, lines []int) ([]Header, []int, error) {
	block := p.text[off:end]
	hs := make([]Header, 0, strings.Count(block, "\n")+1)
	folding, foldLine := false, 0 // gathering continuation lines of the last header in p.fold
	for len(block) > 0 {
		ln, rest, _ := strings.Cut(block, "\n")
		block = rest
		ln = strings.TrimSuffix(ln, "\r")
		line := p.line
		p.line++
		if ln == "" { // cannot happen: frame ends the block at the first empty line
			continue
		}
		if c := ln[0]; c == ' ' || c == '\t' {
			if !mime {
				return nil, nil, &ParseError{Line: line, Err: ErrMalformedHeader,
					Detail: "continuation line (CPIM message headers cannot be folded)"}
			}
			if len(hs) == 0 {
				return nil, nil, &ParseError{Line: line, Err: ErrMalformedHeader,
					Detail: "continuation line without a header before it"}
			}
			if err := checkValue(ln); err != "" {
				return nil, nil, &ParseError{Line: line, Err: ErrMalformedHeader, Detail: err}
			}
			cont := trimWS(ln)
			if cont == "" {
				continue
			}
			if !folding {
				p.fold.Reset()
				p.fold.WriteString(hs[len(hs)-1].Value)
				folding = true
			}
			p.fold.WriteByte(' ')
			p.fold.WriteString(cont)
			foldLine = line
			if p.fold.Len() > MaxLineLength+1 { // over the limit whatever trimming does
				return nil, nil, unfoldedTooLong(line, p.fold.Len())
			}
			continue
		}
		if folding {
			if err := p.unfold(&hs[len(hs)-1], foldLine); err != nil {
				return nil, nil, err
			}
			folding = false
		}
		h, err := parseHeader(ln, mime)
		if err != "" {
			return nil, nil, &ParseError{Line: line, Err: ErrMalformedHeader, Detail: err}
		}
		if n := lineLength(h); n > MaxLineLength {
			return nil, nil, &ParseError{Line: line, Err: ErrLineTooLong,
				Detail: strconv.Itoa(n) + " bytes, limit " + strconv.Itoa(MaxLineLength)}
		}
		hs = append(hs, h)
		lines = append(lines, line)
	}
	if folding {
		if err := p.unfold(&hs[len(hs)-1], foldLine); err != nil {
			return nil, nil, err
		}
	}
	return hs, lines, nil
}

// unfold sets the value of h, a MIME header, to the unfolded value gathered in p.fold; line is
// the header's last continuation line.
func (p *headerParser) unfold(h *Header, line int) error {
	h.Value = trimWS(p.fold.String())
	if n := lineLength(*h); n > MaxLineLength {
		return unfoldedTooLong(line, n)
	}
	return nil
}

func unfoldedTooLong(line, n int) error {
	return &ParseError{Line: line, Err: ErrLineTooLong,
		Detail: "unfolded to " + strconv.Itoa(n) + " bytes or more, limit " + strconv.Itoa(MaxLineLength)}
}

// parseHeader parses one unfolded "Name: value" line; it returns a description of the fault,
// or "".
func parseHeader(ln string, mime bool) (Header, string) {
	colon := strings.IndexByte(ln, ':')
	if colon < 0 {
		return Header{}, "no colon in " + quote(ln)
	}
	if colon == 0 {
		return Header{}, "empty name in " + quote(ln)
	}
	name := ln[:colon]
	if why := checkName(name, mime); why != "" {
		return Header{}, why
	}
	value := ln[colon+1:]
	if why := checkValue(value); why != "" {
		return Header{}, why + " in the value of " + quote(name)
	}
	return Header{Name: name, Value: trimWS(value)}, ""
}

// checkName checks a header name: RFC 3862 NAMECHARs with at most one "." between a prefix
// and the name for message headers, RFC 5322 ftext for MIME headers.
func checkName(name string, mime bool) string {
	if mime {
		for i := 0; i < len(name); i++ {
			if c := name[i]; c < 0x21 || c > 0x7e {
				return "invalid character " + quote(name[i:i+1]) + " in name " + quote(name)
			}
		}
		return ""
	}
	dot := -1
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if dot >= 0 {
				return "more than one '.' in name " + quote(name)
			}
			dot = i
			continue
		}
		if !nameChar[c] {
			return "invalid character " + quote(name[i:i+1]) + " in name " + quote(name)
		}
	}
	if dot == 0 || dot == len(name)-1 {
		return "empty prefix or name in " + quote(name)
	}
	return ""
}

// checkValue checks a header value: no control character but HTAB, valid UTF-8.
func checkValue(v string) string {
	high := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 0x80:
			high = true
		case c < 0x20 && c != '\t', c == 0x7f:
			return "control character " + quote(v[i:i+1])
		}
	}
	if high && !utf8.ValidString(v) {
		return "invalid UTF-8"
	}
	return ""
}

// nameChar is RFC 3862 §3.6 NAMECHAR: %x21 / %x23-27 / %x2a-2b / %x2d / %x5e-60 / %x7c /
// %x7e / ALPHA / DIGIT.
var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-^_`|~" {
		t[c] = true
	}
	return t
}()

// checkNamespaces checks the NS declarations and that every prefix used is declared (or is
// "imdn", see the package doc). lines gives each header's line number.
func checkNamespaces(hs []Header, lines []int) error {
	var declBuf [8]string
	decls := declBuf[:0]
	for i, h := range hs {
		if !strings.EqualFold(h.Name, "NS") {
			continue
		}
		prefix, _, why := parseNS(h.Value)
		if why != "" {
			return &ParseError{Line: lines[i], Err: ErrBadNS, Detail: why + " in " + quote(h.Value)}
		}
		decls = append(decls, prefix)
	}
	for i, h := range hs {
		prefix, _ := splitName(h.Name)
		if prefix == "" || strings.EqualFold(prefix, imdnPrefix) || declared(decls, prefix) {
			continue
		}
		return &ParseError{Line: lines[i], Err: ErrUndeclaredPrefix,
			Detail: quote(prefix) + " in " + quote(h.Name)}
	}
	return nil
}

func declared(decls []string, prefix string) bool {
	for _, d := range decls {
		if strings.EqualFold(d, prefix) {
			return true
		}
	}
	return false
}

// parseNS parses an NS value, "[prefix] <uri>" (RFC 3862 §4.6; white space between prefix and
// "<" tolerated). It returns a description of the fault, or "".
func parseNS(v string) (prefix, uri, why string) {
	lt := strings.IndexByte(v, '<')
	if lt < 0 || !strings.HasSuffix(v, ">") || lt == len(v)-1 {
		return "", "", "want [prefix] <uri>"
	}
	prefix = trimWS(v[:lt])
	for i := 0; i < len(prefix); i++ {
		if !nameChar[prefix[i]] {
			return "", "", "invalid prefix"
		}
	}
	uri = v[lt+1 : len(v)-1]
	if uri == "" {
		return "", "", "empty URI"
	}
	if strings.ContainsAny(uri, " \t<>") {
		return "", "", "invalid URI"
	}
	return prefix, uri, ""
}

// checkMIME checks the MIME part once parsed: a Content-Type of the form type/subtype, and the
// Content-Length, if any, against the content (dropping one trailing line end beyond it, see the
// package doc). Several Content-Length headers must agree. lines holds the line number of each
// MIME header, first the part's first line.
func (m *Message) checkMIME(lines []int, first int) error {
	ctSeen := false
	cl, clLine, clSeen := uint64(0), 0, false
	for i, h := range m.mime {
		switch {
		case strings.EqualFold(h.Name, "Content-Type"):
			mt, _, _ := strings.Cut(h.Value, ";")
			typ, sub, ok := strings.Cut(trimWS(mt), "/")
			if !ok || !isToken(typ) || !isToken(sub) {
				return &ParseError{Line: lines[i], Err: ErrContentType, Detail: quote(h.Value)}
			}
			ctSeen = true
		case strings.EqualFold(h.Name, "Content-Length"):
			n, err := strconv.ParseUint(h.Value, 10, 31)
			if err != nil {
				return &ParseError{Line: lines[i], Err: ErrContentLength, Detail: "invalid value " + quote(h.Value)}
			}
			if clSeen && n != cl {
				return &ParseError{Line: lines[i], Err: ErrContentLength,
					Detail: "Content-Length " + h.Value + " after Content-Length " + strconv.FormatUint(cl, 10)}
			}
			cl, clLine, clSeen = n, lines[i], true
		}
	}
	if !ctSeen {
		return &ParseError{Line: first, Err: ErrContentType, Detail: "none"}
	}
	if !clSeen {
		return nil
	}
	c := m.content
	switch l := uint64(len(c)); {
	case l == cl:
	case l == cl+2 && c[cl] == '\r' && c[cl+1] == '\n', l == cl+1 && c[cl] == '\n':
		m.content = c[:cl:cl]
	default:
		return &ParseError{Line: clLine, Err: ErrContentLength,
			Detail: "Content-Length " + strconv.FormatUint(cl, 10) + ", content " + strconv.Itoa(len(c)) + " bytes"}
	}
	return nil
}

// isToken reports whether s is an RFC 2045 token: printable ASCII but tspecials.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// lineLength is the length of h as Bytes writes it, without the line end.
func lineLength(h Header) int {
	n := len(h.Name) + 1 + len(h.Value)
	if spaceAfterColon(h.Value) {
		n++
	}
	return n
}

// spaceAfterColon reports whether Bytes writes a space between the colon and v: not for an
// empty value, nor before ";" where the RFC 3862 ABNF puts parameters right after the colon
// ("Subject:;lang=fr Bonjour").
func spaceAfterColon(v string) bool { return v != "" && v[0] != ';' }

// trimWS trims spaces and tabs.
func trimWS(s string) string { return strings.Trim(s, " \t") }
