//go:build linux

package server

// End-to-end tests of the presence agent with real SIP clients: a baresip presentity watched by
// a baresip (over UDP and over TCP), a linphonec watching a baresip and a raw-socket presentity,
// and sipp driving the shared PUBLISH / SUBSCRIBE / presence.winfo load scenarios
// (bench/sipp/{publish,publish_seed,subscribe,subscribe_winfo}.xml) with the memory
// and the Redis store. As in e2e_integration_test.go every process talks only to 127.0.0.1, is
// bounded in time and is killed by its PID in t.Cleanup; a missing tool skips the test unless
// SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0's presence module (modules/presence) is both sides: with ;pubint=600 on the
// account it PUBLISHes the user's status, set with /presence_online and /presence_offline;
// it SUBSCRIBEs (through the outbound proxy, 1 s after start) to every contact marked
// ;presence=p2p and prints "<sip:alice@example.test> changed status from Online to Offline"
// on a change and "Offline Alice <sip:alice@example.test>" in /contacts. The module reads
// the contacts and the accounts when it loads, so it must come after account.so and contact.so
// (startBaresipUA loads extra modules before them, hence startPresenceBaresip).
//
// linphonec 5.1.65 prints `Friend "alice" <sip:alice@example.test> is Online` for every NOTIFY
// it gets about a friend added with "friend add". It has no way to bound its own life and does
// not exit at end of input, so it runs under a context deadline and with a parent-death signal
// (Linux: hence the build constraint).

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
)

// startPresenceBaresip runs baresip as startBaresipUA does, with the presence module loaded
// after the account and contact modules so that it publishes for the account (when it has a
// pubint) and subscribes to the ;presence=p2p contacts.
func startPresenceBaresip(t *testing.T, bin string, setup baresipSetup) *baresipUA {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := e2eFreePorts(t, 1, true)
		cfg := "sip_listen\t127.0.0.1:" + strconv.Itoa(port) + "\n" +
			"net_interface\t127.0.0.1\n" +
			"module_path\t" + baresipModules + "\n" +
			"module\tstdio.so\n" +
			"module\taccount.so\n" +
			"module\tcontact.so\n" +
			"module\tpresence.so\n" +
			"module_app\tmenu.so\n"
		files := map[string]string{
			"config":   cfg,
			"accounts": setup.account + "\n",
			"contacts": strings.Join(setup.contacts, "\n") + "\n",
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b := &baresipUA{baresip: &baresip{out: &syncBuffer{}, done: make(chan struct{}), port: port}, name: setup.name}
		// -t 60 bounds baresip's life; the parent-death signal covers a test binary that dies
		// without running its cleanups (go test -timeout).
		b.cmd = exec.Command(bin, "-s", "-f", dir, "-t", "60")
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
		stdin, err := b.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		b.stdin = stdin
		if err := b.cmd.Start(); err != nil {
			t.Fatalf("start baresip: %v", err)
		}
		go func() { _ = b.cmd.Wait(); close(b.done) }()
		t.Cleanup(func() {
			if !b.exited() {
				_ = b.cmd.Process.Kill() // SIGKILL to this PID only
			}
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
				t.Errorf("baresip %s (pid %d) did not exit after SIGKILL", b.name, b.cmd.Process.Pid)
			}
			if t.Failed() {
				t.Logf("baresip %s output:\n%s", b.name, b.output())
			}
		})
		select {
		case <-b.done:
			if attempt < 3 && strings.Contains(b.out.String(), "in use") {
				continue // the port was taken between the probe and baresip's bind
			}
			t.Fatalf("baresip %s exited at start-up:\n%s", b.name, b.output())
		case <-time.After(200 * time.Millisecond):
		}
		return b
	}
}

// pe2eMark is the length of baresip's output so far: pe2eSince looks only at what follows.
func pe2eMark(b *baresipUA) int { return len(b.out.String()) }

