package dialog_test

// End-to-end tests of the dialog package with real SIP clients: two baresip call each other
// through simpled while a watcher of each follows the call on its BLF key. As everywhere in
// internal/servertest every process talks only to 127.0.0.1, is bounded in time and is killed
// by its PID in t.Cleanup; a missing tool skips the test unless SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0 is driven over stdin (servertest.Baresip.Command): "/dial URI" places a call,
// "/accept" answers the ringing one (the account's default answermode is manual: it sends 180
// and rings until told), "/hangup" ends it.

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/pidf"
)

// watchAuthed subscribes watcher (a user of the users file) to user's dialog state over a new
// UDP wire, answering the challenge, and returns the wire and the first document.
func watchAuthed(t *testing.T, srv *servertest.Server, watcher, user string) (*servertest.Wire, *pidf.DialogInfo) {
	t.Helper()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	msg := servertest.Subscribe(watcher+"@"+servertest.Domain, user, "blf-e2e-"+user+"-"+servertest.NextBranch(), 1, "dialog", 600)
	w.WithAuth(strings.ReplaceAll(msg, "{tp}", "udp"), watcher, "sip:"+user+"@"+servertest.Domain, `^SIP/2.0 200 `)
	return w, doc(t, w.Notify())
}

// untilCall reads NOTIFYs (at most ten) until one tells of a call (a dialog with a Call-ID)
// in state, and returns that dialog; every call seen must be callID once that is known.
func untilCall(t *testing.T, w *servertest.Wire, callID, state string) pidf.DialogEntry {
	t.Helper()
	var seen []string
	for range 10 {
		for _, x := range doc(t, w.Notify()).Dialogs {
			if x.CallID == "" {
				continue
			}
			seen = append(seen, x.State)
			if callID != "" && x.CallID != callID {
				t.Fatalf("a second call %q beside %q: %+v", x.CallID, callID, x)
			}
			if x.State == state {
				return x
			}
		}
	}
	t.Fatalf("no %s call in ten NOTIFYs (saw %v)", state, seen)
	return pidf.DialogEntry{}
}

// TestBLFBaresipCall: alice and bob, two real baresip registered to simpled, call each other
// (alice dials, bob's phone rings, bob accepts, alice hangs up) while carol watches both lines.
// Bob's key goes early → confirmed → terminated (remote-bye), as a recipient, with alice as the
// other party and bob's registered contact as the target; alice's goes confirmed →
// terminated (local-bye) as the initiator of the same call, with the tags mirrored.
func TestBLFBaresipCall(t *testing.T) {
	bin := servertest.BaresipBin(t, "g711.so")
	srv := servertest.Start(t, func(o *servertest.Options) {
		servertest.RequireAuth(t, "alice", "bob", "carol")(o)
		servertest.FastPresence(o)
	})
	alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "alice",
		Account: servertest.BaresipAccount(srv, "alice", "udp", ""), Modules: []string{"g711.so"}})
	bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "bob",
		Account: servertest.BaresipAccount(srv, "bob", "udp", ""), Modules: []string{"g711.so"}})
	alice.Registered(t, "udp")
	bob.Registered(t, "udp")
	watchBob, first := watchAuthed(t, srv, "carol", "bob")
	idle(t, first, "bob before the call")
	watchAlice, first := watchAuthed(t, srv, "carol", "alice")
	idle(t, first, "alice before the call")

	alice.Command(t, "/dial sip:bob@example.test")
	bob.WaitFor(t, 10*time.Second, "Incoming call from: ")
	early := untilCall(t, watchBob, "", "early")
	if early.Direction != "recipient" || early.LocalTag == "" || early.RemoteTag == "" ||
		early.Remote == nil || early.Remote.Identity != "sip:alice@example.test" ||
		early.Local == nil || early.Local.Identity != "sip:bob@example.test" {
		t.Fatalf("bob's ringing call: %+v local %+v remote %+v", early, early.Local, early.Remote)
	}

	bob.Command(t, "/accept")
	alice.WaitFor(t, 10*time.Second, "Call established: sip:bob@example.test")
	conf := untilCall(t, watchBob, early.CallID, "confirmed")
	bobContact := "127.0.0.1:" + strconv.Itoa(bob.Port)
	if conf.LocalTag != early.LocalTag || conf.RemoteTag != early.RemoteTag || conf.Duration < 0 ||
		conf.Local == nil || !strings.Contains(conf.Local.Target, bobContact) {
		t.Fatalf("bob's answered call (contact %s): %+v local %+v", bobContact, conf, conf.Local)
	}
	aconf := untilCall(t, watchAlice, early.CallID, "confirmed")
	if aconf.Direction != "initiator" || aconf.LocalTag != early.RemoteTag || aconf.RemoteTag != early.LocalTag ||
		aconf.Local == nil || aconf.Local.Identity != "sip:alice@example.test" ||
		aconf.Remote == nil || aconf.Remote.Identity != "sip:bob@example.test" {
		t.Fatalf("alice's answered call: %+v local %+v remote %+v", aconf, aconf.Local, aconf.Remote)
	}

	alice.Command(t, "/hangup")
	if end := untilCall(t, watchBob, early.CallID, "terminated"); end.Event != "remote-bye" {
		t.Fatalf("bob's call ended with %q, want remote-bye: %+v", end.Event, end)
	}
	if end := untilCall(t, watchAlice, early.CallID, "terminated"); end.Event != "local-bye" {
		t.Fatalf("alice's call ended with %q, want local-bye: %+v", end.Event, end)
	}
}
