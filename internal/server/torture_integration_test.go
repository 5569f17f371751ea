package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// tortureCase is what simpled must answer to one message of RFC 4475 or RFC 5118
// (testdata/torture/README.md lists where each comes from and why this answer).
type tortureCase struct {
	file string
	// want matches the status line of the final answer; "" means no answer (a response:
	// simpled answers no response).
	want string
	// stream is how a tcp connection may treat the message: "" the same as want, and the
	// connection stays usable; "skip" not sent on a stream (its framing is the fault: a
	// Content-Length larger than the message waits for bytes that never come); "close" the
	// answer is want and the connection may be closed after it (the framing is broken, the
	// rest of the stream cannot be trusted).
	stream string
	// streamWant, when set, replaces want on a stream (sipgo answers there itself).
	streamWant string
}

// answered matches any final answer that is not 400 or a server error: a valid message is
// answered or routed as its Request-URI, From and credentials decide.
const answered = `^SIP/2\.0 (2|3|401|403|404|405|407|408|480|481|482|484|486|487|488|415|416|420|423|489|493|606|603)`

var tortureCases = []tortureCase{
	// RFC 4475 §3.1.1: valid messages.
	{file: "rfc4475/wsinv.dat", want: answered},
	{file: "rfc4475/intmeth.dat", want: answered},
	{file: "rfc4475/esc01.dat", want: answered},
	{file: "rfc4475/escnull.dat", want: answered},
	{file: "rfc4475/esc02.dat", want: answered},
	{file: "rfc4475/lwsdisp.dat", want: answered},
	{file: "rfc4475/longreq.dat", want: answered},
	// One datagram, two requests: the first is answered, the rest of the datagram ignored. On a
	// stream the second is a message of its own, whose Content-Length runs past its end.
	{file: "rfc4475/dblreq.dat", want: answered, stream: "skip"},
	{file: "rfc4475/semiuri.dat", want: answered},
	{file: "rfc4475/transports.dat", want: answered},
	{file: "rfc4475/mpart01.dat", want: answered},
	{file: "rfc4475/unreason.dat"},
	{file: "rfc4475/noreason.dat"},
	// RFC 4475 §3.1.2: invalid messages.
	{file: "rfc4475/badinv01.dat", want: `^SIP/2\.0 400 Malformed Via`},
	{file: "rfc4475/clerr.dat", want: `^SIP/2\.0 400 Content-Length Exceeds Body`, stream: "skip"},
	{file: "rfc4475/ncl.dat", want: `^SIP/2\.0 400 Malformed Content-Length`, stream: "close"},
	{file: "rfc4475/scalar02.dat", want: `^SIP/2\.0 400 Malformed CSeq`, stream: "close"},
	{file: "rfc4475/scalarlg.dat"},
	{file: "rfc4475/quotbal.dat", want: `^SIP/2\.0 400 Malformed To`},
	{file: "rfc4475/ltgtruri.dat", want: `^SIP/2\.0 400 Malformed Request-URI`, stream: "close"},
	{file: "rfc4475/lwsruri.dat", want: `^SIP/2\.0 400 Malformed Request-(URI|Line)`, stream: "close"},
	{file: "rfc4475/lwsstart.dat", want: `^SIP/2\.0 400 Malformed Request-(URI|Line)`, stream: "close"},
	{file: "rfc4475/trws.dat", want: `^SIP/2\.0 400 Malformed Request-Line`, stream: "close"},
	{file: "rfc4475/escruri.dat", want: `^SIP/2\.0 400 Malformed Request-URI`},
	{file: "rfc4475/baddate.dat", want: `^SIP/2\.0 400 Malformed Date`},
	{file: "rfc4475/regbadct.dat", want: `^SIP/2\.0 400 Malformed Contact`},
	{file: "rfc4475/badaspec.dat", want: `^SIP/2\.0 400 Malformed To`},
	{file: "rfc4475/baddn.dat", want: `^SIP/2\.0 400 Malformed (From|To)`},
	{file: "rfc4475/badvers.dat", want: `^SIP/2\.0 505 `, stream: "close"},
	{file: "rfc4475/mismatch01.dat", want: `^SIP/2\.0 400 CSeq Method Mismatch`},
	{file: "rfc4475/mismatch02.dat", want: `^SIP/2\.0 400 CSeq Method Mismatch`},
	{file: "rfc4475/bigcode.dat", stream: "close"},
	// RFC 4475 §3.2: transaction layer.
	{file: "rfc4475/badbranch.dat", want: answered},
	// RFC 4475 §3.3: application layer.
	{file: "rfc4475/insuf.dat", want: `^SIP/2\.0 400 Missing `},
	{file: "rfc4475/unkscm.dat", want: `^SIP/2\.0 416 `},
	{file: "rfc4475/novelsc.dat", want: `^SIP/2\.0 416 `, stream: "close"},
	{file: "rfc4475/unksm2.dat", want: `^SIP/2\.0 (400 Malformed|416 )`},
	{file: "rfc4475/bext01.dat", want: `^SIP/2\.0 420 `},
	{file: "rfc4475/invut.dat", want: answered},
	{file: "rfc4475/regaut01.dat", want: answered},
	{file: "rfc4475/multi01.dat", want: `^SIP/2\.0 400 Duplicate `},
	{file: "rfc4475/mcl01.dat", want: `^SIP/2\.0 400 (Duplicate|Malformed) Content-Length`, stream: "close"},
	{file: "rfc4475/bcast.dat"},
	{file: "rfc4475/zeromf.dat", want: `^SIP/2\.0 483 `},
	{file: "rfc4475/cparam01.dat", want: answered},
	{file: "rfc4475/cparam02.dat", want: answered},
	{file: "rfc4475/regescrt.dat", want: answered},
	{file: "rfc4475/sdp01.dat", want: answered},
	// RFC 4475 §3.4: an RFC 2543 request (no Max-Forwards, no Content-Length).
	// sipgo matches no transaction without a branch and answers a bare 400 itself; on a stream
	// the missing Content-Length is refused first.
	{file: "rfc4475/inv2543.dat", want: `^SIP/2\.0 400 Bad Request`, stream: "close",
		streamWant: `^SIP/2\.0 400 Missing Content-Length`},
	// RFC 5118.
	{file: "rfc5118/ipv6-good.dat", want: answered},
	{file: "rfc5118/ipv6-bad.dat", want: `^SIP/2\.0 400 Malformed Request-URI`, stream: "close"},
	{file: "rfc5118/port-ambiguous.dat", want: answered},
	{file: "rfc5118/port-unambiguous.dat", want: answered},
	{file: "rfc5118/via-received-param-with-delim.dat", want: answered},
	{file: "rfc5118/via-received-param-no-delim.dat", want: answered},
	{file: "rfc5118/ipv6-in-sdp.dat", want: answered},
	{file: "rfc5118/mult-ip-in-header.dat", want: answered},
	{file: "rfc5118/mult-ip-in-sdp.dat", want: answered},
	{file: "rfc5118/ipv4-mapped-ipv6.dat", want: answered},
	{file: "rfc5118/ipv6-bug-abnf-3-colons.dat", want: `^SIP/2\.0 400 Malformed Request-URI`, stream: "close"},
	{file: "rfc5118/ipv6-correct-abnf-2-colons.dat", want: answered},
}