// pe2eSince waits until baresip's output after mark (colour codes and status lines removed)
// matches re.
func pe2eSince(t *testing.T, b *baresipUA, mark int, timeout time.Duration, re string) {
	t.Helper()
	b.poll(t, timeout, re, func() string { return ansiOrStatus.ReplaceAllString(b.out.String()[mark:], "") })
}

// pe2eContacts types /contacts into baresip until its listing shows want for the contact
// (menu prints one line per contact: `>      Online Alice <sip:alice@example.test>`).
func pe2eContacts(t *testing.T, b *baresipUA, timeout time.Duration, want, contact string) {
	t.Helper()
	rx := regexp.MustCompile(`\s` + want + `\s+` + regexp.QuoteMeta(contact) + `\s`)
	deadline := time.Now().Add(timeout)
	for {
		mark := pe2eMark(b)
		b.command(t, "/contacts")
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if rx.MatchString(ansiOrStatus.ReplaceAllString(b.out.String()[mark:], "")) {
				return
			}
		}
		if b.exited() {
			t.Fatalf("baresip %s exited", b.name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: /contacts does not list %s as %s within %v", b.name, contact, want, timeout)
		}
	}
}

// pe2eDocument polls the admin API until aor's composed document contains want.
func pe2eDocument(t *testing.T, srv *Server, aor, want string) {
	t.Helper()
	e2ePoll(t, 5*time.Second, aor+"'s document containing "+want, func() (bool, string) {
		doc := presenceState(t, srv, aor).Document
		return strings.Contains(doc, want), doc
	})
}

// pe2eWatching polls the admin API until watcher holds an active subscription to aor.
func pe2eWatching(t *testing.T, srv *Server, aor, watcher string) {
	t.Helper()
	e2ePoll(t, 10*time.Second, watcher+" watching "+aor, func() (bool, string) {
		snap := presenceState(t, srv, aor)
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
	bin := e2eBaresip(t, "presence.so")
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := startServer(t, requireAuth(t, "alice", "bob"))
			alice := startPresenceBaresip(t, bin, baresipSetup{name: "alice",
				account: baresipAccount(srv, "alice", tp, ";pubint=600"), contacts: []string{"<sip:bob@example.test>"}})
			alice.registered(t, tp)
			alice.command(t, "/presence_online")
			pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")
			if pubs := presenceState(t, srv, "alice@example.test").Publications; len(pubs) == 0 {
				t.Fatalf("alice's status is open but she has no publication")
			}

			bob := startPresenceBaresip(t, bin, baresipSetup{name: "bob",
				account: baresipAccount(srv, "bob", tp, ""), contacts: []string{`"Alice" <sip:alice@example.test>;presence=p2p`}})
			bob.registered(t, tp)
			pe2eWatching(t, srv, "alice@example.test", "bob@example.test")
			pe2eContacts(t, bob, 10*time.Second, "Online", "Alice <sip:alice@example.test>")

			steps := []struct {
				command  string
				from, to string
				basic    string // alice's composed status at simpled
			}{
				{command: "/presence_offline", from: "Online", to: "Offline", basic: "closed"},
				{command: "/presence_online", from: "Offline", to: "Online", basic: "open"},
			}
			for _, st := range steps {
				mark := pe2eMark(bob)
				alice.command(t, st.command)
				pe2eSince(t, bob, mark, 5*time.Second,
					regexp.QuoteMeta("<sip:alice@example.test> changed status from "+st.from+" to "+st.to))
				pe2eContacts(t, bob, 5*time.Second, st.to, "Alice <sip:alice@example.test>")
				pe2eDocument(t, srv, "alice@example.test", "<basic>"+st.basic+"</basic>")
			}

			// /quit: baresip removes its binding (un-REGISTER, challenged and answered) and its
			// publication (un-PUBLISH). baresip 1.0.0 sometimes exits before it answers the 407
			// of its un-PUBLISH (auth.mode required): then the publication stays until it
			// expires and alice is still open — what any watcher would see from simpled with
			// that client. Whichever happened, simpled must show it to bob.
			mark := pe2eMark(bob)
			alice.command(t, "/quit")
			select {
			case <-alice.done:
			case <-time.After(5 * time.Second):
				t.Errorf("alice's baresip still running 5 s after /quit")
			}
			e2ePoll(t, 5*time.Second, "alice's binding gone", func() (bool, string) {
				reg, body := e2eLookup(t, srv, "alice@example.test")
				return len(reg.Bindings) == 0, body
			})
			if pubs := presenceState(t, srv, "alice@example.test").Publications; len(pubs) > 0 {
				t.Logf("baresip quit before answering the challenge of its un-PUBLISH: alice stays open until it expires")
				pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")
				return
			}
			pe2eSince(t, bob, mark, 5*time.Second,
				regexp.QuoteMeta("<sip:alice@example.test> changed status from Online to Offline"))
			pe2eContacts(t, bob, 5*time.Second, "Offline", "Alice <sip:alice@example.test>")
		})
	}
}

