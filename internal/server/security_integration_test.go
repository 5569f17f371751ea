package server

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"

	"github.com/emiago/sipgo/sip"
	"github.com/redis/go-redis/v9"
)

// The trust model of docs/security.md, tried as an attacker would: each test fails when the
// rule it guards is broken.

// usersFile writes a users file giving each user the password "secret-<user>" in example.test.
func usersFile(t testing.TB, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		b.WriteString(u + "@example.test:secret-" + u + "\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialFrom is dial from a given local IP (another address of 127.0.0.0/8: another host, as far
// as simpled can tell).
func dialFrom(t testing.TB, network, localIP, addr string) *wire {
	t.Helper()
	d := net.Dialer{}
	switch network {
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(localIP)}
	default:
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", network, addr, localIP, err)
	}
	t.Cleanup(func() { c.Close() })
	return &wire{t: t, conn: c, udp: network == "udp", rd: bufio.NewReaderSize(c, 1<<16)}
}

// withAuth sends msg from w as user, answers the challenge (401 for REGISTER, 407 otherwise)
// with qop=auth credentials for uri, and sends it again with the next CSeq and a new branch.
// It returns the response to the retry, matched against want ("": the retry's answer is left
// to the caller, nil is returned).
func (w *wire) withAuth(msg, user, uri, want string) *sip.Response {
	w.t.Helper()
	method, _, _ := strings.Cut(msg, " ")
	w.send(msg)
	code, hdr, authz := "407", "Proxy-Authenticate", "Proxy-Authorization"
	if method == "REGISTER" {
		code, hdr, authz = "401", "WWW-Authenticate", "Authorization"
	}
	res := w.expect(`^SIP/2.0 ` + code + ` `)
	var values []string
	for _, h := range res.GetHeaders(hdr) {
		values = append(values, h.Value())
	}
	c := challengeParams(values)
	cnonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	resp := digestMD5(user, c["realm"], "secret-"+user, method, uri, c["nonce"], "00000001", cnonce)
	line := authz + `: Digest username="` + user + `", realm="` + c["realm"] + `", nonce="` + c["nonce"] +
		`", uri="` + uri + `", response="` + resp + `", algorithm=MD5, qop=auth, nc=00000001, cnonce="` + cnonce + `"`
	retry := regexp.MustCompile(`CSeq: (\d+) `).ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimSpace(s[len("CSeq:") : len(s)-1]))
		return "CSeq: " + strconv.Itoa(n+1) + " "
	})
	retry = strings.Replace(retry, "branch=z9hG4bK", "branch=z9hG4bKauth", 1)
	nl := "\n"
	if strings.Contains(msg, "\r\n") {
		nl = "\r\n"
	}
	retry = strings.Replace(retry, "Max-Forwards: 70"+nl, "Max-Forwards: 70"+nl+line+nl, 1)
	w.send(retry)
	if want == "" {
		return nil
	}
	return w.expect(want)
}

// newAuthUA is newUA for a server with auth.mode required: the REGISTER is authenticated.
func newAuthUA(t testing.TB, srv *Server, network, user string) *ua {
	t.Helper()
	u := &ua{wire: dial(t, network, srv.Listener(network)), user: user}
	u.withAuth(register(user, "reg-"+user+"-"+nextBranch(), 1, "Contact: <sip:"+user+"@{local};transport="+network+">"),
		user, "sip:example.test", `^SIP/2.0 200 `)
	return u
}

// A To tag is no proof of a dialog: a MESSAGE or INVITE claiming alice with a made-up To tag
// gets 481, and neither the online bob nor the offline carol gets anything.
func TestForgedToTagRefused(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.UsersFile = usersFile(t, "alice", "bob", "carol") })
	bob := newAuthUA(t, srv, "udp", "bob")
	mallory := dialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))

	tagged := func(msg string) string {
		return regexp.MustCompile(`(To: <sip:\w+@example.test>)`).ReplaceAllString(msg, "$1;tag=x")
	}
	mallory.send(tagged(message("alice", "bob", "forged-online", "text/plain", "from alice, honest")))
	mallory.expect(`^SIP/2.0 481 `)
	bob.expectNothing(300 * time.Millisecond)

	mallory.send(tagged(message("alice", "carol", "forged-offline", "text/plain", "from alice, honest")))
	mallory.expect(`^SIP/2.0 481 `)
	if n := pending(t, srv, "carol@example.test"); n != 0 {
		t.Fatalf("carol has %d stored messages", n)
	}

	mallory.send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=x\n" +
		"Call-ID: forged-invite\nCSeq: 1 INVITE\nContact: <sip:alice@{local}>\nContent-Length: 0\n\n")
	mallory.expect(`^SIP/2.0 481 `)
	bob.expectNothing(300 * time.Millisecond)

	// Without the tag the same MESSAGE is challenged, as any claim of a local identity.
	mallory.send(message("alice", "bob", "honest-claim", "text/plain", "hi"))
	mallory.expect(`^SIP/2.0 407 `)
}

