package proxy

import (
	"strconv"
	"strings"

	"github.com/simpled/simpled/cpim"
	"github.com/simpled/simpled/internal/sipx"

	"github.com/emiago/sipgo/sip"
)

// mediaType is a Content-Type's type/subtype, lower case, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// contentType returns req's Content-Type value, or "".
func contentType(req *sip.Request) string {
	if h := req.ContentType(); h != nil {
		return h.Value()
	}
	return ""
}

// encodings MESSAGE bodies may carry (linphone deflates its IMDNs).
var encodings = map[string]bool{"": true, "identity": true, "deflate": true, "gzip": true}

// checkMessage validates a MESSAGE before it is relayed or stored (RFC 3428 §7): a body needs a
// Content-Type of an allowed type (else 415 with Accept), a known Content-Encoding (else 415
// with Accept-Encoding), and a message/cpim body must parse (else 400 naming the fault). It
// returns 0 when the MESSAGE may go on. The body itself is never changed.
func (p *Proxy) checkMessage(req *sip.Request) (int, string, []sip.Header) {
	body := req.Body()
	ct := contentType(req)
	if ct == "" {
		if len(body) == 0 {
			return 0, "", nil
		}
		return 400, "Missing Content-Type", nil
	}
	mt := mediaType(ct)
	if !p.anyType && !p.messageTypes[mt] {
		return 415, "", []sip.Header{sip.NewHeader("Accept", p.acceptText)}
	}
	enc := ""
	if h := sipx.Header(req, "Content-Encoding"); h != nil {
		enc = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	if !encodings[enc] {
		return 415, "Unsupported Content-Encoding", []sip.Header{sip.NewHeader("Accept-Encoding", "identity, deflate, gzip")}
	}
	if mt == "message/cpim" && (enc == "" || enc == "identity") {
		if _, err := cpim.Parse(body); err != nil {
			return 400, sanitizeReason("Malformed CPIM: " + strings.TrimPrefix(err.Error(), "cpim: ")), nil
		}
	}
	return 0, "", nil
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

// dedupKey identifies a MESSAGE across retransmissions and re-sends: the CPIM imdn.Message-ID
// when the body has one, else Call-ID and CSeq number.
func dedupKey(req *sip.Request) string {
	if mediaType(contentType(req)) == "message/cpim" {
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
