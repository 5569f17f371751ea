package delivery_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// A NATed UDP client gets its MESSAGE and its NOTIFY where its packets come from, not at the
// private address of its Contact.
func TestNATedUDPClientReachedAtSource(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.NATRegister("alice", "nat-reg-1", "udp"))
	alice.Expect(`^SIP/2.0 200 `)

	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "alice", "nat-msg-1", "text/plain", "behind the NAT"))
	req := alice.Request("MESSAGE")
	if string(req.Body()) != "behind the NAT" || req.Recipient.Host != "127.0.0.2" {
		t.Fatalf("MESSAGE at the NATed client: R-URI %s body %q", req.Recipient.String(), req.Body())
	}
	alice.Reply(req, 200)
	bob.Expect(`^SIP/2.0 200 `)

	// A SUBSCRIBE whose Contact is the private address: the NOTIFYs come to the source too.
	sub := "SUBSCRIBE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=natw\nTo: <sip:bob@example.test>\n" +
		"Call-ID: nat-sub-1\nCSeq: 1 SUBSCRIBE\nContact: <sip:alice@127.0.0.2:5099>\nEvent: presence\n" +
		"Expires: 600\nContent-Length: 0\n\n"
	alice.Send(sub)
	alice.Expect(`^SIP/2.0 200 `)
	n := alice.Notify()
	if !strings.HasPrefix(servertest.SubState(n), "active") {
		t.Fatalf("NOTIFY Subscription-State %q", servertest.SubState(n))
	}
}

// A REGISTER whose Via names its own source is a client (or a third party) that is not behind
// a NAT: its Contact is taken at its word, even when it names another address.
func TestThirdPartyContactTakenAtItsWord(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	registrar := servertest.Dial(t, "udp", srv.Listener("udp"))
	device := servertest.Dial(t, "udp", srv.Listener("udp")) // the device named in the Contact
	registrar.Send(servertest.Register("carol", "third-reg-1", 1, "Contact: <sip:carol@"+device.Conn.LocalAddr().String()+">"))
	registrar.Expect(`^SIP/2.0 200 `)

	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "carol", "third-msg-1", "text/plain", "to the contact"))
	device.Reply(device.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	registrar.ExpectNothing(200 * time.Millisecond)

	// Over TCP too (sipp's load tests register their UAS this way): simpled connects to the
	// Contact rather than sending down the registering connection.
	deviceLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer deviceLn.Close()
	tcpRegistrar := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	tcpRegistrar.Send(servertest.Register("dave", "third-reg-2", 1, "Contact: <sip:dave@"+deviceLn.Addr().String()+";transport=tcp>"))
	tcpRegistrar.Expect(`^SIP/2.0 200 `)
	bob.Send(servertest.Message("bob", "dave", "third-msg-2", "text/plain", "to the TCP contact"))
	_ = deviceLn.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	c, err := deviceLn.Accept()
	if err != nil {
		t.Fatalf("simpled did not connect to the Contact: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	tcpDevice := servertest.WireOn(t, c)
	tcpDevice.Reply(tcpDevice.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	tcpRegistrar.ExpectNothing(200 * time.Millisecond)
}

// A TCP client is reached over the connection it registered on; once that connection has
// closed, a MESSAGE for it is stored (202) and simpled never opens a connection to the
// address in its Contact.
func TestClosedFlowStoresMessageWithoutDialing(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	contactLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer contactLn.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := contactLn.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	alice := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	// As baresip and linphone do over TCP: Via names the port they listen on, the connection
	// leaves from another.
	alice.Send(servertest.NATRegister("alice", "flow-reg-1", "tcp", "Contact: <sip:alice@"+contactLn.Addr().String()+";transport=tcp>"))
	alice.Expect(`^SIP/2.0 200 `)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "alice", "flow-msg-1", "text/plain", "over the connection"))
	alice.Reply(alice.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)

	alice.Conn.Close()
	servertest.WaitFor(t, "the server to see the connection close", func() bool {
		return !srv.FlowOpen("tcp", alice.Conn.LocalAddr().String())
	})
	bob.Send(servertest.Message("bob", "alice", "flow-msg-2", "text/plain", "while away"))
	bob.Expect(`^SIP/2.0 202 `)
	servertest.WaitPending(t, srv, "alice@example.test", 1)
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("simpled opened a connection to the Contact of a client whose flow closed")
	case <-time.After(300 * time.Millisecond):
	}
}

