package reg_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/presence/reg"

	"github.com/emiago/sipgo/sip"
)

const accept = "Accept: application/reginfo+xml"

// regServer is a simpled whose expiries are seen within a fraction of a second: the sweep
// runs every 100ms and expiries of one second are accepted.
func regServer(t *testing.T, mod func(*config.Options)) *server.Server {
	return servertest.Start(t, func(o *config.Options) {
		servertest.FastPresence(o)
		o.Registrar.SweepInterval = 100 * time.Millisecond
		if mod != nil {
			mod(o)
		}
	})
}

// document parses a reg NOTIFY's body and checks its headers and version.
func document(t *testing.T, n *sip.Request, version uint32, state string) reg.Registration {
	t.Helper()
	if ct := n.ContentType(); ct == nil || ct.Value() != reg.ContentType || n.GetHeader("Event").Value() != "reg" {
		t.Fatalf("NOTIFY without Event: reg and Content-Type %s:\n%s", reg.ContentType, n)
	}
	info, err := reg.Parse(n.Body())
	if err != nil {
		t.Fatalf("NOTIFY body: %v\n%s", err, n.Body())
	}
	if info.Version != version || info.State != state || len(info.Registrations) != 1 {
		t.Fatalf("want version %d, state %s and one registration:\n%s", version, state, n.Body())
	}
	return info.Registrations[0]
}

// contact returns the contact of r whose URI contains host, failing when there is none.
func contact(t *testing.T, r reg.Registration, host string) reg.Contact {
	t.Helper()
	for _, c := range r.Contacts {
		if strings.Contains(c.URI, host) {
			return c
		}
	}
	t.Fatalf("no contact %s in %+v", host, r)
	return reg.Contact{}
}

