package sipx

import (
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/emiago/sipgo/sip"
)

// A response carries the Via values of its request exactly as received (RFC 3261 §8.2.6.2,
// §18.2.2): the client matches the response to its transaction by them, and an IPv6 literal,
// a quoted or odd branch or unusual spacing must come back unchanged. sipgo keeps Via parsed
// and prints it again from its fields, which is not always what was received ("[::ffff:1.2.3.4]"
// comes back without brackets, "branch = x" as branch=" x"). The parser (NewParser) therefore
// compares each Via value with what sipgo would print and, only where they differ, remembers
// the received text next to the parsed header, in a table whose entries go with the header.
// The common Via costs one comparison and no allocation; responses look the table up only
// while it holds anything.

// rawVias maps a parsed Via to the text it was parsed from, when the two differ.
var (
	rawVias  sync.Map // weak.Pointer[sip.ViaHeader] → string
	rawCount atomic.Int64
)

// keepRawVia remembers raw as the received text of h.
func keepRawVia(h *sip.ViaHeader, raw string) {
	k := weak.Make(h)
	rawVias.Store(k, raw)
	rawCount.Add(1)
	runtime.AddCleanup(h, func(k weak.Pointer[sip.ViaHeader]) {
		rawVias.Delete(k)
		rawCount.Add(-1)
	}, k)
}

// RawVia returns the text h was parsed from when it differs from sipgo's rendering of h.
func RawVia(h *sip.ViaHeader) (string, bool) {
	if rawCount.Load() == 0 {
		return "", false
	}
	v, ok := rawVias.Load(weak.Make(h))
	if !ok {
		return "", false
	}
	return v.(string), true
}

// rfc2543Branch prefixes the branch of a Via that lacks RFC 3261's magic cookie (an RFC 2543
// client, RFC 4475 §3.1.1.1): sipgo matches transactions by branch only and refuses such a
// request with a bare 400. The received text is kept (keepRawVia), so the client gets its own
// branch back.
const rfc2543Branch = sip.RFC3261BranchMagicCookie + "-2543-"

// viaKeeper wraps sipgo's Via parser: it parses one via-parm at a time with the linear white
// space RFC 3261 §25.1 allows around "/", ";", "=" and ":" removed (sipgo's parser takes
// "SIP / 2.0 / UDP" for an empty transport, RFC 4475 §3.1.1.1), keeps the received text of each
// value that sipgo would print differently, and gives a branch without the magic cookie one.
func viaKeeper(parse sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		end := viaParmEnd(value)
		raw := strings.TrimSpace(value[:end])
		text := raw
		if end == len(value) {
			text = value // sipgo's own comma handling, as before, when there is none to do
		}
		if norm := normalizeVia(raw); norm != raw {
			text = norm
		}
		h, err := parse(name, text)
		via, ok := h.(*sip.ViaHeader)
		if !ok {
			return h, err // lenient: kept as a plain header for sanity to refuse
		}
		if err != nil && text != value {
			// A comma sipgo found inside a quoted value: not a Via we can keep apart.
			return sip.NewHeader("Via", value), nil
		}
		if err == nil && end < len(value) {
			err = commaAt(end) // more values follow: sipgo goes on after the comma
		}
		if b, ok := via.Params.Get("branch"); ok && b != "" && !strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) {
			via.Params.Add("branch", rfc2543Branch+b)
		}
		if !viaPrints(via, raw) {
			keepRawVia(via, raw)
		}
		return h, err
	}
}

// commaType is the type of sipgo's "comma detected" error, an unexported int holding where the
// comma is; sipgo's header loop resumes after it.
var commaType = func() reflect.Type {
	_, err := sip.DefaultHeadersParser()["via"]([]byte("via"), "SIP/2.0/UDP a;branch=b,SIP/2.0/UDP c")
	if err == nil {
		panic("sipx: sipgo's Via parser no longer reports commas")
	}
	return reflect.TypeOf(err)
}()

// commaAt returns sipgo's comma error for a comma at off.
func commaAt(off int) error {
	v := reflect.New(commaType).Elem()
	v.SetInt(int64(off))
	return v.Interface().(error)
}

// normalizeVia returns a via-parm with the white space around separators removed and other
// runs of white space made one space, outside quoted strings; v itself when there is nothing
// to remove (the common case: one space, between transport and host).
func normalizeVia(v string) string {
	spaces := 0
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' || v[i] == '\t' {
			spaces++
		}
	}
	if spaces == 1 {
		if i := strings.IndexAny(v, " \t"); i > 0 && i < len(v)-1 && !isViaSep(v[i-1]) && !isViaSep(v[i+1]) {
			return v
		}
	}
	return collapseSpace(v, isViaSep)
}

func isViaSep(c byte) bool { return c == '/' || c == ';' || c == '=' || c == ':' }

