package servertest

// baresip 1.0.0 (Debian) has no command-line way to act once it is registered (-e runs its
// commands at start-up, before the REGISTER is answered), so it is driven like a person at a
// terminal: the stdio module reads keys from stdin — here a pipe — and the menu module's long
// commands start with "/": "/message TEXT" (module contact: to the current contact, the first of
// the contacts file), "/dial URI", "/hangup", "/contacts", "/presence_online". Received
// messages, call and presence events are printed by the menu module and read back from
// baresip's output.
//
// baresip's presence module (modules/presence) is both sides: with ;pubint=600 on the account
// it PUBLISHes the user's status; it SUBSCRIBEs to every contact marked ;presence=p2p. It reads
// the contacts and the accounts when it loads, so it must come after account.so and contact.so
// (BaresipSetup.Presence).

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/server"
)

// BaresipModules is where Debian's baresip-core installs its modules.
const BaresipModules = "/usr/lib/baresip/modules"

// BaresipSetup is one baresip's account and what it loads.
type BaresipSetup struct {
	Name     string   // for failure messages: alice, bob
	Account  string   // the accounts line (BaresipAccount)
	Contacts []string // the contacts file; the first is the target of /message
	Modules  []string // extra modules loaded before the account, e.g. g711.so for calls
	Presence bool     // load presence.so, after the account and contact modules
	// Headless runs baresip with account.so alone: no UI, no SIP trace, no media binding; it
	// registers and, on SIGTERM, un-registers and exits.
	Headless bool
}

// Baresip is one baresip process.
type Baresip struct {
	Name  string
	Cmd   *exec.Cmd
	Port  int // its SIP port on 127.0.0.1 (UDP and TCP)
	out   *SyncBuffer
	stdin io.WriteCloser
	done  chan struct{}
}

// BaresipBin returns baresip's path, or skips (see Skip) when it or one of the modules (the
// UI's: stdio, account, contact, menu, and those given) is missing.
func BaresipBin(t testing.TB, modules ...string) string {
	t.Helper()
	bin := Tool(t, "baresip", "baresip")
	for _, m := range append([]string{"stdio.so", "account.so", "contact.so", "menu.so"}, modules...) {
		if _, err := os.Stat(filepath.Join(BaresipModules, m)); err != nil {
			Skip(t, fmt.Sprintf("baresip module %s not in %s (Debian package baresip-core)", m, BaresipModules))
		}
	}
	return bin
}

// BaresipAccount is an account line with simpled as outbound proxy over transport, as in
// examples/baresip, with the password UsersFile gives user; params are appended
// (";answermode=auto", ";pubint=600").
func BaresipAccount(srv *server.Server, user, transport, params string) string {
	return "<sip:" + user + "@" + Domain + ">;auth_pass=secret-" + user + ";outbound=\"sip:" + srv.Listener(transport) +
		";transport=" + transport + "\";regint=600" + params
}

// baresipConfig is the config file: sip_listen on port; unless headless the media bound to
// 127.0.0.1 too (net_interface) and no audio device, so a call sets up RTP sockets on loopback
// and sends nothing.
func baresipConfig(setup BaresipSetup, port int) string {
	cfg := "sip_listen\t127.0.0.1:" + strconv.Itoa(port) + "\n"
	if setup.Headless {
		return cfg + "module_path\t" + BaresipModules + "\n" + "module\taccount.so\n"
	}
	cfg += "net_interface\t127.0.0.1\n" +
		"module_path\t" + BaresipModules + "\n" +
		"module\tstdio.so\n"
	for _, m := range setup.Modules {
		cfg += "module\t" + m + "\n"
	}
	cfg += "module\taccount.so\n" +
		"module\tcontact.so\n"
	if setup.Presence {
		cfg += "module\tpresence.so\n"
	}
	return cfg + "module_app\tmenu.so\n"
}

// StartBaresip runs baresip with a config dir holding one account, listening on a free
// loopback port for UDP and TCP. Unless headless, -s prints the SIP trace, which failure
// messages show, and stdin stays open until baresip is killed: the stdio module polls it, and
// at end of file it would spin. baresip's own -t 60 bounds its life, the parent-death signal
// covers a test binary that dies without its cleanups, and t.Cleanup kills it by PID.
func StartBaresip(t testing.TB, bin string, setup BaresipSetup) *Baresip {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := FreePorts(t, 1, true)
		files := map[string]string{
			"config":   baresipConfig(setup, port),
			"accounts": setup.Account + "\n",
		}
		if !setup.Headless {
			files["contacts"] = strings.Join(setup.Contacts, "\n") + "\n"
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b := &Baresip{Name: setup.Name, out: &SyncBuffer{}, done: make(chan struct{}), Port: port}
		if b.Name == "" {
			b.Name = "baresip"
		}
		if setup.Headless {
			b.Cmd = exec.Command(bin, "-f", dir, "-t", "60")
		} else {
			b.Cmd = exec.Command(bin, "-s", "-f", dir, "-t", "60")
		}
		setParentDeath(b.Cmd)
		b.Cmd.Stdout, b.Cmd.Stderr = b.out, b.out
		if !setup.Headless {
			stdin, err := b.Cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			b.stdin = stdin
		}
		if err := b.Cmd.Start(); err != nil {
			t.Fatalf("start baresip: %v", err)
		}
		go func() { _ = b.Cmd.Wait(); close(b.done) }() // Wait also closes stdin
		t.Cleanup(func() {
			if !b.Exited() {
				_ = b.Cmd.Process.Kill() // SIGKILL to this PID only
			}
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
				t.Errorf("baresip %s (pid %d) did not exit after SIGKILL", b.Name, b.Cmd.Process.Pid)
			}
			if t.Failed() {
				t.Logf("baresip %s output:\n%s", b.Name, b.Output())
			}
		})
		select {
		case <-b.done:
			if attempt < 3 && strings.Contains(b.out.String(), "in use") {
				continue // the port was taken between the probe and baresip's bind
			}
			t.Fatalf("baresip %s exited at start-up:\n%s", b.Name, b.Output())
		case <-time.After(200 * time.Millisecond):
		}
		return b
	}
}

