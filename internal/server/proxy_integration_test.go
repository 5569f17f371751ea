package server

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"

	"github.com/emiago/sipgo/sip"
)

func TestMessageRelayedToRegisteredDevice(t *testing.T) {
	srv := startServer(t, nil)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			bob := newUA(t, srv, tp, "bob"+tp)
			alice := dial(t, tp, srv.Listener(tp))
			alice.send(message("alice", "bob"+tp, "m1"+tp, "text/plain", "hello bob", "Route: <sip:"+srv.Listener(tp)+";transport="+tp+";lr>"))
			req := bob.request("MESSAGE")
			if string(req.Body()) != "hello bob" {
				t.Errorf("body %q, want %q", req.Body(), "hello bob")
			}
			// The registered contact is the Request-URI; our Route is gone, Max-Forwards went
			// down by one, and our Via sits on top of the sender's (with received/rport).
			if got := req.Recipient.Host + ":" + strconv.Itoa(req.Recipient.Port); got != bob.conn.LocalAddr().String() {
				t.Errorf("Request-URI %s, want the contact at %s", req.Recipient.String(), bob.conn.LocalAddr())
			}
			if r := req.Route(); r != nil {
				t.Errorf("Route %s left in the forwarded request", r.Value())
			}
			if mf := req.MaxForwards().Val(); mf != 69 {
				t.Errorf("Max-Forwards %d, want 69", mf)
			}
			vias := req.GetHeaders("Via")
			if len(vias) != 2 || !strings.Contains(vias[1].Value(), "rport=") {
				t.Errorf("Vias %v, want ours then the sender's with rport filled in", vias)
			}
			bob.reply(req, 200)
			res := alice.expect(`^SIP/2.0 200 `)
			if n := len(res.GetHeaders("Via")); n != 1 {
				t.Errorf("response to the sender has %d Vias, want 1", n)
			}
		})
	}
}

func TestMessageForkedToEveryDevice(t *testing.T) {
	srv := startServer(t, nil)
	d1 := newUA(t, srv, "udp", "carol", `Contact: <sip:carol@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"`)
	d2 := newUA(t, srv, "udp", "carol", `Contact: <sip:carol@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000002>"`)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "carol", "fork1", "text/plain", "to all"))
	r1 := d1.request("MESSAGE")
	r2 := d2.request("MESSAGE")
	d1.reply(r1, 486)
	d2.reply(r2, 200)
	alice.expect(`^SIP/2.0 200 `)
	alice.expectNothing(300 * time.Millisecond)
}

func TestForkOrderedByQ(t *testing.T) {
	srv := startServer(t, nil)
	low := newUA(t, srv, "udp", "dave", `Contact: <sip:dave@{local}>;q=0.1;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000a>"`)
	high := newUA(t, srv, "udp", "dave", `Contact: <sip:dave@{local}>;q=0.9;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000b>"`)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "dave", "q1", "text/plain", "q order"))
	first := high.request("MESSAGE")
	low.expectNothing(200 * time.Millisecond) // the lower q waits for the higher one to fail
	high.reply(first, 486)
	second := low.request("MESSAGE")
	low.reply(second, 200)
	alice.expect(`^SIP/2.0 200 `)
}