// linphonecUA is one linphonec driven through its stdin.
type linphonecUA struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	log   string // linphonec's -l log: liblinphone's messages and the SIP trace
	stdin io.WriteCloser
	done  chan struct{}
	port  int
}

func (l *linphonecUA) exited() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// command types one line into linphonec.
func (l *linphonecUA) command(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, line+"\n"); err != nil {
		t.Fatalf("linphonec: command %q: %v", line, err)
	}
}

func (l *linphonecUA) mark() int { return len(l.out.String()) }

// waitSince waits until linphonec's output after mark matches re.
func (l *linphonecUA) waitSince(t *testing.T, mark int, timeout time.Duration, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	e2ePoll(t, timeout, fmt.Sprintf("linphonec printing %q", re), func() (bool, string) {
		if rx.MatchString(l.out.String()[mark:]) {
			return true, ""
		}
		if l.exited() {
			t.Fatalf("linphonec exited")
		}
		return false, "see the output logged below"
	})
}

// logExcerpt is the SIP trace and liblinphone's own lines (less its codec and sound card
// chatter) from linphonec's log, at most the last 30000 characters.
func (l *linphonecUA) logExcerpt() string {
	data, err := os.ReadFile(l.log)
	if err != nil {
		return err.Error()
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "mediastreamer-") || strings.Contains(line, "belle-sip-message-") ||
			strings.Contains(line, "bctbx-") || strings.Contains(line, "ortp-") ||
			strings.Contains(line, "odec") || strings.Contains(line, "soundcard") {
			continue
		}
		sb.WriteString(line + "\n")
	}
	s := sb.String()
	if len(s) > 30000 {
		s = s[len(s)-30000:]
	}
	return s
}