// outboundContact is an RFC 5626 contact of one device (instance) on flow regID.
func outboundContact(user, instance string, regID int) string {
	return "Contact: <sip:" + user + "@127.0.0.2:5099;transport=tcp;ob>;+sip.instance=\"<urn:uuid:" + instance +
		">\";reg-id=" + strconv.Itoa(regID)
}

// SIP outbound: the 200 requires outbound and sets a Flow-Timer, CRLF keepalives are answered,
// and a device registered on two flows is reached once, on its newest flow that works.
func TestOutboundTwoFlows(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	const inst = "00000000-0000-4000-8000-0000000000a1"
	flow1 := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	flow1.Send(servertest.NATRegister("alice", "ob-reg-1", "tcp", "Supported: outbound, path", outboundContact("alice", inst, 1)))
	res := flow1.Expect(`^SIP/2.0 200 `)
	if h := res.GetHeader("Require"); h == nil || !strings.Contains(h.Value(), "outbound") {
		t.Fatalf("200 without Require: outbound:\n%s", res)
	}
	if h := res.GetHeader("Flow-Timer"); h == nil || h.Value() != "120" {
		t.Fatalf("200 Flow-Timer %v, want 120", h)
	}
	// RFC 5626 §4.4.1: a CRLFCRLF ping is answered with a CRLF pong.
	if _, err := flow1.Conn.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 2)
	_ = flow1.Conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := flow1.ReadRaw(pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keepalive pong %q, %v", pong, err)
	}

	time.Sleep(1100 * time.Millisecond) // the second flow is registered a second later: newer
	flow2 := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	flow2.Send(servertest.NATRegister("alice", "ob-reg-2", "tcp", "Supported: outbound", outboundContact("alice", inst, 2)))
	flow2.Expect(`^SIP/2.0 200 `)

	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "alice", "ob-msg-1", "text/plain", "one copy"))
	flow2.Reply(flow2.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	flow1.ExpectNothing(200 * time.Millisecond)

	flow2.Conn.Close()
	servertest.WaitFor(t, "flow 2 to close", func() bool {
		return !srv.FlowOpen("tcp", flow2.Conn.LocalAddr().String())
	})
	bob.Send(servertest.Message("bob", "alice", "ob-msg-2", "text/plain", "the first that works"))
	flow1.Reply(flow1.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
}

// A REGISTER asking for outbound that crossed a proxy which added no Path with ";ob" cannot
// get a flow: 439 (RFC 5626 §6).
func TestOutboundFirstHopLacksSupport(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("alice", "ob-439", 1, "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKproxy",
		"Supported: outbound", outboundContact("alice", "00000000-0000-4000-8000-0000000000a2", 1)))
	w.Expect(`^SIP/2.0 439 `)
}

var gruuParam = regexp.MustCompile(`(pub|temp)-gruu="([^"]+)"`)

// gruus returns the pub-gruu and temp-gruu of the contact with instance in a REGISTER 200.
func gruus(t *testing.T, res *sip.Response, instance string) (pub, temp string) {
	t.Helper()
	for _, h := range res.GetHeaders("Contact") {
		if !strings.Contains(h.Value(), instance) {
			continue
		}
		for _, m := range gruuParam.FindAllStringSubmatch(h.Value(), -1) {
			if m[1] == "pub" {
				pub = m[2]
			} else {
				temp = m[2]
			}
		}
	}
	if pub == "" || temp == "" {
		t.Fatalf("no pub-gruu and temp-gruu for %s in:\n%s", instance, res)
	}
	return pub, temp
}

