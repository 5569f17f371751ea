package servertest

// linphonec 5.1.65 prints `Friend "alice" <sip:alice@example.test> is Online` for every NOTIFY
// it gets about a friend added with "friend add". It has no way to bound its own life and does
// not exit at end of input, so it runs under a context deadline and with a parent-death signal.

import (
	"context"
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

// Linphonec is one linphonec driven through its stdin.
type Linphonec struct {
	cmd   *exec.Cmd
	out   *SyncBuffer
	log   string // linphonec's -l log: liblinphone's messages and the SIP trace
	stdin io.WriteCloser
	done  chan struct{}
	port  int
}

// Exited reports whether linphonec has exited.
func (l *Linphonec) Exited() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Command types one line into linphonec.
func (l *Linphonec) Command(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, line+"\n"); err != nil {
		t.Fatalf("linphonec: command %q: %v", line, err)
	}
}

func (l *Linphonec) Mark() int { return len(l.out.String()) }

// WaitSince waits until linphonec's output after mark matches re.
func (l *Linphonec) WaitSince(t testing.TB, mark int, timeout time.Duration, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	Poll(t, timeout, fmt.Sprintf("linphonec printing %q", re), func() (bool, string) {
		if rx.MatchString(l.out.String()[mark:]) {
			return true, ""
		}
		if l.Exited() {
			t.Fatalf("linphonec exited")
		}
		return false, "see the output logged below"
	})
}

// logExcerpt is the SIP trace and liblinphone's own lines (less its codec and sound card
// chatter) from linphonec's log, at most the last 30000 characters.
func (l *Linphonec) logExcerpt() string {
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

// StartLinphonec runs linphonec for user@example.test with simpled as registrar and outbound
// proxy over transport, listening on a free port, and waits until simpled holds its binding.
// reg_route is needed: without it linphonec sends its SUBSCRIBEs to the domain (a DNS lookup of
// example.test) instead of through the proxy. Its HOME is a temporary directory holding
// .local/share/linphone, without which liblinphone cannot open its database and never even
// opens its SIP ports.
func StartLinphonec(t testing.TB, bin string, srv *server.Server, user, transport string) *Linphonec {
	t.Helper()
	home := t.TempDir()
	data := filepath.Join(home, ".local", "share")
	if err := os.MkdirAll(filepath.Join(data, "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	port := FreePorts(t, 1, true)
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
	l := &Linphonec{out: &SyncBuffer{}, log: filepath.Join(home, "linphonec.log"), done: make(chan struct{}), port: port}
	// The deadline SIGKILLs linphonec's PID; the parent-death signal does when the test binary
	// dies without running its cleanups.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	l.cmd = exec.CommandContext(ctx, bin, "-d", "6", "-l", l.log, "-c", rcFile)
	setParentDeath(l.cmd)
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
		if !l.Exited() {
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
	Poll(t, 10*time.Second, "linphonec's binding for "+user+"@example.test", func() (bool, string) {
		if l.Exited() {
			t.Fatalf("linphonec exited at start-up")
		}
		reg, body := Lookup(t, srv, user+"@example.test")
		for _, bd := range reg.Bindings {
			if strings.HasPrefix(bd.UserAgent, "Linphonec") && bd.Transport == transport {
				return true, body
			}
		}
		return false, body
	})
	return l
}
