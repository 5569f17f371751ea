package server_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// twoNodes starts nodes a and b of one deployment: one Redis, one secret, users alice and bob,
// auth.mode required.
func twoNodes(t *testing.T) (a, b *server.Server) {
	t.Helper()
	return twoNodesOn(t, redistest.Start(t).URL(), "alice", "bob")
}

// twoNodesOn starts nodes a and b of one deployment on the store at url: one secret, users,
// auth.mode required.
func twoNodesOn(t *testing.T, url string, users ...string) (a, b *server.Server) {
	t.Helper()
	file := servertest.UsersFile(t, users...)
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store, o.NodeID, o.UsersFile = url, id, file
			o.Auth.NonceSecret = "one secret for the whole deployment"
		}
	}
	return servertest.Start(t, node("a")), servertest.Start(t, node("b"))
}

// Two nodes on one Redis with one secret trust each other's proofs: bob, authenticated on B,
// reaches alice whose connection A holds, and A does not challenge B's relay. A request that
// forges B's proof is challenged like any claim of a local identity.
func TestNodesTrustEachOtherOnly(t *testing.T) {
	a, b := twoNodes(t)
	alice := servertest.Dial(t, "tcp", a.Listener("tcp"))
	alice.WithAuth(servertest.NATRegister("alice", "nodes-reg", "tcp"), "alice", "sip:example.test", `^SIP/2.0 200 `)

	bob := servertest.Dial(t, "udp", b.Listener("udp"))
	bob.WithAuth(servertest.Message("bob", "alice", "nodes-msg", "text/plain", "via node A"), "bob", "sip:alice@example.test", "")
	req := alice.Request("MESSAGE")
	if string(req.Body()) != "via node A" {
		t.Fatalf("MESSAGE at alice: %q", req.Body())
	}
	if len(req.GetHeaders("Via")) != 3 {
		t.Fatalf("MESSAGE at alice has %d Vias, want bob's, B's and A's", len(req.GetHeaders("Via")))
	}
	alice.Reply(req, 200)
	bob.Expect(`^SIP/2.0 200 `)

	// A node proof forged by someone else proves nothing: A challenges the claim of bob's
	// identity.
	mallory := servertest.DialFrom(t, "udp", "127.0.0.2", a.Listener("udp"))
	route := "Route: <sip:" + a.Listener("udp") + ";lr;np=" + strconv.FormatInt(time.Now().Unix(), 36) + ".0123456789abcdef>"
	mallory.Send(servertest.Message("bob", "alice", "nodes-forged", "text/plain", "forged", route))
	mallory.Expect(`^SIP/2.0 407 `)
	alice.ExpectNothing(300 * time.Millisecond)
}

// A call across two nodes of one deployment: bob on B calls alice, whose connection A holds.
// Both nodes record-route; the ACK and alice's BYE pass both, and each node accepts the
// dialog token it issued — with auth.mode required and nothing else vouching for them.
func TestDialogAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	alice := servertest.Dial(t, "tcp", a.Listener("tcp"))
	alice.WithAuth(servertest.NATRegister("alice", "xnode-reg", "tcp"), "alice", "sip:example.test", `^SIP/2.0 200 `)
	bob := servertest.Dial(t, "tcp", b.Listener("tcp"))
	bob.WithAuth(servertest.NATRegister("bob", "rc-bob-reg", "tcp"), "bob", "sip:example.test", `^SIP/2.0 200 `)
	bobAddr := bob.Conn.LocalAddr().String()

	invite := "INVITE sip:alice@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=bobtag\nTo: <sip:alice@example.test>\n" +
		"Call-ID: xnode-call\nCSeq: 1 INVITE\nContact: <sip:bob@" + bobAddr + ">\nContent-Length: 0\n\n"
	bob.WithAuth(invite, "bob", "sip:alice@example.test", "")
	inv := alice.Request("INVITE")
	alice.Reply(inv, 200, "Contact: <sip:alice@127.0.0.2:5099;transport=tcp>")
	ok := bob.Expect(`^SIP/2.0 200 `)
	rr := ok.GetHeaders("Record-Route")
	if len(rr) < 2 {
		t.Fatalf("200 with %d Record-Routes, want both nodes'", len(rr))
	}
	toTag, _ := ok.To().Params.Get("tag")

	// bob's ACK: his route set is the Record-Routes reversed.
	var bobRoutes string
	for i := len(rr) - 1; i >= 0; i-- {
		bobRoutes += "Route: " + rr[i].Value() + "\n"
	}
	bob.Send("ACK sip:alice@127.0.0.2:5099;transport=tcp SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=bobtag\nTo: <sip:alice@example.test>;tag=" + toTag + "\n" +
		bobRoutes + "Call-ID: xnode-call\nCSeq: 1 ACK\nContent-Length: 0\n\n")
	if ack := alice.Request("ACK"); ack.CallID().Value() != "xnode-call" {
		t.Fatalf("ACK of another call at alice: %s", ack.CallID().Value())
	}

	// alice hangs up: her route set is the Record-Routes as the INVITE brought them.
	var aliceRoutes string
	for _, h := range inv.GetHeaders("Record-Route") {
		aliceRoutes += "Route: " + h.Value() + "\n"
	}
	alice.Send("BYE sip:bob@" + bobAddr + " SIP/2.0\n" +
		"Via: SIP/2.0/TCP 127.0.0.2:5099;branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=" + toTag + "\nTo: <sip:bob@example.test>;tag=bobtag\n" +
		aliceRoutes + "Call-ID: xnode-call\nCSeq: 1 BYE\nContent-Length: 0\n\n")
	bye := bob.Request("BYE")
	bob.Reply(bye, 200)
	alice.Expect(`^SIP/2.0 200 `)
}

