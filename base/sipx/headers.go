package sipx

import (
	"errors"
	"iter"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// compactNames lists header names that have a compact form sipgo keeps as a plain header
// (RFC 3261 §7.3.3 and extensions) with that form, so lookups find both spellings.
var compactNames = [...]struct{ full, compact string }{
	{"Supported", "k"},
	{"Event", "o"},
	{"Allow-Events", "u"},
	{"Subject", "s"},
	{"Content-Encoding", "e"},
	{"Accept-Contact", "a"},
	{"Reject-Contact", "j"},
	{"Session-Expires", "x"},
}

// Message is what the header look-ups need of a request or response.
type Message interface {
	Headers() []sip.Header
}

// compactOf returns the compact form of a header name, or "".
func compactOf(name string) string {
	for _, c := range compactNames {
		if len(c.full) == len(name) && strings.EqualFold(c.full, name) {
			return c.compact
		}
	}
	return ""
}

// headerName is a name looked up in a message: its full form as asked and its compact form.
type headerName struct{ full, compact string }

func lookup(name string) headerName { return headerName{full: name, compact: compactOf(name)} }

// is reports whether h bears the name, in either form, in any case.
func (n headerName) is(h sip.Header) bool {
	hn := h.Name()
	return len(hn) == len(n.full) && strings.EqualFold(hn, n.full) ||
		len(hn) == len(n.compact) && n.compact != "" && strings.EqualFold(hn, n.compact)
}

// Headers returns every header of msg named name, in either its full or its compact form,
// in order. name is case-insensitive.
//
// Use it (and Header, Count) instead of sipgo's GetHeaders and GetHeader: those lower-case
// the name of every header of the message on every call, an allocation per header whose name
// is not one of the dozen sipgo knows (Event, Expires, User-Agent, SIP-If-Match...), which
// profiles of PUBLISH showed as a tenth of the CPU. Headers allocates the slice it returns
// when a header is found: where only the number or the first matters, Count and Header do
// not.
func Headers(msg Message, name string) []sip.Header {
	n := lookup(name)
	var out []sip.Header
	for _, h := range msg.Headers() {
		if n.is(h) {
			out = append(out, h)
		}
	}
	return out
}

// Header returns the first header of msg named name (full or compact form, case-insensitive),
// or nil.
func Header(msg Message, name string) sip.Header {
	n := lookup(name)
	for _, h := range msg.Headers() {
		if n.is(h) {
			return h
		}
	}
	return nil
}

// All yields every header of msg named name (full or compact form, case-insensitive), in
// order, without collecting them as Headers does.
func All(msg Message, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		n := lookup(name)
		for _, h := range msg.Headers() {
			if n.is(h) && !yield(h) {
				return
			}
		}
	}
}

// Count returns how many headers of msg are named name (full or compact form,
// case-insensitive).
func Count(msg Message, name string) int {
	n, count := lookup(name), 0
	for _, h := range msg.Headers() {
		if n.is(h) {
			count++
		}
	}
	return count
}

// AddressList returns the values of every name header of msg (Path, Record-Route, Route)
// split into one name-addr each, in order: commas inside quotes and angle brackets do not
// split. Values that could not be copied into another header safely (Sanitize) are dropped.
func AddressList(msg Message, name string) []string {
	var out []string
	for _, h := range Headers(msg, name) {
		v := h.Value()
		depth, quoted, start := 0, false, 0
		add := func(s string) {
			if s = strings.TrimSpace(s); s != "" && Sanitize(s) {
				out = append(out, s)
			}
		}
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"' && (i == 0 || v[i-1] != '\\'):
				quoted = !quoted
			case quoted:
			case c == '<':
				depth++
			case c == '>':
				depth--
			case c == ',' && depth == 0:
				add(v[start:i])
				start = i + 1
			}
		}
		add(v[start:])
	}
	return out
}

// Tokens returns the comma-separated values of every header named name (e.g. Supported,
// Require, Allow), trimmed, empty values skipped.
func Tokens(msg Message, name string) []string {
	var out []string
	eachToken(msg, name, func(t string) bool {
		out = append(out, t)
		return true
	})
	return out
}