func TestMessageBadInput(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Limits.MaxBodySize = 1000 })
	bob := newUA(t, srv, "udp", "bob")
	_ = bob
	cpimNoBlank := "From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\nContent-Type: text/plain\r\n\r\nhi"
	cpimBadHeader := "From <sip:alice@example.test>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
	cpimNoMIME := "From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\n\r\n"
	tests := []struct {
		name, msg, want string
	}{
		{"unknown content type", message("alice", "bob", "b1", "application/x-foo", "x"), `(?s)^SIP/2.0 415 .*Accept: [^\r]*text/plain`},
		{"body without content type", message("alice", "bob", "b2", "", "x"), `^SIP/2.0 400 Missing Content-Type`},
		{"unknown content encoding", message("alice", "bob", "b3", "text/plain", "x", "Content-Encoding: br"), `(?s)^SIP/2.0 415 .*Accept-Encoding: `},
		{"cpim without blank line", message("alice", "bob", "b4", "message/cpim", cpimNoBlank), `^SIP/2.0 400 Malformed CPIM`},
		{"cpim bad header", message("alice", "bob", "b5", "message/cpim", cpimBadHeader), `^SIP/2.0 400 Malformed CPIM`},
		{"cpim without MIME part", message("alice", "bob", "b6", "message/cpim", cpimNoMIME), `^SIP/2.0 400 Malformed CPIM`},
		{"body over the limit", message("alice", "bob", "b7", "text/plain", strings.Repeat("x", 1001)), `^SIP/2.0 413 `},
		{"max-forwards 0", strings.Replace(message("alice", "bob", "b8", "text/plain", "x"), "Max-Forwards: 70", "Max-Forwards: 0", 1), `^SIP/2.0 483 `},
		{"content-length beyond the body", strings.Replace(message("alice", "bob", "b9", "text/plain", "short"), "Content-Length: 5", "Content-Length: 50", 1), `^SIP/2.0 400 `},
		{"unknown local user", message("alice", "nobody", "b10", "text/plain", "x"), `^SIP/2.0 404 `},
		{"route to an unknown host", message("alice", "bob", "b11", "text/plain", "x", "Route: <sip:unknown.invalid;lr>"), `^SIP/2.0 403 Relaying Denied`},
		{"foreign domain without authentication", strings.Replace(message("alice", "bob", "b12", "text/plain", "x"), "MESSAGE sip:bob@example.test", "MESSAGE sip:bob@elsewhere.example", 1), `^SIP/2.0 403 Relaying Denied`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := dial(t, "udp", srv.Listener("udp"))
			w.send(tt.msg)
			w.expect(tt.want)
		})
	}
}

func TestRouteToUnknownHostFromTrustedPeer(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Proxy.TrustedPeers = []string{"127.0.0.1"} })
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(message("alice", "bob", "rt1", "text/plain", "x", "Route: <sip:unknown.invalid;lr>"))
	w.expect(`^SIP/2.0 404 No Route`)
}

func TestMaxForwardsAndLoop(t *testing.T) {
	srv := startServer(t, nil)
	// A contact pointing at simpled itself: the request spirals once (new Request-URI), then
	// comes back unchanged and is a loop (482) long before Max-Forwards runs out.
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("loopy", "loop-reg", 1, "Contact: <sip:loopy@"+srv.Listener("udp")+">"))
	w.expect(`^SIP/2.0 200 `)
	w.send(message("alice", "loopy", "loop1", "text/plain", "round and round"))
	w.expect(`^SIP/2.0 482 `)
}

// invite is an INVITE template with an SDP-less body.
func invite(from, to, callID string, cseq int, extra ...string) string {
	msg := "INVITE sip:" + to + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

// inDialog builds a request within the dialog a 2xx set up, from the caller's side: Request-URI
// the callee's Contact, Route the reversed Record-Route.
func inDialog(method string, res *sip.Response, cseq int, fromTag string) string {
	contact := res.Contact()
	msg := method + " " + contact.Address.String() + " SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

func TestCallThroughProxy(t *testing.T) {
	srv := startServer(t, nil)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			callee := newUA(t, srv, tp, "callee"+tp)
			caller := dial(t, tp, srv.Listener(tp))
			caller.send(invite("caller", "callee"+tp, "call-"+tp, 1))
			inv := callee.request("INVITE")
			if len(inv.GetHeaders("Record-Route")) == 0 {
				t.Fatalf("INVITE forwarded without Record-Route:\n%s", inv)
			}
			callee.reply(inv, 180)
			caller.expect(`^SIP/2.0 180 `)
			callee.reply(inv, 200, "Contact: <sip:callee@"+callee.conn.LocalAddr().String()+";transport="+tp+">")
			ok := caller.expect(`^SIP/2.0 200 `)
			if len(ok.GetHeaders("Record-Route")) == 0 {
				t.Fatalf("200 without Record-Route:\n%s", ok)
			}
			caller.send(inDialog("ACK", ok, 1, ""))
			ack := callee.request("ACK")
			if ack.CSeq().SeqNo != 1 {
				t.Errorf("ACK CSeq %d", ack.CSeq().SeqNo)
			}
			caller.send(inDialog("BYE", ok, 2, ""))
			bye := callee.request("BYE")
			callee.reply(bye, 200)
			caller.expect(`^SIP/2.0 200 `)
		})
	}
}

