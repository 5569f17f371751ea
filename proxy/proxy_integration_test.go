package proxy_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
)

func TestMessageRelayedToRegisteredDevice(t *testing.T) {
	srv := servertest.Start(t, nil)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			bob := servertest.NewUA(t, srv, tp, "bob"+tp)
			alice := servertest.Dial(t, tp, srv.Listener(tp))
			alice.Send(servertest.Message("alice", "bob"+tp, "m1"+tp, "text/plain", "hello bob", "Route: <sip:"+srv.Listener(tp)+";transport="+tp+";lr>"))
			req := bob.Request("MESSAGE")
			if string(req.Body()) != "hello bob" {
				t.Errorf("body %q, want %q", req.Body(), "hello bob")
			}
			// The registered contact is the Request-URI; our Route is gone, Max-Forwards went
			// down by one, and our Via sits on top of the sender's (with received/rport).
			if got := req.Recipient.Host + ":" + strconv.Itoa(req.Recipient.Port); got != bob.Conn.LocalAddr().String() {
				t.Errorf("Request-URI %s, want the contact at %s", req.Recipient.String(), bob.Conn.LocalAddr())
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
			bob.Reply(req, 200)
			res := alice.Expect(`^SIP/2.0 200 `)
			if n := len(res.GetHeaders("Via")); n != 1 {
				t.Errorf("response to the sender has %d Vias, want 1", n)
			}
		})
	}
}

func TestMessageForkedToEveryDevice(t *testing.T) {
	srv := servertest.Start(t, nil)
	d1 := servertest.NewUA(t, srv, "udp", "carol", `Contact: <sip:carol@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"`)
	d2 := servertest.NewUA(t, srv, "udp", "carol", `Contact: <sip:carol@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000002>"`)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "carol", "fork1", "text/plain", "to all"))
	r1 := d1.Request("MESSAGE")
	r2 := d2.Request("MESSAGE")
	d1.Reply(r1, 486)
	d2.Reply(r2, 200)
	alice.Expect(`^SIP/2.0 200 `)
	alice.ExpectNothing(300 * time.Millisecond)
}

func TestForkOrderedByQ(t *testing.T) {
	srv := servertest.Start(t, nil)
	low := servertest.NewUA(t, srv, "udp", "dave", `Contact: <sip:dave@{local}>;q=0.1;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000a>"`)
	high := servertest.NewUA(t, srv, "udp", "dave", `Contact: <sip:dave@{local}>;q=0.9;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000b>"`)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "dave", "q1", "text/plain", "q order"))
	first := high.Request("MESSAGE")
	low.ExpectNothing(200 * time.Millisecond) // the lower q waits for the higher one to fail
	high.Reply(first, 486)
	second := low.Request("MESSAGE")
	low.Reply(second, 200)
	alice.Expect(`^SIP/2.0 200 `)
}

