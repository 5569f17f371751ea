package mwi_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// pbxAddr is the trusted peer's address: the PBX's socket is bound to it.
const pbxAddr = "127.0.0.5"

func trustPBX(o *config.Options) {
	servertest.FastPresence(o)
	o.Proxy.TrustedPeers = []string{pbxAddr}
}

// summaryRequest is a PUBLISH or out-of-dialog NOTIFY of user's message summary.
func summaryRequest(method, user, callID, body string, extra ...string) string {
	msg := method + " sip:" + user + "@example.test SIP/2.0\n" +
		"Via: SIP/2.0/{transport} {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:pbx@example.test>;tag=pbx" + callID + "\n" +
		"To: <sip:" + user + "@example.test>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: 1 " + method + "\n" +
		"Event: message-summary\n" +
		"Contact: <sip:pbx@{local}>\n"
	if method == "PUBLISH" {
		msg += "Expires: 600\n"
	} else {
		msg += "Subscription-State: active\n"
	}
	for _, e := range extra {
		msg += e + "\n"
	}
	msg += "Content-Type: application/simple-message-summary\n"
	msg += "Content-Length: " + strconv.Itoa(len(body)) + "\n\n"
	return strings.ReplaceAll(msg, "\n", "\r\n") + body // the body keeps its own line ends
}

func wantSummary(t *testing.T, n *sip.Request, want ...string) {
	t.Helper()
	if n.ContentType() == nil || n.ContentType().Value() != "application/simple-message-summary" ||
		n.GetHeader("Event").Value() != "message-summary" {
		t.Fatalf("not a message-summary NOTIFY:\n%s", n)
	}
	for _, w := range want {
		if !strings.Contains(string(n.Body()), w) {
			t.Fatalf("NOTIFY body lacks %q:\n%s", w, n.Body())
		}
	}
}

// TestMessageSummary: a user subscribes to its own mailbox and gets "Messages-Waiting: no";
// the PBX's PUBLISH, its unsolicited NOTIFY and the admin API each change the state and each
// change reaches the subscriber; the admin API shows it; someone else's mailbox (403) and a
// user that does not exist (404) are refused.
func TestMessageSummary(t *testing.T) {
	srv := servertest.Start(t, trustPBX)
	servertest.MakeKnown(t, srv, "alice")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	res, n := alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mwi-1", 1, "message-summary", 600))
	if res.GetHeader("Expires") == nil {
		t.Fatalf("200 without Expires:\n%s", res)
	}
	wantSummary(t, n, "Messages-Waiting: no\r\n")

	carol := servertest.Dial(t, "udp", srv.Listener("udp"))
	carol.SendTP(servertest.Subscribe("carol@example.test", "alice", "mwi-2", 1, "message-summary", 600))
	carol.Expect(`^SIP/2.0 403 `)
	carol.SendTP(servertest.Subscribe("nobody@example.test", "nobody", "mwi-3", 1, "message-summary", 600))
	carol.Expect(`^SIP/2.0 404 `)

	pbx := servertest.DialFrom(t, "udp", pbxAddr, srv.Listener("udp"))
	pbx.Send(summaryRequest("PUBLISH", "alice", "mwi-p1", "Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n"))
	pbx.Expect(`^SIP/2.0 200 `)
	wantSummary(t, alice.Notify(), "Messages-Waiting: yes\r\n", "Voice-Message: 2/1 (0/0)\r\n")

	time.Sleep(1100 * time.Millisecond) // a new second: the NOTIFY's record is newer than the publication
	pbx.Send(summaryRequest("NOTIFY", "alice", "mwi-n1", "Messages-Waiting: yes\r\nMessage-Account: sip:*97@example.test\r\nVoice-Message: 3/1 (1/0)\r\n"))
	pbx.Expect(`^SIP/2.0 200 `)
	wantSummary(t, alice.Notify(), "Message-Account: sip:*97@example.test\r\n", "Voice-Message: 3/1 (1/0)\r\n")

	base := "http://" + srv.HTTPAddr() + "/api/v1/mwi/alice@example.test"
	servertest.HTTPDo(t, "PUT", base, `{"waiting": true, "voice": {"new": 5, "old": 0}, "fax": {"new": 1, "old": 0, "new_urgent": 1}}`, 200)
	wantSummary(t, alice.Notify(), "Voice-Message: 5/0 (0/0)\r\nFax-Message: 1/0 (1/0)\r\n")
	if got := servertest.HTTPGet(t, base, 200); !strings.Contains(got, `"new": 5`) || !strings.Contains(got, "Messages-Waiting: yes") {
		t.Fatalf("GET: %s", got)
	}
	servertest.HTTPDo(t, "PUT", base, `{"waiting": true, "voicemail": {"new": 1}}`, 400)
	servertest.HTTPDo(t, "PUT", "http://"+srv.HTTPAddr()+"/api/v1/mwi/nobody@example.test", `{"waiting": false}`, 404)
	servertest.HTTPDo(t, "PUT", "http://"+srv.HTTPAddr()+"/api/v1/mwi/alice@elsewhere.test", `{"waiting": false}`, 400)

	// Without the record, the PBX's publication (still live) is the state again.
	servertest.HTTPDo(t, "DELETE", base, "", 200)
	wantSummary(t, alice.Notify(), "Voice-Message: 2/1 (0/0)\r\n")
	servertest.HTTPDo(t, "DELETE", base, "", 404)
	alice.ExpectNothing(200 * time.Millisecond)
}

