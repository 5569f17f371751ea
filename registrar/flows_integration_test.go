package registrar_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsClient is a browser tab's WebSocket to simpled: SIP messages in text frames.
type wsClient struct {
	t    *testing.T
	conn net.Conn
}

func dialWS(t *testing.T, addr string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	c, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, "ws://"+addr)
	if err != nil {
		t.Fatalf("WebSocket to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, conn: c}
}

// do sends msg (LF line ends become CRLF) and returns the next message simpled sends.
func (c *wsClient) do(msg string) string {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(strings.ReplaceAll(msg, "\n", "\r\n"))); err != nil {
		c.t.Fatalf("WebSocket write: %v", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	data, err := wsutil.ReadServerText(c.conn)
	if err != nil {
		c.t.Fatalf("WebSocket read: %v", err)
	}
	return string(data)
}

// browserRegister is JsSIP's REGISTER over a WebSocket: a random ".invalid" host in Via and
// Contact, +sip.instance and reg-id.
func browserRegister(user string) string {
	return "REGISTER sip:example.test SIP/2.0\n" +
		"Via: SIP/2.0/WS k3j2h1.invalid;branch=z9hG4bK" + servertest.NextBranch() + "\n" +
		"Max-Forwards: 69\nFrom: <sip:" + user + "@example.test>;tag=tab\nTo: <sip:" + user + "@example.test>\n" +
		"Call-ID: tab-reg\nCSeq: 1 REGISTER\n" +
		"Contact: <sip:r4nd0m@k3j2h1.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-00000000ab01>\";expires=600\n" +
		"Supported: path, gruu, outbound\nContent-Length: 0\n\n"
}

// watchBob subscribes a watcher to bob's presence (derived from registration: bob publishes
// nothing) before bob registers, and checks the first NOTIFY shows him closed. The watcher
// subscribes first, as in presence's own tests: a SUBSCRIBE that races the presence agent's
// handling of the registration just before it can leave the agent taking bob as unwatched
// for 30 s (presence/notify.go, markUnwatched), which is not what these tests are about.
func watchBob(t *testing.T, srv *servertest.Server) *servertest.Wire {
	t.Helper()
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := w.Watch(servertest.Subscribe("carol@example.test", "bob", "watch-bob", 1, "presence", 600))
	if !strings.Contains(string(n.Body()), "<basic>closed</basic>") {
		t.Fatalf("first NOTIFY: bob is not registered, want closed:\n%s", n.Body())
	}
	return w
}

// expectOpen reads the watcher's next NOTIFY and checks bob shows open.
func expectOpen(t *testing.T, w *servertest.Wire) {
	t.Helper()
	if n := w.Notify(); !strings.Contains(string(n.Body()), "<basic>open</basic>") {
		t.Fatalf("NOTIFY after bob registered: want open:\n%s", n.Body())
	}
}

// expectClosed reads the watcher's next NOTIFY and checks bob shows closed, with no open tuple.
func expectClosed(t *testing.T, w *servertest.Wire) {
	t.Helper()
	n := w.Notify()
	if body := string(n.Body()); !strings.Contains(body, "<basic>closed</basic>") || strings.Contains(body, "<basic>open</basic>") {
		t.Fatalf("NOTIFY after bob's connection closed: want closed:\n%s", body)
	}
}

func expectUnregistered(t *testing.T, srv *servertest.Server, aor string) {
	t.Helper()
	if reg, body := servertest.Lookup(t, srv, aor); len(reg.Bindings) != 0 {
		t.Fatalf("%s still registered after its connection closed: %s", aor, body)
	}
}

// A client registered over a connection — TCP with a Contact naming the connection itself
// (no listener of its own), or a browser tab's WebSocket — is unregistered the moment its
// connection closes, not when its 600 s registration expires: the binding is gone from the
// store, the watcher of its presence (derived from registration) gets a NOTIFY showing it
// closed, and the removal is counted as kind flow_closed. With the memory and the Redis store.
func TestClosedConnectionUnregisters(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		for _, tp := range []string{"tcp", "ws"} {
			t.Run(store+"/"+tp, func(t *testing.T) {
				mod := func(o *servertest.Options) {
					servertest.FastPresence(o)
					o.Listen = append(o.Listen, "ws://127.0.0.1:0")
				}
				if store == "redis" {
					mod = servertest.Redis(t, mod)
				}
				srv := servertest.Start(t, mod)
				w := watchBob(t, srv)
				var closeBob func() error
				switch tp {
				case "tcp":
					bob := servertest.Dial(t, "tcp", srv.Listener("tcp"))
					bob.Send(servertest.Register("bob", "bob-reg", 1, "Contact: <sip:bob@{local};transport=tcp>", "Expires: 600"))
					bob.Expect(`^SIP/2.0 200 `)
					closeBob = bob.Conn.Close
				case "ws":
					tab := dialWS(t, srv.Listener("ws"))
					if res := tab.do(browserRegister("bob")); !strings.HasPrefix(res, "SIP/2.0 200 ") {
						t.Fatalf("REGISTER over ws: %s", servertest.FirstLine(res))
					}
					closeBob = tab.conn.Close
				}
				expectOpen(t, w)
				if err := closeBob(); err != nil {
					t.Fatal(err)
				}
				// Seconds, not the registration's 600: ample on a loaded machine, and a
				// failure says whether the removal or the NOTIFY was missing.
				servertest.Poll(t, 10*time.Second, "bob's binding to go with his connection", func() (bool, string) {
					reg, body := servertest.Lookup(t, srv, "bob@example.test")
					return len(reg.Bindings) == 0, body
				})
				expectClosed(t, w)
				if n := servertest.MetricValue(t, srv, `simpled_binding_events_total{kind="flow_closed"}`); n != 1 {
					t.Errorf("flow_closed events: %v, want 1", n)
				}
			})
		}
	}
}

// A device that registered again over a new connection before its old one closed keeps its
// registration when the old connection closes (the removal is conditional on the flow the
// binding is bound to now), and loses it when the new one closes.
func TestReRegisterOverNewConnectionSurvivesOldClose(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	// Behind a NAT: the same Contact (so the same binding) from both connections.
	old := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	old.Send(servertest.NATRegister("alice", "rereg-1", "tcp"))
	old.Expect(`^SIP/2.0 200 `)
	cur := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	cur.Send(servertest.NATRegister("alice", "rereg-2", "tcp"))
	cur.Expect(`^SIP/2.0 200 `)

	removals := func() float64 {
		return servertest.MetricValue(t, srv, `simpled_store_duration_seconds_count{op="remove_flow_bindings"}`)
	}
	if err := old.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the old connection's bindings to be looked for", func() bool { return removals() >= 1 })
	if reg, body := servertest.Lookup(t, srv, "alice@example.test"); len(reg.Bindings) != 1 {
		t.Fatalf("alice's registration over the new connection went with the old one: %s", body)
	}
	bob := servertest.NewUA(t, srv, "udp", "bob")
	bob.Send(servertest.Message("bob", "alice", "rereg-msg", "text/plain", "over the new connection"))
	cur.Reply(cur.Request("MESSAGE"), 200)
	bob.Expect(`^SIP/2.0 200 `)

	if err := cur.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the new connection's close to unregister alice", func() bool {
		reg, _ := servertest.Lookup(t, srv, "alice@example.test")
		return len(reg.Bindings) == 0
	})
	if n := servertest.MetricValue(t, srv, `simpled_binding_events_total{kind="flow_closed"}`); n != 1 {
		t.Errorf("flow_closed events: %v, want 1", n)
	}
}

