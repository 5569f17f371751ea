package server

// End-to-end tests with real SIP clients: a headless baresip registering (with and without
// digest auth) and sipp driving the benchmarks' REGISTER load scenario. Every process talks only to
// 127.0.0.1, is bounded in time by its own flags and a context, and is killed by its PID in
// t.Cleanup. A missing binary skips the test, unless
// SIMPLED_REQUIRE_TOOLS=1 (CI), which turns the skip into a failure.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
)

// requireToolsEnv turns a missing client binary into a test failure.
const requireToolsEnv = "SIMPLED_REQUIRE_TOOLS"

func e2eRequired() bool {
	v := os.Getenv(requireToolsEnv)
	return v != "" && v != "0"
}

// e2eSkip skips the test with reason, or fails it when the tools are required.
func e2eSkip(t testing.TB, reason string) {
	t.Helper()
	if e2eRequired() {
		t.Fatalf("%s (%s is set)", reason, requireToolsEnv)
	}
	t.Skip(reason)
}

// e2eTool returns the path of a client binary, or skips.
func e2eTool(t testing.TB, name, debPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		e2eSkip(t, fmt.Sprintf("%s not found on PATH (Debian package %s)", name, debPackage))
	}
	return p
}

// e2eBenchDir is the repository's bench folder, whose sipp/ holds the load scenarios the
// benchmarks run (absolute: sipp runs in a temporary directory).
func e2eBenchDir(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", "..", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "sipp", "register.xml")); err != nil {
		t.Fatalf("bench scenarios: %v", err)
	}
	return abs
}

// e2ePoll calls cond until it reports true or timeout passes (nats checkFor); cond
// also returns what it saw, for the failure message.
func e2ePoll(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// e2eFreePorts returns base such that base..base+n-1 are free on 127.0.0.1 for UDP (and TCP
// when tcp is set). The ports are drawn below the usual ephemeral range and probed by binding;
// a later bind by the client can still race, which the callers retry.
func e2eFreePorts(t testing.TB, n int, tcp bool) int {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		base := 20000 + rand.IntN(12000-n)
		if e2ePortsFree(base, n, tcp) {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports found", n)
	return 0
}

func e2ePortsFree(base, n int, tcp bool) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u)
		if tcp {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			closers = append(closers, l)
		}
	}
	return true
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// adminRegistration is the admin API's view of one AOR.
type adminRegistration struct {
	AOR      string `json:"aor"`
	Bindings []struct {
		URI       string `json:"uri"`
		Transport string `json:"transport"`
		Received  string `json:"received"`
		UserAgent string `json:"user_agent"`
		Expires   int    `json:"expires"`
	} `json:"bindings"`
}

// e2eHTTP bounds every admin API call.
var e2eHTTP = &http.Client{Timeout: 5 * time.Second}

// e2eLookup reads aor's bindings through the admin API; 404 gives an empty registration.
func e2eLookup(t testing.TB, srv *Server, aor string) (adminRegistration, string) {
	t.Helper()
	var reg adminRegistration
	resp, err := e2eHTTP.Get("http://" + srv.HTTPAddr() + "/api/v1/registrations/" + aor)
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return reg, string(body)
	case http.StatusOK:
		if err := json.Unmarshal(body, &reg); err != nil {
			t.Fatalf("admin API JSON: %v\n%s", err, body)
		}
		return reg, string(body)
	default:
		t.Fatalf("admin API GET %s: %d\n%s", aor, resp.StatusCode, body)
		return reg, ""
	}
}

// baresip is one headless baresip process.
type baresip struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	port int
}

func (b *baresip) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// startBaresip runs baresip with a config dir holding one account, listening on a free
// loopback port, with no audio or video module. baresip's own -t bounds its life; the test
// ends it by PID in t.Cleanup.
func startBaresip(t *testing.T, bin, account string) *baresip {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := e2eFreePorts(t, 1, true) // baresip listens on UDP and TCP
		cfg := "sip_listen\t127.0.0.1:" + strconv.Itoa(port) + "\n" +
			"module_path\t/usr/lib/baresip/modules\n" +
			"module\taccount.so\n"
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b := &baresip{out: &syncBuffer{}, done: make(chan struct{}), port: port}
		b.cmd = exec.Command(bin, "-f", dir, "-t", "60")
		b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
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
				t.Errorf("baresip pid %d did not exit after SIGKILL", b.cmd.Process.Pid)
			}
		})
		// A port taken between the probe and baresip's bind makes it exit at once: retry.
		select {
		case <-b.done:
			if attempt < 3 && strings.Contains(b.out.String(), "in use") {
				continue
			}
			t.Fatalf("baresip exited at start-up:\n%s", b.out)
		case <-time.After(200 * time.Millisecond):
		}
		return b
	}
}

