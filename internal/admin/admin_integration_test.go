package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// adminDo sends one admin API request with the token (when tok) and, for a body, the JSON
// content type, and checks the status.
func adminDo(t *testing.T, srv *server.Server, tok bool, method, path, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok {
		req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
	}
}

// registerAs registers user over UDP, answering a digest challenge with password, and
// returns the final status.
func registerAs(t *testing.T, srv *server.Server, user, password string) int {
	t.Helper()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	callID := "adm-" + user + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	contact := "Contact: <sip:" + user + "@127.0.0.1:5070>"
	final := func() *sip.Response {
		for {
			msg := w.Read(3 * time.Second)
			if msg == "" {
				t.Fatalf("REGISTER %s: no answer", user)
			}
			if strings.HasPrefix(msg, "SIP/2.0 1") {
				continue
			}
			m, err := sip.ParseMessage([]byte(msg))
			if err != nil {
				t.Fatalf("answer does not parse: %v\n%s", err, msg)
			}
			return m.(*sip.Response)
		}
	}
	w.Send(servertest.Register(user, callID, 1, contact))
	res := final()
	if res.StatusCode != 401 {
		return int(res.StatusCode)
	}
	var challenges []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		challenges = append(challenges, h.Value())
	}
	ch := servertest.ChallengeParams(challenges)
	if ch == nil {
		t.Fatalf("401 without an MD5 challenge: %q", challenges)
	}
	const uri = "sip:example.test"
	resp := servertest.DigestMD5(user, "example.test", password, "REGISTER", uri, ch["nonce"], "00000001", "c0ffee")
	w.Send(servertest.Register(user, callID, 2, contact, fmt.Sprintf(
		`Authorization: Digest username="%s", realm="example.test", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		user, ch["nonce"], uri, resp)))
	return int(final().StatusCode)
}

// TestAdminUsersAndToken: through a started simpled with admin.token_file, the admin API
// refuses requests without the right token, and a user created with PUT /api/v1/users can
// register with that password at once, and no longer after DELETE.
func TestAdminUsersAndToken(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		o.Admin.TokenFile = servertest.TokenFile(t)
		o.Pprof = true
		o.Auth.Mode = config.AuthRequired // credentials in the store alone, on loopback
	})
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/metrics", 200)
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/healthz", 200)
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/api/v1/users", 401)
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/debug/pprof/", 401)
	adminDo(t, srv, false, "PUT", "/api/v1/users/alice@example.test", `{"password":"secret-alice"}`, 401)
	adminDo(t, srv, true, "GET", "/debug/pprof/", "", 200)

	adminDo(t, srv, true, "PUT", "/api/v1/users/alice@example.test", `{"password":"secret-alice"}`, 201)
	adminDo(t, srv, true, "PUT", "/api/v1/users/bob@example.test", `{"ha1":"`+servertest.MD5Hex("bob:example.test:secret-bob")+`"}`, 201)
	if got := registerAs(t, srv, "alice", "secret-alice"); got != 200 {
		t.Fatalf("alice created through the API: REGISTER %d, want 200", got)
	}
	if got := registerAs(t, srv, "bob", "secret-bob"); got != 200 {
		t.Fatalf("bob created with an HA1: REGISTER %d, want 200", got)
	}
	if got := registerAs(t, srv, "alice", "wrong"); got == 200 {
		t.Fatal("alice with a wrong password: 200")
	}
	adminDo(t, srv, true, "DELETE", "/api/v1/users/alice@example.test", "", 200)
	if got := registerAs(t, srv, "alice", "secret-alice"); got == 200 {
		t.Fatal("alice registered after DELETE /api/v1/users")
	}
}

// TestAdminRefusesForeignHostAndForms: the started server's HTTP listener refuses a rebound
// DNS name (421) and a cross-site form post (415) before anything is sent.
func TestAdminRefusesForeignHostAndForms(t *testing.T) {
	srv := servertest.Start(t, nil)
	api := "http://" + srv.HTTPAddr() + "/api/v1/messages"
	dev := servertest.NewUA(t, srv, "udp", "wim")
	req, _ := http.NewRequest("POST", api, strings.NewReader(`{"to":"wim@example.test","body":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Host = "attacker.example:" + srv.HTTPAddr()[strings.LastIndexByte(srv.HTTPAddr(), ':')+1:]
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 421 {
		t.Fatalf("foreign Host: %v %v, want 421", err, resp)
	} else {
		resp.Body.Close()
	}
	resp, err := http.Post(api, "text/plain", strings.NewReader(`{"to":"wim@example.test","body":"x"}`))
	if err != nil || resp.StatusCode != 415 {
		t.Fatalf("text/plain POST: %v %v, want 415", err, resp)
	}
	resp.Body.Close()
	dev.ExpectNothing(300 * time.Millisecond)
}

// TestReloadUsersFile: the users file is re-read in place (SIGHUP): a user added to it
// registers without a restart, a removed one no longer does, and a file that does not parse
// keeps the users in force.
func TestReloadUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice@example.test:secret-alice\ncarol@example.test:secret-carol\n")
	srv := servertest.Start(t, func(o *config.Options) { o.UsersFile = path })
	if got := registerAs(t, srv, "bob", "secret-bob"); got == 200 {
		t.Fatal("bob registered before he was in the file")
	}

	write("bob@example.test:secret-bob\ncarol@example.test:secret-carol\n")
	if err := srv.ReloadUsers(); err != nil {
		t.Fatalf("ReloadUsers: %v", err)
	}
	if got := registerAs(t, srv, "bob", "secret-bob"); got != 200 {
		t.Fatalf("bob added to the file: REGISTER %d, want 200", got)
	}
	if got := registerAs(t, srv, "alice", "secret-alice"); got == 200 {
		t.Fatal("alice removed from the file still registers")
	}

	write("dave@example.test:secret-dave\nnot a user line\n")
	if err := srv.ReloadUsers(); err == nil {
		t.Fatal("ReloadUsers of a broken file: no error")
	}
	if got := registerAs(t, srv, "bob", "secret-bob"); got != 200 {
		t.Fatalf("after a broken reload, bob: REGISTER %d, want 200 (old users kept)", got)
	}
	if got := registerAs(t, srv, "dave", "secret-dave"); got == 200 {
		t.Fatal("dave from a broken file registers")
	}
}

// adminGet GETs path with the token and decodes the JSON answer into v.
func adminGet(t *testing.T, srv *server.Server, path string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+srv.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// clusterView is the body of GET /api/v1/cluster.
type clusterView struct {
	Self   string `json:"self"`
	Leased bool   `json:"leased"`
	Nodes  []struct {
		ID            string     `json:"id"`
		Self          bool       `json:"self"`
		Listeners     []string   `json:"listeners"`
		Started       time.Time  `json:"started"`
		Heartbeat     *time.Time `json:"heartbeat"`
		LeaseExpires  *time.Time `json:"lease_expires"`
		LeaseSeconds  *float64   `json:"lease_seconds"`
		Subscriptions int        `json:"subscriptions"`
		Flows         int        `json:"flows"`
	} `json:"nodes"`
}

// GET /api/v1/cluster lists the nodes sharing the store, with their SIP listeners, leases
// and flows; a node that shuts down leaves the list. It is guarded like the rest of the API.
// A node on the memory store is a cluster of one.
func TestAdminCluster(t *testing.T) {
	rs := redistest.Start(t)
	tokens := servertest.TokenFile(t)
	node := func(id string) *server.Server {
		return servertest.Start(t, func(o *config.Options) {
			o.Store, o.NodeID, o.Auth.NonceSecret = rs.URL(), id, "one secret for the whole deployment"
			o.Admin.TokenFile, o.Cluster.Lease = tokens, 1500*time.Millisecond
		})
	}
	a, b := node("a"), node("b")
	adminDo(t, a, false, "GET", "/api/v1/cluster", "", http.StatusUnauthorized)
	bob := servertest.Dial(t, "tcp", b.Listener("tcp"))
	bob.Send(servertest.NATRegister("bob", "cluster-reg", "tcp"))
	bob.Expect(`^SIP/2.0 200 `)

	var v clusterView
	servertest.Poll(t, 3*time.Second, "a lists b with its flow", func() (bool, string) {
		v = clusterView{}
		adminGet(t, a, "/api/v1/cluster", &v)
		return len(v.Nodes) == 2 && v.Nodes[1].Flows == 1, fmt.Sprintf("%+v", v)
	})
	if v.Self != "a" || !v.Leased || v.Nodes[0].ID != "a" || !v.Nodes[0].Self || v.Nodes[1].ID != "b" || v.Nodes[1].Self {
		t.Fatalf("%+v", v)
	}
	nb := v.Nodes[1]
	if !slices.Contains(nb.Listeners, "udp://"+b.Listener("udp")) || !slices.Contains(nb.Listeners, "tcp://"+b.Listener("tcp")) {
		t.Errorf("b's listeners %v, want %s and %s", nb.Listeners, b.Listener("udp"), b.Listener("tcp"))
	}
	if nb.Started.IsZero() || nb.Heartbeat == nil || nb.LeaseExpires == nil || nb.LeaseExpires.Sub(*nb.Heartbeat) != 1500*time.Millisecond ||
		nb.LeaseSeconds == nil || *nb.LeaseSeconds <= 0 || *nb.LeaseSeconds > 1.5 {
		t.Errorf("b's lease: %+v", nb)
	}

	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	servertest.Poll(t, 2*time.Second, "a no longer lists b", func() (bool, string) {
		v = clusterView{}
		adminGet(t, a, "/api/v1/cluster", &v)
		return len(v.Nodes) == 1 && v.Nodes[0].ID == "a", fmt.Sprintf("%+v", v)
	})

	solo := servertest.Start(t, func(o *config.Options) { o.NodeID, o.Admin.TokenFile = "solo", tokens })
	var one clusterView
	adminGet(t, solo, "/api/v1/cluster", &one)
	if one.Self != "solo" || !one.Leased || len(one.Nodes) != 1 || one.Nodes[0].ID != "solo" || one.Nodes[0].Heartbeat != nil {
		t.Errorf("a node on the memory store: %+v", one)
	}
}
