package proxy_test

// End-to-end tests of the proxy with real SIP clients: two headless baresip text each other and
// call each other through simpled (over UDP and over TCP), and sipp drives the benchmarks' MESSAGE
// load scenario (bench/sipp/message_{uac,uas}.xml) through simpled to a sipp callee.
// As everywhere in internal/servertest every process talks only to 127.0.0.1, is bounded in time by
// its own flags and a context, and is killed by its PID in t.Cleanup; a missing tool skips the
// test unless SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0 (Debian) has no command-line way to act once it is registered (-e runs its
// commands at start-up, before the REGISTER is answered), so it is driven like a person at a
// terminal: the stdio module reads keys from stdin — here a pipe — and the menu module's long
// commands start with "/": "/message TEXT" (module contact: to the current contact, the first of
// the contacts file), "/dial URI", "/hangup". Received messages and call events are printed by
// the menu module and read back from baresip's output.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"
)

// TestBaresipMessaging has alice and bob, two real baresip registered through simpled, text
// each other: each MESSAGE goes alice → simpled → bob's registered contact (whose user part is
// baresip's random alice-0x… / bob-0x…, fixtures quirk 5) and must be printed by the receiver.
func TestBaresipMessaging(t *testing.T) {
	bin := servertest.BaresipBin(t)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := servertest.Start(t, servertest.RequireAuth(t, "alice", "bob"))
			alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "alice",
				Account: servertest.BaresipAccount(srv, "alice", tp, ""), Contacts: []string{"<sip:bob@example.test>"}})
			bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "bob",
				Account: servertest.BaresipAccount(srv, "bob", tp, ""), Contacts: []string{"<sip:alice@example.test>"}})
			alice.Registered(t, tp)
			bob.Registered(t, tp)

			nonce := strconv.Itoa(rand.IntN(1e9))
			hello := "hello bob over " + tp + " " + nonce
			alice.Command(t, "/message "+hello)
			// menu prints a received MESSAGE as `<From URI>: "<body>"`.
			bob.WaitFor(t, 5*time.Second, `sip:alice@example.test: "`+hello+`"`)

			reply := "hi alice over " + tp + " " + nonce
			bob.Command(t, "/message "+reply)
			alice.WaitFor(t, 5*time.Second, `sip:bob@example.test: "`+reply+`"`)
		})
	}
}

// TestBaresipCall has alice call bob through simpled (bob answers by itself: answermode=auto),
// both see the call established, then alice hangs up and bob must see the call closed: the
// INVITE is forked to bob's contact and Record-Routed, the ACK and the BYE follow the route set.
// g711 is the only codec; there is no audio device, so no audio flows, which baresip accepts.
func TestBaresipCall(t *testing.T) {
	bin := servertest.BaresipBin(t, "g711.so")
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := servertest.Start(t, servertest.RequireAuth(t, "alice", "bob"))
			alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "alice",
				Account: servertest.BaresipAccount(srv, "alice", tp, ""), Modules: []string{"g711.so"}})
			bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "bob",
				Account: servertest.BaresipAccount(srv, "bob", tp, ";answermode=auto"), Modules: []string{"g711.so"}})
			alice.Registered(t, tp)
			bob.Registered(t, tp)

			alice.Command(t, "/dial sip:bob@example.test")
			alice.WaitFor(t, 10*time.Second, "Call established: sip:bob@example.test")
			bob.WaitFor(t, 5*time.Second, "Call established: sip:alice@example.test")

			// baresip prints "Call with … terminated" only for a call that lasted a second or
			// more (call.c print_summary): wait until both status lines show 0:00:01.
			alice.WaitForRaw(t, 5*time.Second, `\[0:00:01\] audio=`)
			bob.WaitForRaw(t, 5*time.Second, `\[0:00:01\] audio=`)
			alice.Command(t, "/hangup")
			alice.WaitFor(t, 5*time.Second, "Call with sip:bob@example.test terminated")
			bob.WaitFor(t, 5*time.Second, "Call with sip:alice@example.test terminated")
		})
	}
}

// TestSippMessageScenario runs the shared MESSAGE load scenario: callees registered with their
// contact at a sipp UAS (load.sh's register_callees step), then a sipp UAC sends MESSAGEs to
// them through simpled, which relays each one to the UAS; every call must succeed on both sides.
// With the memory and the Redis store.
func TestSippMessageScenario(t *testing.T) {
	bin := servertest.Tool(t, "sipp", "sip-tester")
	sippDir := filepath.Join(servertest.BenchDir(t), "sipp")
	const (
		callees = 20
		calls   = 500
		rate    = 200 // calls/s: 2.5 s per run
	)
	tests := []struct {
		name  string
		redis bool
	}{
		{name: "memory"},
		{name: "redis", redis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mod func(*servertest.Options)
			if tt.redis {
				rs := redistest.Start(t)
				mod = func(o *servertest.Options) { o.Store = rs.URL() }
			}
			srv := servertest.Start(t, servertest.LoadGenerator(mod))
			dir := t.TempDir()
			// callees.csv as bench/sipp/gen-users.sh writes it.
			csv := filepath.Join(dir, "callees.csv")
			var sb strings.Builder
			sb.WriteString("SEQUENTIAL\n")
			for i := 1; i <= callees; i++ {
				fmt.Fprintf(&sb, "c%05d;pwc%05d\n", i, i)
			}
			if err := os.WriteFile(csv, []byte(sb.String()), 0o600); err != nil {
				t.Fatal(err)
			}

			uas := servertest.StartSippUAS(t, bin, filepath.Join(sippDir, "message_uas.xml"), calls)
			uasContact := "127.0.0.1:" + strconv.Itoa(uas.Port) + ";transport=udp"

			regDir := filepath.Join(dir, "register")
			if err := os.Mkdir(regDir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, stats := servertest.RunSipp(t, bin, regDir, srv.Listener("udp"), filepath.Join(sippDir, "register.xml"), csv, uasContact, callees, 100)
			if stats["SuccessfulCall(C)"] != callees {
				t.Fatalf("callee registration: %v", stats)
			}
			reg, body := servertest.Lookup(t, srv, "c00001@example.test")
			if len(reg.Bindings) != 1 || !strings.Contains(reg.Bindings[0].URI, "@"+uasContact) {
				t.Fatalf("c00001's binding is not the UAS (%s):\n%s", uasContact, body)
			}

			uacDir := filepath.Join(dir, "uac")
			if err := os.Mkdir(uacDir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, stats = servertest.RunSipp(t, bin, uacDir, srv.Listener("udp"), filepath.Join(sippDir, "message_uac.xml"), csv, "", calls, rate)
			t.Logf("sipp UAC: %d calls, %d successful, %d failed, %d retransmissions",
				stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
			if stats["TotalCallCreated"] != calls || stats["SuccessfulCall(C)"] != calls || stats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp UAC stats: %v", stats)
			}

			// The UAS stops by itself after calls MESSAGEs (-m): each got there once.
			ustats := uas.Wait(t, 10*time.Second)
			t.Logf("sipp UAS: %d calls, %d successful, %d failed", ustats["TotalCallCreated"], ustats["SuccessfulCall(C)"], ustats["FailedCall(C)"])
			if ustats["SuccessfulCall(C)"] != calls || ustats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp UAS stats: %v", ustats)
			}
		})
	}
}
