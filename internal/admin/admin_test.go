package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const testToken = "s3cret-admin-token-0123456789"

// fakeMessages records what POST /api/v1/messages asked the proxy to send.
type fakeMessages struct {
	mu   sync.Mutex
	sent []string // from → to
}

func (f *fakeMessages) Pending(context.Context, string) ([]storage.Message, error) { return nil, nil }
func (f *fakeMessages) Delete(context.Context, string, string) (int, error)        { return 0, nil }
func (f *fakeMessages) Send(_ context.Context, from, to, _ string, _ []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, from+" -> "+to)
	return 200, nil
}

func (f *fakeMessages) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

type fakeRegistrations struct{}

func (fakeRegistrations) Lookup(context.Context, string) ([]storage.Binding, error) { return nil, nil }
func (fakeRegistrations) Remove(context.Context, string) ([]storage.Binding, error) { return nil, nil }

// fixture is the real handler on a real loopback listener, with a memory store behind
// /api/v1/users, a recording proxy behind /api/v1/messages and the audit log observed.
type fixture struct {
	url   string // http://127.0.0.1:PORT
	addr  string
	store *memory.Store
	msgs  *fakeMessages
	audit *observer.ObservedLogs
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	f := &fixture{addr: ln.Addr().String(), store: memory.New(), msgs: &fakeMessages{}, audit: logs}
	f.url = "http://" + f.addr
	o := Options{
		Gatherer:      prometheus.NewRegistry(),
		Ready:         func(context.Context) error { return nil },
		Registrations: fakeRegistrations{},
		Messages:      f.msgs,
		Users:         f.store,
		Domains:       []string{"example.test"},
		Audit:         zap.New(core).Named("audit"),
		Registerer:    prometheus.NewRegistry(),
		Addr:          f.addr,
	}
	if mod != nil {
		mod(&o)
	}
	srv := httptest.NewUnstartedServer(New(o))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// do sends one request; hdr holds header pairs ("Host" sets the Host header).
func (f *fixture) do(t *testing.T, method, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *fixture) expect(t *testing.T, want int, method, path, body string, hdr ...string) string {
	t.Helper()
	resp, b := f.do(t, method, path, body, hdr...)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d\n%s", method, path, resp.StatusCode, want, b)
	}
	return b
}

var (
	jsonCT = []string{"Content-Type", "application/json"}
	bearer = []string{"Authorization", "Bearer " + testToken}
)

func hdrs(sets ...[]string) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

func withToken(o *Options) { o.Token = testToken }

// Without a token (a loopback listener) the API answers; with one, every /api/v1 and
// /debug/pprof request needs it, while monitoring stays open.
func TestToken(t *testing.T) {
	open := newFixture(t, nil)
	open.expect(t, 200, "GET", "/api/v1/users", "")

	f := newFixture(t, func(o *Options) { withToken(o); o.Pprof = true })
	for _, path := range []string{"/api/v1/users", "/api/v1/registrations/alice@example.test", "/debug/pprof/", "/debug/pprof/heap", "/api/v1/nothing-here"} {
		t.Run(path, func(t *testing.T) {
			resp, body := f.do(t, "GET", path, "")
			if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("no token: %d, WWW-Authenticate %q, want 401 Bearer\n%s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			for _, wrong := range []string{"Bearer " + testToken + "x", "Bearer " + testToken[:len(testToken)-1], "Basic " + testToken, testToken, "Bearer"} {
				if resp, _ := f.do(t, "GET", path, "", "Authorization", wrong); resp.StatusCode != 401 {
					t.Errorf("Authorization %q: %d, want 401", wrong, resp.StatusCode)
				}
			}
		})
	}
	f.expect(t, 200, "GET", "/api/v1/users", "", bearer...)
	f.expect(t, 200, "GET", "/api/v1/users", "", "Authorization", "bearer "+testToken) // the scheme is case-insensitive
	f.expect(t, 200, "GET", "/debug/pprof/", "", bearer...)
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		f.expect(t, 200, "GET", path, "", "Host", "monitoring.example:9") // open, any Host
	}
	// A refused mutation never reaches the handler.
	f.expect(t, 401, "PUT", "/api/v1/users/alice@example.test", `{"password":"pw"}`, jsonCT...)
	if got, _ := f.store.ListCredentials(t.Context()); len(got) != 0 {
		t.Fatalf("a PUT without the token stored %v", got)
	}
}

