package server

// End-to-end tests of the proxy with real SIP clients: two headless baresip text each other and
// call each other through simpled (over UDP and over TCP), and sipp drives the benchmarks' MESSAGE
// load scenario (bench/sipp/message_{uac,uas}.xml) through simpled to a sipp callee.
// As in e2e_integration_test.go every process talks only to 127.0.0.1, is bounded in time by
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
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
)

// baresipUA is a baresip driven through its stdio UI.
type baresipUA struct {
	*baresip
	name  string
	stdin io.WriteCloser
}

// baresipSetup is one baresip's account and what it loads besides the UI modules.
type baresipSetup struct {
	name     string   // for failure messages: alice, bob
	account  string   // the accounts line
	contacts []string // the contacts file; the first is the target of /message
	modules  []string // extra modules, e.g. g711.so for calls
}

// baresipModules is where Debian's baresip-core installs its modules.
const baresipModules = "/usr/lib/baresip/modules"

// e2eBaresip returns baresip's path, or skips when it or one of the modules is missing.
func e2eBaresip(t *testing.T, modules ...string) string {
	t.Helper()
	bin := e2eTool(t, "baresip", "baresip")
	for _, m := range append([]string{"stdio.so", "account.so", "contact.so", "menu.so"}, modules...) {
		if _, err := os.Stat(filepath.Join(baresipModules, m)); err != nil {
			e2eSkip(t, fmt.Sprintf("baresip module %s not in %s (Debian package baresip-core)", m, baresipModules))
		}
	}
	return bin
}

// startBaresipUA runs baresip with a config dir holding one account, listening on a free
// loopback port for UDP and TCP, with its media bound to 127.0.0.1 too (net_interface) and no
// audio device: a call sets up RTP sockets on loopback and sends nothing. -s prints the SIP
// trace, which the failure messages show. stdin stays open until baresip is killed: the stdio
// module polls it, and at end of file it would spin.
func startBaresipUA(t *testing.T, bin string, setup baresipSetup) *baresipUA {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := e2eFreePorts(t, 1, true)
		cfg := "sip_listen\t127.0.0.1:" + strconv.Itoa(port) + "\n" +
			"net_interface\t127.0.0.1\n" +
			"module_path\t" + baresipModules + "\n" +
			"module\tstdio.so\n"
		for _, m := range setup.modules {
			cfg += "module\t" + m + "\n"
		}
		cfg += "module\taccount.so\n" +
			"module\tcontact.so\n" +
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
		b.cmd = exec.Command(bin, "-s", "-f", dir, "-t", "60")
		b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
		stdin, err := b.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		b.stdin = stdin
		if err := b.cmd.Start(); err != nil {
			t.Fatalf("start baresip: %v", err)
		}
		go func() { _ = b.cmd.Wait(); close(b.done) }() // Wait also closes stdin
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

// ansiOrStatus matches terminal colour codes and the call status line menu reprints every
// ~125 ms ("[0:00:01] audio=0/0 (bit/s)"), both noise in a failure message.
var ansiOrStatus = regexp.MustCompile(`\x1b\[[0-9;]*m|\[\d+:\d\d:\d\d\] audio=\S+ \(bit/s\)\s*`)

// output is baresip's output without colour codes and status lines.
func (b *baresipUA) output() string {
	return ansiOrStatus.ReplaceAllString(b.out.String(), "")
}

// command types one line into baresip's stdio UI.
func (b *baresipUA) command(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(b.stdin, line+"\n"); err != nil {
		t.Fatalf("baresip %s: command %q: %v", b.name, line, err)
	}
}

// waitFor polls baresip's output until it contains want.
func (b *baresipUA) waitFor(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	b.poll(t, timeout, regexp.QuoteMeta(want), b.output)
}

// waitForRaw polls baresip's output as printed, status lines included, until it matches re.
func (b *baresipUA) waitForRaw(t *testing.T, timeout time.Duration, re string) {
	t.Helper()
	b.poll(t, timeout, re, b.out.String)
}

// poll waits until output matches re. On failure the outputs are logged by t.Cleanup.
func (b *baresipUA) poll(t *testing.T, timeout time.Duration, re string, output func() string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	e2ePoll(t, timeout, fmt.Sprintf("baresip %s printing %q", b.name, re), func() (bool, string) {
		if rx.MatchString(output()) {
			return true, ""
		}
		if b.exited() {
			t.Fatalf("baresip %s exited", b.name)
		}
		return false, "see the output logged below"
	})
}

// registered waits until baresip reports its REGISTER answered 200 over transport (src/reg.c
// prints "alice@example.test: {0/UDP/v4} 200 OK (…) [1 binding]"), failing at once when it
// reports a failure ("reg: alice@example.test: 403 Forbidden").
func (b *baresipUA) registered(t *testing.T, transport string) {
	t.Helper()
	ok := regexp.MustCompile(`\{0/` + strings.ToUpper(transport) + `/v4\} 200 `)
	e2ePoll(t, 10*time.Second, "baresip "+b.name+" registered over "+transport, func() (bool, string) {
		out := b.output()
		switch {
		case ok.MatchString(out):
			return true, ""
		case strings.Contains(out, "reg: "), b.exited():
			t.Fatalf("baresip %s could not register", b.name)
		}
		return false, "see the output logged below"
	})
}

// baresipAccount is an account line with simpled as outbound proxy over transport, as in
// examples/baresip, with the password usersFile gives user; params are appended
// (";answermode=auto").
func baresipAccount(srv *Server, user, transport, params string) string {
	return "<sip:" + user + "@example.test>;auth_pass=secret-" + user + ";outbound=\"sip:" + srv.Listener(transport) +
		";transport=" + transport + "\";regint=600" + params
}

// requireAuth is a server option for the end-to-end tests: auth.mode required with users
// (usersFile), as on a public address.
func requireAuth(t testing.TB, users ...string) func(*config.Options) {
	return func(o *config.Options) { o.UsersFile = usersFile(t, users...) }
}

// TestBaresipMessaging has alice and bob, two real baresip registered through simpled, text
// each other: each MESSAGE goes alice → simpled → bob's registered contact (whose user part is
// baresip's random alice-0x… / bob-0x…, fixtures quirk 5) and must be printed by the receiver.
func TestBaresipMessaging(t *testing.T) {
	bin := e2eBaresip(t)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := startServer(t, requireAuth(t, "alice", "bob"))
			alice := startBaresipUA(t, bin, baresipSetup{name: "alice",
				account: baresipAccount(srv, "alice", tp, ""), contacts: []string{"<sip:bob@example.test>"}})
			bob := startBaresipUA(t, bin, baresipSetup{name: "bob",
				account: baresipAccount(srv, "bob", tp, ""), contacts: []string{"<sip:alice@example.test>"}})
			alice.registered(t, tp)
			bob.registered(t, tp)

			nonce := strconv.Itoa(rand.IntN(1e9))
			hello := "hello bob over " + tp + " " + nonce
			alice.command(t, "/message "+hello)
			// menu prints a received MESSAGE as `<From URI>: "<body>"`.
			bob.waitFor(t, 5*time.Second, `sip:alice@example.test: "`+hello+`"`)

			reply := "hi alice over " + tp + " " + nonce
			bob.command(t, "/message "+reply)
			alice.waitFor(t, 5*time.Second, `sip:bob@example.test: "`+reply+`"`)
		})
	}
}