// Issue 19's third reproduction: a TCP client with no listener of its own — its Contact is its
// connection's own address — registers on node C; a MESSAGE from a UDP user on node A reaches
// it through C and down its connection (200), not the offline store (202). Once its
// connection closes, its binding is gone from the shared store at once, and the next MESSAGE
// is stored without anyone dialing the dead address.
func TestStreamClientWithoutListenerAcrossNodes(t *testing.T) {
	a, c := twoNodes(t)
	alice := servertest.Dial(t, "tcp", c.Listener("tcp"))
	alice.WithAuth(servertest.Register("alice", "own-addr-reg", 1, "Contact: <sip:alice@{local};transport=tcp>", "Expires: 600"),
		"alice", "sip:example.test", `^SIP/2.0 200 `)
	bs, err := a.Store().Bindings(t.Context(), "alice@example.test", time.Now())
	if err != nil || len(bs) != 1 || bs[0].Flow == "" || bs[0].Node != c.NodeID() {
		t.Fatalf("alice's binding as node A reads it: %+v, %v; want one bound to a flow of node %s", bs, err, c.NodeID())
	}

	bob := servertest.Dial(t, "udp", a.Listener("udp"))
	bob.WithAuth(servertest.Message("bob", "alice", "own-addr-msg", "text/plain", "via node C"), "bob", "sip:alice@example.test", "")
	req := alice.Request("MESSAGE")
	if string(req.Body()) != "via node C" {
		t.Fatalf("MESSAGE at alice: %q", req.Body())
	}
	alice.Reply(req, 200)
	bob.Expect(`^SIP/2.0 200 `)

	if err := alice.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "alice's binding to go with her connection", func() bool {
		bs, err := a.Store().Bindings(t.Context(), "alice@example.test", time.Now())
		return err == nil && len(bs) == 0
	})
	bob.WithAuth(servertest.Message("bob", "alice", "own-addr-msg-2", "text/plain", "while away"), "bob", "sip:alice@example.test", `^SIP/2.0 202 `)
}

