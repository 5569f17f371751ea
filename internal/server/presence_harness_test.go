package server

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Presence test helpers: PUBLISH and SUBSCRIBE templates over a wire, and a watcher that
// answers the NOTIFYs it gets.

// pidfDoc is a minimal PIDF document for user in example.test with one tuple.
func pidfDoc(user, tuple, basic string, extra ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:` + user + `@example.test">` + "\n" +
		strings.Join(extra, "\n") +
		`<tuple id="` + tuple + `"><status><basic>` + basic + `</basic></status><contact>sip:` + user + `@example.test</contact></tuple>` + "\n" +
		`</presence>` + "\n"
}

// publish is a PUBLISH of user's presence. etag "" is an initial publication; expires < 0
// leaves Expires out; extra lines go before Content-Type.
func publish(user, callID string, cseq int, etag string, expires int, body string, extra ...string) string {
	msg := "PUBLISH sip:" + user + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

// subscribe is an initial SUBSCRIBE from watcher (user@domain) to user@example.test.
func subscribe(watcher, user, callID string, cseq int, event string, expires int, extra ...string) string {
	msg := "SUBSCRIBE sip:" + user + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

// resubscribe is a SUBSCRIBE within the dialog the 200 res created.
func resubscribe(res *sip.Response, cseq, expires int) string {
	contact := res.Contact()
	return "SUBSCRIBE " + contact.Address.String() + " SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

// watch subscribes over w and returns the 200 and the first NOTIFY (answered 200).
func (w *wire) watch(msg string) (*sip.Response, *sip.Request) {
	w.t.Helper()
	tp := "udp"
	if !w.udp {
		tp = "tcp"
	}
	w.send(strings.ReplaceAll(msg, "{tp}", tp))
	res := w.expect(`^SIP/2.0 200 `)
	// The Event header of the dialog, for resubscribe.
	if res.GetHeader("Event") == nil {
		ev := "presence"
		if strings.Contains(msg, "Event: presence.winfo") {
			ev = "presence.winfo"
		}
		res.AppendHeader(sip.NewHeader("Event", ev))
	}
	n := w.notify()
	return res, n
}

// notify reads the next NOTIFY and answers it 200.
func (w *wire) notify() *sip.Request {
	w.t.Helper()
	n := w.request("NOTIFY")
	w.reply(n, 200)
	return n
}

// sendTP sends msg with {tp} replaced by the wire's transport.
func (w *wire) sendTP(msg string) {
	w.t.Helper()
	tp := "udp"
	if !w.udp {
		tp = "tcp"
	}
	w.send(strings.ReplaceAll(msg, "{tp}", tp))
}

// subState returns a NOTIFY's Subscription-State value.
func subState(n *sip.Request) string {
	if h := n.GetHeader("Subscription-State"); h != nil {
		return h.Value()
	}
	return ""
}

// waitFor polls cond every 20 ms for up to 3 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// parseRequest parses a raw request.
func parseRequest(t testing.TB, msg string) *sip.Request {
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
