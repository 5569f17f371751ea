package auth_test

import (
	"crypto/md5"
	"encoding/hex"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/redis/go-redis/v9"
)

// A To tag is no proof of a dialog: a MESSAGE or INVITE claiming alice with a made-up To tag
// gets 481, and neither the online bob nor the offline carol gets anything.
func TestForgedToTagRefused(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "alice", "bob", "carol") })
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	mallory := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))

	tagged := func(msg string) string {
		return regexp.MustCompile(`(To: <sip:\w+@example.test>)`).ReplaceAllString(msg, "$1;tag=x")
	}
	mallory.Send(tagged(servertest.Message("alice", "bob", "forged-online", "text/plain", "from alice, honest")))
	mallory.Expect(`^SIP/2.0 481 `)
	bob.ExpectNothing(300 * time.Millisecond)

	mallory.Send(tagged(servertest.Message("alice", "carol", "forged-offline", "text/plain", "from alice, honest")))
	mallory.Expect(`^SIP/2.0 481 `)
	if n := servertest.Pending(t, srv, "carol@example.test"); n != 0 {
		t.Fatalf("carol has %d stored messages", n)
	}

	mallory.Send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=x\n" +
		"Call-ID: forged-invite\nCSeq: 1 INVITE\nContact: <sip:alice@{local}>\nContent-Length: 0\n\n")
	mallory.Expect(`^SIP/2.0 481 `)
	bob.ExpectNothing(300 * time.Millisecond)

	// Without the tag the same MESSAGE is challenged, as any claim of a local identity.
	mallory.Send(servertest.Message("alice", "bob", "honest-claim", "text/plain", "hi"))
	mallory.Expect(`^SIP/2.0 407 `)
}

// The token of simpled's Record-Route takes a request of the dialog to the dialog's other end
// only: a caller from another domain who learnt it cannot send to any other host:port, nor
// pose as the callee towards the address it wrote in its own Contact.
func TestDialogTokenReachesOnlyTheOtherEnd(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "bob") })
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	victim, err := net.ListenPacket("udp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vaddr := victim.LocalAddr().String()
	mallory := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))

	// mallory@evil.example calls bob (inbound federation), giving the victim as its Contact.
	mallory.Send("INVITE sip:bob@example.test SIP/2.0\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:mallory@evil.example>;tag=m1\nTo: <sip:bob@example.test>\n" +
		"Call-ID: relay-try\nCSeq: 1 INVITE\nContact: <sip:mallory@" + vaddr + ">\nContent-Length: 0\n\n")
	inv := bob.Request("INVITE")
	bob.Reply(inv, 200, "Contact: <sip:bob@"+bob.Conn.LocalAddr().String()+">")
	ok := mallory.Expect(`^SIP/2.0 200 `)
	rr := ok.GetHeader("Record-Route")
	if rr == nil || !strings.Contains(rr.Value(), ";sd=") {
		t.Fatalf("no Record-Route with a dialog token: %v", rr)
	}
	route := "Route: " + rr.Value()
	toTag, _ := ok.To().Params.Get("tag")
	inDialog := func(ruri, from, to, method string) string {
		return method + " " + ruri + " SIP/2.0\n" +
			"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
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
	mallory.Send(inDialog("sip:victim@"+vaddr, "<sip:mallory@evil.example>;tag=m1", "<sip:bob@example.test>;tag="+toTag, "MESSAGE"))
	mallory.Expect(`^SIP/2.0 403 `)
	expectSilence()
	// Backward, posing as bob towards the Contact mallory chose: only bob may send that way.
	mallory.Send(inDialog("sip:mallory@"+vaddr, "<sip:bob@example.test>;tag="+toTag, "<sip:mallory@evil.example>;tag=m1", "MESSAGE"))
	mallory.Expect(`^SIP/2.0 403 `)
	expectSilence()
	// The dialog itself works: mallory's BYE reaches bob.
	mallory.Send(inDialog("sip:bob@"+bob.Conn.LocalAddr().String(), "<sip:mallory@evil.example>;tag=m1", "<sip:bob@example.test>;tag="+toTag, "BYE"))
	bye := bob.Request("BYE")
	bob.Reply(bye, 200)
	mallory.Expect(`^SIP/2.0 200 `)
}