func TestCancelledCall(t *testing.T) {
	srv := startServer(t, nil)
	callee := newUA(t, srv, "udp", "ringer")
	caller := dial(t, "udp", srv.Listener("udp"))
	msg := invite("caller", "ringer", "cancel-1", 1)
	caller.send(msg)
	inv := callee.request("INVITE")
	callee.reply(inv, 180)
	caller.expect(`^SIP/2.0 180 `)
	// CANCEL: same Request-URI, Call-ID, From, To, CSeq number and Via branch as the INVITE.
	cancel := strings.Replace(strings.Replace(caller.expand(msg), "INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	caller.send(cancel)
	caller.expect(`(?s)^SIP/2.0 200 .*CSeq: 1 CANCEL`)
	c := callee.request("CANCEL")
	callee.reply(c, 200)
	callee.reply(inv, 487)
	caller.expect(`(?s)^SIP/2.0 487 .*CSeq: 1 INVITE`)
}

func TestForkedInviteCancelsOtherBranches(t *testing.T) {
	srv := startServer(t, nil)
	d1 := newUA(t, srv, "udp", "erin", `Contact: <sip:erin@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000e1>"`)
	d2 := newUA(t, srv, "udp", "erin", `Contact: <sip:erin@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000e2>"`)
	caller := dial(t, "udp", srv.Listener("udp"))
	caller.send(invite("caller", "erin", "fork-inv", 1))
	i1 := d1.request("INVITE")
	i2 := d2.request("INVITE")
	d1.reply(i1, 180)
	d2.reply(i2, 180)
	d1.reply(i1, 200, "Contact: <sip:erin@"+d1.conn.LocalAddr().String()+">")
	caller.expect(`^SIP/2.0 200 `)
	c := d2.request("CANCEL")
	d2.reply(c, 200)
	d2.reply(i2, 487)
}

func TestDeclineEndsFork(t *testing.T) {
	srv := startServer(t, nil)
	d1 := newUA(t, srv, "udp", "fred", `Contact: <sip:fred@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000f1>"`)
	d2 := newUA(t, srv, "udp", "fred", `Contact: <sip:fred@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000f2>"`)
	caller := dial(t, "udp", srv.Listener("udp"))
	caller.send(invite("caller", "fred", "decline", 1))
	i1 := d1.request("INVITE")
	i2 := d2.request("INVITE")
	d2.reply(i2, 180)
	d1.reply(i1, 603)
	c := d2.request("CANCEL")
	d2.reply(c, 200)
	d2.reply(i2, 487)
	caller.expect(`^SIP/2.0 603 `)
}

func TestInviteToKnownUserWithoutDevice(t *testing.T) {
	srv := startServer(t, nil)
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("gone", "gone-reg", 1, "Contact: <sip:gone@{local}>"))
	w.expect(`^SIP/2.0 200 `)
	w.send(register("gone", "gone-reg", 2, "Contact: <sip:gone@{local}>;expires=0"))
	w.expect(`^SIP/2.0 200 `)
	waitKnown(t, srv, "gone@example.test")
	w.send(invite("caller", "gone", "inv-gone", 1))
	w.expect(`^SIP/2.0 480 `)
	w.send(invite("caller", "neverseen", "inv-never", 1))
	w.expect(`^SIP/2.0 404 `)
}

// waitKnown waits until the store remembers aor as a known user (set from the registration
// event, asynchronously).
func waitKnown(t testing.TB, srv *Server, aor string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := srv.Store().Known(t.Context(), aor, time.Now()); err == nil && ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never became a known user", aor)
}

// TestLargeMessageGoesOverTCP: a MESSAGE bigger than the UDP MTU goes to a UDP-registered
// device over TCP at the same address (RFC 3261 §18.1.1); a device that does not listen on TCP
// still gets it over UDP rather than not at all.
func TestLargeMessageGoesOverTCP(t *testing.T) {
	srv := startServer(t, nil)
	body := strings.Repeat("0123456789abcdef", 300) // 4800 bytes
	t.Run("tcp", func(t *testing.T) {
		dev := newUA(t, srv, "udp", "large")
		ln, err := net.Listen("tcp", dev.conn.LocalAddr().String())
		if err != nil {
			t.Skipf("cannot listen on TCP beside the UDP socket: %v", err)
		}
		defer ln.Close()
		alice := dial(t, "udp", srv.Listener("udp"))
		alice.send(message("alice", "large", "big-1", "text/plain", body))
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("no TCP connection for the large MESSAGE: %v", err)
		}
		defer c.Close()
		stream := &wire{t: t, conn: c, rd: bufio.NewReaderSize(c, 1<<16)}
		req := stream.request("MESSAGE")
		if string(req.Body()) != body || !strings.Contains(req.Via().Value(), "TCP") {
			t.Fatalf("large MESSAGE arrived as:\n%s", req.StartLine())
		}
		stream.reply(req, 200)
		alice.expect(`^SIP/2.0 200 `)
	})
	t.Run("udp fallback", func(t *testing.T) {
		dev := newUA(t, srv, "udp", "large2")
		alice := dial(t, "udp", srv.Listener("udp"))
		alice.send(message("alice", "large2", "big-2", "text/plain", body))
		req := dev.request("MESSAGE")
		if string(req.Body()) != body {
			t.Fatalf("body changed")
		}
		dev.reply(req, 200)
		alice.expect(`^SIP/2.0 200 `)
	})
}

