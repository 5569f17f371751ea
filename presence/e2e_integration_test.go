//go:build linux

package presence_test

// End-to-end tests of the presence agent with real SIP clients: a baresip presentity watched by
// a baresip (over UDP and over TCP), a linphonec watching a baresip and a raw-socket presentity,
// and sipp driving the shared PUBLISH / SUBSCRIBE / presence.winfo load scenarios
// (bench/sipp/{publish,publish_seed,subscribe,subscribe_winfo}.xml) with the memory
// and the Redis store. As everywhere in internal/servertest every process talks only to 127.0.0.1, is
// bounded in time and is killed by its PID in t.Cleanup; a missing tool skips the test unless
// SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0's presence module (modules/presence) is both sides: with ;pubint=600 on the
// account it PUBLISHes the user's status, set with /presence_online and /presence_offline;
// it SUBSCRIBEs (through the outbound proxy, 1 s after start) to every contact marked
// ;presence=p2p and prints "<sip:alice@example.test> changed status from Online to Offline"
// on a change and "Offline Alice <sip:alice@example.test>" in /contacts. The module reads
// the contacts and the accounts when it loads, so it must come after account.so and contact.so
// (servertest.BaresipSetup.Presence).
//
// linphonec 5.1.65 prints `Friend "alice" <sip:alice@example.test> is Online` for every NOTIFY
// it gets about a friend added with "friend add". It has no way to bound its own life and does
// not exit at end of input, so it runs under a context deadline and with a parent-death signal
// (Linux: hence the build constraint).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"
)

// pe2eDocument polls the admin API until aor's composed document contains want.
func pe2eDocument(t *testing.T, srv *servertest.Server, aor, want string) {
	t.Helper()
	servertest.Poll(t, 5*time.Second, aor+"'s document containing "+want, func() (bool, string) {
		doc := servertest.PresenceState(t, srv, aor).Document
		return strings.Contains(doc, want), doc
	})
}

// pe2eWatching polls the admin API until watcher holds an active subscription to aor.
func pe2eWatching(t *testing.T, srv *servertest.Server, aor, watcher string) {
	t.Helper()
	servertest.Poll(t, 10*time.Second, watcher+" watching "+aor, func() (bool, string) {
		snap := servertest.PresenceState(t, srv, aor)
		for _, s := range snap.Subscriptions {
			if strings.Contains(s.Watcher, watcher) && s.State == "active" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", snap.Subscriptions)
	})
}

// TestBaresipPresence has alice publish her status with a real baresip and bob, another real
// baresip, watch her through simpled (his SUBSCRIBE pre-loaded with the outbound proxy route,
// no Accept, fixtures quirks 1 and 3), over UDP and over TCP. bob must list alice Online, then
// Offline after her /presence_offline, Online after /presence_online, and Offline once her
// baresip quits (un-PUBLISH and un-REGISTER).
func TestBaresipPresence(t *testing.T) {
	bin := servertest.BaresipBin(t, "presence.so")
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := servertest.Start(t, servertest.RequireAuth(t, "alice", "bob"))
			alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Presence: true, Name: "alice",
				Account: servertest.BaresipAccount(srv, "alice", tp, ";pubint=600"), Contacts: []string{"<sip:bob@example.test>"}})
			alice.Registered(t, tp)
			alice.Command(t, "/presence_online")
			pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")
			if pubs := servertest.PresenceState(t, srv, "alice@example.test").Publications; len(pubs) == 0 {
				t.Fatalf("alice's status is open but she has no publication")
			}

			bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Presence: true, Name: "bob",
				Account: servertest.BaresipAccount(srv, "bob", tp, ""), Contacts: []string{`"Alice" <sip:alice@example.test>;presence=p2p`}})
			bob.Registered(t, tp)
			pe2eWatching(t, srv, "alice@example.test", "bob@example.test")
			bob.Contacts(t, 10*time.Second, "Online", "Alice <sip:alice@example.test>")

			steps := []struct {
				command  string
				from, to string
				basic    string // alice's composed status at simpled
			}{
				{command: "/presence_offline", from: "Online", to: "Offline", basic: "closed"},
				{command: "/presence_online", from: "Offline", to: "Online", basic: "open"},
			}
			for _, st := range steps {
				mark := bob.Mark()
				alice.Command(t, st.command)
				bob.WaitSince(t, mark, 5*time.Second,
					regexp.QuoteMeta("<sip:alice@example.test> changed status from "+st.from+" to "+st.to))
				bob.Contacts(t, 5*time.Second, st.to, "Alice <sip:alice@example.test>")
				pe2eDocument(t, srv, "alice@example.test", "<basic>"+st.basic+"</basic>")
			}

			// /quit: baresip removes its binding (un-REGISTER, challenged and answered) and its
			// publication (un-PUBLISH). baresip 1.0.0 sometimes exits before it answers the 407
			// of its un-PUBLISH (auth.mode required): then the publication stays until it
			// expires and alice is still open — what any watcher would see from simpled with
			// that client. Whichever happened, simpled must show it to bob.
			mark := bob.Mark()
			alice.Command(t, "/quit")
			select {
			case <-alice.Done():
			case <-time.After(5 * time.Second):
				t.Errorf("alice's baresip still running 5 s after /quit")
			}
			servertest.Poll(t, 5*time.Second, "alice's binding gone", func() (bool, string) {
				reg, body := servertest.Lookup(t, srv, "alice@example.test")
				return len(reg.Bindings) == 0, body
			})
			if pubs := servertest.PresenceState(t, srv, "alice@example.test").Publications; len(pubs) > 0 {
				t.Logf("baresip quit before answering the challenge of its un-PUBLISH: alice stays open until it expires")
				pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")
				return
			}
			bob.WaitSince(t, mark, 5*time.Second,
				regexp.QuoteMeta("<sip:alice@example.test> changed status from Online to Offline"))
			bob.Contacts(t, 5*time.Second, "Offline", "Alice <sip:alice@example.test>")
		})
	}
}