// TestBaresipRegisters registers a real baresip, reads its binding back through the admin
// API, then stops baresip (SIGTERM: it un-REGISTERs before exiting) and expects the binding
// gone. Once without credentials, once with digest auth (-users) and once with digest auth and
// auth.require_qop (baresip answers simpled's challenge with qop=auth).
func TestBaresipRegisters(t *testing.T) {
	bin := e2eTool(t, "baresip", "baresip")
	if _, err := os.Stat("/usr/lib/baresip/modules/account.so"); err != nil {
		e2eSkip(t, "baresip modules not in /usr/lib/baresip/modules (Debian package baresip-core)")
	}
	tests := []struct {
		name       string
		auth       bool
		requireQOP bool
	}{
		{name: "no auth"},
		{name: "digest", auth: true},
		{name: "digest require_qop", auth: true, requireQOP: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mod func(*config.Options)
			account := "<sip:alice@example.test>"
			if tt.auth {
				users := filepath.Join(t.TempDir(), "users")
				if err := os.WriteFile(users, []byte("alice@example.test:secret-alice\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				mod = func(o *config.Options) { o.UsersFile, o.Auth.RequireQOP = users, tt.requireQOP }
				account += ";auth_pass=secret-alice"
			}
			srv := startServer(t, mod)
			var challenges []string
			if tt.auth { // credentials are really asked for
				w := dial(t, "udp", srv.Listener("udp"))
				w.send(register("alice", "probe-"+strconv.Itoa(rand.IntN(1e9)), 1, "Contact: <sip:alice@127.0.0.1:9>"))
				res := w.expect(`^SIP/2.0 401 `)
				for _, h := range res.GetHeaders("WWW-Authenticate") {
					challenges = append(challenges, h.Value())
				}
			}
			// As in examples/baresip: the server is the outbound proxy (pre-loaded Route).
			account += `;outbound="sip:` + srv.Listener("udp") + `;transport=udp";regint=600`
			b := startBaresip(t, bin, account)

			wantHost := "@127.0.0.1:" + strconv.Itoa(b.port)
			e2ePoll(t, 10*time.Second, "baresip's binding for alice@example.test", func() (bool, string) {
				if b.exited() {
					t.Fatalf("baresip exited:\n%s", b.out)
				}
				if out := b.out.String(); strings.Contains(out, "reg: ") {
					// baresip prints "reg: <aor>: Register: <error>" when it gives up. libre
					// 1.1 (baresip 1.0.0) fails with ENOSYS ("Function not implemented") when
					// any challenge of the 401 names an algorithm other than MD5, even next
					// to an MD5 one: it must be offered MD5 alone.
					t.Fatalf("baresip could not register; simpled's challenges: %q\n%s", challenges, out)
				}
				reg, body := e2eLookup(t, srv, "alice@example.test")
				for _, bd := range reg.Bindings {
					if strings.HasPrefix(bd.UserAgent, "baresip") && strings.Contains(bd.URI, wantHost) {
						return true, body
					}
				}
				return false, body
			})
			reg, body := e2eLookup(t, srv, "alice@example.test")
			if len(reg.Bindings) != 1 {
				t.Fatalf("bindings: %d, want 1\n%s", len(reg.Bindings), body)
			}
			bd := reg.Bindings[0]
			// baresip registers a random contact user (alice-0x55…), fixtures quirk 5.
			if !strings.HasPrefix(bd.URI, "sip:alice") || bd.Transport != "udp" || bd.Expires <= 0 || bd.Expires > 600 {
				t.Errorf("binding: %+v", bd)
			}

			// SIGTERM: baresip un-REGISTERs (ua_stop_all) and exits.
			if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("SIGTERM baresip: %v", err)
			}
			e2ePoll(t, 10*time.Second, "binding removed after baresip un-REGISTERed", func() (bool, string) {
				reg, body := e2eLookup(t, srv, "alice@example.test")
				return len(reg.Bindings) == 0, body
			})
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("baresip did not exit within 10 s of SIGTERM:\n%s", b.out)
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("baresip output:\n%s", b.out)
			}
		})
	}
}

