package servertest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Domain is the SIP domain every test server serves.
const Domain = "example.test"

// Server and Options are the wiring's types under the harness's name, so that a stage's
// tests (package proxy_test, ...) import servertest alone and nothing else of internal/.
type (
	Server  = server.Server
	Options = config.Options
)

// AuthRequired is auth.mode required (config.AuthRequired), for an option func.
const AuthRequired = config.AuthRequired

// Logger is silent unless SIMPLED_TEST_LOG is set.
func Logger(t testing.TB) *zap.Logger {
	if os.Getenv("SIMPLED_TEST_LOG") != "" {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// Start runs a simpled on free loopback ports (udp, tcp, http) for domain example.test, with
// the embedded store unless mod sets one; it is shut down in t.Cleanup.
func Start(t testing.TB, mod func(*config.Options)) *server.Server {
	t.Helper()
	opts := config.Default()
	opts.Listen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"}
	opts.HTTP = "127.0.0.1:0"
	opts.Domains = []string{Domain}
	if mod != nil {
		mod(&opts)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, opts, Logger(t))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return srv
}

// Redis starts a throw-away redis-server (skipped when missing, see base/redistest) and
// returns an option that puts the server's store on it, then applies mod.
func Redis(t testing.TB, mod func(*config.Options)) func(*config.Options) {
	t.Helper()
	rs := redistest.Start(t)
	return func(o *config.Options) {
		o.Store = rs.URL()
		if mod != nil {
			mod(o)
		}
	}
}

// LoadGenerator lifts the per-source limits (limits.source_rate, max_inflight_per_source,
// transport.max_connections_per_ip) for a test whose load all comes from one address, as
// sipp's and the benchmarks' does from 127.0.0.1, then applies mod.
func LoadGenerator(mod func(*config.Options)) func(*config.Options) {
	return func(o *config.Options) {
		o.Limits.SourceRate, o.Limits.SourceBurst = 1_000_000, 1_000_000
		o.Limits.MaxInflightPerSource = o.Limits.MaxInflight
		o.Transport.MaxConnectionsPerIP = 1_000_000
		o.Registrar.MaxNewAORsPerSource = 0
		o.Presence.MaxWatchers, o.Presence.MaxWatchersPerDomain = 1_000_000, 1_000_000
		if mod != nil {
			mod(o)
		}
	}
}

// FastPresence shortens the expiry floor and the NOTIFY interval so tests see expiries and
// several NOTIFYs within a second.
func FastPresence(o *config.Options) {
	o.Registrar.MinExpires = 1
	o.Presence.MinNotifyInterval = time.Millisecond
}

// UsersFile writes a users file giving each user the password "secret-<user>" in example.test.
func UsersFile(t testing.TB, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		b.WriteString(u + "@" + Domain + ":secret-" + u + "\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RequireAuth is a server option: auth.mode required with users (UsersFile), as on a public
// address.
func RequireAuth(t testing.TB, users ...string) func(*config.Options) {
	return func(o *config.Options) { o.UsersFile = UsersFile(t, users...) }
}

// AdminToken is the token TokenFile writes for admin.token_file.
const AdminToken = "e2e-admin-token-0123456789abcdef"

// TokenFile writes AdminToken to a file for admin.token_file.
func TokenFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// httpClient bounds every admin API call.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// HTTPGet GETs url and checks the status; it returns the body.
func HTTPGet(t testing.TB, url string, want int) string {
	t.Helper()
	return HTTPDo(t, "GET", url, "", want)
}

// HTTPDo sends one HTTP request (a body goes as JSON) and checks the status; it returns the
// body.
func HTTPDo(t testing.TB, method, url, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // else 415
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d\n%s", method, url, resp.StatusCode, want, b)
	}
	return string(b)
}

// MetricValue reads one sample (name with its labels, in the exposition's label order) from
// the server's /metrics; 0 when absent.
func MetricValue(t testing.TB, srv *server.Server, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(HTTPGet(t, "http://"+srv.HTTPAddr()+"/metrics", 200), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", sample, v)
			}
			return f
		}
	}
	return 0
}

// Registration is the admin API's view of one AOR.
type Registration struct {
	AOR      string `json:"aor"`
	Bindings []struct {
		URI       string `json:"uri"`
		Transport string `json:"transport"`
		Received  string `json:"received"`
		UserAgent string `json:"user_agent"`
		Expires   int    `json:"expires"`
	} `json:"bindings"`
}

// Lookup reads aor's bindings through the admin API; 404 gives an empty registration. It also
// returns the body, for failure messages.
func Lookup(t testing.TB, srv *server.Server, aor string) (Registration, string) {
	t.Helper()
	var reg Registration
	resp, err := httpClient.Get("http://" + srv.HTTPAddr() + "/api/v1/registrations/" + aor)
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

// Unregister removes every binding of aor through the admin API (the registrar's Remove, with
// its registration events), as an operator would.
func Unregister(t testing.TB, srv *server.Server, aor string) {
	t.Helper()
	req, err := http.NewRequest("DELETE", "http://"+srv.HTTPAddr()+"/api/v1/registrations/"+aor, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE registrations of %s: %v", aor, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE registrations of %s: %d", aor, resp.StatusCode)
	}
}

// PresenceSnapshot mirrors GET /api/v1/presence/{aor}.
type PresenceSnapshot struct {
	Document      string            `json:"document"`
	Publications  []json.RawMessage `json:"publications"`
	Subscriptions []struct {
		Watcher string `json:"watcher"`
		State   string `json:"state"`
	} `json:"watchers"`
	Rules map[string]string `json:"rules"`
}

// PresenceState reads aor's presence through the admin API.
func PresenceState(t testing.TB, srv *server.Server, aor string) PresenceSnapshot {
	t.Helper()
	body := HTTPDo(t, "GET", "http://"+srv.HTTPAddr()+"/api/v1/presence/"+aor, "", 200)
	var s PresenceSnapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("presence snapshot: %v\n%s", err, body)
	}
	return s
}

// Pending is the number of offline messages stored for aor.
func Pending(t testing.TB, srv *server.Server, aor string) int {
	t.Helper()
	msgs, err := srv.Store().Messages(context.Background(), aor, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// WaitPending waits up to 5 s until aor has want offline messages stored.
func WaitPending(t testing.TB, srv *server.Server, aor string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for Pending(t, srv, aor) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d pending messages, want %d", aor, Pending(t, srv, aor), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitKnown waits until the store remembers aor as a known user (set from the registration
// event, asynchronously).
func WaitKnown(t testing.TB, srv *server.Server, aor string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := srv.Store().Known(context.Background(), aor, time.Now()); err == nil && ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never became a known user", aor)
}

// MakeKnown registers user and removes the binding again: the user is known and offline.
func MakeKnown(t testing.TB, srv *server.Server, user string) {
	t.Helper()
	w := Dial(t, "udp", srv.Listener("udp"))
	w.Send(Register(user, "known-"+user, 1, "Contact: <sip:"+user+"@{local}>"))
	w.Expect(`^SIP/2.0 200 `)
	w.Send(Register(user, "known-"+user, 2, "Contact: <sip:"+user+"@{local}>;expires=0"))
	w.Expect(`^SIP/2.0 200 `)
	WaitKnown(t, srv, user+"@"+Domain)
}

// WaitFor polls cond every 20 ms for up to 3 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Poll calls cond until it reports true or timeout passes (nats checkFor); cond also returns
// what it saw, for the failure message.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
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