func TestMessageBadInput(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Limits.MaxBodySize = 1000 })
	bob := servertest.NewUA(t, srv, "udp", "bob")
	_ = bob
	cpimNoBlank := "From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\nContent-Type: text/plain\r\n\r\nhi"
	cpimBadHeader := "From <sip:alice@example.test>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
	cpimNoMIME := "From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\n\r\n"
	tests := []struct {
		name, msg, want string
	}{
		{"unknown content type", servertest.Message("alice", "bob", "b1", "application/x-foo", "x"), `(?s)^SIP/2.0 415 .*Accept: [^\r]*text/plain`},
		{"body without content type", servertest.Message("alice", "bob", "b2", "", "x"), `^SIP/2.0 400 Missing Content-Type`},
		{"unknown content encoding", servertest.Message("alice", "bob", "b3", "text/plain", "x", "Content-Encoding: br"), `(?s)^SIP/2.0 415 .*Accept-Encoding: `},
		{"cpim without blank line", servertest.Message("alice", "bob", "b4", "message/cpim", cpimNoBlank), `^SIP/2.0 400 Malformed CPIM`},
		{"cpim bad header", servertest.Message("alice", "bob", "b5", "message/cpim", cpimBadHeader), `^SIP/2.0 400 Malformed CPIM`},
		{"cpim without MIME part", servertest.Message("alice", "bob", "b6", "message/cpim", cpimNoMIME), `^SIP/2.0 400 Malformed CPIM`},
		{"body over the limit", servertest.Message("alice", "bob", "b7", "text/plain", strings.Repeat("x", 1001)), `^SIP/2.0 413 `},
		{"max-forwards 0", strings.Replace(servertest.Message("alice", "bob", "b8", "text/plain", "x"), "Max-Forwards: 70", "Max-Forwards: 0", 1), `^SIP/2.0 483 `},
		{"content-length beyond the body", strings.Replace(servertest.Message("alice", "bob", "b9", "text/plain", "short"), "Content-Length: 5", "Content-Length: 50", 1), `^SIP/2.0 400 `},
		{"unknown local user", servertest.Message("alice", "nobody", "b10", "text/plain", "x"), `^SIP/2.0 404 `},
		{"route to an unknown host", servertest.Message("alice", "bob", "b11", "text/plain", "x", "Route: <sip:unknown.invalid;lr>"), `^SIP/2.0 403 Relaying Denied`},
		{"foreign domain without authentication", strings.Replace(servertest.Message("alice", "bob", "b12", "text/plain", "x"), "MESSAGE sip:bob@example.test", "MESSAGE sip:bob@elsewhere.example", 1), `^SIP/2.0 403 Relaying Denied`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := servertest.Dial(t, "udp", srv.Listener("udp"))
			w.Send(tt.msg)
			w.Expect(tt.want)
		})
	}
}

func TestRouteToUnknownHostFromTrustedPeer(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Proxy.TrustedPeers = []string{"127.0.0.1"} })
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Message("alice", "bob", "rt1", "text/plain", "x", "Route: <sip:unknown.invalid;lr>"))
	w.Expect(`^SIP/2.0 404 No Route`)
}

func TestMaxForwardsAndLoop(t *testing.T) {
	srv := servertest.Start(t, nil)
	// A contact pointing at simpled itself: the request spirals once (new Request-URI), then
	// comes back unchanged and is a loop (482) long before Max-Forwards runs out.
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("loopy", "loop-reg", 1, "Contact: <sip:loopy@"+srv.Listener("udp")+">"))
	w.Expect(`^SIP/2.0 200 `)
	w.Send(servertest.Message("alice", "loopy", "loop1", "text/plain", "round and round"))
	w.Expect(`^SIP/2.0 482 `)
}

func TestCallThroughProxy(t *testing.T) {
	srv := servertest.Start(t, nil)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			callee := servertest.NewUA(t, srv, tp, "callee"+tp)
			caller := servertest.Dial(t, tp, srv.Listener(tp))
			caller.Send(servertest.Invite("caller", "callee"+tp, "call-"+tp, 1))
			inv := callee.Request("INVITE")
			if len(inv.GetHeaders("Record-Route")) == 0 {
				t.Fatalf("INVITE forwarded without Record-Route:\n%s", inv)
			}
			callee.Reply(inv, 180)
			caller.Expect(`^SIP/2.0 180 `)
			callee.Reply(inv, 200, "Contact: <sip:callee@"+callee.Conn.LocalAddr().String()+";transport="+tp+">")
			ok := caller.Expect(`^SIP/2.0 200 `)
			if len(ok.GetHeaders("Record-Route")) == 0 {
				t.Fatalf("200 without Record-Route:\n%s", ok)
			}
			caller.Send(servertest.InDialog("ACK", ok, 1, ""))
			ack := callee.Request("ACK")
			if ack.CSeq().SeqNo != 1 {
				t.Errorf("ACK CSeq %d", ack.CSeq().SeqNo)
			}
			caller.Send(servertest.InDialog("BYE", ok, 2, ""))
			bye := callee.Request("BYE")
			callee.Reply(bye, 200)
			caller.Expect(`^SIP/2.0 200 `)
		})
	}
}