// A third party that registers a device elsewhere over a connection (its Contact names
// another address; its Via is its own) is taken at its word: the registration outlives the
// connection it came over.
func TestThirdPartyRegistrationOutlivesConnection(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	w.Send(servertest.Register("dave", "third-tcp", 1, "Contact: <sip:dave@127.0.0.1:5072;transport=tcp>", "Expires: 600"))
	w.Expect(`^SIP/2.0 200 `)
	if err := w.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the server to see the connection close", func() bool {
		return !srv.FlowOpen("tcp", w.Conn.LocalAddr().String())
	})
	time.Sleep(200 * time.Millisecond) // a removal would follow the close at once
	if reg, body := servertest.Lookup(t, srv, "dave@example.test"); len(reg.Bindings) != 1 {
		t.Fatalf("a third-party registration went with the connection it came over: %s", body)
	}
}

// An outbound client over UDP (RFC 5626: +sip.instance, reg-id) gets a Flow-Timer; while its
// keepalives come its registration lives, and once they stop for twice the Flow-Timer its
// flow is dead: the binding goes, its watcher sees it closed, and the removal counts as
// flow_dead. A UDP client that did not ask for outbound, silent as long, stays registered.
func TestUDPOutboundFlowDiesWithoutKeepalives(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, func(o *servertest.Options) {
		servertest.FastPresence(o)
		o.Transport.UDPFlowTimer = time.Second
		o.Registrar.SweepInterval = 100 * time.Millisecond
	})
	w := watchBob(t, srv)
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(servertest.Register("bob", "udp-ob", 1, "Supported: outbound",
		`Contact: <sip:bob@{local}>;+sip.instance="<urn:uuid:00000000-0000-4000-8000-0000000000d1>";reg-id=1`, "Expires: 600"))
	res := bob.Expect(`^SIP/2.0 200 `)
	if h := res.GetHeader("Flow-Timer"); h == nil || h.Value() != "1" {
		t.Fatalf("200 to an outbound UDP REGISTER: Flow-Timer %v, want 1", h)
	}
	plain := servertest.Dial(t, "udp", srv.Listener("udp"))
	plain.Send(servertest.Register("dave", "udp-plain", 1, "Contact: <sip:dave@{local}>", "Expires: 600"))
	if res := plain.Expect(`^SIP/2.0 200 `); res.GetHeader("Flow-Timer") != nil {
		t.Fatalf("Flow-Timer for a client that did not ask for outbound:\n%s", res)
	}
	expectOpen(t, w)

	// CRLF keepalives every half Flow-Timer for three Flow-Timers: bob stays.
	for range 6 {
		if _, err := bob.Conn.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if reg, body := servertest.Lookup(t, srv, "bob@example.test"); len(reg.Bindings) != 1 {
		t.Fatalf("bob unregistered while his keepalives came: %s", body)
	}
	// Silence: dead after two Flow-Timers.
	expectClosed(t, w)
	expectUnregistered(t, srv, "bob@example.test")
	if n := servertest.MetricValue(t, srv, `simpled_binding_events_total{kind="flow_dead"}`); n != 1 {
		t.Errorf("flow_dead events: %v, want 1", n)
	}
	if reg, body := servertest.Lookup(t, srv, "dave@example.test"); len(reg.Bindings) != 1 {
		t.Fatalf("a UDP client without outbound was taken as dead: %s", body)
	}
}