// TestBaresipCall has alice call bob through simpled (bob answers by itself: answermode=auto),
// both see the call established, then alice hangs up and bob must see the call closed: the
// INVITE is forked to bob's contact and Record-Routed, the ACK and the BYE follow the route set.
// g711 is the only codec; there is no audio device, so no audio flows, which baresip accepts.
func TestBaresipCall(t *testing.T) {
	bin := e2eBaresip(t, "g711.so")
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			srv := startServer(t, requireAuth(t, "alice", "bob"))
			alice := startBaresipUA(t, bin, baresipSetup{name: "alice",
				account: baresipAccount(srv, "alice", tp, ""), modules: []string{"g711.so"}})
			bob := startBaresipUA(t, bin, baresipSetup{name: "bob",
				account: baresipAccount(srv, "bob", tp, ";answermode=auto"), modules: []string{"g711.so"}})
			alice.registered(t, tp)
			bob.registered(t, tp)

			alice.command(t, "/dial sip:bob@example.test")
			alice.waitFor(t, 10*time.Second, "Call established: sip:bob@example.test")
			bob.waitFor(t, 5*time.Second, "Call established: sip:alice@example.test")

			// baresip prints "Call with … terminated" only for a call that lasted a second or
			// more (call.c print_summary): wait until both status lines show 0:00:01.
			alice.waitForRaw(t, 5*time.Second, `\[0:00:01\] audio=`)
			bob.waitForRaw(t, 5*time.Second, `\[0:00:01\] audio=`)
			alice.command(t, "/hangup")
			alice.waitFor(t, 5*time.Second, "Call with sip:bob@example.test terminated")
			bob.waitFor(t, 5*time.Second, "Call with sip:alice@example.test terminated")
		})
	}
}