func TestCancelledCall(t *testing.T) {
	srv := servertest.Start(t, nil)
	callee := servertest.NewUA(t, srv, "udp", "ringer")
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	msg := servertest.Invite("caller", "ringer", "cancel-1", 1)
	caller.Send(msg)
	inv := callee.Request("INVITE")
	callee.Reply(inv, 180)
	caller.Expect(`^SIP/2.0 180 `)
	// CANCEL: same Request-URI, Call-ID, From, To, CSeq number and Via branch as the INVITE.
	cancel := strings.Replace(strings.Replace(caller.Expand(msg), "INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	caller.Send(cancel)
	caller.Expect(`(?s)^SIP/2.0 200 .*CSeq: 1 CANCEL`)
	c := callee.Request("CANCEL")
	callee.Reply(c, 200)
	callee.Reply(inv, 487)
	caller.Expect(`(?s)^SIP/2.0 487 .*CSeq: 1 INVITE`)
}

func TestForkedInviteCancelsOtherBranches(t *testing.T) {
	srv := servertest.Start(t, nil)
	d1 := servertest.NewUA(t, srv, "udp", "erin", `Contact: <sip:erin@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000e1>"`)
	d2 := servertest.NewUA(t, srv, "udp", "erin", `Contact: <sip:erin@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000e2>"`)
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("caller", "erin", "fork-inv", 1))
	i1 := d1.Request("INVITE")
	i2 := d2.Request("INVITE")
	d1.Reply(i1, 180)
	d2.Reply(i2, 180)
	d1.Reply(i1, 200, "Contact: <sip:erin@"+d1.Conn.LocalAddr().String()+">")
	caller.Expect(`^SIP/2.0 200 `)
	c := d2.Request("CANCEL")
	d2.Reply(c, 200)
	d2.Reply(i2, 487)
}

func TestDeclineEndsFork(t *testing.T) {
	srv := servertest.Start(t, nil)
	d1 := servertest.NewUA(t, srv, "udp", "fred", `Contact: <sip:fred@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000f1>"`)
	d2 := servertest.NewUA(t, srv, "udp", "fred", `Contact: <sip:fred@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000f2>"`)
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("caller", "fred", "decline", 1))
	i1 := d1.Request("INVITE")
	i2 := d2.Request("INVITE")
	d2.Reply(i2, 180)
	d1.Reply(i1, 603)
	c := d2.Request("CANCEL")
	d2.Reply(c, 200)
	d2.Reply(i2, 487)
	caller.Expect(`^SIP/2.0 603 `)
}

func TestInviteToKnownUserWithoutDevice(t *testing.T) {
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("gone", "gone-reg", 1, "Contact: <sip:gone@{local}>"))
	w.Expect(`^SIP/2.0 200 `)
	w.Send(servertest.Register("gone", "gone-reg", 2, "Contact: <sip:gone@{local}>;expires=0"))
	w.Expect(`^SIP/2.0 200 `)
	servertest.WaitKnown(t, srv, "gone@example.test")
	w.Send(servertest.Invite("caller", "gone", "inv-gone", 1))
	w.Expect(`^SIP/2.0 480 `)
	w.Send(servertest.Invite("caller", "neverseen", "inv-never", 1))
	w.Expect(`^SIP/2.0 404 `)
}

// TestLargeMessageGoesOverTCP: a MESSAGE bigger than the UDP MTU goes to a UDP-registered
// device over TCP at the same address (RFC 3261 §18.1.1); a device that does not listen on TCP
// still gets it over UDP rather than not at all.
func TestLargeMessageGoesOverTCP(t *testing.T) {
	srv := servertest.Start(t, nil)
	body := strings.Repeat("0123456789abcdef", 300) // 4800 bytes
	t.Run("tcp", func(t *testing.T) {
		dev := servertest.NewUA(t, srv, "udp", "large")
		ln, err := net.Listen("tcp", dev.Conn.LocalAddr().String())
		if err != nil {
			t.Skipf("cannot listen on TCP beside the UDP socket: %v", err)
		}
		defer ln.Close()
		alice := servertest.Dial(t, "udp", srv.Listener("udp"))
		alice.Send(servertest.Message("alice", "large", "big-1", "text/plain", body))
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("no TCP connection for the large MESSAGE: %v", err)
		}
		defer c.Close()
		stream := servertest.WireOn(t, c)
		req := stream.Request("MESSAGE")
		if string(req.Body()) != body || !strings.Contains(req.Via().Value(), "TCP") {
			t.Fatalf("large MESSAGE arrived as:\n%s", req.StartLine())
		}
		stream.Reply(req, 200)
		alice.Expect(`^SIP/2.0 200 `)
	})
	t.Run("udp fallback", func(t *testing.T) {
		dev := servertest.NewUA(t, srv, "udp", "large2")
		alice := servertest.Dial(t, "udp", srv.Listener("udp"))
		alice.Send(servertest.Message("alice", "large2", "big-2", "text/plain", body))
		req := dev.Request("MESSAGE")
		if string(req.Body()) != body {
			t.Fatalf("body changed")
		}
		dev.Reply(req, 200)
		alice.Expect(`^SIP/2.0 200 `)
	})
}

