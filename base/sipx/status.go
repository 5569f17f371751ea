package sipx

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// reasons is the status table: the reason phrase simpled sends for each code it uses.
var reasons = map[int]string{
	100: "Trying",
	180: "Ringing",
	200: "OK",
	202: "Accepted",
	400: "Bad Request",
	401: "Unauthorized",
	403: "Forbidden",
	404: "Not Found",
	405: "Method Not Allowed",
	407: "Proxy Authentication Required",
	408: "Request Timeout",
	412: "Conditional Request Failed",
	413: "Request Entity Too Large",
	415: "Unsupported Media Type",
	416: "Unsupported URI Scheme",
	420: "Bad Extension",
	421: "Extension Required",
	423: "Interval Too Brief",
	480: "Temporarily Unavailable",
	481: "Call/Transaction Does Not Exist",
	482: "Loop Detected",
	483: "Too Many Hops",
	484: "Address Incomplete",
	486: "Busy Here",
	487: "Request Terminated",
	489: "Bad Event",
	500: "Server Internal Error",
	501: "Not Implemented",
	503: "Service Unavailable",
	504: "Server Time-out",
	505: "Version Not Supported",
	513: "Message Too Large",
	603: "Decline",
}

// Reason returns the standard reason phrase for code.
func Reason(code int) string {
	if r, ok := reasons[code]; ok {
		return r
	}
	switch {
	case code < 200:
		return "Session Progress"
	case code < 300:
		return "OK"
	case code < 400:
		return "Redirect"
	case code < 500:
		return "Client Error"
	case code < 600:
		return "Server Error"
	}
	return "Global Failure"
}

// RetryAfterSeconds is the Retry-After value sent with 503 answers caused by the store.
const RetryAfterSeconds = "5"

// Routing errors: a next hop that cannot be reached. The resolver (package dns) and the
// sending of branches (package delivery) wrap them, so ErrorStatus answers for both.
var (
	// ErrNoRoute: the next hop cannot exist or cannot be reached from here (an unknown host,
	// a .invalid name, no listener for its transport): 404 No Route To Destination.
	ErrNoRoute = errors.New("no route to next hop")
	// ErrDomainNotFound: DNS said for certain that a domain has no SIP server: 404 Domain
	// Not Found (asking again cannot help).
	ErrDomainNotFound = errors.New("domain has no SIP server")
	// ErrNextHopUnresolvable: a DNS lookup failed for now: 503 Next Hop Unresolvable.
	ErrNextHopUnresolvable = errors.New("next hop unresolvable")
)

// ErrorStatus maps an error returned by a store or a stage to the SIP answer for it. It is the
// one table from errors to statuses: stages call it rather than choosing codes themselves.
func ErrorStatus(err error) (code int, reason string) {
	switch {
	case err == nil:
		return 200, Reason(200)
	// Routing errors first: a failed DNS lookup also wraps its cause (a deadline, say).
	case errors.Is(err, ErrDomainNotFound):
		return 404, "Domain Not Found"
	case errors.Is(err, ErrNoRoute):
		return 404, "No Route To Destination"
	case errors.Is(err, ErrNextHopUnresolvable):
		return 503, "Next Hop Unresolvable"
	case errors.Is(err, storage.ErrNotFound):
		return 404, Reason(404)
	case errors.Is(err, storage.ErrStale):
		// RFC 3261 §10.3 step 7: "the registrar MUST ... return 500".
		return 500, "Stale CSeq"
	case errors.Is(err, storage.ErrTooManyBindings):
		return 403, "Too Many Contacts"
	case errors.Is(err, storage.ErrETagMismatch):
		return 412, Reason(412)
	case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return 503, "Store Unavailable"
	}
	return 500, Reason(500)
}