// register sends a REGISTER of alice's contact at port over w, expecting 200.
func register(w *servertest.Wire, callID string, cseq, port, expires int, params string) {
	w.Send(servertest.Register("alice", callID, cseq,
		fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>%s", port, params), fmt.Sprintf("Expires: %d", expires)))
	w.Expect(`^SIP/2.0 200 `)
}

// partial takes the next NOTIFY: a partial document of version with exactly one contact,
// which it returns with the registration's state.
func partial(t *testing.T, w *servertest.Wire, version uint32) (reg.Contact, string) {
	t.Helper()
	r := document(t, w.Notify(), version, reg.Partial)
	if len(r.Contacts) != 1 {
		t.Fatalf("partial document %d: want the one changed contact, got %+v", version, r.Contacts)
	}
	return r.Contacts[0], r.State
}

// TestRegEvent: alice watches her own registrations. The first NOTIFY is the full document
// with both devices (the instance id escaped as an unknown-param); then each change is a
// partial document with the changed contact only and the version one higher: a new device
// (registered), a refresh (refreshed), a lower expiry (shortened), a de-REGISTER
// (unregistered), an expiry sent when the registrar sweeps it (expired), a TCP device whose
// connection closed (deactivated), and the admin API's removal of the last one, which
// terminates the registration.
func TestRegEvent(t *testing.T) {
	srv := regServer(t, nil)
	dev := servertest.Dial(t, "udp", srv.Listener("udp"))
	register(dev, "d1", 1, 5071, 600, `;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"`)
	register(dev, "d2", 1, 5072, 600, "")

	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	res, n := w.Watch(servertest.Subscribe("alice@example.test", "alice", "watch-reg", 1, "reg", 600, accept))
	if res.GetHeader("Expires") == nil {
		t.Fatalf("200 without Expires:\n%s", res)
	}
	if !strings.Contains(string(n.Body()), `<unknown-param name="+sip.instance">&#34;&lt;urn:uuid:00000000-0000-0000-0000-000000000001&gt;&#34;</unknown-param>`) {
		t.Errorf("instance id not an escaped unknown-param:\n%s", n.Body())
	}
	full := document(t, n, 0, reg.Full)
	if full.State != reg.RegActive || full.AOR != "sip:alice@example.test" || len(full.Contacts) != 2 {
		t.Fatalf("full document: want alice's two active contacts:\n%s", n.Body())
	}
	c1 := contact(t, full, ":5071")
	if c1.State != reg.ContactActive || c1.CallID != "d1" || c1.CSeq == nil || *c1.CSeq != 1 || c1.Expires == nil || *c1.Expires < 590 || *c1.Expires > 600 {
		t.Fatalf("contact 1: want active, Call-ID d1, CSeq 1, about 600s: %+v", c1)
	}

	register(dev, "d3", 1, 5073, 600, "")
	if c, _ := partial(t, w, 1); c.Event != reg.EvRegistered || c.State != reg.ContactActive || !strings.Contains(c.URI, ":5073") {
		t.Fatalf("third device: want registered: %+v", c)
	}
	register(dev, "d1", 2, 5071, 600, `;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"`)
	if c, _ := partial(t, w, 2); c.Event != reg.EvRefreshed || c.ID != c1.ID || *c.CSeq != 2 {
		t.Fatalf("refresh: want refreshed with the same id and CSeq 2: %+v", c)
	}
	register(dev, "d2", 2, 5072, 300, "")
	if c, _ := partial(t, w, 3); c.Event != reg.EvShortened || *c.Expires > 300 {
		t.Fatalf("lower expiry: want shortened to 300s: %+v", c)
	}
	register(dev, "d3", 2, 5073, 0, "")
	if c, st := partial(t, w, 4); c.Event != reg.EvUnregistered || c.State != reg.ContactTerminated || st != reg.RegActive {
		t.Fatalf("de-REGISTER: want unregistered, terminated, the registration active: %+v %s", c, st)
	}

	// Expiries are kept in whole seconds: a registration for 1 s made late in a second could
	// expire before its own NOTIFY went out, and the two would be one document. For 2 s the
	// registration is notified first.
	register(dev, "d4", 1, 5074, 2, "")
	registered := time.Now()
	if c, _ := partial(t, w, 5); c.Event != reg.EvRegistered || !strings.Contains(c.URI, ":5074") {
		t.Fatalf("short registration: want registered: %+v", c)
	}
	if c, _ := partial(t, w, 6); c.Event != reg.EvExpired || c.State != reg.ContactTerminated || !strings.Contains(c.URI, ":5074") {
		t.Fatalf("expiry: want expired: %+v", c)
	}
	if d := time.Since(registered); d > 3500*time.Millisecond {
		t.Errorf("expired contact notified %s after its registration for 2s (sweep every 100ms)", d)
	}

	tcp := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	tcp.Send(servertest.NATRegister("alice", "d5", "tcp"))
	tcp.Expect(`^SIP/2.0 200 `)
	partial(t, w, 7)
	tcp.Conn.Close()
	if c, _ := partial(t, w, 8); c.Event != reg.EvDeactivated || c.State != reg.ContactTerminated {
		t.Fatalf("connection closed: want deactivated: %+v", c)
	}

	servertest.Unregister(t, srv, "alice@example.test")
	r := document(t, w.Notify(), 9, reg.Partial)
	if r.State != reg.RegTerminated || len(r.Contacts) != 2 {
		t.Fatalf("admin removal of the last contacts: want both terminated and the registration terminated:\n%+v", r)
	}
	for _, c := range r.Contacts {
		if c.Event != reg.EvDeactivated || c.State != reg.ContactTerminated {
			t.Fatalf("admin removal: want deactivated: %+v", c)
		}
	}
	w.ExpectNothing(300 * time.Millisecond)
}

// TestRegWhoMayWatch (docs/security.md): with auth required, a user watches only its own
// registrations (403 for another's), a user named in reg.watchers and a trusted peer
// (proxy.trusted_peers, here the "PBX" at 127.0.0.5) anyone's; a user that is not ours is
// 404 and an Accept without application/reginfo+xml 406; a foreign watcher (rule d) is 403,
// even with the local user's name.
func TestRegWhoMayWatch(t *testing.T) {
	srv := regServer(t, func(o *config.Options) {
		servertest.RequireAuth(t, "alice", "bob", "ops")(o)
		o.Reg.Watchers = []string{"ops@example.test"}
		o.Proxy.TrustedPeers = []string{"127.0.0.5"}
	})
	dev := servertest.Dial(t, "udp", srv.Listener("udp"))
	dev.WithAuth(servertest.Register("alice", "a1", 1, "Contact: <sip:alice@127.0.0.1:5071>", "Expires: 600"),
		"alice", "sip:example.test", `^SIP/2.0 200 `)

	sub := func(watcher, user, callID string, extra ...string) string {
		msg := servertest.Subscribe(watcher+"@example.test", user, callID, 1, "reg", 600, extra...)
		return strings.ReplaceAll(msg, "{tp}", "udp")
	}
	cases := []struct {
		name, watcher, user, want string
		extra                     []string
	}{
		{"own", "alice", "alice", `^SIP/2.0 200 `, []string{accept}},
		{"someone else's", "bob", "alice", `^SIP/2.0 403 `, []string{accept}},
		{"configured watcher", "ops", "alice", `^SIP/2.0 200 `, []string{accept}},
		{"no such user", "ops", "nobody", `^SIP/2.0 404 `, []string{accept}},
		{"bad accept", "alice", "alice", `^SIP/2.0 406 `, []string{"Accept: application/pidf+xml"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := servertest.Dial(t, "udp", srv.Listener("udp"))
			res := w.WithAuth(sub(c.watcher, c.user, fmt.Sprintf("who-%d", i), c.extra...), c.watcher, "sip:"+c.user+"@example.test", c.want)
			if res.StatusCode == 200 {
				if n := w.Notify(); len(document(t, n, 0, reg.Full).Contacts) != 1 {
					t.Fatalf("want alice's contact:\n%s", n.Body())
				}
			}
		})
	}
	t.Run("unauthenticated", func(t *testing.T) {
		w := servertest.Dial(t, "udp", srv.Listener("udp"))
		w.Send(sub("alice", "alice", "who-noauth", accept))
		w.Expect(`^SIP/2.0 407 `)
	})
	t.Run("foreign watcher", func(t *testing.T) {
		w := servertest.Dial(t, "udp", srv.Listener("udp"))
		w.SendTP(servertest.Subscribe("alice@example.net", "alice", "who-foreign", 1, "reg", 600, accept))
		w.Expect(`^SIP/2.0 403 `)
	})
	t.Run("trusted peer", func(t *testing.T) {
		pbx := servertest.DialFrom(t, "udp", "127.0.0.5", srv.Listener("udp"))
		_, n := pbx.Watch(servertest.Subscribe("pbx@pbx.example.net", "alice", "who-pbx", 1, "reg", 600, accept))
		if r := document(t, n, 0, reg.Full); len(r.Contacts) != 1 {
			t.Fatalf("trusted peer: want alice's contact:\n%s", n.Body())
		}
	})
}

// TestRegEventAcrossNodes: two nodes on one Redis; alice watches through node b, her device
// registers and unregisters through node a, and node b's NOTIFYs say so (registered, then
// unregistered: the reason crossed nodes with the binding event).
func TestRegEventAcrossNodes(t *testing.T) {
	rs := redistest.Start(t)
	node := func(id string) *server.Server {
		return regServer(t, func(o *config.Options) {
			o.Store, o.NodeID = rs.URL(), id
			o.Cluster.Lease = 2 * time.Second
		})
	}
	a, b := node("a"), node("b")
	dev := servertest.Dial(t, "udp", a.Listener("udp"))
	register(dev, "x1", 1, 5071, 600, "")

	w := servertest.Dial(t, "udp", b.Listener("udp"))
	_, n := w.Watch(servertest.Subscribe("alice@example.test", "alice", "watch-x", 1, "reg", 600, accept))
	if r := document(t, n, 0, reg.Full); len(r.Contacts) != 1 {
		t.Fatalf("full document through node b: want the contact registered through a:\n%s", n.Body())
	}
	register(dev, "x2", 1, 5072, 600, "")
	if c, _ := partial(t, w, 1); c.Event != reg.EvRegistered || !strings.Contains(c.URI, ":5072") {
		t.Fatalf("REGISTER on node a: want registered from node b: %+v", c)
	}
	register(dev, "x2", 2, 5072, 0, "")
	if c, _ := partial(t, w, 2); c.Event != reg.EvUnregistered {
		t.Fatalf("de-REGISTER on node a: want unregistered from node b: %+v", c)
	}
}
