package dialog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/pidf"

	"github.com/emiago/sipgo/sip"
)

// doc parses a dialog NOTIFY's body.
func doc(t *testing.T, n *sip.Request) *pidf.DialogInfo {
	t.Helper()
	if ct := n.ContentType(); ct == nil || ct.Value() != "application/dialog-info+xml" || n.GetHeader("Event").Value() != "dialog" {
		t.Fatalf("not a dialog NOTIFY:\n%s", n)
	}
	d, err := pidf.ParseDialogInfo(n.Body())
	if err != nil {
		t.Fatalf("NOTIFY body does not parse: %v\n%s", err, n.Body())
	}
	if len(d.Dialogs) == 0 {
		t.Fatalf("NOTIFY without a <dialog>:\n%s", n.Body())
	}
	return d
}

// watchDialog subscribes watcher (user@domain) to user's dialog state over a new wire and
// returns the wire and the first document.
func watchDialog(t *testing.T, srv interface{ Listener(string) string }, watcher, user, callID string) (*servertest.Wire, *pidf.DialogInfo) {
	t.Helper()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := w.Watch(servertest.Subscribe(watcher, user, callID, 1, "dialog", 600))
	return w, doc(t, n)
}

// until reads NOTIFYs (at most ten) until one tells of a dialog of callID in state, and returns
// that dialog and the document.
func until(t *testing.T, w *servertest.Wire, callID, state string) (pidf.DialogEntry, *pidf.DialogInfo) {
	t.Helper()
	var seen []string
	for range 10 {
		d := doc(t, w.Notify())
		for _, x := range d.Dialogs {
			seen = append(seen, x.State)
			if x.CallID == callID && x.State == state {
				return x, d
			}
		}
	}
	t.Fatalf("no %s dialog of %s in ten NOTIFYs (saw %v)", state, callID, seen)
	return pidf.DialogEntry{}, nil
}

// idle asserts d is an idle user's full document: one terminated dummy dialog.
func idle(t *testing.T, d *pidf.DialogInfo, what string) {
	t.Helper()
	if d.State != "full" || len(d.Dialogs) != 1 || d.Dialogs[0].State != "terminated" || d.Dialogs[0].CallID != "" {
		t.Fatalf("%s: want a full document with one terminated dummy dialog, got %+v", what, d)
	}
}

// TestBLFCall: a watcher of bob's line and one of alice's see a call alice → bob through
// simpled: trying/early/confirmed/terminated with the direction, tags and identities of each
// side; the BYE is remote-bye for bob (alice hung up) and local-bye for alice.
func TestBLFCall(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	watchBob, first := watchDialog(t, srv, "carol@example.test", "bob", "blf-bob")
	idle(t, first, "first NOTIFY of an idle user")
	if first.Version != 0 || first.Entity != "sip:bob@example.test" {
		t.Fatalf("first document: version %d entity %q", first.Version, first.Entity)
	}
	servertest.MakeKnown(t, srv, "alice")
	watchAlice, _ := watchDialog(t, srv, "carol@example.test", "alice", "blf-alice")

	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "call-1", 1))
	inv := bob.Request("INVITE")
	bob.Reply(inv, 180)
	caller.Expect(`^SIP/2.0 180 `)
	early, d := until(t, watchBob, "call-1", "early")
	if early.Direction != "recipient" || early.LocalTag != "uas180" || early.RemoteTag != "fcall-1" ||
		early.Remote == nil || early.Remote.Identity != "sip:alice@example.test" || d.State != "partial" {
		t.Fatalf("bob's early dialog: %+v (document %s)", early, d.State)
	}
	bob.Reply(inv, 200, "Contact: <sip:bob@"+bob.Conn.LocalAddr().String()+">")
	ok := caller.Expect(`^SIP/2.0 200 `)
	conf, _ := until(t, watchBob, "call-1", "confirmed")
	if conf.Local == nil || !strings.Contains(conf.Local.Target, bob.Conn.LocalAddr().String()) || conf.Duration < 0 {
		t.Fatalf("bob's confirmed dialog: %+v local %+v", conf, conf.Local)
	}
	aconf, _ := until(t, watchAlice, "call-1", "confirmed")
	if aconf.Direction != "initiator" || aconf.LocalTag != "fcall-1" || aconf.RemoteTag != "uas200" ||
		aconf.Remote.Identity != "sip:bob@example.test" {
		t.Fatalf("alice's confirmed dialog: %+v", aconf)
	}

	caller.Send(servertest.InDialog("ACK", ok, 1, ""))
	bob.Request("ACK")
	caller.Send(servertest.InDialog("BYE", ok, 2, ""))
	bob.Reply(bob.Request("BYE"), 200)
	caller.Expect(`^SIP/2.0 200 `)
	end, _ := until(t, watchBob, "call-1", "terminated")
	if end.Event != "remote-bye" {
		t.Fatalf("bob's dialog ended with %q, want remote-bye", end.Event)
	}
	if aend, _ := until(t, watchAlice, "call-1", "terminated"); aend.Event != "local-bye" {
		t.Fatalf("alice's dialog ended with %q, want local-bye", aend.Event)
	}
}

