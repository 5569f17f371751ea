package servertest

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Request templates. In each, {local} and {transport} are filled in by Wire.Send, {tp} by
// Wire.SendTP; extra lines are inserted before the body's headers.

// FirstLine is a message's start line.
func FirstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// branchSeq numbers the branches of the requests tests write; parallel tests share it.
var branchSeq atomic.Int64

func init() { branchSeq.Store(time.Now().UnixNano()) }

// NextBranch returns a fresh branch suffix.
func NextBranch() string { return strconv.FormatInt(branchSeq.Add(1), 36) }

// Register is a REGISTER template for user in example.test; extra lines are inserted before
// Content-Length.
func Register(user, callID string, cseq int, extra ...string) string {
	msg := "REGISTER sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + user + "@example.test>;tag=t" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\n"
	for _, e := range extra {
		msg += e + "\n"
	}
	return msg + "Content-Length: 0\n\n"
}

// NATRegister is a REGISTER from a client behind a NAT: its Via and Contact name the private
// address it believes it has (127.0.0.2:5099, where nothing listens), while its packets come
// from the wire's own address.
func NATRegister(user, callID, tp string, extra ...string) string {
	msg := "REGISTER sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/" + strings.ToUpper(tp) + " 127.0.0.2:5099;branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + user + "@example.test>;tag=t" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: 1 REGISTER\n"
	hasContact := false
	for _, e := range extra {
		hasContact = hasContact || strings.HasPrefix(e, "Contact:")
		msg += e + "\n"
	}
	if !hasContact {
		msg += "Contact: <sip:" + user + "@127.0.0.2:5099;transport=" + tp + ">\n"
	}
	return msg + "Expires: 600\nContent-Length: 0\n\n"
}

// Message is a MESSAGE template from user from to user to in example.test; extra lines go
// before Content-Type. Its line ends are CRLF already, so that Send leaves the body
// byte-exact.
func Message(from, to, callID, ctype, body string, extra ...string) string {
	msg := "MESSAGE sip:" + to + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + from + "@example.test>;tag=f" + callID + "\n" +
		"To: <sip:" + to + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: 1 MESSAGE\n"
	for _, e := range extra {
		msg += e + "\n"
	}
	if ctype != "" {
		msg += "Content-Type: " + ctype + "\n"
	}
	msg += "Content-Length: " + strconv.Itoa(len(body)) + "\n\n"
	return strings.ReplaceAll(msg, "\n", "\r\n") + body
}

// Invite is an INVITE template with an SDP-less body.
func Invite(from, to, callID string, cseq int, extra ...string) string {
	msg := "INVITE sip:" + to + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + from + "@example.test>;tag=f" + callID + "\n" +
		"To: <sip:" + to + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " INVITE\n" +
		"Contact: <sip:" + from + "@{local}>\n"
	for _, e := range extra {
		msg += e + "\n"
	}
	return msg + "Content-Length: 0\n\n"
}

// InDialog builds a request within the dialog a 2xx set up, from the caller's side: Request-URI
// the callee's Contact, Route the reversed Record-Route.
func InDialog(method string, res *sip.Response, cseq int, fromTag string) string {
	contact := res.Contact()
	msg := method + " " + contact.Address.String() + " SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: " + res.From().Value() + "\n" +
		"To: " + res.To().Value() + "\n" +
		"Call-ID: " + res.CallID().Value() + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " " + method + "\n"
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		msg += "Route: " + rr[i].Value() + "\n"
	}
	return msg + "Content-Length: 0\n\n"
}

// PIDFDoc is a minimal PIDF document for user in example.test with one tuple; extra elements
// go before it.
func PIDFDoc(user, tuple, basic string, extra ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:` + user + `@example.test">` + "\n" +
		strings.Join(extra, "\n") +
		`<tuple id="` + tuple + `"><status><basic>` + basic + `</basic></status><contact>sip:` + user + `@example.test</contact></tuple>` + "\n" +
		`</presence>` + "\n"
}

// Publish is a PUBLISH of user's presence. etag "" is an initial publication; expires < 0
// leaves Expires out; extra lines go before Content-Type.
func Publish(user, callID string, cseq int, etag string, expires int, body string, extra ...string) string {
	msg := "PUBLISH sip:" + user + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + user + "@example.test>;tag=p" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " PUBLISH\n" +
		"Event: presence\n"
	if etag != "" {
		msg += "SIP-If-Match: " + etag + "\n"
	}
	if expires >= 0 {
		msg += "Expires: " + strconv.Itoa(expires) + "\n"
	}
	for _, e := range extra {
		msg += e + "\n"
	}
	if body != "" {
		msg += "Content-Type: application/pidf+xml\n"
	}
	return msg + "Content-Length: " + strconv.Itoa(len(strings.ReplaceAll(body, "\n", "\r\n"))) + "\n\n" + body
}

// Subscribe is an initial SUBSCRIBE from watcher (user@domain) to user@example.test.
func Subscribe(watcher, user, callID string, cseq int, event string, expires int, extra ...string) string {
	msg := "SUBSCRIBE sip:" + user + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:" + watcher + ">;tag=w" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " SUBSCRIBE\n" +
		"Contact: <sip:w@{local};transport={tp}>\n" +
		"Event: " + event + "\n"
	if expires >= 0 {
		msg += "Expires: " + strconv.Itoa(expires) + "\n"
	}
	for _, e := range extra {
		msg += e + "\n"
	}
	return msg + "Content-Length: 0\n\n"
}

// Resubscribe is a SUBSCRIBE within the dialog the 200 res created.
func Resubscribe(res *sip.Response, cseq, expires int) string {
	contact := res.Contact()
	return "SUBSCRIBE " + contact.Address.String() + " SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: " + res.From().Value() + "\n" +
		"To: " + res.To().Value() + "\n" +
		"Call-ID: " + res.CallID().Value() + "\n" +
		"CSeq: " + strconv.Itoa(cseq) + " SUBSCRIBE\n" +
		"Contact: <sip:w@{local};transport={tp}>\n" +
		"Event: " + res.GetHeader("Event").Value() + "\n" +
		"Expires: " + strconv.Itoa(expires) + "\n" +
		"Content-Length: 0\n\n"
}

// SubState returns a NOTIFY's Subscription-State value.
func SubState(n *sip.Request) string {
	if h := n.GetHeader("Subscription-State"); h != nil {
		return h.Value()
	}
	return ""
}

// ParseRequest parses a raw request.
func ParseRequest(t testing.TB, msg string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, msg)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("not a request:\n%s", msg)
	}
	return req
}

// HeaderValue is h's value, "" for a missing header.
func HeaderValue(h interface{ Value() string }) string {
	if h == nil {
		return ""
	}
	return h.Value()
}
