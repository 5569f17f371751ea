// Package sanity holds the first two stages of the chain: sanity, which refuses malformed,
// looping and oversized requests before any later stage spends work on them (RFC 3261 §16.3
// request validation, §8.2 UAS checks; RFC 4475 and RFC 5118 list what must be refused), and
// options, which answers OPTIONS addressed to the server itself (RFC 3261 §11.2) before
// authentication. Both follow the sipx.Plugin contract: each either answers a request or
// passes it on to the next stage.
package sanity

import (
	"cmp"
	"context"
	"strings"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// sanity is the first stage: it refuses what no later stage should spend work on (RFC 3261
// §16.3 request validation, §8.2 UAS checks): missing or malformed mandatory headers (400 naming
// the header: Via, From, To, Contact, a Request-URI with headers or a host that is not one, a
// Date not in GMT), CSeq method ≠ request method (400), Max-Forwards 0 (483), unsupported
// Proxy-Require (420), a body over the limit (413), an unsupported URI scheme (416). A
// malformed request is answered 400 here, before any stage could answer it for another reason
// (routing's 403 Relaying Denied, 404): RFC 4475 and RFC 5118 list what it must refuse
// (the torture cases in internal/server/testdata/torture).
type sanity struct {
	next      sipx.Handler
	maxBody   int
	isOurs    func(host string) bool
	supported []string
	log       *zap.Logger // sampled: peers drive it
}

// reject answers req with code and logs why at Warn (a peer misbehaving).
func (s *sanity) reject(ctx context.Context, tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) (int, error) {
	st := sipx.StateFrom(ctx)
	fields := []zap.Field{
		zap.String(logging.KeyMethod, string(req.Method)),
		zap.String(logging.KeyRemoteAddr, st.Source),
		zap.String(logging.KeyTransport, st.Transport),
		zap.Int(logging.KeyStatus, code),
		zap.String(logging.KeyReason, cmp.Or(reason, sipx.Reason(code))),
	}
	if id := req.CallID(); id != nil {
		fields = append(fields, zap.String(logging.KeyCallID, id.Value()))
	}
	s.log.Warn("request refused", fields...)
	return sipx.Respond(tx, req, code, reason, hdrs...)
}

// mandatory are the header fields every request must carry exactly once (RFC 3261 §8.1.1).
var mandatory = []string{"Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"}

// typedHeaders are the fields sipgo parses; a malformed one is kept as a plain header by
// sipx.NewParser and reported here.
var typedHeaders = []string{"Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact",
	"Content-Type", "Content-Length", "Route", "Record-Route"}

func (s *sanity) Name() string { return "sanity" }

func (s *sanity) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if req.SipVersion != "SIP/2.0" {
		return s.reject(ctx, tx, req, 505, "")
	}
	for _, name := range mandatory {
		if sipx.Header(req, name) == nil {
			return s.reject(ctx, tx, req, 400, "Missing "+name)
		}
	}
	if reason := sipx.Malformed(req, typedHeaders...); reason != "" {
		return s.reject(ctx, tx, req, 400, reason)
	}
	if req.From().Address.Host == "" || req.To().Address.Host == "" {
		return s.reject(ctx, tx, req, 400, "Malformed From or To")
	}
	if !validVias(req) {
		return s.reject(ctx, tx, req, 400, "Malformed Via")
	}
	if sipx.IsSIPScheme(req.Recipient.Scheme) && (!sipx.PlausibleHost(req.Recipient.Host) || len(req.Recipient.Headers) > 0) {
		// RFC 3261 §19.1.1: no headers in a Request-URI; RFC 5118 §4.10: no three colons.
		return s.reject(ctx, tx, req, 400, "Malformed Request-URI")
	}
	// sipgo upper-cases the request's method and keeps the CSeq's as written; methods are
	// case-sensitive (RFC 3261 §7.1), so this accepts "invite" against "INVITE", never a
	// different method (RFC 4475 §3.1.2.17 and §3.1.1.2).
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return s.reject(ctx, tx, req, 400, "CSeq Method Mismatch")
	}
	if d := sipx.Header(req, "Date"); d != nil && !strings.HasSuffix(d.Value(), " GMT") {
		// RFC 3261 §20.17: rfc1123-date in GMT only (RFC 4475 §3.1.2.12).
		return s.reject(ctx, tx, req, 400, "Malformed Date")
	}
	if req.CSeq().SeqNo > 1<<31-1 {
		return s.reject(ctx, tx, req, 400, "Malformed CSeq")
	}
	if strings.TrimSpace(req.CallID().Value()) == "" {
		return s.reject(ctx, tx, req, 400, "Malformed Call-ID")
	}
	for _, h := range req.Headers() {
		// Typed headers were parsed field by field; a plain one of absurd length is hostile.
		if !isTyped(h) && len(h.Value()) > transport.MaxHeaderLine {
			return s.reject(ctx, tx, req, 400, "Header Too Long")
		}
	}
	if !sipx.IsSIPScheme(req.Recipient.Scheme) {
		return s.reject(ctx, tx, req, 416, "", sip.NewHeader("Accept", "sip, sips"))
	}
	if req.MaxForwards().Val() == 0 {
		// §16.3 step 3: OPTIONS to the server itself may be answered rather than refused.
		if !(req.Method == sip.OPTIONS && s.toServer(req)) {
			return s.reject(ctx, tx, req, 483, "")
		}
	}
	if bad := sipx.Unsupported(req, "Proxy-Require", s.supported...); len(bad) > 0 {
		return s.reject(ctx, tx, req, 420, "", sip.NewHeader("Unsupported", strings.Join(bad, ", ")))
	}
	if len(req.Body()) > s.maxBody {
		return s.reject(ctx, tx, req, 413, "")
	}
	return sipx.Next(ctx, s.next, tx, req)
}

// toServer reports whether req is addressed to the server itself: no user part and a host that
// is one of our domains or addresses.
func (s *sanity) toServer(req *sip.Request) bool {
	return req.Recipient.User == "" && s.isOurs(req.Recipient.Host)
}

// validVias reports whether every Via of req names SIP/2.0, a transport and a host, and has no
// empty parameter (RFC 3261 §20.42; RFC 4475 §3.1.2.1).
func validVias(req *sip.Request) bool {
	for _, h := range req.Headers() {
		via, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		if !strings.EqualFold(via.ProtocolName, "SIP") || via.ProtocolVersion != "2.0" || via.Transport == "" ||
			!sipx.PlausibleHost(via.Host) {
			return false
		}
		for _, kv := range via.Params {
			if kv.K == "" {
				return false
			}
		}
	}
	return true
}

func isTyped(h sip.Header) bool {
	switch h.(type) {
	case *sip.FromHeader, *sip.ToHeader, *sip.ContactHeader, *sip.CallIDHeader, *sip.CSeqHeader,
		*sip.ViaHeader, *sip.MaxForwardsHeader, *sip.ContentLengthHeader, *sip.ContentTypeHeader,
		*sip.RouteHeader, *sip.RecordRouteHeader:
		return true
	}
	return false
}