// TestBLFForking: bob has two devices; the call rings both and one answers. The lamp follows
// the call (kamailio #2906): the CANCEL of the losing device is not reported, bob has one
// dialog, confirmed; a refresh's full document says so too.
func TestBLFForking(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	d1 := servertest.NewUA(t, srv, "udp", "bob", `Contact: <sip:bob@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000b1>"`)
	d2 := servertest.NewUA(t, srv, "udp", "bob", `Contact: <sip:bob@{local}>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000b2>"`)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	sub, _ := w.Watch(servertest.Subscribe("carol@example.test", "bob", "blf-fork", 1, "dialog", 600))

	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "fork-1", 1))
	i1, i2 := d1.Request("INVITE"), d2.Request("INVITE")
	d1.Reply(i1, 180)
	d2.Reply(i2, 180)
	until(t, w, "fork-1", "early")
	d1.Reply(i1, 200, "Contact: <sip:bob@"+d1.Conn.LocalAddr().String()+">")
	caller.Expect(`^SIP/2.0 200 `)
	until(t, w, "fork-1", "confirmed")
	d2.Reply(d2.Request("CANCEL"), 200)
	d2.Reply(i2, 487)
	w.ExpectNothing(300 * time.Millisecond)

	w.SendTP(servertest.Resubscribe(sub, 2, 600))
	w.Expect(`^SIP/2.0 200 `)
	n := w.Notify()
	full := doc(t, n)
	if full.State != "full" || len(full.Dialogs) != 1 || full.Dialogs[0].State != "confirmed" || full.Dialogs[0].CallID != "fork-1" {
		t.Fatalf("after the loser's CANCEL: want one confirmed dialog, got %+v", full.Dialogs)
	}
}

// TestBLFTwoCalls: two calls of bob at once (an attended transfer's) are reported together,
// each its own dialog with its own state (kamailio #1427).
func TestBLFTwoCalls(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	sub, _ := w.Watch(servertest.Subscribe("carol@example.test", "bob", "blf-two", 1, "dialog", 600))
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "two-1", 1))
	i1 := bob.Request("INVITE")
	bob.Reply(i1, 200, "Contact: <sip:bob@"+bob.Conn.LocalAddr().String()+">")
	caller.Expect(`^SIP/2.0 200 `)
	until(t, w, "two-1", "confirmed")
	other := servertest.Dial(t, "udp", srv.Listener("udp"))
	other.Send(servertest.Invite("dave", "bob", "two-2", 1))
	i2 := bob.Request("INVITE")
	bob.Reply(i2, 180)
	until(t, w, "two-2", "early")

	w.SendTP(servertest.Resubscribe(sub, 2, 600))
	w.Expect(`^SIP/2.0 200 `)
	full := doc(t, w.Notify())
	states := map[string]string{}
	for _, x := range full.Dialogs {
		states[x.CallID] = x.State
	}
	if len(full.Dialogs) != 2 || states["two-1"] != "confirmed" || states["two-2"] != "early" {
		t.Fatalf("two calls: want two-1 confirmed and two-2 early, got %+v", full.Dialogs)
	}
	bob.Reply(i2, 486)
	other.Expect(`^SIP/2.0 486 `)
}

