// Package msgcheck holds what simpled requires of a MESSAGE (RFC 3428) before it relays,
// stores or sends one, whoever sent it: a body of an allowed Content-Type with a known
// Content-Encoding (RFC 3428 §7: 415 otherwise), a message/cpim body that parses and whose From
// names no one but the identity the request was accepted under (RFC 3862 §7), and the key that
// tells a re-sent MESSAGE from a new one (offline store-and-forward keeps one copy). The proxy
// checks every MESSAGE it relays with it; offline checks the messages simpled sends itself
// (the admin API).
package msgcheck

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/cpim"

	"github.com/emiago/sipgo/sip"
)

// Options configure Rules. Domains and IsOurs are required.
type Options struct {
	Domains []string
	// IsOurs reports whether a host (domain or address) is this server.
	IsOurs func(host string) bool
	// Types are the Content-Types allowed besides text/plain, message/cpim and
	// message/imdn+xml, which always are. "*" allows any type.
	Types []string
	// MaxBodySize bounds an inflated CPIM body; 0 means 64 KiB.
	MaxBodySize int
}

// Rules checks MESSAGEs against the allowed types and the local domains. Create it with New;
// it is safe for concurrent use.
type Rules struct {
	domains      map[string]bool
	defaultDom   string
	isOurs       func(string) bool
	messageTypes map[string]bool
	anyType      bool
	acceptText   string
	maxBody      int
}

// New returns the rules of o.
func New(o Options) *Rules {
	r := &Rules{domains: map[string]bool{}, isOurs: o.IsOurs, maxBody: o.MaxBodySize,
		messageTypes: map[string]bool{"text/plain": true, "message/cpim": true, "message/imdn+xml": true}}
	if r.maxBody <= 0 {
		r.maxBody = 64 << 10
	}
	if r.isOurs == nil {
		r.isOurs = func(string) bool { return false }
	}
	for _, d := range o.Domains {
		r.domains[strings.ToLower(d)] = true
	}
	if len(o.Domains) > 0 {
		r.defaultDom = strings.ToLower(o.Domains[0])
	}
	for _, t := range o.Types {
		if t == "*" || t == "*/*" {
			r.anyType = true
			continue
		}
		r.messageTypes[strings.ToLower(strings.TrimSpace(t))] = true
	}
	types := make([]string, 0, len(r.messageTypes))
	for t := range r.messageTypes {
		types = append(types, t)
	}
	slices.Sort(types)
	r.acceptText = strings.Join(types, ", ")
	return r
}

// mediaType is a Content-Type's type/subtype, lower case, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// ContentType returns req's Content-Type value, or "".
func ContentType(req *sip.Request) string {
	if h := req.ContentType(); h != nil {
		return h.Value()
	}
	return ""
}

// encodings MESSAGE bodies may carry (linphone deflates its IMDNs).
var encodings = map[string]bool{"": true, "identity": true, "deflate": true, "gzip": true}