// TestLinphonecPresenceWatcher has carol, a real linphonec, watch two friends through simpled:
// alice, a real baresip presentity (Online / Offline), and dave, a presentity publishing
// liblinphone's own PIDF+RPID documents from a raw socket (Away, Busy, then Offline once the
// publication is removed). Over UDP and over TCP.
func TestLinphonecPresenceWatcher(t *testing.T) {
	bin := servertest.Tool(t, "linphonec", "linphone-cli")
	baresipBin := servertest.BaresipBin(t, "presence.so")
	person := func(activity string) string {
		return `<dm:person id="dp1"><rpid:activities><rpid:` + activity + `/></rpid:activities></dm:person>`
	}
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := servertest.Start(t, servertest.RequireAuth(t, "alice", "carol", "dave"))
			alice := servertest.StartBaresip(t, baresipBin, servertest.BaresipSetup{Presence: true, Name: "alice",
				Account: servertest.BaresipAccount(srv, "alice", tp, ";pubint=600")})
			alice.Registered(t, tp)
			alice.Command(t, "/presence_online")
			pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")

			nonce := strconv.Itoa(rand.IntN(1e9))
			dave := servertest.Dial(t, tp, srv.Listener(tp))
			etag := dave.WithAuth(servertest.Publish("dave", "dave-pub-"+nonce, 1, "", 600, servertest.PIDFDoc("dave", "td"+nonce, "open", person("away"))),
				"dave", "sip:dave@example.test", `^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()

			carol := servertest.StartLinphonec(t, bin, srv, "carol", tp)
			mark := carol.Mark()
			carol.Command(t, "friend add alice sip:alice@example.test")
			carol.Command(t, "friend add dave sip:dave@example.test")
			carol.WaitSince(t, mark, 10*time.Second, `Friend "alice" <sip:alice@example.test> is Online`)
			carol.WaitSince(t, mark, 10*time.Second, `Friend "dave" <sip:dave@example.test> is Away`)
			pe2eWatching(t, srv, "alice@example.test", "carol@example.test")
			pe2eWatching(t, srv, "dave@example.test", "carol@example.test")

			mark = carol.Mark()
			alice.Command(t, "/presence_offline")
			carol.WaitSince(t, mark, 5*time.Second, `Friend "alice" <sip:alice@example.test> is Offline`)

			mark = carol.Mark()
			etag = dave.WithAuth(servertest.Publish("dave", "dave-pub-"+nonce, 3, etag, 600, servertest.PIDFDoc("dave", "td"+nonce, "open", person("busy"))),
				"dave", "sip:dave@example.test", `^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
			carol.WaitSince(t, mark, 5*time.Second, `Friend "dave" <sip:dave@example.test> is Busy`)

			mark = carol.Mark()
			dave.WithAuth(servertest.Publish("dave", "dave-pub-"+nonce, 5, etag, 0, ""), "dave", "sip:dave@example.test", `^SIP/2.0 200 `)
			carol.WaitSince(t, mark, 5*time.Second, `Friend "dave" <sip:dave@example.test> is Offline`)

			mark = carol.Mark()
			alice.Command(t, "/presence_online")
			carol.WaitSince(t, mark, 5*time.Second, `Friend "alice" <sip:alice@example.test> is Online`)
		})
	}
}

