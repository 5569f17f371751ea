package sipx

import (
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// canonicalNames maps the lower-case and compact header names sipgo parses into typed headers
// to their canonical names.
var canonicalNames = map[string]string{
	"c": "Content-Type", "content-type": "Content-Type",
	"f": "From", "from": "From",
	"t": "To", "to": "To",
	"m": "Contact", "contact": "Contact",
	"i": "Call-ID", "call-id": "Call-ID",
	"cseq": "CSeq",
	"v":    "Via", "via": "Via",
	"max-forwards": "Max-Forwards",
	"l":            "Content-Length", "content-length": "Content-Length",
	"route":        "Route",
	"record-route": "Record-Route",
	"refer-to":     "Refer-To",
	"referred-by":  "Referred-By",
}

// NewParser returns a sipgo parser that never drops a whole message because one typed header
// (From, To, Contact, Max-Forwards, Route, ...) is malformed: such a header is kept as a plain
// header under its canonical name, so the request still reaches the chain and the sanity stage
// (or the stage that needs the header) answers 400 naming it. sipgo's own parser rejects the
// message silently, leaving a UDP client retransmitting into the void.
//
// Via and CSeq stay fatal in effect: sipgo cannot build a transaction without them and answers
// a stateless 400 itself.
//
// maxMessage bounds any one message (413/513 territory); sipgo refuses larger ones.
func NewParser(maxMessage int) *sip.Parser {
	p := sip.NewParser(sip.WithHeadersParsers(headerParsers()))
	if maxMessage > 0 {
		p.MaxMessageLength = maxMessage
	}
	return p
}

// headerParsers is the table of typed-header parsers NewParser and NewLeanParser give every
// message, keyed by lower-case full and compact name: sipgo's, made lenient, with the Via and
// address checks. It is built once and only read afterwards (by sipgo's parsers and ours), so
// all parsers share it.
var headerParsers = sync.OnceValue(func() map[string]sip.HeaderParser {
	parsers := make(map[string]sip.HeaderParser, len(sip.DefaultHeadersParser()))
	for name, parse := range sip.DefaultHeadersParser() {
		parsers[name] = lenient(canonicalNames[name], parse)
		switch name {
		case "via", "v":
			parsers[name] = viaKeeper(parsers[name])
		case "from", "f", "to", "t", "contact", "m":
			parsers[name] = addressChecker(canonicalNames[name], parsers[name])
		}
	}
	return parsers
})

// errComma is the text of sipgo's unexported error that signals "one value parsed, more values
// follow after a comma"; it is part of the parse protocol, not a failure.
const errComma = "comma detected"

func lenient(canonical string, parse sip.HeaderParser) sip.HeaderParser {
	if canonical == "" {
		return parse
	}
	return func(name []byte, value string) (sip.Header, error) {
		h, err := parse(name, value)
		if err == nil || err.Error() == errComma {
			return h, err
		}
		return sip.NewHeader(canonical, value), nil
	}
}

// Malformed reports the first header among names that is present in req but was not parsed
// into its typed form (see NewParser), or present more than once where RFC 3261 allows one.
// It returns the header name and a reason phrase for the 400, or "" when all are well-formed.
func Malformed(req *sip.Request, names ...string) (reason string) {
	for _, name := range names {
		n, count := lookup(name), 0
		for _, h := range req.Headers() {
			if !n.is(h) {
				continue
			}
			if !typed(h) {
				return "Malformed " + name
			}
			count++
		}
		if count > 1 && singleton[name] {
			return "Duplicate " + name
		}
	}
	return ""
}

var singleton = map[string]bool{
	"From": true, "To": true, "Call-ID": true, "CSeq": true, "Max-Forwards": true,
	"Content-Type": true, "Content-Length": true,
}

func typed(h sip.Header) bool {
	switch h.(type) {
	case *sip.FromHeader, *sip.ToHeader, *sip.ContactHeader, *sip.CallIDHeader, *sip.CSeqHeader,
		*sip.ViaHeader, *sip.MaxForwardsHeader, *sip.ContentLengthHeader, *sip.ContentTypeHeader,
		*sip.RouteHeader, *sip.RecordRouteHeader, *sip.ReferToHeader, *sip.ReferredByHeader:
		return true
	}
	return false
}

// addressChecker refuses, before sipgo parses it, a From, To or Contact value that sipgo
// would take although RFC 3261 §20.10 does not: an unquoted display name with a character
// that is not a token character (RFC 4475 §3.1.2.15: Bell, Alexander <sip:...>), white space
// just inside the angle brackets (§3.1.2.14), an addr-spec outside angle brackets with a
// header part (§3.1.2.13). The value is kept as a plain header, which sanity answers with 400
// naming the header.
func addressChecker(canonical string, parse sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		if !validAddress(value) {
			return sip.NewHeader(canonical, value), nil
		}
		if canonical != "Contact" {
			// sipgo keeps the white space RFC 3261 allows around ";" and "=" in the host
			// and parameters (RFC 4475 §3.1.1.1: "sip:a@b.example.com ;   tag    = 1").
			value = normalizeParams(value)
		}
		return parse(name, value)
	}
}

// validAddress judges the first name-addr or addr-spec of v (what follows a comma is judged
// when sipgo hands it over).
func validAddress(v string) bool {
	v = strings.TrimSpace(v)
	i := 0
	if strings.HasPrefix(v, "\"") {
		// quoted display name: find its end
		i = 1
		for ; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' {
				i++
			}
		}
		if i >= len(v) {
			return false
		}
		i++
	}
	lt := strings.IndexByte(v[i:], '<')
	if lt < 0 {
		if i > 0 {
			return false // a quoted display name without an address
		}
		spec := v
		if j := strings.IndexAny(spec, ";,"); j >= 0 {
			spec = spec[:j]
		}
		return !strings.ContainsAny(strings.TrimSpace(spec), "? \t")
	}
	lt += i
	for _, c := range []byte(v[i:lt]) {
		if c < 0x80 && !isTokenChar(c) && c != ' ' && c != '\t' {
			return false
		}
	}
	gt := strings.IndexByte(v[lt:], '>')
	if gt < 2 {
		return false
	}
	inner := v[lt+1 : lt+gt]
	return strings.TrimSpace(inner) == inner
}

// isTokenChar reports whether c may appear in an RFC 3261 token.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// normalizeParams removes white space next to ";" and "=" outside quoted strings; it returns v
// itself when there is none (the common case).
func normalizeParams(v string) string {
	dirty := false
	for i := 0; i < len(v) && !dirty; i++ {
		if c := v[i]; c == ';' || c == '=' {
			dirty = i > 0 && (v[i-1] == ' ' || v[i-1] == '\t') || i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t')
		}
	}
	if !dirty {
		return v
	}
	return collapseSpace(v, isParamSep)
}

func isParamSep(c byte) bool { return c == ';' || c == '=' }

// collapseSpace removes the white space next to a separator (sep) and makes other runs of it
// one space, outside quoted strings: the slow path of normalizeParams and normalizeVia.
func collapseSpace(v string, sep func(byte) bool) string {
	var b strings.Builder
	b.Grow(len(v))
	quoted, pending := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			} else if c == '"' {
				quoted = false
			}
			continue
		case c == ' ' || c == '\t':
			pending = true
			continue
		}
		if pending && b.Len() > 0 && !sep(c) && !sep(b.String()[b.Len()-1]) {
			b.WriteByte(' ')
		}
		pending = false
		b.WriteByte(c)
		if c == '"' {
			quoted = true
		}
	}
	return b.String()
}