// Check validates a MESSAGE accepted under st's rule before it is relayed or stored (RFC 3428 §7): a body needs a
// Content-Type of an allowed type (else 415 with Accept), a known Content-Encoding (else 415
// with Accept-Encoding), and a message/cpim body must parse (else 400 naming the fault) and
// name as its sender the identity the request was accepted under (else 403, cpimSender). It
// returns 0 when the MESSAGE may go on. The body itself is never changed.
func (r *Rules) Check(st *sipx.State, req *sip.Request) (int, string, []sip.Header) {
	body := req.Body()
	ct := ContentType(req)
	if ct == "" {
		if len(body) == 0 {
			return 0, "", nil
		}
		return 400, "Missing Content-Type", nil
	}
	mt := mediaType(ct)
	if !r.anyType && !r.messageTypes[mt] {
		return 415, "", []sip.Header{sip.NewHeader("Accept", r.acceptText)}
	}
	enc := ""
	if h := sipx.Header(req, "Content-Encoding"); h != nil {
		enc = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	if !encodings[enc] {
		return 415, "Unsupported Content-Encoding", []sip.Header{sip.NewHeader("Accept-Encoding", "identity, deflate, gzip")}
	}
	if mt == "message/cpim" {
		if enc != "" && enc != "identity" {
			var err error
			if body, err = inflate(enc, body, r.maxBody); err != nil {
				return 400, "Malformed Content-Encoding", nil
			}
		}
		m, err := cpim.Parse(body)
		if err != nil {
			return 400, sanitizeReason("Malformed CPIM: " + strings.TrimPrefix(err.Error(), "cpim: ")), nil
		}
		if !r.cpimSender(st, req, m.From()) {
			return 403, "CPIM From Is Not The Sender", nil
		}
	}
	return 0, "", nil
}

// cpimSender reports whether from, a CPIM From header (RFC 3862 §3.3.2, "Name <URI>"), names
// the sender the request was accepted as (RFC 3862 §7: the CPIM From is what a recipient
// shows, so it must not say more than SIP proved): the authenticated user; for inbound
// federation an address of the SIP From's own domain; in a dialog or with auth.mode off the
// SIP From itself. A trusted peer vouches for its own. An absent From claims nobody.
func (r *Rules) cpimSender(st *sipx.State, req *sip.Request, from string) bool {
	if st.Rule == sipx.RulePeer || from == "" {
		return true
	}
	user, host, ok := cpimAddress(from)
	if !ok {
		return false
	}
	sipFrom := req.From().Address
	switch st.Rule {
	case sipx.RuleUser:
		return user+"@"+r.Canonical(host) == st.AuthUser
	case sipx.RuleFederation:
		return strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(sipFrom.Host, "."))
	}
	return user == sipFrom.User && r.Canonical(host) == r.Canonical(sipFrom.Host)
}

// Canonical is the domain host stands for here: a local domain without its trailing dot, the
// first domain for one of our addresses, else host in lower case.
func (r *Rules) Canonical(host string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if !r.domains[h] && r.isOurs(h) {
		return r.defaultDom
	}
	return h
}

// FromAOR is the From URI of req as user@host, host canonical.
func (r *Rules) FromAOR(req *sip.Request) string {
	h := req.From()
	if h == nil {
		return ""
	}
	host := r.Canonical(h.Address.Host)
	if h.Address.User == "" {
		return host
	}
	return h.Address.User + "@" + host
}

// cpimAddress returns the user and host of a CPIM address ("Name" <URI>, or a bare URI) whose
// URI is sip:, sips:, im: or pres: (RFC 3860).
func cpimAddress(v string) (user, host string, ok bool) {
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return "", "", false
		}
		v = v[i+1 : i+j]
	}
	v = strings.TrimSpace(v)
	scheme, rest, found := strings.Cut(v, ":")
	if !found {
		return "", "", false
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips":
		var u sip.Uri
		if err := sip.ParseUri(v, &u); err != nil {
			return "", "", false
		}
		return u.User, u.Host, u.User != "" && u.Host != ""
	case "im", "pres":
		rest, _, _ = strings.Cut(rest, "?")
		user, host, found = strings.Cut(rest, "@")
		return user, host, found && user != "" && host != ""
	}
	return "", "", false
}

// inflate decodes a deflate or gzip body, refusing one that inflates beyond limit bytes.
func inflate(enc string, body []byte, limit int) ([]byte, error) {
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		r = zr
	default: // deflate: zlib framing (RFC 9110 §8.4.1.2), raw deflate as some clients send
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, errors.New("msgcheck: inflated body too large")
	}
	return out, nil
}

// sanitizeReason makes text safe as a reason phrase: one line of printable characters, bounded.
func sanitizeReason(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > 120 {
		b = b[:120]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// DedupKey identifies a MESSAGE across retransmissions and re-sends: the CPIM imdn.Message-ID
// when the body has one, else Call-ID and CSeq number.
func DedupKey(req *sip.Request) string {
	if mediaType(ContentType(req)) == "message/cpim" {
		if m, err := cpim.Parse(req.Body()); err == nil {
			if id := m.MessageID(); id != "" {
				return "imdn:" + id
			}
		}
	}
	key := ""
	if c := req.CallID(); c != nil {
		key = c.Value()
	}
	if cs := req.CSeq(); cs != nil {
		key += " " + strconv.FormatUint(uint64(cs.SeqNo), 10)
	}
	return key
}
