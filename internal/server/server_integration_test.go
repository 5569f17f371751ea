package server

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"

	goredis "github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// TestFixtureRegisters sends every REGISTER baresip and linphone sent in the captures (UDP,
// UDP without Content-Length, TCP) and expects 200, as from Kamailio.
func TestFixtureRegisters(t *testing.T) {
	srv := startServer(t, nil)
	n := 0
	for _, tp := range []string{"udp", "tcp"} {
		for _, m := range loadFixtures(t, "*-"+tp+".txt") {
			if m.Method() != "REGISTER" {
				continue
			}
			t.Run(m.File+m.N, func(t *testing.T) {
				w := dial(t, tp, srv.Listener(tp))
				w.send(m.Text)
				res := w.expect(`^SIP/2.0 200 `)
				removal := strings.Contains(m.header("Contact"), "expires=0") || m.header("Expires") == "0"
				if m.header("Contact") != "" && !removal && len(res.GetHeaders("Contact")) == 0 {
					t.Errorf("200 lists no contact:\n%s", res)
				}
			})
			n++
		}
	}
	if n < 8 {
		t.Fatalf("only %d REGISTERs found in the fixtures", n)
	}
}

// TestFixtureRegistersWithDigest replays the captures with digest auth on: each REGISTER the
// clients sent with credentials is first sent without them (401), then with a response
// computed for simpled's challenge (200).
func TestFixtureRegistersWithDigest(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	var lines []string
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		lines = append(lines, u+"@example.test:secret-"+u)
	}
	if err := os.WriteFile(users, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(o *config.Options) { o.UsersFile = users })
	n := 0
	for _, m := range loadFixtures(t, "register-udp-auth-msilo.txt") {
		authz := m.header("Authorization")
		if m.Method() != "REGISTER" || authz == "" {
			continue
		}
		n++
		t.Run(m.N, func(t *testing.T) {
			w := dial(t, "udp", srv.Listener("udp"))
			user := regexpValue(authz, "username")
			uri := regexpValue(authz, "uri")
			// 1. Without credentials, on a new branch: 401 with a challenge.
			first := setHeader(setHeader(m.Text, "Authorization", ""), "Via", "SIP/2.0/UDP {local};branch=z9hG4bKa"+m.N[1:]+";rport")
			w.send(first)
			res := w.expect(`^SIP/2.0 401 `)
			var challenges []string
			for _, h := range res.GetHeaders("WWW-Authenticate") {
				challenges = append(challenges, h.Value())
			}
			ch := challengeParams(challenges)
			if ch == nil || ch["realm"] != "example.test" {
				t.Fatalf("no MD5 challenge for realm example.test: %q", challenges)
			}
			// 2. With a response computed for our nonce: 200. The fixture's CSeq is one higher.
			resp := digestMD5(user, "example.test", "secret-"+user, "REGISTER", uri, ch["nonce"], "00000001", "c0ffee")
			hdr := fmt.Sprintf(`Digest username="%s", realm="example.test", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
				user, ch["nonce"], uri, resp)
			second := setHeader(setHeader(m.Text, "Authorization", hdr), "Via", "SIP/2.0/UDP {local};branch=z9hG4bKb"+m.N[1:]+";rport")
			w.send(second)
			w.expect(`^SIP/2.0 200 `)
			// 3. The same nonce count again on a new transaction is a replay.
			w.send(setHeader(second, "Via", "SIP/2.0/UDP {local};branch=z9hG4bKc"+m.N[1:]+";rport"))
			w.expect(`^SIP/2.0 403 `)
		})
	}
	if n == 0 {
		t.Fatal("no authenticated REGISTER in the fixture")
	}
}

func regexpValue(h, param string) string {
	_, rest, ok := strings.Cut(h, param+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// TestBadInput sends hostile and malformed requests; each gets its answer and the server keeps
// serving.
func TestBadInput(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Limits.MaxBodySize = 1024 })
	valid := register("alice", "ok1", 1, "Contact: <sip:alice@127.0.0.1:5070>")
	tests := []struct {
		name string
		tp   string
		msg  string
		want string // regexp on the response, "" for no response
	}{
		{name: "garbage datagram", tp: "udp", msg: "\x00\x01\x02 hello", want: ""},
		{name: "truncated", tp: "udp", msg: valid[:150], want: `^SIP/2.0 400 Truncated Message`},
		{name: "content-length beyond body", tp: "udp", msg: strings.Replace(valid, "Content-Length: 0", "Content-Length: 400", 1), want: `^SIP/2.0 400 Content-Length Exceeds Body`},
		{name: "60 KB header line over udp", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 70\nX-Big: "+strings.Repeat("a", 60000), 1), want: `^SIP/2.0 400 Header Line Too Long`},
		{name: "64 KiB header line over tcp", tp: "tcp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 70\nX-Big: "+strings.Repeat("a", 64<<10), 1), want: `^SIP/2.0 400 Header Too Long`},
		{name: "thousands of contacts", tp: "tcp", msg: register("alice", "many", 1, strings.TrimSuffix(strings.Repeat("Contact: <sip:alice@127.0.0.1:5070>\n", 3000), "\n")), want: `^SIP/2.0 403 Too Many Contacts`},
		{name: "invalid contact uri", tp: "udp", msg: register("alice", "c2", 1, "Contact: <sip:alice@127.0.0.1:notaport>"), want: `^SIP/2.0 400 Malformed Contact`},
		{name: "negative expires", tp: "udp", msg: register("alice", "c3", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: -5"), want: `^SIP/2.0 400 Malformed Expires`},
		{name: "huge expires clamped", tp: "udp", msg: register("alice", "c4", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: 999999999999999"), want: `(?s)^SIP/2.0 200 .*expires=7200`},
		{name: "too brief", tp: "udp", msg: register("alice", "c5", 1, "Contact: <sip:alice@127.0.0.1>", "Expires: 10"), want: `(?s)^SIP/2.0 423 .*Min-Expires: 60`},
		{name: "non-numeric cseq", tp: "udp", msg: strings.Replace(valid, "CSeq: 1 REGISTER", "CSeq: one REGISTER", 1), want: `^SIP/2.0 400 `},
		{name: "duplicated To", tp: "udp", msg: strings.Replace(valid, "To: <sip:alice@example.test>", "To: <sip:alice@example.test>\nTo: <sip:bob@example.test>", 1), want: `^SIP/2.0 400 Duplicate To`},
		{name: "malformed From", tp: "udp", msg: strings.Replace(valid, "From: <sip:alice@example.test>", "From: <sip:alice@example.test", 1), want: `^SIP/2.0 400 Malformed From`},
		{name: "missing Call-ID", tp: "udp", msg: strings.Replace(valid, "Call-ID: ok1\n", "", 1), want: `^SIP/2.0 400 Missing Call-ID`},
		{name: "missing Max-Forwards", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70\n", "", 1), want: `^SIP/2.0 400 Missing Max-Forwards`},
		{name: "max-forwards 0", tp: "udp", msg: strings.Replace(valid, "Max-Forwards: 70", "Max-Forwards: 0", 1), want: `^SIP/2.0 483 `},
		{name: "cseq method mismatch", tp: "udp", msg: strings.Replace(valid, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1), want: `^SIP/2.0 400 CSeq Method Mismatch`},
		{name: "unknown proxy-require", tp: "udp", msg: register("alice", "c6", 1, "Proxy-Require: foo"), want: `(?s)^SIP/2.0 420 .*Unsupported: foo`},
		{name: "unknown require on REGISTER", tp: "udp", msg: register("alice", "c7", 1, "Require: bar"), want: `(?s)^SIP/2.0 420 .*Unsupported: bar`},
		{name: "body over the limit", tp: "tcp", msg: strings.Replace(register("alice", "c8", 1, "Content-Type: text/plain"), "Content-Length: 0\n\n", "Content-Length: 2000\n\n"+strings.Repeat("x", 2000), 1), want: `^SIP/2.0 413 `},
		{name: "sip version 3", tp: "udp", msg: strings.Replace(valid, "SIP/2.0\n", "SIP/3.0\n", 1), want: `^SIP/2.0 505 `},
		// A proxy routes methods it does not know (RFC 3261 §16); addressed to the server
		// itself, such a method gets 405 with Allow.
		{name: "unsupported method", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "FOO sip:example.test", "1 REGISTER", "1 FOO").Replace(valid), want: `(?s)^SIP/2.0 405 .*Allow: [A-Z, ]*REGISTER`},
		{name: "unknown method for a user", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "FOO sip:nobody@example.test", "1 REGISTER", "1 FOO").Replace(valid), want: `^SIP/2.0 404 `},
		{name: "stray CANCEL", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "CANCEL sip:bob@example.test", "1 REGISTER", "1 CANCEL").Replace(valid), want: `^SIP/2.0 481 `},
		{name: "stray ACK is not answered", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "ACK sip:bob@example.test", "1 REGISTER", "1 ACK").Replace(valid), want: ""},
		{name: "options to the server", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "OPTIONS sip:example.test", "1 REGISTER", "1 OPTIONS").Replace(valid), want: `(?s)^SIP/2.0 200 .*Allow: .*Accept: .*Supported: `},
		{name: "options to the server with max-forwards 0", tp: "udp", msg: strings.NewReplacer("REGISTER sip:example.test", "OPTIONS sip:example.test", "1 REGISTER", "1 OPTIONS", "Max-Forwards: 70", "Max-Forwards: 0").Replace(valid), want: `^SIP/2.0 200 `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := dial(t, tt.tp, srv.Listener(tt.tp))
			w.send(tt.msg)
			if tt.want == "" {
				w.expectNothing(300 * time.Millisecond)
			} else {
				w.expect(tt.want)
			}
			// The server still serves this client afterwards.
			w2 := dial(t, "udp", srv.Listener("udp"))
			w2.send(register("carol", "after-"+strings.ReplaceAll(tt.name, " ", "-"), 1))
			w2.expect(`^SIP/2.0 200 `)
		})
	}
}

// TestRegisterUDPAndTCPShareBindings registers two devices over UDP and TCP and reads them
// back through a query and the admin API; then removes them through the admin API.
func TestRegisterUDPAndTCPShareBindings(t *testing.T) {
	srv := startServer(t, nil)
	u := dial(t, "udp", srv.Listener("udp"))
	u.send(register("bob", "dev1", 1, `Contact: <sip:bob@127.0.0.1:5071>;+sip.instance="<urn:uuid:1>"`, "Expires: 600"))
	u.expect(`^SIP/2.0 200 `)
	c := dial(t, "tcp", srv.Listener("tcp"))
	c.send(register("bob", "dev2", 1, `Contact: <sip:bob@127.0.0.1:5072;transport=tcp>;q=0.7`, "Expires: 300"))
	res := c.expect(`^SIP/2.0 200 `)
	if n := len(res.GetHeaders("Contact")); n != 2 {
		t.Fatalf("contacts in 200: %d, want 2\n%s", n, res)
	}

	body := httpGet(t, "http://"+srv.HTTPAddr()+"/api/v1/registrations/bob@example.test", 200)
	var got struct {
		AOR      string `json:"aor"`
		Bindings []struct {
			URI       string   `json:"uri"`
			Expires   int      `json:"expires"`
			Q         *float64 `json:"q"`
			Transport string   `json:"transport"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("admin JSON: %v\n%s", err, body)
	}
	if got.AOR != "bob@example.test" || len(got.Bindings) != 2 {
		t.Fatalf("admin view: %s", body)
	}
	transports := map[string]bool{}
	for _, b := range got.Bindings {
		transports[b.Transport] = true
		if b.Expires <= 0 || b.Expires > 600 {
			t.Errorf("binding %s expires %d", b.URI, b.Expires)
		}
	}
	if !transports["udp"] || !transports["tcp"] {
		t.Errorf("transports recorded: %v", transports)
	}

	req, _ := http.NewRequest(http.MethodDelete, "http://"+srv.HTTPAddr()+"/api/v1/registrations/bob@example.test", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	resp.Body.Close()
	httpGet(t, "http://"+srv.HTTPAddr()+"/api/v1/registrations/bob@example.test", 404)
	u.send(register("bob", "q", 1))
	if res := u.expect(`^SIP/2.0 200 `); len(res.GetHeaders("Contact")) != 0 {
		t.Fatalf("bindings left after DELETE:\n%s", res)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	srv := startServer(t, nil)
	base := "http://" + srv.HTTPAddr()
	httpGet(t, base+"/healthz", 200)
	httpGet(t, base+"/readyz", 200)
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("dave", "m1", 1, "Contact: <sip:dave@127.0.0.1:5099>"))
	w.expect(`^SIP/2.0 200 `)
	w.send(valid405)
	w.expect(`^SIP/2.0 405 `)
	// A response is counted when its handler returns, just after it was sent: poll.
	var missing []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		metrics := httpGet(t, base+"/metrics", 200)
		missing = missing[:0]
		for _, want := range []string{
			`simpled_sip_requests_total{method="REGISTER"} 1`,
			`simpled_sip_responses_total{code="200",method="REGISTER"} 1`,
			`simpled_sip_responses_total{code="405",method="FOO"} 1`,
			`simpled_binding_events_total{kind="binding.added"} 1`,
			`simpled_store_duration_seconds_count{op="update_bindings"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("metrics lack %s", m)
	}
	httpGet(t, base+"/api/v1/registrations/not-an-aor", 400)
}

const valid405 = "FOO sip:example.test SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfoo1\nMax-Forwards: 70\nFrom: <sip:a@example.test>;tag=1\nTo: <sip:bob@example.test>\nCall-ID: foo1\nCSeq: 1 FOO\nContent-Length: 0\n\n"

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, want, b)
	}
	return string(b)
}

// TestRedisBindingsSurviveRestart registers through one simpled, stops it, and reads the
// binding back through a new simpled on the same Redis.
func TestRedisBindingsSurviveRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *config.Options) { o.Store = rs.URL() }
	a := startServer(t, mod)
	w := dial(t, "udp", a.Listener("udp"))
	w.send(register("alice", "persist", 1, "Contact: <sip:alice@127.0.0.1:5070>", "Expires: 600"))
	w.expect(`^SIP/2.0 200 `)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t) // and Redis itself, with AOF

	b := startServer(t, mod)
	w = dial(t, "udp", b.Listener("udp"))
	w.send(register("alice", "q2", 1))
	res := w.expect(`^SIP/2.0 200 `)
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || !strings.Contains(cs[0].Value(), "sip:alice@127.0.0.1:5070") {
		t.Fatalf("binding not kept across restarts:\n%s", res)
	}
	// The refresh continues the same Call-ID's CSeq order.
	w.send(register("alice", "persist", 1, "Contact: <sip:alice@127.0.0.1:5070>", "Expires: 0"))
	w.expect(`^SIP/2.0 500 `)
}

// TestRedisOutage stops Redis under a running simpled: REGISTER gets 503 with Retry-After
// quickly, /readyz turns 503, and everything recovers when Redis is back.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	srv := startServer(t, func(o *config.Options) { o.Store = rs.URL() })
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("alice", "out", 1, "Contact: <sip:alice@127.0.0.1:5070>"))
	w.expect(`^SIP/2.0 200 `)

	rs.Stop(t)
	start := time.Now()
	w.send(register("alice", "out", 2, "Contact: <sip:alice@127.0.0.1:5070>"))
	res := w.expect(`^SIP/2.0 503 `)
	if res.GetHeader("Retry-After") == nil {
		t.Errorf("503 without Retry-After:\n%s", res)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("503 took %v", d)
	}
	httpGet(t, "http://"+srv.HTTPAddr()+"/readyz", 503)

	rs.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for srv.Ready(ctx) != nil && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	w.send(register("alice", "out", 3, "Contact: <sip:alice@127.0.0.1:5070>"))
	res = w.expect(`^SIP/2.0 200 `)
	if len(res.GetHeaders("Contact")) != 1 {
		t.Fatalf("binding lost across the outage:\n%s", res)
	}
}

// TestCredentialsFromStore puts a credential into Redis the way README.md shows (raw hash and
// set, as an operator would with redis-cli) and registers with it: challenged, then 200;
// a wrong password gets 403.
func TestCredentialsFromStore(t *testing.T) {
	rs := redistest.Start(t)
	// On loopback with no users file, credentials in Redis are used once auth.mode says so.
	srv := startServer(t, func(o *config.Options) { o.Store = rs.URL(); o.Auth.Mode = config.AuthRequired })
	ha1 := md5hex("erin:example.test:secret-erin")
	client := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer client.Close()
	ctx := context.Background()
	if err := client.HSet(ctx, "cred:{erin@example.test}", "example.test", `{"ha1_md5":"`+ha1+`"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.SAdd(ctx, "creds", "erin@example.test").Err(); err != nil {
		t.Fatal(err)
	}
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register("erin", "store1", 1, "Contact: <sip:erin@127.0.0.1:5070>"))
	res401 := w.expect(`^SIP/2.0 401 `).GetHeader("WWW-Authenticate").Value()
	ch := challengeParams([]string{res401})
	for _, tc := range []struct {
		password string
		want     string
		cseq     int
	}{
		{password: "wrong", want: `^SIP/2.0 403 `, cseq: 100},
		{password: "secret-erin", want: `^SIP/2.0 200 `, cseq: 101},
	} {
		nc := fmt.Sprintf("%08x", tc.cseq)
		resp := digestMD5("erin", "example.test", tc.password, "REGISTER", "sip:example.test", ch["nonce"], nc, "abc")
		authz := fmt.Sprintf(`Digest username="erin", realm="example.test", nonce="%s", uri="sip:example.test", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="abc"`, ch["nonce"], resp, nc)
		w.send(register("erin", "store1", tc.cseq, "Contact: <sip:erin@127.0.0.1:5070>", "Authorization: "+authz))
		w.expect(tc.want)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// The profiler is served on the HTTP listener only when asked for (-pprof), which needs the
// admin token, and only to requests that carry it.
func TestPprofBehindFlag(t *testing.T) {
	off := startServer(t, nil)
	httpGet(t, "http://"+off.HTTPAddr()+"/debug/pprof/", 404)
	on := startServer(t, func(o *config.Options) { o.Pprof = true; o.Admin.TokenFile = writeTokenFile(t) })
	httpGet(t, "http://"+on.HTTPAddr()+"/debug/pprof/", 401)
	get := func(path string) string {
		req, _ := http.NewRequest("GET", "http://"+on.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := get("/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ index without profiles:\n%.300s", body)
	}
	get("/debug/pprof/heap?debug=1")
}