// Two nodes on a Redis Cluster of three masters, every user's keys on one of them and the
// sweep index on all: registrations made on one node are found by the other (bob on B reaches
// alice on A, alice on A reaches bob on B, each challenged with a nonce of the node it talks
// to), a MESSAGE stored for offline carol on B is delivered when she registers on A, and
// PUBLISH and SUBSCRIBE work on one node.
func TestNodesOnRedisCluster(t *testing.T) {
	a, b := twoNodesOn(t, redistest.StartCluster(t).URL(), "alice", "bob", "carol")

	alice := servertest.Dial(t, "tcp", a.Listener("tcp"))
	alice.WithAuth(servertest.NATRegister("alice", "rc-alice-reg", "tcp"), "alice", "sip:example.test", `^SIP/2.0 200 `)
	bob := servertest.Dial(t, "tcp", b.Listener("tcp"))
	bob.WithAuth(servertest.NATRegister("bob", "rc-bob-reg", "tcp"), "bob", "sip:example.test", `^SIP/2.0 200 `)

	bob.WithAuth(servertest.Message("bob", "alice", "rc-msg-1", "text/plain", "from B"), "bob", "sip:alice@example.test", "")
	if req := alice.Request("MESSAGE"); string(req.Body()) != "from B" {
		t.Fatalf("MESSAGE at alice: %q", req.Body())
	} else {
		alice.Reply(req, 200)
	}
	bob.Expect(`^SIP/2.0 200 `)

	alice.WithAuth(servertest.Message("alice", "bob", "rc-msg-2", "text/plain", "from A"), "alice", "sip:bob@example.test", "")
	if req := bob.Request("MESSAGE"); string(req.Body()) != "from A" {
		t.Fatalf("MESSAGE at bob: %q", req.Body())
	} else {
		bob.Reply(req, 200)
	}
	alice.Expect(`^SIP/2.0 200 `)

	// carol registers on B and leaves: a known user, offline. bob's MESSAGE to her is stored
	// (202) and handed to her when she registers again, on A.
	carolB := servertest.Dial(t, "udp", b.Listener("udp"))
	carolB.WithAuth(servertest.Register("carol", "rc-carol-reg", 1, "Contact: <sip:carol@{local}>"), "carol", "sip:example.test", `^SIP/2.0 200 `)
	carolB.WithAuth(servertest.Register("carol", "rc-carol-reg", 3, "Contact: <sip:carol@{local}>;expires=0"), "carol", "sip:example.test", `^SIP/2.0 200 `)
	servertest.WaitKnown(t, a, "carol@example.test")
	bob.WithAuth(servertest.Message("bob", "carol", "rc-msg-3", "text/plain", "while you were out"), "bob", "sip:carol@example.test", `^SIP/2.0 202 `)
	carolA := servertest.Dial(t, "tcp", a.Listener("tcp"))
	carolA.WithAuth(servertest.NATRegister("carol", "rc-carol-reg-2", "tcp"), "carol", "sip:example.test", `^SIP/2.0 200 `)
	req := carolA.Request("MESSAGE")
	if string(req.Body()) != "while you were out" {
		t.Fatalf("stored MESSAGE at carol: %q", req.Body())
	}
	carolA.Reply(req, 200)

	// Presence on node A: alice watches bob, who publishes through A.
	sub := strings.ReplaceAll(servertest.Subscribe("alice@example.test", "bob", "rc-sub", 1, "presence", 600), "{tp}", "tcp")
	ok := alice.WithAuth(sub, "alice", "sip:bob@example.test", `^SIP/2.0 200 `)
	n := alice.Notify()
	if strings.Contains(string(n.Body()), "away") {
		t.Fatalf("first NOTIFY shows bob away before he published:\n%s", n.Body())
	}
	away := `<dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities></dm:person>`
	bobA := servertest.Dial(t, "udp", a.Listener("udp"))
	bobA.WithAuth(servertest.Publish("bob", "rc-pub", 1, "", 600, servertest.PIDFDoc("bob", "t1", "open", away)), "bob", "sip:bob@example.test", `^SIP/2.0 200 `)
	if n := alice.Notify(); !strings.Contains(string(n.Body()), "away") {
		t.Fatalf("NOTIFY after bob's PUBLISH:\n%s", n.Body())
	}

	// alice ends her subscription and answers every NOTIFY up to the last, so none is left
	// waiting for an answer when the nodes stop.
	ok.AppendHeader(sip.NewHeader("Event", "presence"))
	alice.SendTP(servertest.Resubscribe(ok, 3, 0))
	answered, terminated := false, false
	for i := 0; !answered || !terminated; i++ {
		msg := alice.Read(3 * time.Second)
		if msg == "" || i == 10 {
			t.Fatalf("unsubscribed: answered %v, terminating NOTIFY %v", answered, terminated)
		}
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			answered = answered || strings.HasPrefix(msg, "SIP/2.0 200 ")
			continue
		}
		n := servertest.ParseRequest(t, msg)
		alice.Reply(n, 200)
		terminated = n.Method == sip.NOTIFY && strings.HasPrefix(servertest.SubState(n), "terminated")
	}
}