// auth.mode required never reads "no credentials stored" as "authentication off": after the
// store lost every key, REGISTER and PUBLISH as alice are refused, never 200.
func TestStoreFlushedFailsClosed(t *testing.T) {
	rs := redistest.Start(t)
	srv := servertest.Start(t, func(o *servertest.Options) { o.Store = rs.URL(); o.Auth.Mode = servertest.AuthRequired })
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	sum := md5.Sum([]byte("alice:example.test:secret-alice"))
	ctx := t.Context()
	if err := rdb.HSet(ctx, "cred:{alice@example.test}", "example.test", `{"ha1_md5":"`+hex.EncodeToString(sum[:])+`"}`).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SAdd(ctx, "creds", "alice@example.test")

	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.WithAuth(servertest.Register("alice", "flush-1", 1, "Contact: <sip:alice@{local}>"), "alice", "sip:example.test", `^SIP/2.0 200 `)

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	alice.Send(servertest.Register("alice", "flush-2", 1, "Contact: <sip:alice@{local}>"))
	alice.Expect(`^SIP/2.0 401 `)
	alice.WithAuth(servertest.Register("alice", "flush-3", 1, "Contact: <sip:alice@{local}>"), "alice", "sip:example.test", `^SIP/2.0 403 `)
	alice.Send(servertest.Publish("alice", "flush-4", 1, "", 600, servertest.PIDFDoc("alice", "t1", "open")))
	alice.Expect(`^SIP/2.0 407 `)
}

// A From that only looks foreign is a local identity: a trailing dot or one of our addresses
// is challenged like example.test itself.
func TestLookAlikeFromChallenged(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "alice", "bob") })
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	mallory := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	for _, host := range []string{"example.test.", "EXAMPLE.TEST", "127.0.0.1"} {
		msg := strings.Replace(servertest.Message("alice", "bob", "lookalike-"+host, "text/plain", "hi"),
			"From: <sip:alice@example.test>", "From: <sip:alice@"+host+">", 1)
		mallory.Send(msg)
		mallory.Expect(`^SIP/2.0 407 `)
	}
	bob.ExpectNothing(300 * time.Millisecond)
}

// cpimMessage is a MESSAGE whose message/cpim body claims cpimFrom.
func cpimMessage(from, to, callID, cpimFrom string) string {
	body := "From: <" + cpimFrom + ">\r\nTo: <sip:" + to + "@example.test>\r\nDateTime: 2026-12-04T10:00:00Z\r\n\r\n" +
		"Content-Type: text/plain\r\n\r\nhello"
	return servertest.Message(from, to, callID, "message/cpim", body)
}

// The sender a CPIM body names is the one SIP proved: an anonymous sender or bob cannot make
// a message read "from alice".
func TestCPIMFromSpoofingRefused(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "alice", "bob", "carol") })
	carol := servertest.NewAuthUA(t, srv, "udp", "carol")

	mallory := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	anon := strings.Replace(cpimMessage("mallory", "carol", "cpim-anon", "sip:alice@example.test"),
		"From: <sip:mallory@example.test>", "From: <sip:mallory@evil.example>", 1)
	mallory.Send(anon)
	mallory.Expect(`^SIP/2.0 403 `)
	carol.ExpectNothing(300 * time.Millisecond)

	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.WithAuth(cpimMessage("bob", "carol", "cpim-bob-as-alice", "sip:alice@example.test"), "bob", "sip:carol@example.test", `^SIP/2.0 403 `)
	carol.ExpectNothing(300 * time.Millisecond)

	bob.WithAuth(cpimMessage("bob", "carol", "cpim-bob", "sip:bob@example.test"), "bob", "sip:carol@example.test", "")
	req := carol.Request("MESSAGE")
	carol.Reply(req, 200)
	bob.Expect(`^SIP/2.0 200 `)
}

// A sips: request reaches a device only over TLS: a user registered over UDP gets nothing and
// the sender 480.
func TestSIPSNotOverUDP(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "alice", "bob") })
	bob := servertest.NewAuthUA(t, srv, "udp", "bob")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	msg := strings.Replace(servertest.Message("alice", "bob", "sips-udp", "text/plain", "secret"),
		"MESSAGE sip:bob@example.test", "MESSAGE sips:bob@example.test", 1)
	alice.WithAuth(msg, "alice", "sips:bob@example.test", `^SIP/2.0 480 `)
	bob.ExpectNothing(300 * time.Millisecond)
}