// startLinphonec runs linphonec for user@example.test with simpled as registrar and outbound
// proxy over transport, listening on a free port, and waits until simpled holds its binding.
// reg_route is needed: without it linphonec sends its SUBSCRIBEs to the domain (a DNS lookup of
// example.test) instead of through the proxy. Its HOME is a temporary directory holding
// .local/share/linphone, without which liblinphone cannot open its database and never even
// opens its SIP ports.
func startLinphonec(t *testing.T, bin string, srv *Server, user, transport string) *linphonecUA {
	t.Helper()
	home := t.TempDir()
	data := filepath.Join(home, ".local", "share")
	if err := os.MkdirAll(filepath.Join(data, "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	port := e2eFreePorts(t, 1, true)
	udpPort, tcpPort := port, 0
	if transport == "tcp" {
		udpPort, tcpPort = 0, port
	}
	proxy := "sip:" + srv.Listener(transport) + ";transport=" + transport
	rc := "[sip]\n" +
		"sip_port=" + strconv.Itoa(udpPort) + "\n" +
		"sip_tcp_port=" + strconv.Itoa(tcpPort) + "\n" +
		"sip_tls_port=0\n" +
		"default_proxy=0\n" +
		"\n[proxy_0]\n" +
		"reg_proxy=<" + proxy + ">\n" +
		"reg_route=<" + proxy + ";lr>\n" +
		"reg_identity=\"" + strings.ToUpper(user[:1]) + user[1:] + "\" <sip:" + user + "@example.test>\n" +
		"reg_expires=600\n" +
		"reg_sendregister=1\n" +
		"publish=0\n" +
		"\n[auth_info_0]\n" +
		"username=" + user + "\n" +
		"passwd=secret-" + user + "\n" +
		"realm=example.test\n" +
		"domain=example.test\n"
	rcFile := filepath.Join(home, "linphonerc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &linphonecUA{out: &syncBuffer{}, log: filepath.Join(home, "linphonec.log"), done: make(chan struct{}), port: port}
	// The deadline SIGKILLs linphonec's PID; the parent-death signal does when the test binary
	// dies without running its cleanups.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	l.cmd = exec.CommandContext(ctx, bin, "-d", "6", "-l", l.log, "-c", rcFile)
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	l.cmd.Dir = home
	l.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	stdin, err := l.cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	l.stdin = stdin
	if err := l.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start linphonec: %v", err)
	}
	go func() { _ = l.cmd.Wait(); cancel(); close(l.done) }()
	t.Cleanup(func() {
		if !l.exited() {
			_ = l.cmd.Process.Kill() // SIGKILL to this PID only
		}
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			t.Errorf("linphonec pid %d did not exit after SIGKILL", l.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("linphonec output:\n%s\nlinphonec log (excerpt):\n%s", l.out, l.logExcerpt())
		}
	})

	// Registered: simpled holds linphonec's binding.
	e2ePoll(t, 10*time.Second, "linphonec's binding for "+user+"@example.test", func() (bool, string) {
		if l.exited() {
			t.Fatalf("linphonec exited at start-up")
		}
		reg, body := e2eLookup(t, srv, user+"@example.test")
		for _, bd := range reg.Bindings {
			if strings.HasPrefix(bd.UserAgent, "Linphonec") && bd.Transport == transport {
				return true, body
			}
		}
		return false, body
	})
	return l
}

// TestLinphonecPresenceWatcher has carol, a real linphonec, watch two friends through simpled:
// alice, a real baresip presentity (Online / Offline), and dave, a presentity publishing
// liblinphone's own PIDF+RPID documents from a raw socket (Away, Busy, then Offline once the
// publication is removed). Over UDP and over TCP.
func TestLinphonecPresenceWatcher(t *testing.T) {
	bin := e2eTool(t, "linphonec", "linphone-cli")
	baresipBin := e2eBaresip(t, "presence.so")
	person := func(activity string) string {
		return `<dm:person id="dp1"><rpid:activities><rpid:` + activity + `/></rpid:activities></dm:person>`
	}
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := startServer(t, requireAuth(t, "alice", "carol", "dave"))
			alice := startPresenceBaresip(t, baresipBin, baresipSetup{name: "alice",
				account: baresipAccount(srv, "alice", tp, ";pubint=600")})
			alice.registered(t, tp)
			alice.command(t, "/presence_online")
			pe2eDocument(t, srv, "alice@example.test", "<basic>open</basic>")

			nonce := strconv.Itoa(rand.IntN(1e9))
			dave := dial(t, tp, srv.Listener(tp))
			etag := dave.withAuth(publish("dave", "dave-pub-"+nonce, 1, "", 600, pidfDoc("dave", "td"+nonce, "open", person("away"))),
				"dave", "sip:dave@example.test", `^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()

			carol := startLinphonec(t, bin, srv, "carol", tp)
			mark := carol.mark()
			carol.command(t, "friend add alice sip:alice@example.test")
			carol.command(t, "friend add dave sip:dave@example.test")
			carol.waitSince(t, mark, 10*time.Second, `Friend "alice" <sip:alice@example.test> is Online`)
			carol.waitSince(t, mark, 10*time.Second, `Friend "dave" <sip:dave@example.test> is Away`)
			pe2eWatching(t, srv, "alice@example.test", "carol@example.test")
			pe2eWatching(t, srv, "dave@example.test", "carol@example.test")

			mark = carol.mark()
			alice.command(t, "/presence_offline")
			carol.waitSince(t, mark, 5*time.Second, `Friend "alice" <sip:alice@example.test> is Offline`)

			mark = carol.mark()
			etag = dave.withAuth(publish("dave", "dave-pub-"+nonce, 3, etag, 600, pidfDoc("dave", "td"+nonce, "open", person("busy"))),
				"dave", "sip:dave@example.test", `^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
			carol.waitSince(t, mark, 5*time.Second, `Friend "dave" <sip:dave@example.test> is Busy`)

			mark = carol.mark()
			dave.withAuth(publish("dave", "dave-pub-"+nonce, 5, etag, 0, ""), "dave", "sip:dave@example.test", `^SIP/2.0 200 `)
			carol.waitSince(t, mark, 5*time.Second, `Friend "dave" <sip:dave@example.test> is Offline`)

			mark = carol.mark()
			alice.command(t, "/presence_online")
			carol.waitSince(t, mark, 5*time.Second, `Friend "alice" <sip:alice@example.test> is Online`)
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
	bin := e2eTool(t, "sipp", "sip-tester")
	sippDir := filepath.Join(e2eBenchDir(t), "sipp")
	for _, f := range []string{"publish.xml", "publish_seed.xml", "subscribe.xml", "subscribe_winfo.xml"} {
		if _, err := os.Stat(filepath.Join(sippDir, f)); err != nil {
			e2eSkip(t, fmt.Sprintf("sipp scenario %s not found in %s", f, sippDir))
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
			mod := func(o *config.Options) { o.Registrar.MaxNewAORsPerSource = 0 }
			if tt.redis {
				rs := redistest.Start(t)
				mod = func(o *config.Options) { o.Store = rs.URL(); o.Registrar.MaxNewAORsPerSource = 0 }
			}
			srv := startServer(t, mod)
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
				_, stats := runSipp(t, bin, d, srv.Listener("udp"), filepath.Join(sippDir, scenario), injection, "", n, r)
				t.Logf("sipp %s: %d calls, %d successful, %d failed, %d retransmissions", scenario,
					stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
				if stats["TotalCallCreated"] != n || stats["SuccessfulCall(C)"] != n || stats["FailedCall(C)"] != 0 {
					t.Fatalf("sipp %s stats: %v", scenario, stats)
				}
			}

			run("publish.xml", usersCSV, users, rate)
			// Each call removed its publication at the end.
			for _, u := range []string{"u000001", fmt.Sprintf("u%06d", users)} {
				if snap := presenceState(t, srv, u+"@example.test"); len(snap.Publications) != 0 {
					t.Errorf("%s: %d publications left after publish.xml", u, len(snap.Publications))
				}
			}

			run("publish_seed.xml", presCSV, presentities, rate)
			for _, u := range []string{"u000001", fmt.Sprintf("u%06d", presentities)} {
				snap := presenceState(t, srv, u+"@example.test")
				if len(snap.Publications) != 1 || !strings.Contains(snap.Document, `tuple id="seed"`) ||
					!strings.Contains(snap.Document, "<basic>open</basic>") {
					t.Fatalf("%s after publish_seed.xml: %d publications, document\n%s", u, len(snap.Publications), snap.Document)
				}
			}

			run("subscribe.xml", presCSV, calls, rate)
			run("subscribe_winfo.xml", presCSV, winfoCalls, rate)
			// Every subscription, presence and winfo, was ended by its un-SUBSCRIBE.
			e2ePoll(t, 5*time.Second, "no subscription left", func() (bool, string) {
				for _, u := range []string{"u000001", fmt.Sprintf("u%06d", winfoCalls), fmt.Sprintf("u%06d", presentities)} {
					if snap := presenceState(t, srv, u+"@example.test"); len(snap.Subscriptions) != 0 {
						return false, fmt.Sprintf("%s: %+v", u, snap.Subscriptions)
					}
				}
				return true, ""
			})
		})
	}
}
