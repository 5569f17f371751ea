// Package transport holds what simpled puts between the sockets and sipgo: the UDP guard that
// answers malformed datagrams (sipgo drops them silently, leaving the client retransmitting)
// and STUN Binding requests on the SIP port (guard.go, stun.go); the stream listener that does
// the TLS and WebSocket handshakes, bounds connections and closes idle, stalled and oversized
// ones (stream.go, ws.go); flow tokens, the MAC-protected names of the connections and NAT
// bindings clients are reached over (flow.go); and when each UDP client was last heard from
// (liveness.go).
package transport

import (
	"bytes"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/base/logging"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// MaxHeaderLine bounds one header line of a datagram; a longer line gets 400 before sipgo
// parses anything.
const MaxHeaderLine = 8 << 10

// Verdict is the guard's judgement of one datagram.
type Verdict struct {
	Code   int    // 0: pass the datagram to sipgo; else the status to answer (if answerable)
	Reason string // reason phrase and log reason
	// RetryAfter, when above 0, is sent as Retry-After with the answer (a 503 of a limit).
	RetryAfter int
}

// Check judges one datagram of n bytes read into a buffer of bufLen bytes. It is cheap: a few
// scans of the header section, no allocation on the pass path.
func Check(data []byte, bufLen int) Verdict {
	if len(bytes.Trim(data, "\r\n\x00 \t")) == 0 {
		return Verdict{} // keepalive: sipgo handles it
	}
	eol := bytes.Index(data, crlf)
	if eol < 0 {
		return Verdict{Code: -1, Reason: "not SIP"}
	}
	if v := CheckStartLine(data[:eol]); v.Code != 0 {
		return v
	}
	if len(data) >= bufLen {
		return Verdict{Code: 513, Reason: "Message Too Large"}
	}
	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		return Verdict{Code: 400, Reason: "Truncated Message"}
	}
	return checkHeaders(data[eol+2:end+2], len(data)-(end+4), false, false)
}

// CheckStartLine judges the start line of a message (without its CRLF) as sipgo's parser
// will: a request line it cannot parse gets 400 naming the fault (416 for a Request-URI of
// another scheme, 505 for another SIP version) rather than silence; what is not SIP at all,
// and a response it cannot parse (RFC 4475 §3.1.2.19), Code -1 (dropped, never answered).
func CheckStartLine(start []byte) Verdict {
	if bytes.HasPrefix(start, []byte("SIP/")) {
		// A status line: SIP-Version SP 3DIGIT SP Reason-Phrase (RFC 3261 §7.2).
		if len(start) < 11 || start[7] != ' ' || !isDigits(start[8:11]) || len(start) > 11 && start[11] != ' ' {
			return Verdict{Code: -1, Reason: "Malformed Status-Line"}
		}
		return Verdict{}
	}
	sp1 := bytes.IndexByte(start, ' ')
	sp2 := bytes.LastIndexByte(start, ' ')
	isSIP := bytes.Contains(start, []byte(" SIP/"))
	if sp1 <= 0 || sp2 <= sp1 || !isToken(start[:sp1]) {
		if isSIP {
			return Verdict{Code: 400, Reason: "Malformed Request-Line"}
		}
		return Verdict{Code: -1, Reason: "not SIP"}
	}
	if !bytes.Equal(start[sp2+1:], []byte("SIP/2.0")) {
		if bytes.HasPrefix(start[sp2+1:], []byte("SIP/")) && bytes.IndexByte(start[sp2+1:], ' ') < 0 {
			return Verdict{Code: 505, Reason: "Version Not Supported"}
		}
		if isSIP {
			return Verdict{Code: 400, Reason: "Malformed Request-Line"}
		}
		return Verdict{Code: -1, Reason: "not SIP"}
	}
	var u sip.Uri
	uri := start[sp1+1 : sp2]
	if bytes.IndexByte(uri, ' ') >= 0 {
		return Verdict{Code: 400, Reason: "Malformed Request-URI"}
	}
	if sip.ParseUri(string(uri), &u) != nil {
		if otherScheme(uri) {
			// RFC 3261 §8.2.2.1; RFC 4475 §3.3.3: a well-formed URI of a scheme we do not serve.
			return Verdict{Code: 416, Reason: "Unsupported URI Scheme"}
		}
		return Verdict{Code: 400, Reason: "Malformed Request-URI"}
	}
	return Verdict{}
}

