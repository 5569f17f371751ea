package server

import (
	"bufio"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"

	"github.com/emiago/sipgo/sip"
)

// natRegister is a REGISTER from a client behind a NAT: its Via and Contact name the private
// address it believes it has (127.0.0.2:5099, where nothing listens), while its packets come
// from the wire's own address.
func natRegister(user, callID, tp string, extra ...string) string {
	msg := "REGISTER sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/" + strings.ToUpper(tp) + " 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
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

// A NATed UDP client gets its MESSAGE and its NOTIFY where its packets come from, not at the
// private address of its Contact.
func TestNATedUDPClientReachedAtSource(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(natRegister("alice", "nat-reg-1", "udp"))
	alice.expect(`^SIP/2.0 200 `)

	bob := newUA(t, srv, "udp", "bob")
	bob.send(message("bob", "alice", "nat-msg-1", "text/plain", "behind the NAT"))
	req := alice.request("MESSAGE")
	if string(req.Body()) != "behind the NAT" || req.Recipient.Host != "127.0.0.2" {
		t.Fatalf("MESSAGE at the NATed client: R-URI %s body %q", req.Recipient.String(), req.Body())
	}
	alice.reply(req, 200)
	bob.expect(`^SIP/2.0 200 `)

	// A SUBSCRIBE whose Contact is the private address: the NOTIFYs come to the source too.
	sub := "SUBSCRIBE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=natw\nTo: <sip:bob@example.test>\n" +
		"Call-ID: nat-sub-1\nCSeq: 1 SUBSCRIBE\nContact: <sip:alice@127.0.0.2:5099>\nEvent: presence\n" +
		"Expires: 600\nContent-Length: 0\n\n"
	alice.send(sub)
	alice.expect(`^SIP/2.0 200 `)
	n := alice.notify()
	if !strings.HasPrefix(subState(n), "active") {
		t.Fatalf("NOTIFY Subscription-State %q", subState(n))
	}
}

// A REGISTER whose Via names its own source is a client (or a third party) that is not behind
// a NAT: its Contact is taken at its word, even when it names another address.
func TestThirdPartyContactTakenAtItsWord(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	registrar := dial(t, "udp", srv.Listener("udp"))
	device := dial(t, "udp", srv.Listener("udp")) // the device named in the Contact
	registrar.send(register("carol", "third-reg-1", 1, "Contact: <sip:carol@"+device.conn.LocalAddr().String()+">"))
	registrar.expect(`^SIP/2.0 200 `)

	bob := newUA(t, srv, "udp", "bob")
	bob.send(message("bob", "carol", "third-msg-1", "text/plain", "to the contact"))
	device.reply(device.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	registrar.expectNothing(200 * time.Millisecond)

	// Over TCP too (sipp's load tests register their UAS this way): simpled connects to the
	// Contact rather than sending down the registering connection.
	deviceLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer deviceLn.Close()
	tcpRegistrar := dial(t, "tcp", srv.Listener("tcp"))
	tcpRegistrar.send(register("dave", "third-reg-2", 1, "Contact: <sip:dave@"+deviceLn.Addr().String()+";transport=tcp>"))
	tcpRegistrar.expect(`^SIP/2.0 200 `)
	bob.send(message("bob", "dave", "third-msg-2", "text/plain", "to the TCP contact"))
	_ = deviceLn.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	c, err := deviceLn.Accept()
	if err != nil {
		t.Fatalf("simpled did not connect to the Contact: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	tcpDevice := &wire{t: t, conn: c, rd: bufio.NewReaderSize(c, 1<<16)}
	tcpDevice.reply(tcpDevice.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	tcpRegistrar.expectNothing(200 * time.Millisecond)
}

// A TCP client is reached over the connection it registered on; once that connection has
// closed, a MESSAGE for it is stored (202) and simpled never opens a connection to the
// address in its Contact.
func TestClosedFlowStoresMessageWithoutDialing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
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

	alice := dial(t, "tcp", srv.Listener("tcp"))
	// As baresip and linphone do over TCP: Via names the port they listen on, the connection
	// leaves from another.
	alice.send(natRegister("alice", "flow-reg-1", "tcp", "Contact: <sip:alice@"+contactLn.Addr().String()+";transport=tcp>"))
	alice.expect(`^SIP/2.0 200 `)
	bob := newUA(t, srv, "udp", "bob")
	bob.send(message("bob", "alice", "flow-msg-1", "text/plain", "over the connection"))
	alice.reply(alice.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)

	alice.conn.Close()
	waitFor(t, "the server to see the connection close", func() bool {
		return !srv.delivery.FlowOpen("tcp", alice.conn.LocalAddr().String())
	})
	bob.send(message("bob", "alice", "flow-msg-2", "text/plain", "while away"))
	bob.expect(`^SIP/2.0 202 `)
	waitPending(t, srv, "alice@example.test", 1)
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
	srv := startServer(t, nil)
	const inst = "00000000-0000-4000-8000-0000000000a1"
	flow1 := dial(t, "tcp", srv.Listener("tcp"))
	flow1.send(natRegister("alice", "ob-reg-1", "tcp", "Supported: outbound, path", outboundContact("alice", inst, 1)))
	res := flow1.expect(`^SIP/2.0 200 `)
	if h := res.GetHeader("Require"); h == nil || !strings.Contains(h.Value(), "outbound") {
		t.Fatalf("200 without Require: outbound:\n%s", res)
	}
	if h := res.GetHeader("Flow-Timer"); h == nil || h.Value() != "120" {
		t.Fatalf("200 Flow-Timer %v, want 120", h)
	}
	// RFC 5626 §4.4.1: a CRLFCRLF ping is answered with a CRLF pong.
	if _, err := flow1.conn.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 2)
	_ = flow1.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := flow1.rd.Read(pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keepalive pong %q, %v", pong, err)
	}

	time.Sleep(1100 * time.Millisecond) // the second flow is registered a second later: newer
	flow2 := dial(t, "tcp", srv.Listener("tcp"))
	flow2.send(natRegister("alice", "ob-reg-2", "tcp", "Supported: outbound", outboundContact("alice", inst, 2)))
	flow2.expect(`^SIP/2.0 200 `)

	bob := newUA(t, srv, "udp", "bob")
	bob.send(message("bob", "alice", "ob-msg-1", "text/plain", "one copy"))
	flow2.reply(flow2.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	flow1.expectNothing(200 * time.Millisecond)

	flow2.conn.Close()
	waitFor(t, "flow 2 to close", func() bool {
		return !srv.delivery.FlowOpen("tcp", flow2.conn.LocalAddr().String())
	})
	bob.send(message("bob", "alice", "ob-msg-2", "text/plain", "the first that works"))
	flow1.reply(flow1.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
}

// A REGISTER asking for outbound that crossed a proxy which added no Path with ";ob" cannot
// get a flow: 439 (RFC 5626 §6).
func TestOutboundFirstHopLacksSupport(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("alice", "ob-439", 1, "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKproxy",
		"Supported: outbound", outboundContact("alice", "00000000-0000-4000-8000-0000000000a2", 1)))
	w.expect(`^SIP/2.0 439 `)
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
	srv := startServer(t, nil)
	const instA, instB = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	devA := dial(t, "udp", srv.Listener("udp"))
	devA.send(register("alice", "gruu-a", 1, "Supported: gruu", "Contact: <sip:alice@{local}>;+sip.instance=\"<urn:uuid:"+instA+">\"", "Expires: 600"))
	pubA, _ := gruus(t, devA.expect(`^SIP/2.0 200 `), instA)
	devB := dial(t, "tcp", srv.Listener("tcp"))
	devB.send(register("alice", "gruu-b", 1, "Supported: gruu", "Contact: <sip:alice@{local};transport=tcp>;+sip.instance=\"<urn:uuid:"+instB+">\"", "Expires: 600"))
	_, tempB := gruus(t, devB.expect(`^SIP/2.0 200 `), instB)
	if pubA != "sip:alice@example.test;gr=urn:uuid:"+instA {
		t.Fatalf("pub-gruu %q", pubA)
	}
	if strings.Contains(tempB, "alice") || strings.Contains(tempB, instB) {
		t.Fatalf("temp-gruu %q reveals the AOR or the instance", tempB)
	}

	bob := newUA(t, srv, "udp", "bob")
	to := func(uri, callID string) string {
		return "MESSAGE " + uri + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=g" + callID + "\nTo: <" + uri + ">\n" +
			"Call-ID: " + callID + "\nCSeq: 1 MESSAGE\nContent-Type: text/plain\nContent-Length: 2\n\nhi"
	}
	bob.send(to(pubA, "gruu-msg-a"))
	devA.reply(devA.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	devB.expectNothing(200 * time.Millisecond)

	bob.send(to(tempB, "gruu-msg-b"))
	devB.reply(devB.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	devA.expectNothing(200 * time.Millisecond)

	bob.send(to("sip:alice@example.test;gr=urn:uuid:00000000-0000-4000-8000-0000000000ff", "gruu-msg-gone"))
	bob.expect(`^SIP/2.0 480 `)
	bob.send(to("sip:tgruu.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test;gr", "gruu-msg-forged"))
	bob.expect(`^SIP/2.0 404 `)

	// Linphone subscribes with its pub-gruu as Contact: the NOTIFY finds the device through
	// the location service.
	devA.send("SUBSCRIBE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=gw\nTo: <sip:bob@example.test>\n" +
		"Call-ID: gruu-sub\nCSeq: 1 SUBSCRIBE\nContact: <" + pubA + ">\nEvent: presence\nExpires: 600\nContent-Length: 0\n\n")
	devA.expect(`^SIP/2.0 200 `)
	if n := devA.notify(); !strings.HasPrefix(subState(n), "active") {
		t.Fatalf("NOTIFY to the GRUU: Subscription-State %q", subState(n))
	}
}

// A dialog with a NATed caller: simpled's Record-Route names the caller's flow, so the
// callee's BYE reaches the caller where its packets come from, not at its private Contact.
func TestDialogFollowsCallerFlow(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	bob := newUA(t, srv, "udp", "bob")
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(natRegister("alice", "rr-reg-1", "udp"))
	alice.expect(`^SIP/2.0 200 `)

	alice.send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:bob@example.test>\n" +
		"Call-ID: rr-call-1\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.2:5099>\nContent-Length: 0\n\n")
	inv := bob.request("INVITE")
	rr := inv.GetHeaders("Record-Route")
	if len(rr) == 0 {
		t.Fatal("INVITE forwarded without Record-Route")
	}
	bob.reply(inv, 200, "Contact: <sip:bob@"+bob.conn.LocalAddr().String()+">")
	alice.expect(`^SIP/2.0 200 `)

	// The callee's BYE: Request-URI the caller's Contact, Route the recorded route.
	bye := "BYE sip:alice@127.0.0.2:5099 SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: " + inv.To().Value() + ";tag=uas200\nTo: " + inv.From().Value() + "\n" +
		"Call-ID: rr-call-1\nCSeq: 1 BYE\n"
	for _, h := range rr {
		bye += "Route: " + h.Value() + "\n"
	}
	bob.send(bye + "Content-Length: 0\n\n")
	alice.reply(alice.request("BYE"), 200)
	bob.expect(`^SIP/2.0 200 `)
}

// Two nodes share one Redis: alice's TCP connection is held by node A; a MESSAGE that reaches
// node B goes to A with a Route naming alice's flow (RFC 5626 §5.3), and A sends it down the
// connection. Node B never connects to alice itself.
func TestFlowHeldByAnotherNode(t *testing.T) {
	rs := redistest.Start(t)
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store = rs.URL()
			o.NodeID = id
			o.Auth.NonceSecret = "one secret for the whole deployment"
		}
	}
	a := startServer(t, node("a"))
	b := startServer(t, node("b"))
	alice := dial(t, "tcp", a.Listener("tcp"))
	alice.send(natRegister("alice", "two-nodes-reg", "tcp"))
	alice.expect(`^SIP/2.0 200 `)

	bob := dial(t, "udp", b.Listener("udp"))
	bob.send(message("bob", "alice", "two-nodes-msg", "text/plain", "via node A"))
	req := alice.request("MESSAGE")
	if string(req.Body()) != "via node A" || len(req.GetHeaders("Via")) != 3 {
		t.Fatalf("MESSAGE at alice: body %q, %d Vias (want bob's, B's, A's)\n%s", req.Body(), len(req.GetHeaders("Via")), req)
	}
	alice.reply(req, 200)
	bob.expect(`^SIP/2.0 200 `)
}

// udpOutboundRegister registers one UDP flow (reg-id) of an outbound device from w: RFC 5626
// §4.2's REGISTER, whose Contact carries +sip.instance and reg-id (no ";ob"), from a client
// that is not behind a NAT (Via = source): outbound alone binds it to its flow.
func udpOutboundRegister(w *wire, user, instance string, regID int) {
	w.t.Helper()
	w.send(register(user, "udp-ob-"+strconv.Itoa(regID), 1, "Supported: outbound",
		"Contact: <sip:"+user+"@{local}>;+sip.instance=\"<urn:uuid:"+instance+">\";reg-id="+strconv.Itoa(regID), "Expires: 600"))
	w.expect(`^SIP/2.0 200 `)
}

// A device with two outbound UDP flows is reached on the one whose keepalives (STUN, or CRLF
// datagrams) came last: keepalives refresh a UDP flow (RFC 5626 §4.4.2).
func TestOutboundUDPKeepaliveRefreshesFlow(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	const inst = "00000000-0000-4000-8000-0000000000c1"
	flow1 := dial(t, "udp", srv.Listener("udp"))
	flow2 := dial(t, "udp", srv.Listener("udp"))
	udpOutboundRegister(flow1, "carol", inst, 1)
	time.Sleep(1100 * time.Millisecond)
	udpOutboundRegister(flow2, "carol", inst, 2) // newer: the flow to try first

	bob := newUA(t, srv, "udp", "bob")
	bob.send(message("bob", "carol", "udp-ob-msg-1", "text/plain", "newest registration"))
	flow2.reply(flow2.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	flow1.expectNothing(200 * time.Millisecond)

	time.Sleep(50 * time.Millisecond)
	if _, err := flow1.conn.Write([]byte("\r\n\r\n")); err != nil { // flow 1 keeps alive; flow 2 fell silent
		t.Fatal(err)
	}
	waitFor(t, "the keepalive to be counted", func() bool {
		return metricValue(t, srv, `simpled_keepalives_total{kind="crlf",transport="udp"}`) >= 1
	})
	bob.send(message("bob", "carol", "udp-ob-msg-2", "text/plain", "freshest keepalive"))
	flow1.reply(flow1.request("MESSAGE"), 200)
	bob.expect(`^SIP/2.0 200 `)
	flow2.expectNothing(200 * time.Millisecond)
}

// Both sides of a call behind NATs: simpled's Record-Route names both flows, so the caller's
// ACK and BYE, sent to the callee's private Contact, reach the callee where its packets come
// from.
func TestDialogBothSidesOnFlows(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(natRegister("alice", "rr2-reg-a", "udp"))
	alice.expect(`^SIP/2.0 200 `)
	carol := dial(t, "udp", srv.Listener("udp"))
	carol.send(natRegister("carol", "rr2-reg-c", "udp"))
	carol.expect(`^SIP/2.0 200 `)

	inDialog := func(method, cseq string, routes []string) string {
		msg := method + " sip:carol@127.0.0.2:5099 SIP/2.0\n" +
			"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:carol@example.test>;tag=uas200\n" +
			"Call-ID: rr2-call\nCSeq: " + cseq + "\n"
		for _, r := range routes {
			msg += "Route: " + r + "\n"
		}
		return msg + "Content-Length: 0\n\n"
	}
	alice.send("INVITE sip:carol@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=caller\nTo: <sip:carol@example.test>\n" +
		"Call-ID: rr2-call\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.2:5099>\nContent-Length: 0\n\n")
	inv := carol.request("INVITE")
	carol.reply(inv, 200, "Contact: <sip:carol@127.0.0.2:5099>")
	ok := alice.expect(`^SIP/2.0 200 `)
	var routes []string // the caller's route set: the Record-Routes in reverse order
	rr := ok.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		routes = append(routes, rr[i].Value())
	}
	if len(routes) == 0 {
		t.Fatal("200 without Record-Route")
	}

	alice.send(inDialog("ACK", "1 ACK", routes))
	if ack := carol.request("ACK"); ack.CallID().Value() != "rr2-call" {
		t.Fatalf("ACK of another call: %s", ack.CallID().Value())
	}
	alice.send(inDialog("BYE", "2 BYE", routes))
	carol.reply(carol.request("BYE"), 200)
	alice.expect(`^SIP/2.0 200 `)
}
