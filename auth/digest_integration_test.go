package auth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"

	goredis "github.com/redis/go-redis/v9"
)

// Digest hardening end to end (issue 14, item 4): no-qop replays, the digest uri, the store
// epoch and the lockout, over real UDP sockets against a started server with a users file.

// digestServer starts a server whose users file holds alice and bob (password secret-<user>).
func digestServer(t *testing.T, mod func(*servertest.Options)) *servertest.Server {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice@example.test:secret-alice\nbob@example.test:secret-bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return servertest.Start(t, func(o *servertest.Options) {
		o.UsersFile = users
		if mod != nil {
			mod(o)
		}
	})
}

// challengeFor sends an unauthenticated REGISTER of user on w and returns the MD5 challenge.
func challengeFor(t *testing.T, w *servertest.Wire, user, callID string) map[string]string {
	t.Helper()
	w.Send(servertest.Register(user, callID, 1, "Contact: <sip:"+user+"@{local}>"))
	res := w.Expect(`^SIP/2.0 401 `)
	var values []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		values = append(values, h.Value())
	}
	ch := servertest.ChallengeParams(values)
	if ch == nil {
		t.Fatalf("no MD5 challenge: %q", values)
	}
	return ch
}

// authorization answers nonce for user: with qop when nc != "", else RFC 2069 (as baresip).
func authorization(user, password, uri, nonce, nc string) string {
	if nc == "" {
		return fmt.Sprintf(`Authorization: Digest username="%s", realm="example.test", nonce="%s", uri="%s", response="%s", algorithm=MD5`,
			user, nonce, uri, servertest.DigestMD5(user, "example.test", password, "REGISTER", uri, nonce, "", ""))
	}
	return fmt.Sprintf(`Authorization: Digest username="%s", realm="example.test", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="c0ffee"`,
		user, nonce, uri, servertest.DigestMD5(user, "example.test", password, "REGISTER", uri, nonce, nc, "c0ffee"), nc)
}

// TestDigestNoQOPReplay: an Authorization without qop, captured from alice's REGISTER, is
// replayed from another socket with a new Contact and Call-ID: not 200 (a challenge with
// stale=true), and no rogue binding.
func TestDigestNoQOPReplay(t *testing.T) {
	srv := digestServer(t, nil)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	ch := challengeFor(t, alice, "alice", "noqop-1")
	authz := authorization("alice", "secret-alice", "sip:example.test", ch["nonce"], "")
	alice.Send(servertest.Register("alice", "noqop-1", 2, "Contact: <sip:alice@{local}>", authz))
	alice.Expect(`^SIP/2.0 200 `)

	attacker := servertest.Dial(t, "udp", srv.Listener("udp"))
	attacker.Send(servertest.Register("alice", "rogue-1", 1, "Contact: <sip:rogue@192.0.2.66:5060>", authz))
	res := attacker.Expect(`^SIP/2.0 401 `)
	if v := res.GetHeader("WWW-Authenticate"); v == nil || !strings.Contains(v.Value(), "stale=true") {
		t.Fatalf("replay challenge without stale=true:\n%s", res)
	}
	body := servertest.HTTPGet(t, "http://"+srv.HTTPAddr()+"/api/v1/registrations/alice@example.test", 200)
	if strings.Contains(body, "rogue") {
		t.Fatalf("the replay stored a binding:\n%s", body)
	}
	// A client that re-sends its last Authorization (linphone) answers the stale challenge.
	var values []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		values = append(values, h.Value())
	}
	fresh := servertest.ChallengeParams(values)["nonce"]
	alice.Send(servertest.Register("alice", "noqop-1", 3, "Contact: <sip:alice@{local}>", authorization("alice", "secret-alice", "sip:example.test", fresh, "")))
	alice.Expect(`^SIP/2.0 200 `)
}