// TestProxyMetrics: relayed and stored messages and fork branches are counted.
func TestProxyMetrics(t *testing.T) {
	srv := startServer(t, nil)
	bob := newUA(t, srv, "udp", "mbob")
	makeKnown(t, srv, "mgone")
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "mbob", "met-1", "text/plain", "x"))
	bob.reply(bob.request("MESSAGE"), 200)
	alice.expect(`^SIP/2.0 200 `)
	alice.send(message("alice", "mgone", "met-2", "text/plain", "x"))
	alice.expect(`^SIP/2.0 202 `)
	metrics := httpGet(t, "http://"+srv.HTTPAddr()+"/metrics", 200)
	for _, want := range []string{
		`simpled_messages_total{outcome="relayed"} 1`,
		`simpled_messages_total{outcome="stored"} 1`,
		`simpled_proxy_branches_total{class="2xx",method="MESSAGE"} 1`,
		`simpled_proxy_duration_seconds_count{method="MESSAGE"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestContentLengthShorterThanDatagram: over UDP the body is what Content-Length says (RFC
// 3261 §18.3: extra bytes are discarded), and that is what is relayed.
func TestContentLengthShorterThanDatagram(t *testing.T) {
	srv := startServer(t, nil)
	bob := newUA(t, srv, "udp", "short")
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(strings.Replace(message("alice", "short", "cl-1", "text/plain", "hello world"), "Content-Length: 11", "Content-Length: 5", 1))
	req := bob.request("MESSAGE")
	if string(req.Body()) != "hello" {
		t.Fatalf("relayed body %q, want %q", req.Body(), "hello")
	}
	bob.reply(req, 200)
	alice.expect(`^SIP/2.0 200 `)
}

// TestForgedDialogNotRelayed: a request that only looks in-dialog (a To tag and a Route to
// simpled anybody can write) matches no dialog (481) and is not relayed to an address outside
// our domains; only the Record-Route simpled wrote for that dialog (its token) opens the way,
// as TestCallThroughProxy shows. An ACK forged the same way is dropped.
func TestForgedDialogNotRelayed(t *testing.T) {
	srv := startServer(t, nil)
	victim := dial(t, "udp", srv.Listener("udp")) // any socket not ours
	victimAddr := victim.conn.LocalAddr().String()
	w := dial(t, "udp", srv.Listener("udp"))
	for _, method := range []string{"BYE", "MESSAGE"} {
		w.send(method + " sip:victim@" + victimAddr + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bKforged" + nextBranch() + "\n" +
			"Route: <sip:" + srv.Listener("udp") + ";lr>\n" +
			"Max-Forwards: 70\nFrom: <sip:x@example.test>;tag=a\nTo: <sip:victim@elsewhere.example>;tag=b\n" +
			"Call-ID: forged-" + method + "\nCSeq: 2 " + method + "\nContent-Length: 0\n\n")
		w.expect(`^SIP/2.0 481 `)
	}
	w.send("ACK sip:victim@" + victimAddr + " SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bKforgedack\n" +
		"Route: <sip:" + srv.Listener("udp") + ";lr>\nMax-Forwards: 70\nFrom: <sip:x@example.test>;tag=a\n" +
		"To: <sip:victim@elsewhere.example>;tag=b\nCall-ID: forged-ack\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	victim.expectNothing(300 * time.Millisecond)
}