// TestSippMessageScenario runs the shared MESSAGE load scenario: callees registered with their
// contact at a sipp UAS (load.sh's register_callees step), then a sipp UAC sends MESSAGEs to
// them through simpled, which relays each one to the UAS; every call must succeed on both sides.
// With the memory and the Redis store.
func TestSippMessageScenario(t *testing.T) {
	bin := e2eTool(t, "sipp", "sip-tester")
	sippDir := filepath.Join(e2eBenchDir(t), "sipp")
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
			var mod func(*config.Options)
			if tt.redis {
				rs := redistest.Start(t)
				mod = func(o *config.Options) { o.Store = rs.URL() }
			}
			srv := startServer(t, loadGenerator(mod))
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

			uas := startSippUAS(t, bin, filepath.Join(sippDir, "message_uas.xml"), calls)
			uasContact := "127.0.0.1:" + strconv.Itoa(uas.port) + ";transport=udp"

			regDir := filepath.Join(dir, "register")
			if err := os.Mkdir(regDir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, stats := runSipp(t, bin, regDir, srv.Listener("udp"), filepath.Join(sippDir, "register.xml"), csv, uasContact, callees, 100)
			if stats["SuccessfulCall(C)"] != callees {
				t.Fatalf("callee registration: %v", stats)
			}
			reg, body := e2eLookup(t, srv, "c00001@example.test")
			if len(reg.Bindings) != 1 || !strings.Contains(reg.Bindings[0].URI, "@"+uasContact) {
				t.Fatalf("c00001's binding is not the UAS (%s):\n%s", uasContact, body)
			}

			uacDir := filepath.Join(dir, "uac")
			if err := os.Mkdir(uacDir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, stats = runSipp(t, bin, uacDir, srv.Listener("udp"), filepath.Join(sippDir, "message_uac.xml"), csv, "", calls, rate)
			t.Logf("sipp UAC: %d calls, %d successful, %d failed, %d retransmissions",
				stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
			if stats["TotalCallCreated"] != calls || stats["SuccessfulCall(C)"] != calls || stats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp UAC stats: %v", stats)
			}

			// The UAS stops by itself after calls MESSAGEs (-m): each got there once.
			ustats := uas.wait(t, 10*time.Second)
			t.Logf("sipp UAS: %d calls, %d successful, %d failed", ustats["TotalCallCreated"], ustats["SuccessfulCall(C)"], ustats["FailedCall(C)"])
			if ustats["SuccessfulCall(C)"] != calls || ustats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp UAS stats: %v", ustats)
			}
		})
	}
}

// sippUAS is a sipp answering scenario running in the background.
type sippUAS struct {
	cmd  *exec.Cmd
	dir  string
	stat string
	out  *syncBuffer
	port int
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// startSippUAS starts sipp with an answering scenario on free loopback ports (load.sh's layout,
// as runSipp), stopping by itself after calls calls or 60 s; t.Cleanup kills it by PID.
func startSippUAS(t *testing.T, bin, scenario string, calls int) *sippUAS {
	t.Helper()
	for attempt := 1; ; attempt++ {
		base := e2eFreePorts(t, 4, false)
		u := &sippUAS{dir: t.TempDir(), out: &syncBuffer{}, port: base, done: make(chan struct{})}
		u.stat = filepath.Join(u.dir, "stat.csv")
		args := []string{
			"-sf", scenario,
			"-i", "127.0.0.1", "-p", strconv.Itoa(base), "-mp", strconv.Itoa(base + 1),
			"-cp", strconv.Itoa(base + 2), "-ci", "127.0.0.1", "-t", "u1",
			"-m", strconv.Itoa(calls), "-timeout", "60s",
			"-nostdin", "-default_behaviors", "all,-bye",
			"-trace_stat", "-stf", u.stat, "-fd", "1", "-trace_err", "-trace_screen",
		}
		u.cmd = exec.Command(bin, args...)
		u.cmd.Dir = u.dir
		u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
		if err := u.cmd.Start(); err != nil {
			t.Fatalf("start sipp UAS: %v", err)
		}
		go func() { u.err = u.cmd.Wait(); close(u.done) }()
		t.Cleanup(func() {
			select {
			case <-u.done:
				return
			default:
			}
			_ = u.cmd.Process.Kill() // SIGKILL to this PID only
			select {
			case <-u.done:
			case <-time.After(5 * time.Second):
				t.Errorf("sipp UAS pid %d did not exit after SIGKILL", u.cmd.Process.Pid)
			}
		})
		select {
		case <-u.done:
			// 254 (-2): sipp could not bind a socket, i.e. a port was taken after the probe.
			var exit *exec.ExitError
			if errors.As(u.err, &exit) && exit.ExitCode() == 254 && attempt < 3 {
				continue
			}
			t.Fatalf("sipp UAS exited at start-up (%v):\n%s", u.err, u.out)
		case <-time.After(300 * time.Millisecond):
		}
		return u
	}
}

// wait waits for the UAS to end by itself (its -m count reached) and returns its statistics.
func (u *sippUAS) wait(t *testing.T, timeout time.Duration) map[string]int {
	t.Helper()
	select {
	case <-u.done:
	case <-time.After(timeout):
		stats, _ := sippStats(u.stat)
		t.Fatalf("sipp UAS still running %v after the UAC ended (stats %v)\n%s", timeout, stats, u.out)
	}
	stats, err := sippStats(u.stat)
	if u.err != nil || err != nil {
		t.Fatalf("sipp UAS: exit %v, stats %v (%v)\n%s", u.err, stats, err, u.out)
	}
	return stats
}