// TestDigestURIMismatch: credentials whose uri is not the Request-URI get 400.
func TestDigestURIMismatch(t *testing.T) {
	srv := digestServer(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	ch := challengeFor(t, w, "alice", "uri-1")
	w.Send(servertest.Register("alice", "uri-1", 2, "Contact: <sip:alice@{local}>", authorization("alice", "secret-alice", "sip:other.test", ch["nonce"], "00000001")))
	w.Expect(`^SIP/2.0 400 Digest URI Mismatch`)
}

// TestDigestRequireQOP: with auth.require_qop an answer without qop is challenged again; with
// qop it registers.
func TestDigestRequireQOP(t *testing.T) {
	srv := digestServer(t, func(o *servertest.Options) { o.Auth.RequireQOP = true })
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	ch := challengeFor(t, w, "bob", "qop-1")
	w.Send(servertest.Register("bob", "qop-1", 2, "Contact: <sip:bob@{local}>", authorization("bob", "secret-bob", "sip:example.test", ch["nonce"], "")))
	w.Expect(`^SIP/2.0 401 `)
	w.Send(servertest.Register("bob", "qop-1", 3, "Contact: <sip:bob@{local}>", authorization("bob", "secret-bob", "sip:example.test", ch["nonce"], "00000001")))
	w.Expect(`^SIP/2.0 200 `)
}

// TestDigestLockout: ten wrong passwords for alice from one address within a minute lock that
// address out of alice (403 even with the right password); another address and another AOR
// are not locked out.
func TestDigestLockout(t *testing.T) {
	srv := digestServer(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	nonce := challengeFor(t, w, "alice", "guess")["nonce"]
	for i := range 10 {
		w.Send(servertest.Register("alice", "guess", 2+i, "Contact: <sip:alice@{local}>",
			authorization("alice", fmt.Sprintf("guess-%d", i), "sip:example.test", nonce, "00000001")))
		w.Expect(`^SIP/2.0 403 Invalid Credentials`)
	}
	// The right password from the same address: 403.
	w.Send(servertest.Register("alice", "guess", 20, "Contact: <sip:alice@{local}>",
		authorization("alice", "secret-alice", "sip:example.test", nonce, "00000001")))
	w.Expect(`^SIP/2.0 403 Locked Out`)
	// From another socket of that address, even the unauthenticated REGISTER is refused
	// rather than challenged.
	w2 := servertest.Dial(t, "udp", srv.Listener("udp"))
	w2.Send(servertest.Register("alice", "right-1", 1, "Contact: <sip:alice@{local}>"))
	w2.Expect(`^SIP/2.0 403 Locked Out`)
	if got := servertest.MetricValue(t, srv, "simpled_auth_lockouts_total"); got != 1 {
		t.Fatalf("simpled_auth_lockouts_total = %v, want 1", got)
	}
	if got := servertest.MetricValue(t, srv, `simpled_auth_failures_total{reason="locked"}`); got != 2 {
		t.Fatalf(`simpled_auth_failures_total{reason="locked"} = %v, want 2`, got)
	}
	// bob from the same address is not locked out.
	ch := challengeFor(t, w2, "bob", "bob-1")
	w2.Send(servertest.Register("bob", "bob-1", 2, "Contact: <sip:bob@{local}>", authorization("bob", "secret-bob", "sip:example.test", ch["nonce"], "00000001")))
	w2.Expect(`^SIP/2.0 200 `)
	// alice from another loopback address is not locked out.
	other := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	ch = challengeFor(t, other, "alice", "other-1")
	other.Send(servertest.Register("alice", "other-1", 2, "Contact: <sip:alice@{local}>", authorization("alice", "secret-alice", "sip:example.test", ch["nonce"], "00000001")))
	other.Expect(`^SIP/2.0 200 `)
}

// TestDigestStoreFlushed: with Redis holding the nonce counts, a FLUSHALL must not let an
// Authorization that was already used be accepted again (the store epoch refuses it).
func TestDigestStoreFlushed(t *testing.T) {
	rs := redistest.Start(t)
	srv := digestServer(t, func(o *servertest.Options) { o.Store = rs.URL() })
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	ch := challengeFor(t, w, "alice", "flush-1")
	authz := authorization("alice", "secret-alice", "sip:example.test", ch["nonce"], "00000001")
	w.Send(servertest.Register("alice", "flush-1", 2, "Contact: <sip:alice@{local}>", authz))
	w.Expect(`^SIP/2.0 200 `)

	client := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer client.Close()
	if err := client.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	// The replay, from another socket with another Call-ID: a stale challenge, not 200.
	attacker := servertest.Dial(t, "udp", srv.Listener("udp"))
	attacker.Send(servertest.Register("alice", "flush-rogue", 1, "Contact: <sip:rogue@192.0.2.66:5060>", authz))
	res := attacker.Expect(`^SIP/2.0 401 `)
	if v := res.GetHeader("WWW-Authenticate"); v == nil || !strings.Contains(v.Value(), "stale=true") {
		t.Fatalf("replay after FLUSHALL without stale=true:\n%s", res)
	}
	// alice answers the fresh nonce (the new epoch) and registers.
	var values []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		values = append(values, h.Value())
	}
	w.Send(servertest.Register("alice", "flush-1", 3, "Contact: <sip:alice@{local}>",
		authorization("alice", "secret-alice", "sip:example.test", servertest.ChallengeParams(values)["nonce"], "00000001")))
	w.Expect(`^SIP/2.0 200 `)
}