// otherScheme reports whether uri is an absoluteURI (RFC 3986 scheme ":" ...) of a scheme other
// than sip or sips.
func otherScheme(uri []byte) bool {
	i := bytes.IndexByte(uri, ':')
	if i <= 0 || i == len(uri)-1 {
		return false
	}
	scheme := uri[:i]
	if equalFold(scheme, "sip") || equalFold(scheme, "sips") {
		return false
	}
	for j, c := range scheme {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// CheckHeaders judges the header section of a message on a stream (the lines after the start
// line, each ending with CRLF, the empty line excluded): what sipgo's stream parser would fail
// on and close the connection for, without an answer, gets 400 naming the fault. Of a
// response (resp) only the framing is judged, and a fault is never answered (Code -1).
func CheckHeaders(headers []byte, resp bool) Verdict {
	v := checkHeaders(headers, 0, true, resp)
	if resp {
		return response(v)
	}
	return v
}

// validCSeqNumber reports whether a CSeq value begins with a sequence number sipgo takes:
// digits, at most 2^31-1, followed by white space or the end of the line (a method on a folded
// line).
func validCSeqNumber(value []byte) bool {
	v := bytes.TrimLeft(value, " \t")
	d, n := 0, uint64(0)
	for d < len(v) && v[d] >= '0' && v[d] <= '9' && d <= 10 {
		n = n*10 + uint64(v[d]-'0')
		d++
	}
	if d == 0 || d > 10 || d < len(v) && v[d] != ' ' && v[d] != '\t' {
		return false
	}
	return n <= 1<<31-1
}

// response marks a verdict on a response: never answered (Code -1).
func response(v Verdict) Verdict {
	if v.Code != 0 {
		v.Code = -1
	}
	return v
}

// checkHeaders judges header lines (each ending with CRLF). bodyLen is what a datagram holds
// after the empty line; stream is set for a stream, where Content-Length is mandatory.
func checkHeaders(headers []byte, bodyLen int, stream, resp bool) Verdict {
	cl := -1
	for len(headers) > 0 {
		i := bytes.Index(headers, crlf)
		if i < 0 {
			break
		}
		line := headers[:i]
		headers = headers[i+2:]
		if len(line) > MaxHeaderLine {
			return Verdict{Code: 400, Reason: "Header Line Too Long"}
		}
		name, value, ok := splitHeader(line)
		if !ok {
			continue
		}
		switch {
		case equalFold(name, "content-length") || equalFold(name, "l"):
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 {
				return Verdict{Code: 400, Reason: "Malformed Content-Length"}
			}
			if cl >= 0 {
				return Verdict{Code: 400, Reason: "Duplicate Content-Length"}
			}
			cl = n
			// RFC 3261 §18.3: a datagram that ends before the body does is an error.
			if !stream && n > bodyLen {
				return Verdict{Code: 400, Reason: "Content-Length Exceeds Body"}
			}
		case equalFold(name, "cseq") && !resp:
			// sipgo refuses a sequence number above 2^31-1 with a bare 400 (RFC 4475 §3.1.2.4).
			if !validCSeqNumber(value) {
				return Verdict{Code: 400, Reason: "Malformed CSeq"}
			}
		}
	}
	if stream && cl < 0 {
		// RFC 3261 §18.3, §20.14: a stream message always carries Content-Length.
		return Verdict{Code: 400, Reason: "Missing Content-Length"}
	}
	return Verdict{}
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func splitHeader(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	return bytes.TrimSpace(line[:i]), line[i+1:], true
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte("()<>@,;:\\\"/[]?={}"), c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// Reply builds a stateless error response to a request datagram from its raw Via, From, To,
// Call-ID and CSeq lines. It returns nil when the datagram is a response or has no Via: then
// there is no one to answer (RFC 3261 §18.2.2 routes responses by Via).
func Reply(data []byte, code int, reason string) []byte {
	return ReplyRetry(data, code, reason, 0)
}

// ReplyRetry is Reply with a Retry-After of retryAfter seconds when it is above 0.
func ReplyRetry(data []byte, code int, reason string, retryAfter int) []byte {
	if bytes.HasPrefix(data, []byte("SIP/")) {
		return nil
	}
	var vias, others [][]byte
	var hasToTag bool
	var to []byte
	rest := data
	if i := bytes.Index(rest, crlf); i >= 0 {
		rest = rest[i+2:]
	}
	for len(rest) > 0 {
		i := bytes.Index(rest, crlf)
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+2:]
		}
		if len(line) == 0 {
			break
		}
		if len(line) > MaxHeaderLine {
			continue
		}
		name, value, ok := splitHeader(line)
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case equalFold(name, "via") || equalFold(name, "v"):
			vias = append(vias, value)
		case equalFold(name, "to") || equalFold(name, "t"):
			to = value
			hasToTag = bytes.Contains(bytes.ToLower(value), []byte("tag="))
		case equalFold(name, "from") || equalFold(name, "f"):
			others = append(others, append([]byte("From: "), value...))
		case equalFold(name, "call-id") || equalFold(name, "i"):
			others = append(others, append([]byte("Call-ID: "), value...))
		case equalFold(name, "cseq"):
			// A CSeq that does not parse is left out: echoed, it would make the answer
			// unparseable to the client as well.
			if validCSeqNumber(value) {
				others = append(others, append([]byte("CSeq: "), value...))
			}
		}
	}
	if len(vias) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	for _, v := range vias {
		b.WriteString("Via: ")
		b.Write(v)
		b.WriteString("\r\n")
	}
	if to != nil {
		b.WriteString("To: ")
		b.Write(to)
		if !hasToTag {
			b.WriteString(";tag=" + sip.GenerateTagN(16))
		}
		b.WriteString("\r\n")
	}
	for _, o := range others {
		b.Write(o)
		b.WriteString("\r\n")
	}
	if retryAfter > 0 {
		b.WriteString("Retry-After: " + strconv.Itoa(retryAfter) + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// GuardConn wraps the UDP socket given to sipgo: datagrams that Check rejects are answered (or
// dropped when they cannot be) and logged, and never reach sipgo's parser. STUN messages
// (IsSTUN) are answered by HandleSTUN from the same socket and never reach sipgo either, nor do
// whitespace-only keepalives. Several goroutines may call ReadFrom at once.
type GuardConn struct {
	net.PacketConn
	log      *zap.Logger
	rejected atomic.Uint64
	stunDrop atomic.Uint64
	// OnReject is called for each rejected datagram with the status answered (-1: dropped).
	OnReject func(code int, reason string)
	// OnSTUN, if set, is called for each STUN datagram with HandleSTUN's outcome (STUNBinding,
	// STUNBadFingerprint, ...). It is called synchronously from ReadFrom, possibly from several
	// goroutines at once: it must be cheap and safe for concurrent use.
	OnSTUN func(outcome string)
	// OnKeepalive, if set, is called for each keepalive received from remote: kind "stun" for a
	// STUN request or indication (RFC 5626 §4.4.2), "crlf" for a whitespace-only datagram
	// (RFC 5626 §4.4.1, sent over UDP too by some clients). Same constraints as OnSTUN.
	OnKeepalive func(remote net.Addr, kind string)
	// Rate, if set, is asked for every SIP datagram before it is judged or parsed: one over
	// its source's rate is answered 503 with Retry-After (at most once a second per source,
	// built from its own Via, From, To, Call-ID and CSeq) or dropped. Set it before the first
	// ReadFrom.
	Rate *SourceRate
	// Take, if set, is offered every SIP datagram that passed the checks before ReadFrom
	// returns it: when Take reports true it handled the datagram (simpled's own UDP
	// transactions, sipgox.UDPTransactions) and sipgo never sees it. Take must not keep data
	// and must not block; it is called from several goroutines at once. Set it before the
	// first ReadFrom.
	Take func(data []byte, addr net.Addr) bool
}

// RateRetryAfter is the Retry-After, in seconds, of a 503 answered to a source over its rate:
// a bucket regains a second's worth of messages in one.
const RateRetryAfter = 1

// Keepalive kinds passed to GuardConn.OnKeepalive.
const (
	KeepaliveSTUN = "stun"
	KeepaliveCRLF = "crlf"
)

// NewGuardConn wraps c.
func NewGuardConn(c net.PacketConn, log *zap.Logger) *GuardConn {
	return &GuardConn{PacketConn: c, log: log}
}

// ReadFrom returns the next datagram Check passes that is neither STUN nor a keepalive. The path
// of a SIP datagram allocates nothing beyond what Check does.
func (g *GuardConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if IsSTUN(b[:n]) {
			g.serveSTUN(b[:n], addr)
			continue
		}
		if g.Rate != nil && n > 0 && !isKeepaliveByte(b[0]) {
			if ip, ok := AddrOf(addr); ok {
				if pass, answer := g.Rate.Allow(ip, nil, time.Now()); !pass {
					if answer {
						if res := ReplyRetry(b[:n], 503, "Service Unavailable", RateRetryAfter); res != nil {
							_, _ = g.PacketConn.WriteTo(res, addr)
						}
					}
					continue
				}
			}
		}
		v := Check(b[:n], len(b))
		if v.Code == 0 {
			// Check passes a datagram beginning with white space only when it is all white
			// space (a request or status line cannot begin with it): a keepalive, which sipgo
			// would drop (or, above 4 bytes, fail to parse).
			if n > 0 && isKeepaliveByte(b[0]) {
				if g.OnKeepalive != nil {
					g.OnKeepalive(addr, KeepaliveCRLF)
				}
				continue
			}
			if g.Take != nil && g.Take(b[:n], addr) {
				continue
			}
			return n, addr, nil
		}
		g.rejected.Add(1)
		code := v.Code
		if code > 0 {
			if res := Reply(b[:n], v.Code, v.Reason); res != nil {
				if _, werr := g.PacketConn.WriteTo(res, addr); werr != nil {
					g.log.Warn("answer to malformed datagram failed", zap.Error(werr))
				}
			} else {
				code = -1
			}
		}
		g.log.Warn("malformed datagram", zap.String(logging.KeyRemoteAddr, addr.String()),
			zap.Int(logging.KeyStatus, code), zap.String(logging.KeyReason, v.Reason), zap.Int("bytes", n))
		if g.OnReject != nil {
			g.OnReject(code, v.Reason)
		}
	}
}

func isKeepaliveByte(c byte) bool { return c == '\r' || c == '\n' || c == ' ' || c == '\t' || c == 0 }

// serveSTUN answers one STUN datagram, reports it and logs what is not a plain keepalive.
func (g *GuardConn) serveSTUN(data []byte, addr net.Addr) {
	reply, outcome := HandleSTUN(data, addr)
	if reply != nil {
		if _, err := g.PacketConn.WriteTo(reply, addr); err != nil {
			g.log.Warn("STUN response failed", zap.String(logging.KeyRemoteAddr, addr.String()), zap.Error(err))
		}
	}
	switch outcome {
	case STUNBinding, STUNIndication:
	case STUNBadFingerprint, STUNMalformed:
		g.stunDrop.Add(1)
		g.log.Warn("STUN datagram discarded", zap.String(logging.KeyRemoteAddr, addr.String()),
			zap.String(logging.KeyReason, outcome), zap.Int("bytes", len(data)))
	case STUNResponse:
		g.stunDrop.Add(1)
		g.log.Debug("STUN response discarded", zap.String(logging.KeyRemoteAddr, addr.String()))
	default:
		g.log.Debug("STUN request refused", zap.String(logging.KeyRemoteAddr, addr.String()),
			zap.String(logging.KeyReason, outcome))
	}
	if g.OnSTUN != nil {
		g.OnSTUN(outcome)
	}
	if g.OnKeepalive != nil {
		switch outcome {
		case STUNBinding, STUNIndication, STUNUnknownAttribute, STUNBadRequest, STUNServerError:
			// a well-formed STUN request or indication: the flow is alive
			g.OnKeepalive(addr, KeepaliveSTUN)
		}
	}
}

// Rejected returns how many datagrams the guard has refused.
func (g *GuardConn) Rejected() uint64 { return g.rejected.Load() }

// STUNDiscarded returns how many STUN datagrams were discarded unanswered: bad FINGERPRINT,
// malformed, responses.
func (g *GuardConn) STUNDiscarded() uint64 { return g.stunDrop.Load() }