// TestProxyMetrics: relayed and stored messages and fork branches are counted.
func TestProxyMetrics(t *testing.T) {
	srv := servertest.Start(t, nil)
	bob := servertest.NewUA(t, srv, "udp", "mbob")
	servertest.MakeKnown(t, srv, "mgone")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "mbob", "met-1", "text/plain", "x"))
	bob.Reply(bob.Request("MESSAGE"), 200)
	alice.Expect(`^SIP/2.0 200 `)
	alice.Send(servertest.Message("alice", "mgone", "met-2", "text/plain", "x"))
	alice.Expect(`^SIP/2.0 202 `)
	// The counts are taken as the answers go out: they may trail the answer by a moment.
	servertest.Poll(t, 3*time.Second, "the proxy's metrics", func() (bool, string) {
		metrics := servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/metrics", 200)
		for _, want := range []string{
			`simpled_messages_total{outcome="relayed"} 1`,
			`simpled_messages_total{outcome="stored"} 1`,
			`simpled_proxy_branches_total{class="2xx",method="MESSAGE"} 1`,
			`simpled_proxy_duration_seconds_count{method="MESSAGE"} 2`,
		} {
			if !strings.Contains(metrics, want) {
				return false, "metrics lack " + want
			}
		}
		return true, ""
	})
}

// TestContentLengthShorterThanDatagram: over UDP the body is what Content-Length says (RFC
// 3261 §18.3: extra bytes are discarded), and that is what is relayed.
func TestContentLengthShorterThanDatagram(t *testing.T) {
	srv := servertest.Start(t, nil)
	bob := servertest.NewUA(t, srv, "udp", "short")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(strings.Replace(servertest.Message("alice", "short", "cl-1", "text/plain", "hello world"), "Content-Length: 11", "Content-Length: 5", 1))
	req := bob.Request("MESSAGE")
	if string(req.Body()) != "hello" {
		t.Fatalf("relayed body %q, want %q", req.Body(), "hello")
	}
	bob.Reply(req, 200)
	alice.Expect(`^SIP/2.0 200 `)
}

// TestForgedDialogNotRelayed: a request that only looks in-dialog (a To tag and a Route to
// simpled anybody can write) matches no dialog (481) and is not relayed to an address outside
// our domains; only the Record-Route simpled wrote for that dialog (its token) opens the way,
// as TestCallThroughProxy shows. An ACK forged the same way is dropped.
func TestForgedDialogNotRelayed(t *testing.T) {
	srv := servertest.Start(t, nil)
	victim := servertest.Dial(t, "udp", srv.Listener("udp")) // any socket not ours
	victimAddr := victim.Conn.LocalAddr().String()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	for _, method := range []string{"BYE", "MESSAGE"} {
		w.Send(method + " sip:victim@" + victimAddr + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bKforged" + servertest.NextBranch() + "\n" +
			"Route: <sip:" + srv.Listener("udp") + ";lr>\n" +
			"Max-Forwards: 70\nFrom: <sip:x@example.test>;tag=a\nTo: <sip:victim@elsewhere.example>;tag=b\n" +
			"Call-ID: forged-" + method + "\nCSeq: 2 " + method + "\nContent-Length: 0\n\n")
		w.Expect(`^SIP/2.0 481 `)
	}
	w.Send("ACK sip:victim@" + victimAddr + " SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bKforgedack\n" +
		"Route: <sip:" + srv.Listener("udp") + ";lr>\nMax-Forwards: 70\nFrom: <sip:x@example.test>;tag=a\n" +
		"To: <sip:victim@elsewhere.example>;tag=b\nCall-ID: forged-ack\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	victim.ExpectNothing(300 * time.Millisecond)
}
