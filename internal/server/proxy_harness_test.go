package server

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ua is a raw SIP endpoint for proxy tests: a wire that registers a contact at its own address
// and answers the requests the proxy forwards to it.
type ua struct {
	*wire
	user string
}

// newUA dials simpled over network and registers user with a contact at the socket's address.
func newUA(t testing.TB, srv *Server, network, user string, extra ...string) *ua {
	t.Helper()
	u := &ua{wire: dial(t, network, srv.Listener(network)), user: user}
	hasContact := false
	for _, e := range extra {
		hasContact = hasContact || strings.HasPrefix(e, "Contact:")
	}
	if !hasContact {
		extra = append([]string{"Contact: <sip:" + user + "@{local};transport=" + network + ">"}, extra...)
	}
	u.send(register(user, "reg-"+user+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), 1, extra...))
	u.expect(`^SIP/2.0 200 `)
	return u
}

// request reads the next request (skipping responses and retransmissions of requests already
// read), failing after 3 s.
func (w *wire) request(method string) *sip.Request {
	w.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		msg := w.read(time.Until(deadline))
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			continue
		}
		parsed, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			w.t.Fatalf("request does not parse: %v\n%s", err, msg)
		}
		req, ok := parsed.(*sip.Request)
		if ok && req.Via() != nil {
			branch, _ := req.Via().Params.Get("branch")
			key := string(req.Method) + " " + branch
			if w.seen[key] {
				continue // a retransmission
			}
			if w.seen == nil {
				w.seen = map[string]bool{}
			}
			w.seen[key] = true
		}
		if !ok || string(req.Method) != method {
			w.t.Fatalf("got %q, want a %s request\n%s", firstLine(msg), method, msg)
		}
		return req
	}
	w.t.Fatalf("no %s request within 3 s", method)
	return nil
}

// reply answers req with code; extra header lines are added; the To tag is set for code > 100.
func (w *wire) reply(req *sip.Request, code int, extra ...string) {
	w.t.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + sipReason(code) + "\r\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString("Via: " + h.Value() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString("Record-Route: " + h.Value() + "\r\n")
	}
	b.WriteString("From: " + req.From().Value() + "\r\n")
	to := req.To().Value()
	if code > 100 && !req.To().Params.Has("tag") {
		to += ";tag=uas" + strconv.Itoa(code)
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + req.CallID().Value() + "\r\n")
	b.WriteString("CSeq: " + req.CSeq().Value() + "\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := w.conn.Write([]byte(b.String())); err != nil {
		w.t.Fatalf("reply: %v", err)
	}
}

func sipReason(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 486:
		return "Busy Here"
	case 603:
		return "Decline"
	}
	return "Whatever"
}

// message is a MESSAGE template from user from to user to in example.test; extra lines go before
// Content-Type.
func message(from, to, callID, ctype, body string, extra ...string) string {
	msg := "MESSAGE sip:" + to + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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
	// CRLF line ends here, so that send leaves the body byte-exact.
	return strings.ReplaceAll(msg, "\n", "\r\n") + body
}