// The token of simpled's Record-Route takes a request of the dialog to the dialog's other end
// only: a caller from another domain who learnt it cannot send to any other host:port, nor
// pose as the callee towards the address it wrote in its own Contact.
func TestDialogTokenReachesOnlyTheOtherEnd(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.UsersFile = usersFile(t, "bob") })
	bob := newAuthUA(t, srv, "udp", "bob")
	victim, err := net.ListenPacket("udp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vaddr := victim.LocalAddr().String()
	mallory := dialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))

	// mallory@evil.example calls bob (inbound federation), giving the victim as its Contact.
	mallory.send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:mallory@evil.example>;tag=m1\nTo: <sip:bob@example.test>\n" +
		"Call-ID: relay-try\nCSeq: 1 INVITE\nContact: <sip:mallory@" + vaddr + ">\nContent-Length: 0\n\n")
	inv := bob.request("INVITE")
	bob.reply(inv, 200, "Contact: <sip:bob@"+bob.conn.LocalAddr().String()+">")
	ok := mallory.expect(`^SIP/2.0 200 `)
	rr := ok.GetHeader("Record-Route")
	if rr == nil || !strings.Contains(rr.Value(), ";sd=") {
		t.Fatalf("no Record-Route with a dialog token: %v", rr)
	}
	route := "Route: " + rr.Value()
	toTag, _ := ok.To().Params.Get("tag")
	inDialog := func(ruri, from, to, method string) string {
		return method + " " + ruri + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
			"Max-Forwards: 70\nFrom: " + from + "\nTo: " + to + "\n" + route + "\n" +
			"Call-ID: relay-try\nCSeq: 2 " + method + "\nContent-Type: text/plain\nContent-Length: 5\n\nrelay"
	}
	expectSilence := func() {
		t.Helper()
		_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := victim.ReadFrom(make([]byte, 2048)); err == nil {
			t.Fatalf("the victim got %d bytes", n)
		}
	}

	// Forward, to another host than bob's device.
	mallory.send(inDialog("sip:victim@"+vaddr, "<sip:mallory@evil.example>;tag=m1", "<sip:bob@example.test>;tag="+toTag, "MESSAGE"))
	mallory.expect(`^SIP/2.0 403 `)
	expectSilence()
	// Backward, posing as bob towards the Contact mallory chose: only bob may send that way.
	mallory.send(inDialog("sip:mallory@"+vaddr, "<sip:bob@example.test>;tag="+toTag, "<sip:mallory@evil.example>;tag=m1", "MESSAGE"))
	mallory.expect(`^SIP/2.0 403 `)
	expectSilence()
	// The dialog itself works: mallory's BYE reaches bob.
	mallory.send(inDialog("sip:bob@"+bob.conn.LocalAddr().String(), "<sip:mallory@evil.example>;tag=m1", "<sip:bob@example.test>;tag="+toTag, "BYE"))
	bye := bob.request("BYE")
	bob.reply(bye, 200)
	mallory.expect(`^SIP/2.0 200 `)
}

// auth.mode required never reads "no credentials stored" as "authentication off": after the
// store lost every key, REGISTER and PUBLISH as alice are refused, never 200.
func TestStoreFlushedFailsClosed(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, func(o *config.Options) { o.Store = rs.URL(); o.Auth.Mode = config.AuthRequired })
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	sum := md5.Sum([]byte("alice:example.test:secret-alice"))
	ctx := t.Context()
	if err := rdb.HSet(ctx, "cred:{alice@example.test}", "example.test", `{"ha1_md5":"`+hex.EncodeToString(sum[:])+`"}`).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SAdd(ctx, "creds", "alice@example.test")

	alice := dial(t, "udp", srv.Listener("udp"))
	alice.withAuth(register("alice", "flush-1", 1, "Contact: <sip:alice@{local}>"), "alice", "sip:example.test", `^SIP/2.0 200 `)

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	alice.send(register("alice", "flush-2", 1, "Contact: <sip:alice@{local}>"))
	alice.expect(`^SIP/2.0 401 `)
	alice.withAuth(register("alice", "flush-3", 1, "Contact: <sip:alice@{local}>"), "alice", "sip:example.test", `^SIP/2.0 403 `)
	alice.send(publish("alice", "flush-4", 1, "", 600, pidfDoc("alice", "t1", "open")))
	alice.expect(`^SIP/2.0 407 `)
}