// viaPrints reports whether sipgo prints h as raw. It walks h's fields as
// sip.ViaHeader.Value writes them, without building the string.
func viaPrints(h *sip.ViaHeader, raw string) bool {
	s := raw
	eat := func(p string) bool {
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
		return true
	}
	if !eat(h.ProtocolName) || !eat("/") || !eat(h.ProtocolVersion) || !eat("/") || !eat(h.Transport) || !eat(" ") {
		return false
	}
	if isBareIPv6(h.Host) {
		if !eat("[") || !eat(h.Host) || !eat("]") {
			return false
		}
	} else if !eat(h.Host) {
		return false
	}
	if h.Port > 0 {
		if !eat(":") || !eatInt(&s, h.Port) {
			return false
		}
	}
	for i, kv := range h.Params {
		if i == 0 && !eat(";") || i > 0 && !eat(";") || !eat(kv.K) {
			return false
		}
		if kv.V == "" {
			continue
		}
		if strings.ContainsAny(kv.V, " \t") {
			if !eat("=\"") || !eat(kv.V) || !eat("\"") {
				return false
			}
		} else if !eat("=") || !eat(kv.V) {
			return false
		}
	}
	return s == ""
}

// isBareIPv6 mirrors sipgo's test for a host it prints in brackets (sip.uriIP): an address
// net.ParseIP reads that is not IPv4 or IPv4-mapped, and, as sipgo's loop over indices has
// it, no longer than 46 bytes.
func isBareIPv6(host string) bool {
	if len(host) > '.' {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() == nil
}

func eatInt(s *string, n int) bool {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	d := buf[i:]
	if len(*s) < len(d) || (*s)[:len(d)] != string(d) {
		return false
	}
	*s = (*s)[len(d):]
	return true
}

// viaHeader returns the Via to put in a response for h, a Via of the request: its received
// text when sipgo would print it otherwise, else a clone.
func viaHeader(h sip.Header) sip.Header {
	if v, ok := h.(*sip.ViaHeader); ok {
		if raw, ok := RawVia(v); ok {
			return sip.NewHeader("Via", raw)
		}
	}
	return sip.HeaderClone(h)
}

// ForwardVias makes fwd, a clone of req about to be forwarded whose top Via already got
// received and rport, carry req's Via values as received wherever sipgo would print them
// otherwise (RFC 3261 §16.6 step 8: a proxy adds its own Via and alters no other; an RFC 2543
// branch goes on as the client wrote it), the top one with received and rport (addReceived).
// The Vias move after the other headers, in their order. Requests whose Vias sipgo prints as
// received are left alone.
func ForwardVias(req, fwd *sip.Request, source string) {
	if rawCount.Load() == 0 {
		return
	}
	orig := Headers(req, "Via")
	raws := make([]string, len(orig))
	some := false
	for i, h := range orig {
		if v, ok := h.(*sip.ViaHeader); ok {
			raws[i], ok = RawVia(v)
			some = some || ok
		}
	}
	clones := Headers(fwd, "Via")
	if !some || len(clones) != len(orig) {
		return
	}
	for range clones {
		fwd.RemoveHeader("Via")
	}
	host, port, err := net.SplitHostPort(source)
	for i, h := range clones {
		switch {
		case raws[i] == "":
			fwd.AppendHeader(h)
		case i == 0 && err == nil:
			fwd.AppendHeader(sip.NewHeader("Via", addReceived(raws[i], orig[0].(*sip.ViaHeader), host, port)))
		default:
			fwd.AppendHeader(sip.NewHeader("Via", raws[i]))
		}
	}
}

// addReceived returns raw, the received text of a top Via, with rport given port when it has
// no value, and received=host appended when received is set or sent-by differs from host
// (RFC 3581 §4, RFC 3261 §18.2.1), as sipgo would for a parsed Via. via is its parsed form.
func addReceived(raw string, via *sip.ViaHeader, host, port string) string {
	end := viaParmEnd(raw)
	first, rest := raw[:end], raw[end:]
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		first = setRport(first, port)
		return first + ";received=" + host + rest
	}
	if !via.Params.Has("received") && !strings.EqualFold(strings.Trim(via.Host, "[]"), host) {
		return first + ";received=" + host + rest
	}
	return raw
}

// viaParmEnd returns where the first via-parm of a Via value ends: at the first comma outside
// a quoted string, or at its end.
func viaParmEnd(v string) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return i
			}
		}
	}
	return len(v)
}

// setRport gives the valueless rport parameter of a via-parm the value port.
func setRport(parm, port string) string {
	for i := 0; i < len(parm); i++ {
		if parm[i] != ';' {
			continue
		}
		j := i + 1
		for j < len(parm) && (parm[j] == ' ' || parm[j] == '\t') {
			j++
		}
		if len(parm)-j < 5 || !strings.EqualFold(parm[j:j+5], "rport") {
			continue
		}
		k := j + 5
		for k < len(parm) && (parm[k] == ' ' || parm[k] == '\t') {
			k++
		}
		if k == len(parm) || parm[k] == ';' {
			return parm[:j+5] + "=" + port + parm[j+5:]
		}
	}
	return parm
}