// Requests with a body must be JSON: a cross-site form (text/plain, urlencoded, multipart)
// gets 415 and changes nothing.
func TestContentType(t *testing.T) {
	f := newFixture(t, nil)
	send := `{"to":"bob@example.test","body":"hi"}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
		f.expect(t, 415, "POST", "/api/v1/messages", send, "Content-Type", ct)
		f.expect(t, 415, "PUT", "/api/v1/users/alice@example.test", `{"password":"pw"}`, "Content-Type", ct)
	}
	if got := f.msgs.calls(); len(got) != 0 {
		t.Fatalf("text/plain POST sent %v", got)
	}
	if got, _ := f.store.ListCredentials(t.Context()); len(got) != 0 {
		t.Fatalf("text/plain PUT stored %v", got)
	}
	f.expect(t, 415, "DELETE", "/api/v1/users/alice@example.test", "x", "Content-Type", "text/plain")
	f.expect(t, 404, "DELETE", "/api/v1/users/alice@example.test", "") // no body: no type needed
	f.expect(t, 200, "POST", "/api/v1/messages", send, "Content-Type", "application/json; charset=utf-8")
}

// A Host that is not the listener's address or an admin.hosts name gets 421: a page whose
// DNS name was rebound to 127.0.0.1 cannot use the API.
func TestHost(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Hosts = []string{"admin.example.test", "ops.example.test:8443"} })
	_, port, _ := net.SplitHostPort(f.addr)
	for _, host := range []string{f.addr, "localhost:" + port, "LOCALHOST:" + port, "[::1]:" + port, "admin.example.test", "admin.example.test:1234", "ops.example.test:8443"} {
		f.expect(t, 200, "GET", "/api/v1/users", "", "Host", host)
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1:1", "127.0.0.1", "ops.example.test:8444", "ops.example.test", "admin.example.test.evil:" + port} {
		t.Run(host, func(t *testing.T) {
			f.expect(t, 421, "GET", "/api/v1/users", "", "Host", host)
			f.expect(t, 421, "POST", "/api/v1/messages", `{"to":"bob@example.test","body":"x"}`, hdrs(jsonCT, []string{"Host", host})...)
		})
	}
	if got := f.msgs.calls(); len(got) != 0 {
		t.Fatalf("a misdirected POST sent %v", got)
	}
}

// A wildcard listener is reached by its local addresses; names need admin.hosts.
func TestHostWildcardListener(t *testing.T) {
	g := newGuard(Options{Addr: "[::]:8080", Audit: zap.NewNop()}, http.NotFoundHandler())
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true,
		"127.0.0.1:8081": false, "simpled.example:8080": false, "[::]:8080": true,
	} {
		if got := g.hostOK(host); got != want {
			t.Errorf("hostOK(%q) = %v, want %v", host, got, want)
		}
	}
}

// POST /api/v1/messages speaks as sip:system@<domain> only, unless the token holder is
// allowed to send as users.
func TestSender(t *testing.T) {
	msg := func(from string) string {
		return fmt.Sprintf(`{"from":%q,"to":"bob@example.test","body":"hi"}`, from)
	}
	plain := newFixture(t, nil)
	for _, from := range []string{"sip:alice@example.test", "sip:System@example.test", "sip:system@example.test.", "sip:system@elsewhere.example", "sip:example.test"} {
		plain.expect(t, 403, "POST", "/api/v1/messages", msg(from), jsonCT...)
	}
	plain.expect(t, 400, "POST", "/api/v1/messages", msg("<sip:system@example.test"), jsonCT...)
	if got := plain.msgs.calls(); len(got) != 0 {
		t.Fatalf("refused senders sent %v", got)
	}
	plain.expect(t, 200, "POST", "/api/v1/messages", msg("sip:system@example.test"), jsonCT...)
	plain.expect(t, 200, "POST", "/api/v1/messages", `{"to":"bob@example.test","body":"hi"}`, jsonCT...)

	// A token alone does not allow users.
	tok := newFixture(t, withToken)
	tok.expect(t, 403, "POST", "/api/v1/messages", msg("sip:alice@example.test"), hdrs(jsonCT, bearer)...)

	asUsers := newFixture(t, func(o *Options) { withToken(o); o.SendAsUsers = true })
	asUsers.expect(t, 200, "POST", "/api/v1/messages", msg("sip:alice@example.test"), hdrs(jsonCT, bearer)...)
	asUsers.expect(t, 403, "POST", "/api/v1/messages", msg("sip:alice@elsewhere.example"), hdrs(jsonCT, bearer)...)
	if got := asUsers.msgs.calls(); len(got) != 1 || got[0] != "sip:alice@example.test -> bob@example.test" {
		t.Fatalf("sent %v", got)
	}
	entries := asUsers.audit.FilterMessage("admin request").FilterField(zap.String("from", "sip:alice@example.test")).All()
	if len(entries) != 1 || entries[0].ContextMap()["who"] != "token" {
		t.Fatalf("send as alice not audited with who=token: %v", asUsers.audit.All())
	}
}

func TestUsers(t *testing.T) {
	users, err := auth.ParseUsers(strings.NewReader("frank@example.test:from-the-file\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.UsersFile = users })
	ctx := t.Context()

	f.expect(t, 201, "PUT", "/api/v1/users/alice@example.test", `{"password":"secret-alice"}`, jsonCT...)
	got, err := f.store.Credential(ctx, "alice@example.test", "example.test")
	want := storage.Credential{HA1MD5: auth.HA1(auth.MD5, "alice", "example.test", "secret-alice"),
		HA1SHA256: auth.HA1(auth.SHA256, "alice", "example.test", "secret-alice")}
	if err != nil || got != want {
		t.Fatalf("stored %+v, %v; want %+v", got, err, want)
	}
	f.expect(t, 200, "PUT", "/api/v1/users/sip:alice@EXAMPLE.test", `{"password":"new-secret"}`, jsonCT...)
	if got, _ := f.store.Credential(ctx, "alice@example.test", "example.test"); got.HA1MD5 != auth.HA1(auth.MD5, "alice", "example.test", "new-secret") {
		t.Fatalf("password not replaced: %+v", got)
	}
	bobHA1 := auth.HA1(auth.MD5, "bob", "example.test", "secret-bob")
	f.expect(t, 201, "PUT", "/api/v1/users/bob@example.test", `{"ha1":"`+strings.ToUpper(bobHA1)+`"}`, jsonCT...)
	if got, _ := f.store.Credential(ctx, "bob@example.test", "example.test"); got != (storage.Credential{HA1MD5: bobHA1}) {
		t.Fatalf("ha1 stored as %+v", got)
	}

	bad := []struct {
		name, path, body string
		code             int
	}{
		{"both", "alice@example.test", `{"password":"a","ha1":"` + bobHA1 + `"}`, 400},
		{"neither", "alice@example.test", `{}`, 400},
		{"unknown field", "alice@example.test", `{"password":"a","admin":true}`, 400},
		{"empty password", "alice@example.test", `{"password":""}`, 400},
		{"short ha1", "alice@example.test", `{"ha1":"abc"}`, 400},
		{"huge password", "alice@example.test", `{"password":"` + strings.Repeat("p", 2<<20) + `"}`, 400},
		{"not an AOR", "alice", `{"password":"a"}`, 400},
		{"colon in user", "al:ice@example.test", `{"password":"a"}`, 400},
		{"foreign domain", "alice@elsewhere.example", `{"password":"a"}`, 422},
		{"trailing dot", "alice@example.test.", `{"password":"a"}`, 422},
		{"system", "system@example.test", `{"password":"a"}`, 422},
		{"users file", "frank@example.test", `{"password":"a"}`, 409},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			f.expect(t, tc.code, "PUT", "/api/v1/users/"+tc.path, tc.body, jsonCT...)
		})
	}

	body := f.expect(t, 200, "GET", "/api/v1/users", "")
	var list struct{ Users []User }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(list.Users) != "[{alice@example.test [store]} {bob@example.test [store]} {frank@example.test [file]}]" {
		t.Errorf("users = %v", list.Users)
	}
	for _, secret := range []string{"secret", "from-the-file", bobHA1, strings.ToUpper(bobHA1), want.HA1SHA256, auth.HA1(auth.MD5, "alice", "example.test", "new-secret"), "ha1"} {
		if strings.Contains(strings.ToLower(body), strings.ToLower(secret)) {
			t.Errorf("GET /api/v1/users shows %q:\n%s", secret, body)
		}
	}

	f.expect(t, 409, "DELETE", "/api/v1/users/frank@example.test", "")
	f.expect(t, 200, "DELETE", "/api/v1/users/alice@example.test", "")
	f.expect(t, 404, "DELETE", "/api/v1/users/alice@example.test", "")
	if _, err := f.store.Credential(ctx, "alice@example.test", "example.test"); err == nil {
		t.Fatal("alice's credential survived DELETE")
	}
}

// Every mutating call is on the audit logger with who, what and the result, and no secret
// ever is. (A call refused before routing has the path, not yet the aor field.)
func TestAudit(t *testing.T) {
	f := newFixture(t, withToken)
	f.expect(t, 201, "PUT", "/api/v1/users/alice@example.test", `{"password":"hunter2-password"}`, hdrs(jsonCT, bearer)...)
	f.expect(t, 401, "DELETE", "/api/v1/users/alice@example.test", "", "Authorization", "Bearer wrong-token-guess-000")
	f.expect(t, 200, "DELETE", "/api/v1/users/alice@example.test", "", bearer...)
	f.expect(t, 421, "DELETE", "/api/v1/users/alice@example.test", "", "Host", "rebound.example")
	f.expect(t, 200, "GET", "/api/v1/users", "", bearer...) // reads are not audited

	entries := f.audit.All()
	wantLines := []struct {
		method, who string
		status      int64
	}{{"PUT", "token", 201}, {"DELETE", "anonymous", 401}, {"DELETE", "token", 200}, {"DELETE", "anonymous", 421}}
	if len(entries) != len(wantLines) {
		t.Fatalf("%d audit lines, want %d: %v", len(entries), len(wantLines), entries)
	}
	for i, e := range entries {
		m := e.ContextMap()
		w := wantLines[i]
		if e.LoggerName != "audit" || e.Level != zapcore.InfoLevel || m["method"] != w.method || m["who"] != w.who ||
			m["status"] != w.status || (w.status < 400 && m["aor"] != "alice@example.test") || m["path"] != "/api/v1/users/alice@example.test" ||
			!strings.HasPrefix(m["remote_addr"].(string), "127.0.0.1:") {
			t.Errorf("audit line %d: %s %v; want %+v", i, e.LoggerName, m, w)
		}
		line := fmt.Sprint(m)
		for _, secret := range []string{"hunter2", testToken, "wrong-token", auth.HA1(auth.MD5, "alice", "example.test", "hunter2-password")} {
			if strings.Contains(line, secret) {
				t.Errorf("audit line %d holds a secret: %s", i, line)
			}
		}
	}
	loopback := newFixture(t, nil)
	loopback.expect(t, 201, "PUT", "/api/v1/users/bob@example.test", `{"password":"pw-bob"}`, jsonCT...)
	if e := loopback.audit.All(); len(e) != 1 || e[0].ContextMap()["who"] != "loopback" {
		t.Fatalf("no-token audit: %v", e)
	}
}

// The server's limits are set, and a profile longer than the write timeout still arrives
// (net/http/pprof extends the deadline through our response writer).
func TestServerLimits(t *testing.T) {
	s := NewServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Fatalf("limits missing: %+v", s)
	}
	if s.WriteTimeout <= 32*time.Second {
		t.Errorf("WriteTimeout %v: POST /api/v1/messages waits up to 32 s for the SIP answer", s.WriteTimeout)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s = NewServer(New(Options{Gatherer: prometheus.NewRegistry(), Registrations: fakeRegistrations{}, Pprof: true,
		Token: testToken, Addr: ln.Addr().String()}))
	s.WriteTimeout = time.Second
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/debug/pprof/profile?seconds=2", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(b) == 0 {
		t.Fatalf("profile past the write timeout: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("profile is not gzip: %.40q", b)
	}
}
