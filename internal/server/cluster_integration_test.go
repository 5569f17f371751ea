package server_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"
)

// threeNodes starts nodes a, b and c of one deployment on the store at url (no credentials,
// as in the reproductions), with a short lease and a WebSocket listener each.
func threeNodes(t *testing.T, url string) (a, b, c *server.Server) {
	t.Helper()
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store, o.NodeID = url, id
			o.Listen = append(o.Listen, "ws://127.0.0.1:0")
			o.Auth.NonceSecret = "one secret for the whole deployment"
			o.Cluster.Lease = 2 * time.Second
		}
	}
	return servertest.Start(t, node("a")), servertest.Start(t, node("b")), servertest.Start(t, node("c"))
}

// watcher is a watcher's connection and subscription.
type watcher struct {
	name string
	wire *servertest.Wire
}

// watch subscribes name to p's presence through srv over network and takes its first NOTIFY.
func watch(t *testing.T, srv *server.Server, network, name string) watcher {
	t.Helper()
	var w *servertest.Wire
	if network == "ws" {
		w = servertest.DialWS(t, srv.Listener("ws"))
	} else {
		w = servertest.Dial(t, network, srv.Listener(network))
	}
	w.Watch(servertest.Subscribe(name+"@example.test", "p", "watch-"+name, 1, "presence", 600))
	return watcher{name: name, wire: w}
}

// publish sends p's document with basic through srv and waits for the 200; it returns the
// entity tag.
func publish(t *testing.T, srv *server.Server, callID string, cseq int, etag, basic string) string {
	t.Helper()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Publish("p", callID, cseq, etag, 600, servertest.PIDFDoc("p", "t1", basic)))
	return w.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
}

// expectOnce checks that every watcher gets exactly one NOTIFY, over its own connection,
// carrying basic.
func expectOnce(t *testing.T, basic string, ws ...watcher) {
	t.Helper()
	for _, w := range ws {
		n := w.wire.Notify()
		if !strings.Contains(string(n.Body()), "<basic>"+basic+"</basic>") {
			t.Errorf("%s: NOTIFY without %s:\n%s", w.name, basic, n.Body())
		}
	}
	for _, w := range ws {
		w.wire.ExpectNothing(300 * time.Millisecond)
	}
}

// TestClusterPresence: the reproductions, on one Redis and on a Redis Cluster of three
// masters. Watchers on node a (UDP, TCP, WebSocket) and c (UDP, WebSocket), and a TCP watcher
// on b; p registered on b. A PUBLISH on b, then one on a, then one on c: every watcher gets
// exactly one NOTIFY per change, over its own flow — the TCP watcher on b included, whose
// connection only b holds.
func TestClusterPresence(t *testing.T) {
	for _, store := range []string{"redis", "redis-cluster"} {
		t.Run(store, func(t *testing.T) {
			var url string
			if store == "redis" {
				url = redistest.Start(t).URL()
			} else {
				url = redistest.StartCluster(t).URL()
			}
			a, b, c := threeNodes(t, url)
			p := servertest.Dial(t, "udp", b.Listener("udp"))
			p.Send(servertest.Register("p", "p-reg", 1, "Contact: <sip:p@{local}>", "Expires: 600"))
			p.Expect(`^SIP/2.0 200 `)

			ws := []watcher{watch(t, a, "udp", "wa-udp"), watch(t, a, "tcp", "wa-tcp"), watch(t, a, "ws", "wa-ws"),
				watch(t, c, "udp", "wc-udp"), watch(t, c, "ws", "wc-ws"), watch(t, b, "tcp", "wb-tcp")}
			etag := publish(t, b, "p-pub", 1, "", "open")
			expectOnce(t, "open", ws...)
			time.Sleep(250 * time.Millisecond) // past presence.min_notify_interval
			etag = publish(t, a, "p-pub", 2, etag, "closed")
			expectOnce(t, "closed", ws...)
			time.Sleep(250 * time.Millisecond)
			publish(t, c, "p-pub", 3, etag, "open")
			expectOnce(t, "open", ws...)
		})
	}
}

