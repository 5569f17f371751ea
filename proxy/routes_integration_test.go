package proxy_test

import (
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/routes"
)

// The PBX of these tests stands at 127.0.0.5 and 127.0.0.6 (other hosts, as far as simpled
// can tell), on ports chosen when the test runs.

// extensions is a route sending the four-digit extensions 1xxx to the hops.
func extensions(hops ...string) routes.Rule {
	r := config.DefaultRoute()
	r.Match.User = "^1[0-9]{3}$"
	r.To = hops
	return r
}

// withRoutes adds rules to proxy.routes, with auth required for users.
func withRoutes(t *testing.T, users []string, rules ...routes.Rule) func(*config.Options) {
	return func(o *config.Options) {
		servertest.RequireAuth(t, users...)(o)
		o.Proxy.Routes = rules
	}
}

// sippScenario is a PBX scenario of testdata/sipp.
func sippScenario(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "sipp", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// silentHop is a UDP socket on ip that takes requests and answers nothing: a PBX that is
// down without telling.
func silentHop(t *testing.T, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return "sip:" + pc.LocalAddr().String()
}

// pbxWire is a raw UDP PBX on ip: the test reads what simpled sends it and answers.
func pbxWire(t *testing.T, ip string) (*servertest.Wire, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return servertest.PacketWire(t, pc, nil), "sip:" + pc.LocalAddr().String()
}

// expectWithin is Wire.Expect with a longer wait: a final response matching re within d
// (a silent hop costs Timer B or F, 64×T1).
func expectWithin(t *testing.T, w *servertest.Wire, re string, d time.Duration) *sip.Response {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		msg := w.Read(time.Until(deadline))
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "SIP/2.0 1") || (strings.HasPrefix(msg, "SIP/2.0 407 ") && !rx.MatchString(msg)) {
			continue // provisional, or our challenge to the first INVITE retransmitted (Wire.WithAuth does not ACK it)
		}
		if !rx.MatchString(msg) {
			t.Fatalf("got %q, want %s\n%s", servertest.FirstLine(msg), re, msg)
		}
		res, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		return res.(*sip.Response)
	}
	t.Fatalf("no response matching %s within %v", re, d)
	return nil
}

// callAndHangUp has alice (registered, authenticated) call extension 1001 and, once answered,
// ACK and hang up through simpled's Record-Route.
func callAndHangUp(t *testing.T, alice *servertest.UA, callID string, within time.Duration) {
	t.Helper()
	alice.WithAuth(servertest.Invite("alice", "1001", callID, 1), "alice", "sip:1001@example.test", "")
	ok := expectWithin(t, alice.Wire, `^SIP/2.0 200 `, within)
	if len(ok.GetHeaders("Record-Route")) == 0 {
		t.Errorf("the 200 from the PBX carries no Record-Route of simpled's")
	}
	tag, _ := ok.From().Params.Get("tag")
	alice.Send(servertest.InDialog("ACK", ok, 2, tag))
	// The ACK has no answer to wait for, and simpled relays requests on several workers: a
	// BYE sent at once may overtake it, which the PBX's scenario takes as a broken call.
	time.Sleep(200 * time.Millisecond)
	alice.Send(servertest.InDialog("BYE", ok, 3, tag))
	alice.Expect(`^SIP/2.0 200 `)
}

// An extension number goes to the PBX, not to a device registered for it: the rule wins over
// the location service. The PBX (sipp) checks the Request-URI and Record-Route and sees the
// whole call, ACK and BYE included.
func TestRouteCallToPBX(t *testing.T) {
	sipp := servertest.Tool(t, "sipp", "sip-tester")
	pbx := servertest.StartSippUASAt(t, sipp, sippScenario(t, "pbx_call_uas.xml"), "127.0.0.5", 1)
	srv := servertest.Start(t, withRoutes(t, []string{"alice", "1001"},
		extensions("sip:127.0.0.5:"+strconv.Itoa(pbx.Port))))
	alice := servertest.NewAuthUA(t, srv, "udp", "alice")
	phone := servertest.NewAuthUA(t, srv, "udp", "1001") // registered, yet the route wins
	callAndHangUp(t, alice, "route-call-1", 5*time.Second)
	if stats := pbx.Wait(t, 10*time.Second); stats["SuccessfulCall(C)"] != 1 {
		t.Errorf("PBX statistics %v, want one successful call", stats)
	}
	phone.ExpectNothing(200 * time.Millisecond)
}