// TestMessageSummaryRefused: a PUBLISH or NOTIFY of a mailbox from anyone but a trusted peer
// gets 403, a malformed summary 400 naming the line, an oversized one 413, another type 415,
// a NOTIFY for a user that does not exist 404 — and the subscriber hears of none of them.
func TestMessageSummaryRefused(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		trustPBX(o)
		o.Limits.MaxBodySize = 2048
	})
	servertest.MakeKnown(t, srv, "alice")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mwr-1", 1, "message-summary", 600))
	wantSummary(t, n, "Messages-Waiting: no")

	good := "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n"
	mallory := servertest.Dial(t, "udp", srv.Listener("udp"))
	pbx := servertest.DialFrom(t, "udp", pbxAddr, srv.Listener("udp"))
	cases := []struct {
		name string
		w    *servertest.Wire
		msg  string
		want string
	}{
		{"publish untrusted", mallory, summaryRequest("PUBLISH", "alice", "r1", good), `^SIP/2.0 403 `},
		{"notify untrusted", mallory, summaryRequest("NOTIFY", "alice", "r2", good), `^SIP/2.0 403 `},
		{"publish malformed", pbx, summaryRequest("PUBLISH", "alice", "r3", "Messages-Waiting: yes\r\nVoice-Message: lots\r\n"), `^SIP/2.0 400 Invalid message summary: line 2: `},
		{"notify malformed", pbx, summaryRequest("NOTIFY", "alice", "r4", "Messages-Waiting: perhaps\r\n"), `^SIP/2.0 400 Invalid message summary: line 1: `},
		{"notify oversized", pbx, summaryRequest("NOTIFY", "alice", "r5", good+strings.Repeat("X-Pad: y\r\n", 250)), `^SIP/2.0 413 `},
		{"publish oversized", pbx, summaryRequest("PUBLISH", "alice", "r6", good+strings.Repeat("X-Pad: y\r\n", 250)), `^SIP/2.0 413 `},
		{"notify wrong type", pbx, strings.Replace(summaryRequest("NOTIFY", "alice", "r7", good), "application/simple-message-summary", "text/plain", 1), `^SIP/2.0 415 `},
		{"notify unknown user", pbx, summaryRequest("NOTIFY", "nobody", "r8", good), `^SIP/2.0 404 `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.w.T = t
			c.w.Send(c.msg)
			c.w.Expect(c.want)
		})
	}
	alice.ExpectNothing(300 * time.Millisecond)
}

// TestMessageSummaryKeptOnFailure: a NOTIFY the phone fails (503, as a timeout would) does
// not end a message-summary subscription: the next change is sent again; three failures in a
// row end it, as a 481 does at once.
func TestMessageSummaryKeptOnFailure(t *testing.T) {
	srv := servertest.Start(t, trustPBX)
	servertest.MakeKnown(t, srv, "alice")
	base := "http://" + srv.HTTPAddr() + "/api/v1/mwi/alice@example.test"
	set := func(n int) {
		servertest.HTTPDo(t, "PUT", base, `{"waiting": true, "voice": {"new": `+strconv.Itoa(n)+`, "old": 0}}`, 200)
	}
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mwk-1", 1, "message-summary", 600))
	for i := 1; i <= 3; i++ {
		set(i)
		n := alice.Request("NOTIFY")
		wantSummary(t, n, "Voice-Message: "+strconv.Itoa(i)+"/0")
		alice.Reply(n, 503)
	}
	set(4)
	if n := alice.Read(500 * time.Millisecond); n != "" {
		t.Fatalf("after the third failure: %s", n)
	}

	alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mwk-2", 1, "message-summary", 600))
	set(5)
	alice.Reply(alice.Request("NOTIFY"), 503)
	set(6)
	wantSummary(t, alice.Notify(), "Voice-Message: 6/0") // one failure: still subscribed
	set(7)
	alice.Reply(alice.Request("NOTIFY"), 481)
	set(8)
	alice.ExpectNothing(500 * time.Millisecond)
}

// TestUnsolicitedMessageSummary: with mwi.unsolicited, every registered device of the user
// gets an out-of-dialog NOTIFY (Event message-summary, Subscription-State active) on each
// change, without having subscribed.
func TestUnsolicitedMessageSummary(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		trustPBX(o)
		o.MWI.Unsolicited = true
	})
	desk := servertest.NewUA(t, srv, "udp", "alice")
	soft := servertest.NewUA(t, srv, "tcp", "alice")
	pbx := servertest.DialFrom(t, "udp", pbxAddr, srv.Listener("udp"))
	pbx.Send(summaryRequest("NOTIFY", "alice", "mwu-1", "Messages-Waiting: yes\r\nVoice-Message: 1/2 (0/0)\r\n"))
	pbx.Expect(`^SIP/2.0 200 `)
	for _, ua := range []*servertest.UA{desk, soft} {
		n := ua.Notify()
		wantSummary(t, n, "Messages-Waiting: yes\r\nVoice-Message: 1/2 (0/0)\r\n")
		if n.GetHeader("Subscription-State").Value() != "active" || n.To().Params.Has("tag") {
			t.Fatalf("unsolicited NOTIFY: want Subscription-State active, no To tag:\n%s", n)
		}
	}
}