// GRUU (RFC 5627): the registrar hands out a public and a temporary GRUU per device; a request
// to either reaches that device only; a GRUU of no registered device gets 480, one simpled did
// not issue 404; a SUBSCRIBE whose Contact is a GRUU (as Linphone sends) gets its NOTIFYs.
func TestGRUU(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	const instA, instB = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	devA := servertest.Dial(t, "udp", srv.Listener("udp"))
	devA.Send(servertest.Register("alice", "gruu-a", 1, "Supported: gruu", "Contact: <sip:alice@{local}>;+sip.instance=\"<urn:uuid:"+instA+">\"", "Expires: 600"))
	pubA, _ := gruus(t, devA.Expect(`^SIP/2.0 200 `), instA)
	devB := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	devB.Send(servertest.Register("alice", "gruu-b", 1, "Supported: gruu", "Contact: <sip:alice@{local};transport=tcp>;+sip.instance=\"<urn:uuid:"+instB+">\"", "Expires: 600"))
	_, tempB := gruus(t, devB.Expect(`^SIP/2.0 200 `), instB)
	if pubA != "sip:alice@example.test;gr=urn:uuid:"+instA {
		t.Fatalf("pub-gruu %q", pubA)
	}
	if strings.Contains(tempB, "alice") || strings.Contains(tempB, instB) {
		t.Fatalf("temp-gruu %q reveals the AOR or the instance", tempB)
	}

	bob := servertest.NewUA(t, srv, "udp", "bob")
	to := func(uri, callID string) string {
		return "MESSAGE " + uri + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=g" + callID + "\nTo: <" + uri + ">\n" +
			"Call-ID: " + callID + "\nCSeq: 1 MESSAGE\nContent-Type: text/plain\nContent-Length: 2\n\nhi"
	}
	bob.Send(to(pubA, "gruu-msg-a"))
	devA.Reply(devA.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	devB.ExpectNothing(200 * time.Millisecond)

	bob.Send(to(tempB, "gruu-msg-b"))
	devB.Reply(devB.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	devA.ExpectNothing(200 * time.Millisecond)

	bob.Send(to("sip:alice@example.test;gr=urn:uuid:00000000-0000-4000-8000-0000000000ff", "gruu-msg-gone"))
	bob.Expect(`^SIP/2.0 480 `)
	bob.Send(to("sip:tgruu.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test;gr", "gruu-msg-forged"))
	bob.Expect(`^SIP/2.0 404 `)

	// Linphone subscribes with its pub-gruu as Contact: the NOTIFY finds the device through
	// the location service.
	devA.Send("SUBSCRIBE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=gw\nTo: <sip:bob@example.test>\n" +
		"Call-ID: gruu-sub\nCSeq: 1 SUBSCRIBE\nContact: <" + pubA + ">\nEvent: presence\nExpires: 600\nContent-Length: 0\n\n")
	devA.Expect(`^SIP/2.0 200 `)
	if n := devA.Notify(); !strings.HasPrefix(servertest.SubState(n), "active") {
		t.Fatalf("NOTIFY to the GRUU: Subscription-State %q", servertest.SubState(n))
	}
}

// A dialog with a NATed caller: simpled's Record-Route names the caller's flow, so the
// callee's BYE reaches the caller where its packets come from, not at its private Contact.
func TestDialogFollowsCallerFlow(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.NATRegister("alice", "rr-reg-1", "udp"))
	alice.Expect(`^SIP/2.0 200 `)

	alice.Send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:bob@example.test>\n" +
		"Call-ID: rr-call-1\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.2:5099>\nContent-Length: 0\n\n")
	inv := bob.Request("INVITE")
	rr := inv.GetHeaders("Record-Route")
	if len(rr) == 0 {
		t.Fatal("INVITE forwarded without Record-Route")
	}
	bob.Reply(inv, 200, "Contact: <sip:bob@"+bob.Conn.LocalAddr().String()+">")
	alice.Expect(`^SIP/2.0 200 `)

	// The callee's BYE: Request-URI the caller's Contact, Route the recorded route.
	bye := "BYE sip:alice@127.0.0.2:5099 SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: " + inv.To().Value() + ";tag=uas200\nTo: " + inv.From().Value() + "\n" +
		"Call-ID: rr-call-1\nCSeq: 1 BYE\n"
	for _, h := range rr {
		bye += "Route: " + h.Value() + "\n"
	}
	bob.Send(bye + "Content-Length: 0\n\n")
	alice.Reply(alice.Request("BYE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
}

// Two nodes share one Redis: alice's TCP connection is held by node A; a MESSAGE that reaches
// node B goes to A with a Route naming alice's flow (RFC 5626 §5.3), and A sends it down the
// connection. Node B never connects to alice itself.
func TestFlowHeldByAnotherNode(t *testing.T) {
	rs := redistest.Start(t)
	node := func(id string) func(*servertest.Options) {
		return func(o *servertest.Options) {
			o.Store = rs.URL()
			o.NodeID = id
			o.Auth.NonceSecret = "one secret for the whole deployment"
		}
	}
	a := servertest.Start(t, node("a"))
	b := servertest.Start(t, node("b"))
	alice := servertest.Dial(t, "tcp", a.Listener("tcp"))
	alice.Send(servertest.NATRegister("alice", "two-nodes-reg", "tcp"))
	alice.Expect(`^SIP/2.0 200 `)

	bob := servertest.Dial(t, "udp", b.Listener("udp"))
	bob.Send(servertest.Message("bob", "alice", "two-nodes-msg", "text/plain", "via node A"))
	req := alice.Request("MESSAGE")
	if string(req.Body()) != "via node A" || len(req.GetHeaders("Via")) != 3 {
		t.Fatalf("MESSAGE at alice: body %q, %d Vias (want bob's, B's, A's)\n%s", req.Body(), len(req.GetHeaders("Via")), req)
	}
	alice.Reply(req, 200)
	bob.Expect(`^SIP/2.0 200 `)
}

// udpOutboundRegister registers one UDP flow (reg-id) of an outbound device from w: RFC 5626
// §4.2's REGISTER, whose Contact carries +sip.instance and reg-id (no ";ob"), from a client
// that is not behind a NAT (Via = source): outbound alone binds it to its flow.
func udpOutboundRegister(w *servertest.Wire, user, instance string, regID int) {
	w.T.Helper()
	w.Send(servertest.Register(user, "udp-ob-"+strconv.Itoa(regID), 1, "Supported: outbound",
		"Contact: <sip:"+user+"@{local}>;+sip.instance=\"<urn:uuid:"+instance+">\";reg-id="+strconv.Itoa(regID), "Expires: 600"))
	w.Expect(`^SIP/2.0 200 `)
}

// A device with two outbound UDP flows is reached on the one whose keepalives (STUN, or CRLF
// datagrams) came last: keepalives refresh a UDP flow (RFC 5626 §4.4.2).
func TestOutboundUDPKeepaliveRefreshesFlow(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	const inst = "00000000-0000-4000-8000-0000000000c1"
	flow1 := servertest.Dial(t, "udp", srv.Listener("udp"))
	flow2 := servertest.Dial(t, "udp", srv.Listener("udp"))
	udpOutboundRegister(flow1, "carol", inst, 1)
	time.Sleep(1100 * time.Millisecond)
	udpOutboundRegister(flow2, "carol", inst, 2) // newer: the flow to try first

	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "carol", "udp-ob-msg-1", "text/plain", "newest registration"))
	flow2.Reply(flow2.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	flow1.ExpectNothing(200 * time.Millisecond)

	time.Sleep(50 * time.Millisecond)
	if _, err := flow1.Conn.Write([]byte("\r\n\r\n")); err != nil { // flow 1 keeps alive; flow 2 fell silent
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the keepalive to be counted", func() bool {
		return servertest.MetricValue(t, srv, `simpled_keepalives_total{kind="crlf",transport="udp"}`) >= 1
	})
	bob.Send(servertest.Message("bob", "carol", "udp-ob-msg-2", "text/plain", "freshest keepalive"))
	flow1.Reply(flow1.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)
	flow2.ExpectNothing(200 * time.Millisecond)
}