// A PBX answering 503 (Retry-After or not) hands the call to the next hop, and so does one
// that does not answer at all: the call reaches the PBX at 127.0.0.6.
func TestRouteFailover(t *testing.T) {
	sipp := servertest.Tool(t, "sipp", "sip-tester")
	t.Run("503", func(t *testing.T) {
		t.Parallel()
		busy := servertest.StartSippUASAt(t, sipp, sippScenario(t, "pbx_busy_uas.xml"), "127.0.0.5", 1)
		pbx := servertest.StartSippUASAt(t, sipp, sippScenario(t, "pbx_call_uas.xml"), "127.0.0.6", 1)
		srv := servertest.Start(t, withRoutes(t, []string{"alice"},
			extensions("sip:127.0.0.5:"+strconv.Itoa(busy.Port), "sip:127.0.0.6:"+strconv.Itoa(pbx.Port))))
		alice := servertest.NewAuthUA(t, srv, "udp", "alice")
		callAndHangUp(t, alice, "route-503-1", 5*time.Second)
		busy.Wait(t, 10*time.Second)
		if stats := pbx.Wait(t, 10*time.Second); stats["SuccessfulCall(C)"] != 1 {
			t.Errorf("second PBX statistics %v, want one successful call", stats)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		pbx := servertest.StartSippUASAt(t, sipp, sippScenario(t, "pbx_call_uas.xml"), "127.0.0.6", 1)
		srv := servertest.Start(t, withRoutes(t, []string{"alice"},
			extensions(silentHop(t, "127.0.0.5"), "sip:127.0.0.6:"+strconv.Itoa(pbx.Port))))
		alice := servertest.NewAuthUA(t, srv, "udp", "alice")
		callAndHangUp(t, alice, "route-silent-1", 30*time.Second) // Timer B on the first hop
		if stats := pbx.Wait(t, 10*time.Second); stats["SuccessfulCall(C)"] != 1 {
			t.Errorf("second PBX statistics %v, want one successful call", stats)
		}
	})
	t.Run("none answers", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Start(t, withRoutes(t, []string{"alice"},
			extensions(silentHop(t, "127.0.0.5"), silentHop(t, "127.0.0.6"))))
		alice := servertest.NewAuthUA(t, srv, "udp", "alice")
		alice.WithAuth(servertest.Message("alice", "1001", "route-none-1", "text/plain", "anyone?"),
			"alice", "sip:1001@example.test", "")
		expectWithin(t, alice.Wire, `^SIP/2.0 408 `, 60*time.Second)
	})
}

// A 4xx other than a challenge is the PBX's answer about the extension: it goes back to the
// caller, and the next hop is not tried.
func TestRouteNoFailoverOnBusy(t *testing.T) {
	first, firstURI := pbxWire(t, "127.0.0.5")
	second, secondURI := pbxWire(t, "127.0.0.6")
	srv := servertest.Start(t, withRoutes(t, []string{"alice"}, extensions(firstURI, secondURI)))
	alice := servertest.NewAuthUA(t, srv, "udp", "alice")
	alice.WithAuth(servertest.Message("alice", "1001", "route-486", "text/plain", "hi"), "alice", "sip:1001@example.test", "")
	first.Reply(first.Request("MESSAGE"), 486)
	alice.Expect(`^SIP/2.0 486 `)
	second.ExpectNothing(300 * time.Millisecond)
}

// A MESSAGE to an extension goes to the PBX too; the PBX (sipp) checks Request-URI and body.
func TestRouteMessageToPBX(t *testing.T) {
	sipp := servertest.Tool(t, "sipp", "sip-tester")
	pbx := servertest.StartSippUASAt(t, sipp, sippScenario(t, "pbx_message_uas.xml"), "127.0.0.6", 1)
	rule := extensions("sip:127.0.0.6:" + strconv.Itoa(pbx.Port))
	rule.Match.Method = []string{"MESSAGE"}
	srv := servertest.Start(t, withRoutes(t, []string{"alice"}, rule))
	alice := servertest.NewAuthUA(t, srv, "udp", "alice")
	alice.WithAuth(servertest.Message("alice", "1001", "route-msg-1", "text/plain", "hello extension"),
		"alice", "sip:1001@example.test", `^SIP/2.0 200 `)
	if stats := pbx.Wait(t, 10*time.Second); stats["SuccessfulCall(C)"] != 1 {
		t.Errorf("PBX statistics %v, want one message taken", stats)
	}
}