// TestSippRegisterScenario runs the benchmarks' REGISTER load scenario (bench/sipp/
// register.xml: one REGISTER per call, distinct AORs) with sipp against simpled with the memory
// and the Redis store, and expects every call to succeed.
func TestSippRegisterScenario(t *testing.T) {
	bin := e2eTool(t, "sipp", "sip-tester")
	scenario := filepath.Join(e2eBenchDir(t), "sipp", "register.xml")
	const (
		calls = 2000
		rate  = 500 // calls/s: 4 s per run
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
			srv := startServer(t, loadGenerator(mod))
			dir := t.TempDir()
			users := filepath.Join(dir, "users.csv")
			var sb strings.Builder
			sb.WriteString("SEQUENTIAL\n")
			for i := 1; i <= calls; i++ {
				fmt.Fprintf(&sb, "u%06d;pw%06d\n", i, i)
			}
			if err := os.WriteFile(users, []byte(sb.String()), 0o600); err != nil {
				t.Fatal(err)
			}

			port, stats := runSipp(t, bin, dir, srv.Listener("udp"), scenario, users, "", calls, rate)
			t.Logf("sipp: %d calls, %d successful, %d failed, %d retransmissions",
				stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
			if stats["TotalCallCreated"] != calls || stats["SuccessfulCall(C)"] != calls || stats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp stats: %v", stats)
			}

			// The bindings are sipp's: first and last user of the injection file.
			for _, user := range []string{"u000001", fmt.Sprintf("u%06d", calls)} {
				reg, body := e2eLookup(t, srv, user+"@example.test")
				want := "sip:" + user + "@127.0.0.1:" + strconv.Itoa(port)
				if len(reg.Bindings) != 1 || reg.Bindings[0].URI != want || reg.Bindings[0].UserAgent != "sipp-bench" {
					t.Errorf("binding of %s: want %s from sipp-bench, got\n%s", user, want, body)
				}
			}
		})
	}
}

// runSipp runs one bounded sipp UAC in dir and returns its SIP port and the last line of its
// statistics. sipp uses four ports (load.sh's layout): -p base, -mp base+1 (and base+3, its RTP
// echo), -cp base+2. contact is the scenarios' [contact] key, "" for sipp's own address.
func runSipp(t *testing.T, bin, dir, target, scenario, users, contact string, calls, rate int) (int, map[string]int) {
	t.Helper()
	secs := calls/rate + 1
	for attempt := 1; ; attempt++ {
		base := e2eFreePorts(t, 4, false)
		key := contact
		if key == "" {
			key = "127.0.0.1:" + strconv.Itoa(base)
		}
		stat := filepath.Join(dir, "stat.csv")
		_ = os.Remove(stat)
		args := []string{target,
			"-sf", scenario, "-inf", users,
			"-i", "127.0.0.1", "-p", strconv.Itoa(base), "-mp", strconv.Itoa(base + 1),
			"-cp", strconv.Itoa(base + 2), "-ci", "127.0.0.1", "-t", "u1",
			"-key", "domain", "example.test", "-key", "contact", key,
			"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
			"-timeout", strconv.Itoa(secs+10) + "s", "-recv_timeout", "5000",
			"-nostdin", "-default_behaviors", "all,-bye",
			"-trace_stat", "-stf", stat, "-fd", "1", "-trace_err", "-trace_screen",
		}
		// sipp's -timeout bounds the run; the context (SIGKILL to sipp's PID) is the backstop.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		err := cmd.Run()
		cancel()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("sipp: %v", err)
		}
		// 254 (-2): sipp could not bind a socket, i.e. a port was taken after the probe.
		if code == 254 && attempt < 3 {
			t.Logf("sipp could not bind its ports (base %d), retrying", base)
			continue
		}
		t.Logf("sipp exit %d after %v", code, time.Since(start).Round(time.Millisecond))
		stats, perr := sippStats(stat)
		if code != 0 || perr != nil {
			// 0: every call succeeded; 1: some failed; 97/99/255: sipp's own trouble.
			screens, _ := filepath.Glob(filepath.Join(dir, "*_screen.log"))
			errs, _ := filepath.Glob(filepath.Join(dir, "*_errors.log"))
			var extra string
			for _, f := range append(screens, errs...) {
				b, _ := os.ReadFile(f)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				extra += "\n--- " + filepath.Base(f) + "\n" + string(b)
			}
			t.Fatalf("sipp exit status %d (stats %v, %v)\n%s%s", code, stats, perr, out, extra)
		}
		return base, stats
	}
}

// sippStats returns the integer columns of the last line of a sipp -trace_stat file (header
// names as keys; cumulative counters end in "(C)").
func sippStats(file string) (map[string]int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("%s: no statistics line", file)
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	stats := map[string]int{}
	for i, name := range head {
		if i >= len(last) {
			break
		}
		if v, err := strconv.Atoi(strings.TrimSpace(last[i])); err == nil {
			stats[name] = v
		}
	}
	for _, k := range []string{"TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)"} {
		if _, ok := stats[k]; !ok {
			return stats, fmt.Errorf("%s: no column %s", file, k)
		}
	}
	return stats, nil
}