// TestTortureMessages sends every RFC 4475 and RFC 5118 message to simpled over UDP and TCP:
// each valid request is answered (or routed), each invalid one refused with the status the
// RFC asks for and a reason naming the fault, no request goes unanswered on UDP, a response
// is never answered, every answer carries the request's Via values byte for byte, and a TCP
// connection stays usable after every message whose framing is sound.
func TestTortureMessages(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tortureCases {
			t.Run(network+"/"+tc.file, func(t *testing.T) {
				// A server per message: the RFCs' messages share branches, Call-IDs and
				// CSeqs, which would make one a retransmission or a stale REGISTER of another.
				srv := servertest.Start(t, func(o *config.Options) {
					o.Domains = []string{"example.com", "example.test"}
					o.Proxy.DNS = "127.0.0.1:1" // nothing is looked up off loopback
				})
				if network == "tcp" && tc.stream == "skip" {
					t.Skip("framing fault: meaningful over UDP only")
				}
				data, err := os.ReadFile(filepath.Join("testdata", "torture", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(data, []byte("\r\n\r\n")) {
					// baddn.dat and the RFC 5118 §4.10 pair end without the empty line in
					// the RFCs' archives; a message needs it (RFC 3261 §7).
					data = append(data, "\r\n"...)
				}
				w := servertest.Dial(t, network, srv.Listener(network))
				answers, alive := exchange(w, data)
				if network == "tcp" && tc.streamWant != "" {
					tc.want = tc.streamWant
				}
				checkTorture(t, tc, network, data, answers)
				switch {
				case network == "udp":
				case tc.stream == "close":
				case !alive:
					t.Errorf("tcp connection closed after %s", tc.file)
				}
			})
		}
	}
}

// checkTorture judges the answers to one torture message.
func checkTorture(t *testing.T, tc tortureCase, network string, req []byte, answers []string) {
	t.Helper()
	var finals []string
	for _, a := range answers {
		if !strings.HasPrefix(a, "SIP/2.0 1") {
			finals = append(finals, a)
		}
	}
	if tc.want == "" {
		if len(answers) > 0 {
			t.Fatalf("a response was answered: %q", servertest.FirstLine(answers[0]))
		}
		return
	}
	if len(finals) == 0 {
		t.Fatalf("no final answer over %s (saw %d provisional)", network, len(answers))
	}
	if !regexp.MustCompile(tc.want).MatchString(finals[0]) {
		t.Fatalf("answer %q, want %s", servertest.FirstLine(finals[0]), tc.want)
	}
	for _, a := range answers {
		checkVias(t, req, a)
	}
}

// checkVias asserts that answer carries the Via values of req as they were received (RFC 3261
// §8.2.6.2, §18.2.2), in order, with only received and rport added to the top one (§18.2.1,
// RFC 3581 §4). Folded lines compare unfolded (RFC 3261 §7.3.1).
func checkVias(t *testing.T, req []byte, answer string) {
	t.Helper()
	want := viaParms(headerValues(string(req), "via", "v"))
	got := viaParms(headerValues(answer, "via", "v"))
	if len(got) != len(want) {
		t.Fatalf("answer has %d Via values, request %d:\n%s", len(got), len(want), answer)
	}
	for i := range want {
		g, w := got[i], want[i]
		if i == 0 {
			g = stripAdded(g, w)
		}
		if g != w {
			t.Errorf("Via %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
}

// viaParms splits Via values into their via-parms (at commas outside quoted strings), trimmed;
// empty ones are dropped.
func viaParms(values []string) []string {
	var out []string
	for _, v := range values {
		quoted, start := false, 0
		for i := 0; i <= len(v); i++ {
			if i < len(v) && v[i] == '"' {
				quoted = !quoted
			}
			if i == len(v) || v[i] == ',' && !quoted {
				if p := strings.TrimSpace(v[start:i]); p != "" {
					out = append(out, p)
				}
				start = i + 1
			}
		}
	}
	return out
}

// stripAdded removes from got, the answer's top Via line, the received parameter the server
// may append and the value it may give rport, when want, the request's, has no such value.
func stripAdded(got, want string) string {
	if !regexp.MustCompile(`(?i);\s*rport\s*=`).MatchString(want) {
		got = regexp.MustCompile(`(?i)(;\s*rport)=[0-9]+`).ReplaceAllString(got, "$1")
	}
	if got != want {
		got = regexp.MustCompile(`;received=[0-9a-fA-F:.]+$`).ReplaceAllString(got, "")
	}
	return got
}

// headerValues returns the values of the header lines of msg named one of names (lower
// case), unfolded, in order, before the empty line.
func headerValues(msg string, names ...string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	head = regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(head, " ")
	var out []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if strings.EqualFold(strings.TrimSpace(name), n) {
				out = append(out, strings.TrimSpace(value))
			}
		}
	}
	return out
}

// exchange sends msg, then an OPTIONS to the server on the same socket, and returns every
// answer other than the OPTIONS' own, until a final one, and whether the OPTIONS was answered
// (the socket still works). Once the OPTIONS is answered, the message's answer is waited for
// briefly: stages run concurrently, either answer may come first.
func exchange(w *servertest.Wire, msg []byte) (answers []string, alive bool) {
	w.T.Helper()
	if _, err := w.Conn.Write(msg); err != nil {
		w.T.Fatalf("send: %v", err)
	}
	probeID := "probe-" + servertest.NextBranch()
	w.Send("OPTIONS sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + servertest.NextBranch() + "\n" +
		"Max-Forwards: 70\nFrom: <sip:probe@example.test>;tag=p\nTo: <sip:example.test>\n" +
		"Call-ID: " + probeID + "\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
	deadline := time.Now().Add(3 * time.Second)
	final := false
	for time.Now().Before(deadline) && !(alive && final) {
		wait := time.Until(deadline)
		if alive {
			wait = 300 * time.Millisecond // the torture message's answer, if it has one
		}
		m := w.Read(wait)
		if m == "" {
			break
		}
		if strings.Contains(m, probeID) {
			alive = true
			continue
		}
		answers = append(answers, m)
		final = final || !strings.HasPrefix(m, "SIP/2.0 1")
	}
	return answers, alive
}

// TestStreamMessageTooLarge: a message over limits.max_message_size on TCP is answered 513 from
// its own Via, Call-ID and CSeq before the connection is closed; one whose body is only over
// limits.max_body_size gets 413 and the connection stays.
func TestStreamMessageTooLarge(t *testing.T) {
	srv := servertest.Start(t, nil)
	message := func(w *servertest.Wire, callID string, size int) []byte {
		return []byte(w.Expand("MESSAGE sip:bob@example.test SIP/2.0\n" +
			"Via: SIP/2.0/TCP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>\n" +
			"Call-ID: " + callID + "\nCSeq: 7 MESSAGE\nContent-Type: text/plain\n" +
			"Content-Length: " + strconv.Itoa(size) + "\n\n" + strings.Repeat("x", size)))
	}

	w := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	big := message(w, "big-1", 2<<20)
	go func() { _, _ = w.Conn.Write(big) }() // the server stops reading part way
	res := w.Expect(`^SIP/2\.0 513 `)
	if res.CallID().Value() != "big-1" || res.CSeq().SeqNo != 7 || res.Via() == nil {
		t.Fatalf("513 does not name the request:\n%s", res)
	}
	if m := w.Read(2 * time.Second); m != "" {
		t.Fatalf("after 513: %q, want the connection closed", servertest.FirstLine(m))
	}
	if v := servertest.MetricValue(t, srv, `simpled_connections_rejected_total{reason="too large",transport="tcp"}`); v != 1 {
		t.Errorf("connections closed as too large: %v, want 1", v)
	}

	w = servertest.Dial(t, "tcp", srv.Listener("tcp"))
	w.Send(string(message(w, "body-1", 100<<10)))
	w.Expect(`^SIP/2\.0 413 `)
	w.Send(servertest.Register("alice", "after-413", 1))
	w.Expect(`^SIP/2\.0 (200|401|403) `) // the connection is still served
}

// TestRelayedResponseKeepsVias: a request simpled forwards carries the caller's Via values as
// the caller sent them (RFC 3261 §16.6: a proxy alters no Via but its own), and so does the
// response it relays back, not as sipgo rendered them (an IPv4-mapped IPv6 literal lost its
// brackets, RFC 5118 §4.9; spacing was rewritten; an RFC 2543 branch got a prefix).
func TestRelayedResponseKeepsVias(t *testing.T) {
	srv := servertest.Start(t, nil)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	const lower = "SIP/2.0/UDP [::ffff:192.0.2.10]:19823 ;branch=z9hG4bKbh19, SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"
	msg := servertest.Message("alice", "bob", "relay-via-1", "text/plain", "hi")
	msg = strings.Replace(msg, "Max-Forwards:", "Via: "+lower+"\r\nMax-Forwards:", 1)
	sent := alice.Expand(msg)
	alice.Send(sent)

	forwarded := bob.Read(3 * time.Second)
	if !strings.HasPrefix(forwarded, "MESSAGE ") {
		t.Fatalf("bob got %q, want the MESSAGE", servertest.FirstLine(forwarded))
	}
	got := viaParms(headerValues(forwarded, "via", "v"))
	want := viaParms(headerValues(sent, "via", "v"))
	if len(got) != len(want)+1 {
		t.Fatalf("forwarded Vias %q, want ours and %q", got, want)
	}
	for i, w := range want {
		g := got[i+1]
		if i == 0 {
			g = stripAdded(g, w)
		}
		if g != w {
			t.Errorf("forwarded Via %d: %q, want %q", i+1, got[i+1], w)
		}
	}
	parsed, err := sip.ParseMessage([]byte(forwarded))
	if err != nil {
		t.Fatal(err)
	}
	bob.Reply(parsed.(*sip.Request), 200)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		answer := alice.Read(time.Until(deadline))
		if answer == "" {
			break
		}
		if strings.HasPrefix(answer, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(answer, "SIP/2.0 200 ") {
			t.Fatalf("got %q, want the callee's 200", servertest.FirstLine(answer))
		}
		checkVias(t, []byte(sent), answer)
		return
	}
	t.Fatal("no final answer")
}

// TestStreamRefusalBehindGoodMessage: a request sipgo cannot parse, written in one segment
// behind a good one, is answered after the good one is served, not left waiting.
func TestStreamRefusalBehindGoodMessage(t *testing.T) {
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	good := w.Expand("OPTIONS sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/TCP {local};branch=z9hG4bK" + servertest.NextBranch() + "\n" +
		"Max-Forwards: 70\nFrom: <sip:probe@example.test>;tag=p\nTo: <sip:example.test>\n" +
		"Call-ID: good-1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
	bad := w.Expand("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n" +
		"Via: SIP/2.0/TCP {local};branch=z9hG4bK" + servertest.NextBranch() + "\n" +
		"Max-Forwards: 70\nFrom: <sip:probe@example.test>;tag=p\nTo: <sip:example.test>\n" +
		"Call-ID: bad-1\nCSeq: 2 OPTIONS\nContent-Length: 0\n\n")
	if _, err := w.Conn.Write([]byte(good + bad)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && len(seen) < 2; {
		m := w.Read(time.Until(deadline))
		if m == "" {
			break
		}
		seen[servertest.FirstLine(m)] = true
	}
	if !seen["SIP/2.0 200 OK"] || !seen["SIP/2.0 416 Unsupported URI Scheme"] {
		t.Fatalf("answers %v, want 200 and 416", seen)
	}
}