// TestSippPresenceScenarios runs the shared presence load scenarios with sipp against simpled,
// with the memory and the Redis store, as load.sh does: publish.xml (initial, modify, remove:
// three PUBLISHes a call), publish_seed.xml (one lasting publication per presentity), then
// subscribe.xml (SUBSCRIBE, NOTIFY active, un-SUBSCRIBE, NOTIFY terminated) and
// subscribe_winfo.xml (a presentity watching its own watcher list). Every call must succeed,
// and what the scenarios leave behind is checked through the admin API.
func TestSippPresenceScenarios(t *testing.T) {
	bin := servertest.Tool(t, "sipp", "sip-tester")
	sippDir := filepath.Join(servertest.BenchDir(t), "sipp")
	for _, f := range []string{"publish.xml", "publish_seed.xml", "subscribe.xml", "subscribe_winfo.xml"} {
		if _, err := os.Stat(filepath.Join(sippDir, f)); err != nil {
			servertest.Skip(t, fmt.Sprintf("sipp scenario %s not found in %s", f, sippDir))
		}
	}
	const (
		users        = 100 // users.csv: publish.xml publishes for each once
		presentities = 20  // presentities.csv: seeded, then each watched calls/presentities times
		calls        = 100
		rate         = 100 // calls/s: 1 s per run
		winfoCalls   = 10
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
			// sipp is one source standing for thousands of phones registering new AORs:
			// registrar.max_new_aors_per_source (open mode) would refuse all but 60 a minute.
			mod := func(o *servertest.Options) { o.Registrar.MaxNewAORsPerSource = 0 }
			if tt.redis {
				rs := redistest.Start(t)
				mod = func(o *servertest.Options) { o.Store = rs.URL(); o.Registrar.MaxNewAORsPerSource = 0 }
			}
			srv := servertest.Start(t, mod)
			dir := t.TempDir()
			// The injection files as bench/sipp/gen-users.sh writes them.
			csv := func(name string, n int) string {
				var sb strings.Builder
				sb.WriteString("SEQUENTIAL\n")
				for i := 1; i <= n; i++ {
					fmt.Fprintf(&sb, "u%06d;pw%06d\n", i, i)
				}
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			usersCSV, presCSV := csv("users.csv", users), csv("presentities.csv", presentities)
			run := func(scenario, injection string, n, r int) {
				t.Helper()
				d := filepath.Join(dir, strings.TrimSuffix(scenario, ".xml"))
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
				_, stats := servertest.RunSipp(t, bin, d, srv.Listener("udp"), filepath.Join(sippDir, scenario), injection, "", n, r)
				t.Logf("sipp %s: %d calls, %d successful, %d failed, %d retransmissions", scenario,
					stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
				if stats["TotalCallCreated"] != n || stats["SuccessfulCall(C)"] != n || stats["FailedCall(C)"] != 0 {
					t.Fatalf("sipp %s stats: %v", scenario, stats)
				}
			}

			run("publish.xml", usersCSV, users, rate)
			// Each call removed its publication at the end.
			for _, u := range []string{"u000001", fmt.Sprintf("u%06d", users)} {
				if snap := servertest.PresenceState(t, srv, u+"@example.test"); len(snap.Publications) != 0 {
					t.Errorf("%s: %d publications left after publish.xml", u, len(snap.Publications))
				}
			}

			run("publish_seed.xml", presCSV, presentities, rate)
			for _, u := range []string{"u000001", fmt.Sprintf("u%06d", presentities)} {
				snap := servertest.PresenceState(t, srv, u+"@example.test")
				if len(snap.Publications) != 1 || !strings.Contains(snap.Document, `tuple id="seed"`) ||
					!strings.Contains(snap.Document, "<basic>open</basic>") {
					t.Fatalf("%s after publish_seed.xml: %d publications, document\n%s", u, len(snap.Publications), snap.Document)
				}
			}

			run("subscribe.xml", presCSV, calls, rate)
			run("subscribe_winfo.xml", presCSV, winfoCalls, rate)
			// Every subscription, presence and winfo, was ended by its un-SUBSCRIBE.
			servertest.Poll(t, 5*time.Second, "no subscription left", func() (bool, string) {
				for _, u := range []string{"u000001", fmt.Sprintf("u%06d", winfoCalls), fmt.Sprintf("u%06d", presentities)} {
					if snap := servertest.PresenceState(t, srv, u+"@example.test"); len(snap.Subscriptions) != 0 {
						return false, fmt.Sprintf("%s: %+v", u, snap.Subscriptions)
					}
				}
				return true, ""
			})
		})
	}
}