// checkDigest verifies the credentials of req in header name as a PBX would, for user trunk,
// password "pbx-secret", realm pbx.test.
func checkDigest(t *testing.T, req *sip.Request, name, alg string) {
	t.Helper()
	h := req.GetHeader(name)
	if h == nil {
		t.Fatalf("%s request without %s:\n%s", req.Method, name, req)
	}
	c, err := auth.ParseCredentials(h.Value())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	a, _ := auth.ParseAlgorithm(c.Algorithm)
	if c.Username != "trunk" || c.Realm != "pbx.test" || c.Algorithm != alg || c.QOP != "auth" || c.URI != req.Recipient.String() {
		t.Errorf("credentials %+v, want trunk@pbx.test, %s, qop auth, uri %s", c, alg, req.Recipient.String())
	}
	if !c.Verify(auth.HA1(a, "trunk", "pbx.test", "pbx-secret"), string(req.Method), req.Body()) {
		t.Errorf("digest response of %s does not verify", name)
	}
}

// A PBX that challenges: simpled answers with the route's credentials, once, on a new branch
// (same CSeq), and the call goes through; a CANCEL then goes to the authenticated branch.
// Both challenge kinds and both algorithms.
func TestRouteAnswersPBXChallenge(t *testing.T) {
	for _, c := range []struct{ code, challenge, authz, alg string }{
		{"401", "WWW-Authenticate", "Authorization", "SHA-256"},
		{"407", "Proxy-Authenticate", "Proxy-Authorization", "MD5"},
	} {
		t.Run(c.code, func(t *testing.T) {
			pbx, uri := pbxWire(t, "127.0.0.6")
			rule := extensions(uri)
			rule.Auth = routes.Credentials{Username: "trunk", Password: "pbx-secret"}
			srv := servertest.Start(t, withRoutes(t, []string{"alice"}, rule))
			alice := servertest.NewAuthUA(t, srv, "udp", "alice")
			invite := servertest.Invite("alice", "1001", "route-auth-"+c.code, 1)
			alice.WithAuth(invite, "alice", "sip:1001@example.test", "")
			inv := pbx.Request("INVITE")
			code, _ := strconv.Atoi(c.code)
			pbx.Reply(inv, code, c.challenge+`: Digest realm="pbx.test", nonce="n0nce-`+c.code+`", algorithm=`+c.alg+`, qop="auth"`)
			pbx.Request("ACK")
			again := pbx.Request("INVITE")
			checkDigest(t, again, c.authz, c.alg)
			if again.Via().Params.GetOr("branch", "") == inv.Via().Params.GetOr("branch", "") {
				t.Errorf("the authenticated INVITE reuses the challenged branch")
			}
			if again.CSeq().SeqNo != inv.CSeq().SeqNo {
				t.Errorf("CSeq %d, want the caller's %d", again.CSeq().SeqNo, inv.CSeq().SeqNo)
			}
			pbx.Reply(again, 180)
			alice.Expect(`^SIP/2.0 180 `)
			// The caller gives up: the CANCEL goes to the branch in use.
			alice.Send(cancelOf(invite))
			got := pbx.Request("CANCEL")
			if got.Via().Params.GetOr("branch", "") != again.Via().Params.GetOr("branch", "") {
				t.Errorf("CANCEL on branch %s, want the authenticated INVITE's %s", got.Via().Params.GetOr("branch", ""), again.Via().Params.GetOr("branch", ""))
			}
			pbx.Reply(got, 200)
			pbx.Reply(again, 487)
			alice.Expect(`^SIP/2.0 200 `)
			alice.Expect(`^SIP/2.0 487 `)
		})
	}
}