// eachToken calls fn with each comma-separated value of every header named name, trimmed,
// empty values skipped, until fn returns false.
func eachToken(msg Message, name string, fn func(string) bool) {
	n := lookup(name)
	for _, h := range msg.Headers() {
		if !n.is(h) {
			continue
		}
		for rest, more := h.Value(), true; more; {
			var v string
			v, rest, more = strings.Cut(rest, ",")
			if v = strings.TrimSpace(v); v != "" && !fn(v) {
				return
			}
		}
	}
}

// HasToken reports whether a header named name lists token (case-insensitive).
func HasToken(msg Message, name, token string) bool {
	found := false
	eachToken(msg, name, func(t string) bool {
		found = strings.EqualFold(t, token)
		return !found
	})
	return found
}

// Unsupported returns the option tags of header name (Require or Proxy-Require) that are not
// in supported, for a 420 Bad Extension answer with Unsupported.
func Unsupported(msg Message, name string, supported ...string) []string {
	var out []string
	eachToken(msg, name, func(t string) bool {
		for _, s := range supported {
			if strings.EqualFold(t, s) {
				return true
			}
		}
		out = append(out, t)
		return true
	})
	return out
}

// ErrBadDeltaSeconds reports an Expires value that is not a non-negative integer.
var ErrBadDeltaSeconds = errors.New("sipx: not delta-seconds")

// ParseDeltaSeconds parses an Expires header or expires parameter value (RFC 3261 §20.19):
// decimal digits only; values above 2^32-1 are taken as 2^32-1, as §20.19 requires.
func ParseDeltaSeconds(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, ErrBadDeltaSeconds
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadDeltaSeconds
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > math.MaxUint32 {
		return math.MaxUint32, nil //nolint:nilerr // only digits: overflow means "very large"
	}
	return uint32(v), nil
}

// Expires returns the request's Expires header value: ok false when absent, err when it is not
// delta-seconds or appears twice.
func Expires(msg Message) (v uint32, ok bool, err error) {
	var first sip.Header
	n := lookup("Expires")
	for _, h := range msg.Headers() {
		if !n.is(h) {
			continue
		}
		if first != nil {
			return 0, true, ErrBadDeltaSeconds
		}
		first = h
	}
	if first == nil {
		return 0, false, nil
	}
	v, err = ParseDeltaSeconds(first.Value())
	return v, true, err
}

// AOR returns the address-of-record of a SIP URI: "user@host" with the host lower-cased (the
// user part is case-sensitive, RFC 3261 §19.1.4), or "host" when there is no user part.
func AOR(u *sip.Uri) string {
	host := strings.ToLower(u.Host)
	if u.User == "" {
		return host
	}
	return u.User + "@" + host
}

// IsSIPScheme reports whether scheme is sip or sips (case-insensitive).
func IsSIPScheme(scheme string) bool {
	return strings.EqualFold(scheme, "sip") || strings.EqualFold(scheme, "sips")
}

// Sanitize reports whether v is safe to copy into another message's header: no CR, LF or NUL
// (sipgo no longer validates against CRLF injection).
func Sanitize(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00")
}

// PlausibleHost reports whether host, as sipgo keeps a URI or Via host (an IPv6 literal with
// or without its brackets), can name a host at all: an IP literal that parses (RFC 5118 §4.10:
// not "2001:db8:::192.0.2.1"), or a name of letters, digits, "-", "." and "_" (more lenient
// than ValidHost: Windows and SRV-style names carry underscores).
func PlausibleHost(host string) bool {
	if strings.HasPrefix(host, "[") {
		return strings.HasSuffix(host, "]") && net.ParseIP(host[1:len(host)-1]) != nil
	}
	if strings.IndexByte(host, ':') >= 0 {
		return net.ParseIP(host) != nil
	}
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// ValidHost reports whether host is an IP literal (IPv6 in brackets or not) or a syntactically
// valid host name (RFC 3261 §25.1 hostname). sipgo's URI parser accepts hosts such as "::" or
// "" that no request can be routed to.
func ValidHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	if strings.HasPrefix(host, "[") {
		return strings.HasSuffix(host, "]") && net.ParseIP(host[1:len(host)-1]) != nil
	}
	if net.ParseIP(host) != nil {
		return !strings.Contains(host, ":") // a bare IPv6 literal must be bracketed in a URI
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
