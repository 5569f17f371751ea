package registrar_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"
)

// TestFixtureRegisters sends every REGISTER baresip and linphone sent in the captures (UDP,
// UDP without Content-Length, TCP) and expects 200, as from Kamailio.
func TestFixtureRegisters(t *testing.T) {
	srv := servertest.Start(t, nil)
	n := 0
	for _, tp := range []string{"udp", "tcp"} {
		for _, m := range servertest.LoadFixtures(t, "*-"+tp+".txt") {
			if m.Method() != "REGISTER" {
				continue
			}
			t.Run(m.File+m.N, func(t *testing.T) {
				w := servertest.Dial(t, tp, srv.Listener(tp))
				w.Send(m.Text)
				res := w.Expect(`^SIP/2.0 200 `)
				removal := strings.Contains(m.Header("Contact"), "expires=0") || m.Header("Expires") == "0"
				if m.Header("Contact") != "" && !removal && len(res.GetHeaders("Contact")) == 0 {
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
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = users })
	n := 0
	for _, m := range servertest.LoadFixtures(t, "register-udp-auth-msilo.txt") {
		authz := m.Header("Authorization")
		if m.Method() != "REGISTER" || authz == "" {
			continue
		}
		n++
		t.Run(m.N, func(t *testing.T) {
			w := servertest.Dial(t, "udp", srv.Listener("udp"))
			user := servertest.QuotedParam(authz, "username")
			uri := servertest.QuotedParam(authz, "uri")
			// 1. Without credentials, on a new branch: 401 with a challenge.
			first := servertest.SetHeader(servertest.SetHeader(m.Text, "Authorization", ""), "Via", "SIP/2.0/UDP {local};branch=z9hG4bKa"+m.N[1:]+";rport")
			w.Send(first)
			res := w.Expect(`^SIP/2.0 401 `)
			var challenges []string
			for _, h := range res.GetHeaders("WWW-Authenticate") {
				challenges = append(challenges, h.Value())
			}
			ch := servertest.ChallengeParams(challenges)
			if ch == nil || ch["realm"] != "example.test" {
				t.Fatalf("no MD5 challenge for realm example.test: %q", challenges)
			}
			// 2. With a response computed for our nonce: 200. The fixture's CSeq is one higher.
			resp := servertest.DigestMD5(user, "example.test", "secret-"+user, "REGISTER", uri, ch["nonce"], "00000001", "c0ffee")
			hdr := fmt.Sprintf(`Digest username="%s", realm="example.test", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
				user, ch["nonce"], uri, resp)
			second := servertest.SetHeader(servertest.SetHeader(m.Text, "Authorization", hdr), "Via", "SIP/2.0/UDP {local};branch=z9hG4bKb"+m.N[1:]+";rport")
			w.Send(second)
			w.Expect(`^SIP/2.0 200 `)
			// 3. The same nonce count again on a new transaction is a replay.
			w.Send(servertest.SetHeader(second, "Via", "SIP/2.0/UDP {local};branch=z9hG4bKc"+m.N[1:]+";rport"))
			w.Expect(`^SIP/2.0 403 `)
		})
	}
	if n == 0 {
		t.Fatal("no authenticated REGISTER in the fixture")
	}
}

// TestRegisterUDPAndTCPShareBindings registers two devices over UDP and TCP and reads them
// back through a query and the admin API; then removes them through the admin API.
func TestRegisterUDPAndTCPShareBindings(t *testing.T) {
	srv := servertest.Start(t, nil)
	u := servertest.Dial(t, "udp", srv.Listener("udp"))
	u.Send(servertest.Register("bob", "dev1", 1, `Contact: <sip:bob@127.0.0.1:5071>;+sip.instance="<urn:uuid:1>"`, "Expires: 600"))
	u.Expect(`^SIP/2.0 200 `)
	c := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	c.Send(servertest.Register("bob", "dev2", 1, `Contact: <sip:bob@127.0.0.1:5072;transport=tcp>;q=0.7`, "Expires: 300"))
	res := c.Expect(`^SIP/2.0 200 `)
	if n := len(res.GetHeaders("Contact")); n != 2 {
		t.Fatalf("contacts in 200: %d, want 2\n%s", n, res)
	}

	body := servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/api/v1/registrations/bob@example.test", 200)
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
	servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/api/v1/registrations/bob@example.test", 404)
	u.Send(servertest.Register("bob", "q", 1))
	if res := u.Expect(`^SIP/2.0 200 `); len(res.GetHeaders("Contact")) != 0 {
		t.Fatalf("bindings left after DELETE:\n%s", res)
	}
}

// TestRedisBindingsSurviveRestart registers through one simpled, stops it, and reads the
// binding back through a new simpled on the same Redis.
func TestRedisBindingsSurviveRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *servertest.Options) { o.Store = rs.URL() }
	a := servertest.Start(t, mod)
	w := servertest.Dial(t, "udp", a.Listener("udp"))
	w.Send(servertest.Register("alice", "persist", 1, "Contact: <sip:alice@127.0.0.1:5070>", "Expires: 600"))
	w.Expect(`^SIP/2.0 200 `)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t) // and Redis itself, with AOF

	b := servertest.Start(t, mod)
	w = servertest.Dial(t, "udp", b.Listener("udp"))
	w.Send(servertest.Register("alice", "q2", 1))
	res := w.Expect(`^SIP/2.0 200 `)
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || !strings.Contains(cs[0].Value(), "sip:alice@127.0.0.1:5070") {
		t.Fatalf("binding not kept across restarts:\n%s", res)
	}
	// The refresh continues the same Call-ID's CSeq order.
	w.Send(servertest.Register("alice", "persist", 1, "Contact: <sip:alice@127.0.0.1:5070>", "Expires: 0"))
	w.Expect(`^SIP/2.0 500 `)
}
