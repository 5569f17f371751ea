package sipx

import (
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
	parsers := make(map[string]sip.HeaderParser, len(sip.DefaultHeadersParser()))
	for name, parse := range sip.DefaultHeadersParser() {
		parsers[name] = lenient(canonicalNames[name], parse)
	}
	p := sip.NewParser(sip.WithHeadersParsers(parsers))
	if maxMessage > 0 {
		p.MaxMessageLength = maxMessage
	}
	return p
}

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
		hs := Headers(req, name)
		if len(hs) == 0 {
			continue
		}
		for _, h := range hs {
			if !typed(h) {
				return "Malformed " + name
			}
		}
		if len(hs) > 1 && singleton[name] {
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