// TestBLFFailedCalls: a call bob declines is terminated/rejected with the code; one the caller
// cancels is terminated/cancelled.
func TestBLFFailedCalls(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	w, _ := watchDialog(t, srv, "carol@example.test", "bob", "blf-fail")
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "busy-1", 1))
	bob.Reply(bob.Request("INVITE"), 486)
	caller.Expect(`^SIP/2.0 486 `)
	bob.Request("ACK")
	if x, _ := until(t, w, "busy-1", "terminated"); x.Event != "rejected" || x.Code != 486 {
		t.Fatalf("declined call: %+v", x)
	}

	msg := servertest.Invite("alice", "bob", "cancel-1", 1)
	caller.Send(msg)
	inv := bob.Request("INVITE")
	bob.Reply(inv, 180)
	caller.Expect(`^SIP/2.0 180 `)
	until(t, w, "cancel-1", "early")
	cancel := strings.Replace(strings.Replace(caller.Expand(msg), "INVITE sip:", "CANCEL sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	caller.Send(cancel)
	bob.Reply(bob.Request("CANCEL"), 200)
	bob.Reply(inv, 487)
	if x, _ := until(t, w, "cancel-1", "terminated"); x.Event != "cancelled" || x.Code != 487 {
		t.Fatalf("cancelled call: %+v", x)
	}
}

// TestBLFSubscribeRules: a nonexistent user is 404; a blocked watcher 403; a politely blocked
// one is accepted and sees bob idle during a call; Event: dialog;sla is served as dialog.
func TestBLFSubscribeRules(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) {
		servertest.FastPresence(o)
		o.Admin.TokenFile = ""
	})
	bob := servertest.NewUA(t, srv, "udp", "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Subscribe("carol@example.test", "nobody", "blf-404", 1, "dialog", 600))
	w.Expect(`^SIP/2.0 404 `)

	base := "http://" + srv.HTTPAddr() + "/api/v1/presence/bob@example.test"
	servertest.HTTPDo(t, "PUT", base+"/rules/mallory@example.test", `{"rule":"block"}`, 200)
	servertest.HTTPDo(t, "PUT", base+"/rules/eve@example.test", `{"rule":"polite-block"}`, 200)
	w.Send(servertest.Subscribe("mallory@example.test", "bob", "blf-403", 1, "dialog", 600))
	w.Expect(`^SIP/2.0 403 `)

	polite, first := watchDialog(t, srv, "eve@example.test", "bob", "blf-polite")
	idle(t, first, "politely blocked watcher")
	sla := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := sla.Watch(servertest.Subscribe("carol@example.test", "bob", "blf-sla", 1, "dialog;sla", 600))
	idle(t, doc(t, n), "dialog;sla")

	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "rules-1", 1))
	inv := bob.Request("INVITE")
	bob.Reply(inv, 180)
	caller.Expect(`^SIP/2.0 180 `)
	until(t, sla, "rules-1", "early")
	polite.ExpectNothing(300 * time.Millisecond)
	bob.Reply(inv, 486)
	caller.Expect(`^SIP/2.0 486 `)
}

// TestBLFPublish: only a trusted peer (a PBX) publishes dialog state: from anyone else 403;
// a malformed document 400 naming the fault, another type 415, a huge one 413; a valid one is
// shown to bob's watchers beside the calls simpled routes.
func TestBLFPublish(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) {
		servertest.FastPresence(o)
		o.Proxy.TrustedPeers = []string{"127.0.0.5"}
	})
	servertest.NewUA(t, srv, "udp", "bob")
	w, _ := watchDialog(t, srv, "carol@example.test", "bob", "blf-pub")
	publish := func(wire *servertest.Wire, callID, ctype, body string) *sip.Response {
		msg := servertest.Publish("bob", callID, 1, "", 600, body)
		msg = strings.Replace(msg, "Event: presence", "Event: dialog", 1)
		msg = strings.Replace(msg, "application/pidf+xml", ctype, 1)
		wire.SendTP(msg)
		return wire.Expect(`^SIP/2.0 [2-6]\d\d `)
	}
	good := `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:bob@example.test">` +
		`<dialog id="pbx-1" call-id="pbx-call" local-tag="a" remote-tag="b" direction="recipient"><state>early</state>` +
		`<remote><identity display="Queue">sip:queue@example.test</identity></remote></dialog></dialog-info>`
	stranger := servertest.Dial(t, "udp", srv.Listener("udp"))
	if res := publish(stranger, "pub-403", "application/dialog-info+xml", good); res.StatusCode != 403 {
		t.Fatalf("PUBLISH from an untrusted source: want 403:\n%s", res)
	}
	pbx := servertest.DialFrom(t, "tcp", "127.0.0.5", srv.Listener("tcp"))
	if res := publish(pbx, "pub-400", "application/dialog-info+xml", strings.Replace(good, "<state>early</state>", "<state>ringing</state>", 1)); res.StatusCode != 400 ||
		!strings.Contains(res.Reason, "state") {
		t.Fatalf("malformed dialog-info: want 400 naming the state:\n%s", res)
	}
	if res := publish(pbx, "pub-415", "application/pidf+xml", good); res.StatusCode != 415 {
		t.Fatalf("another type: want 415:\n%s", res)
	}
	huge := strings.Replace(good, "</dialog-info>", strings.Repeat(" ", 100<<10)+"</dialog-info>", 1)
	if res := publish(pbx, "pub-413", "application/dialog-info+xml", huge); res.StatusCode != 413 {
		t.Fatalf("huge dialog-info: want 413:\n%s", res)
	}
	if res := publish(pbx, "pub-ok", "application/dialog-info+xml", good); res.StatusCode != 200 {
		t.Fatalf("trusted peer: want 200:\n%s", res)
	}
	x, _ := until(t, w, "pbx-call", "early")
	if x.Remote == nil || x.Remote.Display != "Queue" {
		t.Fatalf("published dialog: %+v", x)
	}
}