// A From that only looks foreign is a local identity: a trailing dot or one of our addresses
// is challenged like example.test itself.
func TestLookAlikeFromChallenged(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.UsersFile = usersFile(t, "alice", "bob") })
	bob := newAuthUA(t, srv, "udp", "bob")
	mallory := dialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	for _, host := range []string{"example.test.", "EXAMPLE.TEST", "127.0.0.1"} {
		msg := strings.Replace(message("alice", "bob", "lookalike-"+host, "text/plain", "hi"),
			"From: <sip:alice@example.test>", "From: <sip:alice@"+host+">", 1)
		mallory.send(msg)
		mallory.expect(`^SIP/2.0 407 `)
	}
	bob.expectNothing(300 * time.Millisecond)
}

// cpimMessage is a MESSAGE whose message/cpim body claims cpimFrom.
func cpimMessage(from, to, callID, cpimFrom string) string {
	body := "From: <" + cpimFrom + ">\r\nTo: <sip:" + to + "@example.test>\r\nDateTime: 2026-12-04T10:00:00Z\r\n\r\n" +
		"Content-Type: text/plain\r\n\r\nhello"
	return message(from, to, callID, "message/cpim", body)
}

// The sender a CPIM body names is the one SIP proved: an anonymous sender or bob cannot make
// a message read "from alice".
func TestCPIMFromSpoofingRefused(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.UsersFile = usersFile(t, "alice", "bob", "carol") })
	carol := newAuthUA(t, srv, "udp", "carol")

	mallory := dialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	anon := strings.Replace(cpimMessage("mallory", "carol", "cpim-anon", "sip:alice@example.test"),
		"From: <sip:mallory@example.test>", "From: <sip:mallory@evil.example>", 1)
	mallory.send(anon)
	mallory.expect(`^SIP/2.0 403 `)
	carol.expectNothing(300 * time.Millisecond)

	bob := dial(t, "udp", srv.Listener("udp"))
	bob.withAuth(cpimMessage("bob", "carol", "cpim-bob-as-alice", "sip:alice@example.test"), "bob", "sip:carol@example.test", `^SIP/2.0 403 `)
	carol.expectNothing(300 * time.Millisecond)

	bob.withAuth(cpimMessage("bob", "carol", "cpim-bob", "sip:bob@example.test"), "bob", "sip:carol@example.test", "")
	req := carol.request("MESSAGE")
	carol.reply(req, 200)
	bob.expect(`^SIP/2.0 200 `)
}

// A sips: request reaches a device only over TLS: a user registered over UDP gets nothing and
// the sender 480.
func TestSIPSNotOverUDP(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.UsersFile = usersFile(t, "alice", "bob") })
	bob := newAuthUA(t, srv, "udp", "bob")
	alice := dial(t, "udp", srv.Listener("udp"))
	msg := strings.Replace(message("alice", "bob", "sips-udp", "text/plain", "secret"),
		"MESSAGE sip:bob@example.test", "MESSAGE sips:bob@example.test", 1)
	alice.withAuth(msg, "alice", "sips:bob@example.test", `^SIP/2.0 480 `)
	bob.expectNothing(300 * time.Millisecond)
}

// twoNodes starts nodes a and b of one deployment: one Redis, one secret, users alice and bob,
// auth.mode required.
func twoNodes(t *testing.T) (a, b *Server) {
	t.Helper()
	rs := redistest.Start(t)
	users := usersFile(t, "alice", "bob")
	node := func(id string) func(*config.Options) {
		return func(o *config.Options) {
			o.Store, o.NodeID, o.UsersFile = rs.URL(), id, users
			o.Auth.NonceSecret = "one secret for the whole deployment"
		}
	}
	return startServer(t, node("a")), startServer(t, node("b"))
}

