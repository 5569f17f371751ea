package registrar_test

// End-to-end tests with real SIP clients: a headless baresip registering (with and without
// digest auth) and sipp driving the benchmarks' REGISTER load scenario. Every process talks only to
// 127.0.0.1, is bounded in time by its own flags and a context, and is killed by its PID in
// t.Cleanup. A missing binary skips the test, unless
// SIMPLED_REQUIRE_TOOLS=1 (CI), which turns the skip into a failure.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"
)

// TestBaresipRegisters registers a real baresip, reads its binding back through the admin
// API, then stops baresip (SIGTERM: it un-REGISTERs before exiting) and expects the binding
// gone. Once without credentials, once with digest auth (-users) and once with digest auth and
// auth.require_qop (baresip answers simpled's challenge with qop=auth).
func TestBaresipRegisters(t *testing.T) {
	bin := servertest.Tool(t, "baresip", "baresip")
	if _, err := os.Stat("/usr/lib/baresip/modules/account.so"); err != nil {
		servertest.Skip(t, "baresip modules not in /usr/lib/baresip/modules (Debian package baresip-core)")
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
			var mod func(*servertest.Options)
			account := "<sip:alice@example.test>"
			if tt.auth {
				users := filepath.Join(t.TempDir(), "users")
				if err := os.WriteFile(users, []byte("alice@example.test:secret-alice\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				mod = func(o *servertest.Options) { o.UsersFile, o.Auth.RequireQOP = users, tt.requireQOP }
				account += ";auth_pass=secret-alice"
			}
			srv := servertest.Start(t, mod)
			var challenges []string
			if tt.auth { // credentials are really asked for
				w := servertest.Dial(t, "udp", srv.Listener("udp"))
				w.Send(servertest.Register("alice", "probe-"+strconv.Itoa(rand.IntN(1e9)), 1, "Contact: <sip:alice@127.0.0.1:9>"))
				res := w.Expect(`^SIP/2.0 401 `)
				for _, h := range res.GetHeaders("WWW-Authenticate") {
					challenges = append(challenges, h.Value())
				}
			}
			// As in examples/baresip: the server is the outbound proxy (pre-loaded Route).
			account += `;outbound="sip:` + srv.Listener("udp") + `;transport=udp";regint=600`
			b := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Account: account, Headless: true})

			wantHost := "@127.0.0.1:" + strconv.Itoa(b.Port)
			servertest.Poll(t, 10*time.Second, "baresip's binding for alice@example.test", func() (bool, string) {
				if b.Exited() {
					t.Fatalf("baresip exited:\n%s", b.Raw())
				}
				if out := b.Raw(); strings.Contains(out, "reg: ") {
					// baresip prints "reg: <aor>: Register: <error>" when it gives up. libre
					// 1.1 (baresip 1.0.0) fails with ENOSYS ("Function not implemented") when
					// any challenge of the 401 names an algorithm other than MD5, even next
					// to an MD5 one: it must be offered MD5 alone.
					t.Fatalf("baresip could not register; simpled's challenges: %q\n%s", challenges, out)
				}
				reg, body := servertest.Lookup(t, srv, "alice@example.test")
				for _, bd := range reg.Bindings {
					if strings.HasPrefix(bd.UserAgent, "baresip") && strings.Contains(bd.URI, wantHost) {
						return true, body
					}
				}
				return false, body
			})
			reg, body := servertest.Lookup(t, srv, "alice@example.test")
			if len(reg.Bindings) != 1 {
				t.Fatalf("bindings: %d, want 1\n%s", len(reg.Bindings), body)
			}
			bd := reg.Bindings[0]
			// baresip registers a random contact user (alice-0x55…), fixtures quirk 5.
			if !strings.HasPrefix(bd.URI, "sip:alice") || bd.Transport != "udp" || bd.Expires <= 0 || bd.Expires > 600 {
				t.Errorf("binding: %+v", bd)
			}

			// SIGTERM: baresip un-REGISTERs (ua_stop_all) and exits.
			if err := b.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("SIGTERM baresip: %v", err)
			}
			servertest.Poll(t, 10*time.Second, "binding removed after baresip un-REGISTERed", func() (bool, string) {
				reg, body := servertest.Lookup(t, srv, "alice@example.test")
				return len(reg.Bindings) == 0, body
			})
			select {
			case <-b.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("baresip did not exit within 10 s of SIGTERM:\n%s", b.Raw())
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("baresip output:\n%s", b.Raw())
			}
		})
	}
}

// TestSippRegisterScenario runs the benchmarks' REGISTER load scenario (bench/sipp/
// register.xml: one REGISTER per call, distinct AORs) with sipp against simpled with the memory
// and the Redis store, and expects every call to succeed.
func TestSippRegisterScenario(t *testing.T) {
	bin := servertest.Tool(t, "sipp", "sip-tester")
	scenario := filepath.Join(servertest.BenchDir(t), "sipp", "register.xml")
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
			mod := func(o *servertest.Options) { o.Registrar.MaxNewAORsPerSource = 0 }
			if tt.redis {
				rs := redistest.Start(t)
				mod = func(o *servertest.Options) { o.Store = rs.URL(); o.Registrar.MaxNewAORsPerSource = 0 }
			}
			srv := servertest.Start(t, servertest.LoadGenerator(mod))
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

			port, stats := servertest.RunSipp(t, bin, dir, srv.Listener("udp"), scenario, users, "", calls, rate)
			t.Logf("sipp: %d calls, %d successful, %d failed, %d retransmissions",
				stats["TotalCallCreated"], stats["SuccessfulCall(C)"], stats["FailedCall(C)"], stats["Retransmissions(C)"])
			if stats["TotalCallCreated"] != calls || stats["SuccessfulCall(C)"] != calls || stats["FailedCall(C)"] != 0 {
				t.Fatalf("sipp stats: %v", stats)
			}

			// The bindings are sipp's: first and last user of the injection file.
			for _, user := range []string{"u000001", fmt.Sprintf("u%06d", calls)} {
				reg, body := servertest.Lookup(t, srv, user+"@example.test")
				want := "sip:" + user + "@127.0.0.1:" + strconv.Itoa(port)
				if len(reg.Bindings) != 1 || reg.Bindings[0].URI != want || reg.Bindings[0].UserAgent != "sipp-bench" {
					t.Errorf("binding of %s: want %s from sipp-bench, got\n%s", user, want, body)
				}
			}
		})
	}
}