// TestBaresipAcrossNodes: real phones on three nodes of one Redis. alice's baresip registers
// and publishes on node b; bob's baresip registers on node a and watches her there. bob sees
// her Online, Offline after /presence_offline and Online again — each change crossing from b
// to a. carol's linphonec on node c messages bob on a.
func TestBaresipAcrossNodes(t *testing.T) {
	bin := servertest.BaresipBin(t, "presence.so")
	linphonec := servertest.Tool(t, "linphonec", "linphone-cli")
	rs := redistest.Start(t)
	users := servertest.UsersFile(t, "alice", "bob", "carol")
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store, o.NodeID, o.UsersFile = rs.URL(), id, users
			o.Auth.NonceSecret = "one secret for the whole deployment"
			o.Cluster.Lease = 2 * time.Second
		}
	}
	a, b := servertest.Start(t, node("a")), servertest.Start(t, node("b"))
	alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Presence: true, Name: "alice",
		Account: servertest.BaresipAccount(b, "alice", "udp", ";pubint=600"), Contacts: []string{"<sip:bob@example.test>"}})
	alice.Registered(t, "udp")
	alice.Command(t, "/presence_online")
	bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Presence: true, Name: "bob",
		Account: servertest.BaresipAccount(a, "bob", "udp", ""), Contacts: []string{`"Alice" <sip:alice@example.test>;presence=p2p`}})
	bob.Registered(t, "udp")
	bob.Contacts(t, 10*time.Second, "Online", "Alice <sip:alice@example.test>")
	for _, st := range []struct{ command, from, to string }{
		{"/presence_offline", "Online", "Offline"},
		{"/presence_online", "Offline", "Online"},
	} {
		mark := bob.Mark()
		alice.Command(t, st.command)
		bob.WaitSince(t, mark, 5*time.Second, regexp.QuoteMeta("<sip:alice@example.test> changed status from "+st.from+" to "+st.to))
	}
	if snap := servertest.PresenceState(t, a, "alice@example.test"); len(snap.Subscriptions) != 1 {
		t.Errorf("alice's subscriptions as node a lists them: %+v", snap.Subscriptions)
	}

	c := servertest.Start(t, node("c"))
	carol := servertest.StartLinphonec(t, linphonec, c, "carol", "udp")
	mark := bob.Mark()
	carol.Command(t, "chat sip:bob@example.test hello from node c")
	bob.WaitSince(t, mark, 10*time.Second, regexp.QuoteMeta(`sip:carol@example.test: "hello from node c"`))
}

// TestClusterRedisRestart: Redis (with its append-only file) restarts while node a takes
// REGISTERs: afterwards the nodes, reconnected, still notify each watcher once per change —
// the subscriptions, their owners and the publication's entity tag came back with the file.
func TestClusterRedisRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	a, b, _ := threeNodes(t, rs.URL())
	p := servertest.Dial(t, "udp", b.Listener("udp"))
	p.Send(servertest.Register("p", "rr-reg", 1, "Contact: <sip:p@{local}>", "Expires: 600"))
	p.Expect(`^SIP/2.0 200 `)
	ws := []watcher{watch(t, a, "udp", "wa-udp"), watch(t, b, "tcp", "wb-tcp")}
	etag := publish(t, b, "rr-pub", 1, "", "open")
	expectOnce(t, "open", ws...)

	// Load on a through the restart: REGISTERs of other users, 100 a second for 3 s, their
	// answers (503 while Redis is down) not read.
	load := servertest.Dial(t, "udp", a.Listener("udp"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			load.Send(servertest.Register(fmt.Sprintf("load%d", i%50), fmt.Sprintf("rr-load-%d", i), i+1,
				"Contact: <sip:l@{local}>", "Expires: 600"))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	rs.Restart(t)
	<-done
	servertest.WaitFor(t, "both nodes leased again", func() bool {
		return a.Cluster().Leased() && b.Cluster().Leased() && a.Cluster().Alive("b") && b.Cluster().Alive("a")
	})
	time.Sleep(time.Second) // a heartbeat of each: inboxes and views as before
	publish(t, a, "rr-pub", 2, etag, "closed")
	expectOnce(t, "closed", ws...)
}