// TestBLFTwoNodes: two nodes on one Redis; bob registers and is called through node A, the
// watcher subscribed through node B sees the call come and go: the dialogs are shared.
func TestBLFTwoNodes(t *testing.T) {
	rs := redistest.Start(t)
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			servertest.FastPresence(o)
			o.Store, o.NodeID = rs.URL(), id
			o.Auth.NonceSecret = "one secret for the whole deployment"
			o.Cluster.Lease = 2 * time.Second
		}
	}
	a, b := servertest.Start(t, node("a")), servertest.Start(t, node("b"))
	bob := servertest.NewUA(t, a, "udp", "bob")
	w, first := watchDialog(t, b, "carol@example.test", "bob", "blf-nodes")
	idle(t, first, "watcher on node B")
	caller := servertest.Dial(t, "udp", a.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "nodes-1", 1))
	inv := bob.Request("INVITE")
	bob.Reply(inv, 180)
	until(t, w, "nodes-1", "early")
	bob.Reply(inv, 486)
	caller.Expect(`^SIP/2.0 486 `)
	bob.Request("ACK")
	if x, _ := until(t, w, "nodes-1", "terminated"); x.Event != "rejected" || x.Code != 486 {
		t.Fatalf("call ended through node A, seen on node B: %+v", x)
	}
}

// TestBLFKeptOnFailure: a BLF key that misses a NOTIFY is not left dark (opensips #380): a
// NOTIFY answered 503, or 408, does not end the subscription, and the next change brings the
// whole document again; a 481 (the phone forgot the subscription) ends it.
func TestBLFKeptOnFailure(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	w, _ := watchDialog(t, srv, "carol@example.test", "bob", "blf-lenient")
	caller := servertest.Dial(t, "udp", srv.Listener("udp"))
	caller.Send(servertest.Invite("alice", "bob", "lenient-1", 1))
	inv := bob.Request("INVITE")
	w.Reply(w.Request("NOTIFY"), 503) // trying

	bob.Reply(inv, 180)
	n := w.Request("NOTIFY")
	if d := doc(t, n); d.State != "full" || len(d.Dialogs) != 1 || d.Dialogs[0].CallID != "lenient-1" || d.Dialogs[0].State != "early" {
		t.Fatalf("after a NOTIFY answered 503: want a full document with the early call, got %+v", d)
	}
	w.Reply(n, 200)
	bob.Reply(inv, 200, "Contact: <sip:bob@"+bob.Conn.LocalAddr().String()+">")
	ok := caller.Expect(`^SIP/2.0 200 `)
	w.Reply(w.Request("NOTIFY"), 408) // confirmed

	caller.Send(servertest.InDialog("ACK", ok, 1, ""))
	bob.Request("ACK")
	caller.Send(servertest.InDialog("BYE", ok, 2, ""))
	bob.Reply(bob.Request("BYE"), 200)
	caller.Expect(`^SIP/2.0 200 `)
	n = w.Request("NOTIFY")
	if d := doc(t, n); d.State != "full" || d.Dialogs[0].State != "terminated" || d.Dialogs[0].Event != "remote-bye" {
		t.Fatalf("after a NOTIFY answered 408: want a full document with the ended call, got %+v", d)
	}
	w.Reply(n, 481)

	caller.Send(servertest.Invite("alice", "bob", "lenient-2", 1))
	bob.Reply(bob.Request("INVITE"), 486)
	caller.Expect(`^SIP/2.0 486 `)
	w.ExpectNothing(500 * time.Millisecond)
}