// Both sides of a call behind NATs: simpled's Record-Route names both flows, so the caller's
// ACK and BYE, sent to the callee's private Contact, reach the callee where its packets come
// from.
func TestDialogBothSidesOnFlows(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.NATRegister("alice", "rr2-reg-a", "udp"))
	alice.Expect(`^SIP/2.0 200 `)
	carol := servertest.Dial(t, "udp", srv.Listener("udp"))
	carol.Send(servertest.NATRegister("carol", "rr2-reg-c", "udp"))
	carol.Expect(`^SIP/2.0 200 `)

	inDialog := func(method, cseq string, routes []string) string {
		msg := method + " sip:carol@127.0.0.2:5099 SIP/2.0\n" +
			"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:carol@example.test>;tag=uas200\n" +
			"Call-ID: rr2-call\nCSeq: " + cseq + "\n"
		for _, r := range routes {
			msg += "Route: " + r + "\n"
		}
		return msg + "Content-Length: 0\n\n"
	}
	alice.Send("INVITE sip:carol@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:carol@example.test>\n" +
		"Call-ID: rr2-call\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.2:5099>\nContent-Length: 0\n\n")
	inv := carol.Request("INVITE")
	carol.Reply(inv, 200, "Contact: <sip:carol@127.0.0.2:5099>")
	ok := alice.Expect(`^SIP/2.0 200 `)
	var routes []string // the caller's route set: the Record-Routes in reverse order
	rr := ok.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		routes = append(routes, rr[i].Value())
	}
	if len(routes) == 0 {
		t.Fatal("200 without Record-Route")
	}

	alice.Send(inDialog("ACK", "1 ACK", routes))
	if ack := carol.Request("ACK"); ack.CallID().Value() != "rr2-call" {
		t.Fatalf("ACK of another call: %s", ack.CallID().Value())
	}
	alice.Send(inDialog("BYE", "2 BYE", routes))
	carol.Reply(carol.Request("BYE"), 200)
	alice.Expect(`^SIP/2.0 200 `)
}