// Two nodes on one Redis with one secret trust each other's proofs: bob, authenticated on B,
// reaches alice whose connection A holds, and A does not challenge B's relay. A request that
// forges B's proof is challenged like any claim of a local identity.
func TestNodesTrustEachOtherOnly(t *testing.T) {
	a, b := twoNodes(t)
	alice := dial(t, "tcp", a.Listener("tcp"))
	alice.withAuth(natRegister("alice", "nodes-reg", "tcp"), "alice", "sip:example.test", `^SIP/2.0 200 `)

	bob := dial(t, "udp", b.Listener("udp"))
	bob.withAuth(message("bob", "alice", "nodes-msg", "text/plain", "via node A"), "bob", "sip:alice@example.test", "")
	req := alice.request("MESSAGE")
	if string(req.Body()) != "via node A" {
		t.Fatalf("MESSAGE at alice: %q", req.Body())
	}
	if len(req.GetHeaders("Via")) != 3 {
		t.Fatalf("MESSAGE at alice has %d Vias, want bob's, B's and A's", len(req.GetHeaders("Via")))
	}
	alice.reply(req, 200)
	bob.expect(`^SIP/2.0 200 `)

	// A node proof forged by someone else proves nothing: A challenges the claim of bob's
	// identity.
	mallory := dialFrom(t, "udp", "127.0.0.2", a.Listener("udp"))
	route := "Route: <sip:" + a.Listener("udp") + ";lr;np=" + strconv.FormatInt(time.Now().Unix(), 36) + ".0123456789abcdef>"
	mallory.send(message("bob", "alice", "nodes-forged", "text/plain", "forged", route))
	mallory.expect(`^SIP/2.0 407 `)
	alice.expectNothing(300 * time.Millisecond)
}

// A call across two nodes of one deployment: bob on B calls alice, whose connection A holds.
// Both nodes record-route; the ACK and alice's BYE pass both, and each node accepts the
// dialog token it issued — with auth.mode required and nothing else vouching for them.
func TestDialogAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	alice := dial(t, "tcp", a.Listener("tcp"))
	alice.withAuth(natRegister("alice", "xnode-reg", "tcp"), "alice", "sip:example.test", `^SIP/2.0 200 `)
	bob := newAuthUA(t, b, "udp", "bob")
	bobAddr := bob.conn.LocalAddr().String()

	invite := "INVITE sip:alice@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=bobtag\nTo: <sip:alice@example.test>\n" +
		"Call-ID: xnode-call\nCSeq: 1 INVITE\nContact: <sip:bob@" + bobAddr + ">\nContent-Length: 0\n\n"
	bob.withAuth(invite, "bob", "sip:alice@example.test", "")
	inv := alice.request("INVITE")
	alice.reply(inv, 200, "Contact: <sip:alice@127.0.0.2:5099;transport=tcp>")
	ok := bob.expect(`^SIP/2.0 200 `)
	rr := ok.GetHeaders("Record-Route")
	if len(rr) < 2 {
		t.Fatalf("200 with %d Record-Routes, want both nodes'", len(rr))
	}
	toTag, _ := ok.To().Params.Get("tag")

	// bob's ACK: his route set is the Record-Routes reversed.
	var bobRoutes string
	for i := len(rr) - 1; i >= 0; i-- {
		bobRoutes += "Route: " + rr[i].Value() + "\n"
	}
	bob.send("ACK sip:alice@127.0.0.2:5099;transport=tcp SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:bob@example.test>;tag=bobtag\nTo: <sip:alice@example.test>;tag=" + toTag + "\n" +
		bobRoutes + "Call-ID: xnode-call\nCSeq: 1 ACK\nContent-Length: 0\n\n")
	if ack := alice.request("ACK"); ack.CallID().Value() != "xnode-call" {
		t.Fatalf("ACK of another call at alice: %s", ack.CallID().Value())
	}

	// alice hangs up: her route set is the Record-Routes as the INVITE brought them.
	var aliceRoutes string
	for _, h := range inv.GetHeaders("Record-Route") {
		aliceRoutes += "Route: " + h.Value() + "\n"
	}
	alice.send("BYE sip:bob@" + bobAddr + " SIP/2.0\n" +
		"Via: SIP/2.0/TCP 127.0.0.2:5099;branch=z9hG4bK" + nextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=" + toTag + "\nTo: <sip:bob@example.test>;tag=bobtag\n" +
		aliceRoutes + "Call-ID: xnode-call\nCSeq: 1 BYE\nContent-Length: 0\n\n")
	bye := bob.request("BYE")
	bob.reply(bye, 200)
	alice.expect(`^SIP/2.0 200 `)
}