// cancelOf is the CANCEL for the INVITE Wire.WithAuth sent again with credentials for msg:
// its branch and CSeq number.
func cancelOf(msg string) string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		switch {
		case strings.HasPrefix(line, "INVITE "):
			line = "CANCEL " + strings.TrimPrefix(line, "INVITE ")
		case strings.HasPrefix(line, "Via: "):
			line = strings.Replace(line, "branch=z9hG4bK", "branch=z9hG4bKauth", 1)
		case strings.HasPrefix(line, "CSeq: "):
			line = "CSeq: 2 CANCEL"
		case strings.HasPrefix(line, "Contact: "):
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// A PBX calling or messaging a user of ours comes from the address its route sends to: it is
// taken as a trusted peer's, without a challenge (docs/security.md). The same request from
// any other address is challenged.
func TestRouteHopIsTrustedPeer(t *testing.T) {
	_, uri := pbxWire(t, "127.0.0.6")
	srv := servertest.Start(t, withRoutes(t, []string{"bob"}, extensions(uri)))
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")

	pbx := servertest.DialFrom(t, "udp", "127.0.0.6", srv.Listener("udp"))
	pbx.Send(servertest.Message("1001", "bob", "route-trust-1", "text/plain", "voicemail for you"))
	got := bob.Request("MESSAGE")
	if string(got.Body()) != "voicemail for you" {
		t.Errorf("body %q", got.Body())
	}
	bob.Reply(got, 200)
	pbx.Expect(`^SIP/2.0 200 `)

	other := servertest.DialFrom(t, "udp", "127.0.0.1", srv.Listener("udp"))
	other.Send(servertest.Message("1001", "bob", "route-trust-2", "text/plain", "forged"))
	other.Expect(`^SIP/2.0 407 `)
	bob.ExpectNothing(200 * time.Millisecond)
}

// A request the PBX sends back to simpled unchanged (a misconfigured PBX routing the
// extension to simpled) has looped: it gets 482 and is not forwarded again.
func TestRouteLoopRefused(t *testing.T) {
	pbx, uri := pbxWire(t, "127.0.0.6")
	srv := servertest.Start(t, withRoutes(t, []string{"alice"}, extensions(uri)))
	alice := servertest.NewAuthUA(t, srv, "udp", "alice")
	alice.WithAuth(servertest.Message("alice", "1001", "route-loop-1", "text/plain", "round and round"),
		"alice", "sip:1001@example.test", "")
	first := pbx.Request("MESSAGE")
	back := strings.Replace(first.String(), "\r\nVia: ", "\r\nVia: SIP/2.0/UDP "+pbx.Conn.LocalAddr().String()+";branch=z9hG4bKpbx1\r\nVia: ", 1)
	pbx.Send(back)
	pbx.Expect(`^SIP/2.0 482 `)
	// Only retransmissions of the first MESSAGE (unanswered so far) may come: no new branch.
	branch := first.Via().Params.GetOr("branch", "")
	for deadline := time.Now().Add(400 * time.Millisecond); time.Now().Before(deadline); {
		msg := pbx.Read(time.Until(deadline))
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "MESSAGE ") && !strings.Contains(msg, "branch="+branch) {
			t.Fatalf("the looped request was forwarded again:\n%s", msg)
		}
	}
	pbx.Reply(first, 482)
	alice.Expect(`^SIP/2.0 482 `)
}

// A rule for message-summary subscriptions takes them past the presence agent to the
// voicemail server; a presence subscription to the same user is still the presence agent's.
func TestRouteMWISubscription(t *testing.T) {
	vm, uri := pbxWire(t, "127.0.0.5")
	rule := config.DefaultRoute()
	rule.Match.Method, rule.Match.Event, rule.To = []string{"SUBSCRIBE"}, "message-summary", []string{uri}
	srv := servertest.Start(t, withRoutes(t, []string{"alice"}, rule))
	alice := servertest.NewAuthUA(t, srv, "udp", "alice")
	sub := strings.ReplaceAll(servertest.Subscribe("alice@example.test", "alice", "route-mwi-1", 1, "message-summary", 600), "{tp}", "udp")
	alice.WithAuth(sub, "alice", "sip:alice@example.test", "")
	got := vm.Request("SUBSCRIBE")
	if ev := got.GetHeader("Event"); ev == nil || ev.Value() != "message-summary" {
		t.Errorf("Event %v, want message-summary", ev)
	}
	vm.Reply(got, 200, "Expires: 600", "Contact: <sip:vm@"+vm.Conn.LocalAddr().String()+">")
	alice.Expect(`^SIP/2.0 200 `)

	pres := strings.ReplaceAll(servertest.Subscribe("alice@example.test", "alice", "route-mwi-2", 1, "presence", 600), "{tp}", "udp")
	alice.WithAuth(pres, "alice", "sip:alice@example.test", `^SIP/2.0 200 `)
	vm.ExpectNothing(200 * time.Millisecond)
}