// NewResponse builds a response to req with code and reason (the table's phrase when reason is
// empty) and the given extra headers, as sip.NewResponseFromRequest does (Via, From, To,
// Call-ID, CSeq, Record-Route where RFC 3261 Table 3 wants it, rport/received per RFC 3581, a To
// tag; the Via values as received, see rawvia.go) but with a To tag from math/rand/v2's
// ChaCha8 generator instead of a crypto/rand UUID: a getrandom syscall per answer was a fifth
// of the registrar's cost. RFC 3261 §19.3 asks for 32
// random bits; the tag has 64.
func NewResponse(req *sip.Request, code int, reason string, hdrs ...sip.Header) *sip.Response {
	if reason == "" {
		reason = Reason(code)
	}
	res := sip.NewResponse(code, reason) // SIP/2.0, also to a 505's SIP/7.0 request
	if req.Method != sip.REGISTER && !req.IsAck() &&
		(code >= 180 && code < 300 || req.IsInvite() && code > 100 && code < 200) {
		copyHeaders("Record-Route", req, res)
	}
	a := new(answerHeaders)
	responseVias(req, res, a)
	if h := req.From(); h != nil {
		a.from = sip.FromHeader{DisplayName: h.DisplayName, Address: *h.Address.Clone(), Params: room(a.fromKV[:], h.Params)}
		res.AppendHeader(&a.from)
	}
	if h := req.To(); h != nil {
		a.to = sip.ToHeader{DisplayName: h.DisplayName, Address: *h.Address.Clone(), Params: room(a.toKV[:], h.Params)}
		if code > 100 && !a.to.Params.Has("tag") {
			a.to.Params.Add("tag", strconv.FormatUint(rand.Uint64(), 36))
		}
		res.AppendHeader(&a.to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(sip.HeaderClone(h)) // sipgo shares it: a Call-ID is never modified
	}
	if h := req.CSeq(); h != nil {
		a.cseq = *h
		res.AppendHeader(&a.cseq)
	}
	if code == 100 {
		copyHeaders("Timestamp", req, res)
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	res.AppendHeader(&a.length) // Content-Length: 0, which JsSIP and baresip rely on
	res.SetBody(nil)
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	return res
}

// ResponseVias appends to res, a response to req, req's Via values as received, the top one
// with received and rport (topVia). A proxy relaying a response uses it in place of the
// values the next hop sent back, which are sipgo's rendering of them.
func ResponseVias(req *sip.Request, res *sip.Response) {
	responseVias(req, res, nil)
}

// answerHeaders holds the copies NewResponse makes of a request's headers, with room for
// their usual parameters (Via: branch, rport, received; From and To: a tag), so that one
// allocation holds them all: they live as long as the response does.
type answerHeaders struct {
	via    sip.ViaHeader
	viaKV  [3]sip.HeaderKV
	from   sip.FromHeader
	fromKV [1]sip.HeaderKV
	to     sip.ToHeader
	toKV   [1]sip.HeaderKV
	cseq   sip.CSeqHeader
	length sip.ContentLengthHeader
}

// room returns params copied into buf, or into a new array when buf is too short or params nil
// (sipgo's clone keeps nil as nil).
func room(buf []sip.HeaderKV, params sip.HeaderParams) sip.HeaderParams {
	if params == nil {
		return nil
	}
	return append(buf[:0], params...)
}

// responseVias is ResponseVias, the top Via copied into a (nil: a copy of its own).
func responseVias(req *sip.Request, res *sip.Response, a *answerHeaders) {
	n, top := lookup("Via"), true
	for _, h := range req.Headers() {
		if !n.is(h) {
			continue
		}
		if top {
			res.AppendHeader(topVia(req, h, a))
			top = false
		} else {
			res.AppendHeader(viaHeader(h))
		}
	}
}

// topVia returns the top Via of a response to req: h, req's top Via, as received, with rport
// answered with the source port and received with the source address (RFC 3581 §4), and
// received also whenever sent-by names another host than the source (RFC 3261 §18.2.1).
func topVia(req *sip.Request, h sip.Header, a *answerHeaders) sip.Header {
	via, ok := h.(*sip.ViaHeader)
	if !ok {
		return sip.HeaderClone(h)
	}
	host, port, err := net.SplitHostPort(req.Source())
	if raw, ok := RawVia(via); ok {
		if err == nil {
			raw = addReceived(raw, via, host, port)
		}
		return sip.NewHeader("Via", raw)
	}
	// sipgo's Clone, with room for rport and received in the one copy of the parameters.
	if a != nil {
		a.via = *via
		a.via.Params = append(a.viaKV[:0], via.Params...)
		via = &a.via
	} else {
		c := *via
		c.Params = append(make(sip.HeaderParams, 0, len(via.Params)+2), via.Params...)
		via = &c
	}
	if err == nil {
		if v, ok := via.Params.Get("rport"); ok && v == "" {
			via.Params.Add("rport", port)
			via.Params.Add("received", host)
		} else if !via.Params.Has("received") && !strings.EqualFold(strings.Trim(via.Host, "[]"), host) {
			via.Params.Add("received", host)
		}
	}
	return via
}

// Respond sends a response to req on tx and returns its code, for a stage to return.
func Respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) (int, error) {
	return RespondWith(tx, NewResponse(req, code, reason, hdrs...))
}

// RespondWith sends res on tx and returns its code.
func RespondWith(tx sip.ServerTransaction, res *sip.Response) (int, error) {
	if err := tx.Respond(res); err != nil {
		return res.StatusCode, err
	}
	return res.StatusCode, nil
}

// RespondError answers req with the status ErrorStatus gives for err (with Retry-After on 503)
// and returns that status together with err, so the top of the chain logs it once.
func RespondError(tx sip.ServerTransaction, req *sip.Request, err error) (int, error) {
	code, reason := ErrorStatus(err)
	var hdrs []sip.Header
	if code == 503 {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", RetryAfterSeconds))
	}
	status, rerr := Respond(tx, req, code, reason, hdrs...)
	if rerr != nil {
		return status, errors.Join(err, rerr)
	}
	return status, err
}

// copyHeaders appends clones of req's name headers to res (sip.CopyHeaders without its
// per-header allocations, see Headers).
func copyHeaders(name string, req *sip.Request, res *sip.Response) {
	n := lookup(name)
	for _, h := range req.Headers() {
		if n.is(h) {
			res.AppendHeader(sip.HeaderClone(h))
		}
	}
}

// ReasonText makes an error message fit for a reason phrase: control characters become
// spaces (a phrase is one header line), and it is cut at 100 bytes (on a character
// boundary).
func ReasonText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 100 {
		s = strings.ToValidUTF8(s[:100], "")
	}
	return s
}