// Done is closed when baresip has exited.
func (b *Baresip) Done() <-chan struct{} { return b.done }

// Exited reports whether baresip has exited.
func (b *Baresip) Exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// ansiOrStatus matches terminal colour codes and the call status line menu reprints every
// ~125 ms ("[0:00:01] audio=0/0 (bit/s)"), both noise in a failure message.
var ansiOrStatus = regexp.MustCompile(`\x1b\[[0-9;]*m|\[\d+:\d\d:\d\d\] audio=\S+ \(bit/s\)\s*`)

// Output is baresip's output without colour codes and status lines.
func (b *Baresip) Output() string {
	return ansiOrStatus.ReplaceAllString(b.out.String(), "")
}

// Raw is baresip's output as printed.
func (b *Baresip) Raw() string { return b.out.String() }

// Mark is the length of baresip's output so far: WaitSince looks only at what follows.
func (b *Baresip) Mark() int { return len(b.out.String()) }

// Command types one line into baresip's stdio UI.
func (b *Baresip) Command(t testing.TB, line string) {
	t.Helper()
	if b.stdin == nil {
		t.Fatalf("baresip %s is headless: no command %q", b.Name, line)
	}
	if _, err := io.WriteString(b.stdin, line+"\n"); err != nil {
		t.Fatalf("baresip %s: command %q: %v", b.Name, line, err)
	}
}

// WaitFor polls baresip's output until it contains want.
func (b *Baresip) WaitFor(t testing.TB, timeout time.Duration, want string) {
	t.Helper()
	b.poll(t, timeout, regexp.QuoteMeta(want), b.Output)
}

// WaitForRaw polls baresip's output as printed, status lines included, until it matches re.
func (b *Baresip) WaitForRaw(t testing.TB, timeout time.Duration, re string) {
	t.Helper()
	b.poll(t, timeout, re, b.out.String)
}

// WaitSince waits until baresip's output after mark (colour codes and status lines removed)
// matches re.
func (b *Baresip) WaitSince(t testing.TB, mark int, timeout time.Duration, re string) {
	t.Helper()
	b.poll(t, timeout, re, func() string { return ansiOrStatus.ReplaceAllString(b.out.String()[mark:], "") })
}

// poll waits until output matches re. On failure the output is logged by t.Cleanup.
func (b *Baresip) poll(t testing.TB, timeout time.Duration, re string, output func() string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	Poll(t, timeout, fmt.Sprintf("baresip %s printing %q", b.Name, re), func() (bool, string) {
		if rx.MatchString(output()) {
			return true, ""
		}
		if b.Exited() {
			t.Fatalf("baresip %s exited", b.Name)
		}
		return false, "see the output logged below"
	})
}

// Registered waits until baresip reports its REGISTER answered 200 over transport (src/reg.c
// prints "alice@example.test: {0/UDP/v4} 200 OK (…) [1 binding]"), failing at once when it
// reports a failure ("reg: alice@example.test: 403 Forbidden").
func (b *Baresip) Registered(t testing.TB, transport string) {
	t.Helper()
	ok := regexp.MustCompile(`\{0/` + strings.ToUpper(transport) + `/v4\} 200 `)
	Poll(t, 10*time.Second, "baresip "+b.Name+" registered over "+transport, func() (bool, string) {
		out := b.Output()
		switch {
		case ok.MatchString(out):
			return true, ""
		case strings.Contains(out, "reg: "), b.Exited():
			t.Fatalf("baresip %s could not register", b.Name)
		}
		return false, "see the output logged below"
	})
}

// Contacts types /contacts into baresip until its listing shows want (Online, Offline) for
// contact (menu prints one line per contact: `>      Online Alice <sip:alice@example.test>`).
func (b *Baresip) Contacts(t testing.TB, timeout time.Duration, want, contact string) {
	t.Helper()
	rx := regexp.MustCompile(`\s` + want + `\s+` + regexp.QuoteMeta(contact) + `\s`)
	deadline := time.Now().Add(timeout)
	for {
		mark := b.Mark()
		b.Command(t, "/contacts")
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if rx.MatchString(ansiOrStatus.ReplaceAllString(b.out.String()[mark:], "")) {
				return
			}
		}
		if b.Exited() {
			t.Fatalf("baresip %s exited", b.Name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: /contacts does not list %s as %s within %v", b.Name, contact, want, timeout)
		}
	}
}
