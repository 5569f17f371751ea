package server_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"
)

// twoNodes starts nodes a and b of one deployment: one Redis, one secret, users alice and bob,
// auth.mode required.
func twoNodes(t *testing.T) (a, b *server.Server) {
	t.Helper()
	rs := redistest.Start(t)
	users := servertest.UsersFile(t, "alice", "bob")
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store, o.NodeID, o.UsersFile = rs.URL(), id, users
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
	bob := servertest.NewAuthUA(t, b, "udp", "bob")
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
