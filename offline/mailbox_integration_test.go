package offline_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
)

// Issue 15 item 5: spam cannot lock a user's mailbox.

// foreignMessage is message from user@domain (another domain: inbound federation).
func foreignMessage(from, domain, to, callID, body string) string {
	return strings.Replace(servertest.Message(from, to, callID, "text/plain", body),
		"From: <sip:"+from+"@example.test>", "From: <sip:"+from+"@"+domain+">", 1)
}

// TestMailboxSpamLeavesRoomForUsers: 110 MESSAGEs from spam*@evil.example to the offline carol
// fill at most the foreign share of her mailbox (the rest get 480); authenticated bob's
// messages to her are then still stored (202), not refused for up to a week.
func TestMailboxSpamLeavesRoomForUsers(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "alice", "bob", "carol") })
	spammer := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	stored, refused := 0, 0
	for i := range 110 {
		spammer.Send(foreignMessage(fmt.Sprintf("spam%d", i), "evil.example", "carol", fmt.Sprintf("spam-%d", i), "buy now"))
		res := spammer.Expect(`^SIP/2.0 (202|480) `)
		if res.StatusCode == 202 {
			stored++
			continue
		}
		refused++
		if !strings.Contains(res.Reason, "Full") {
			t.Errorf("480 reason %q does not say the mailbox is full", res.Reason)
		}
	}
	// offline_max_count 100, offline_foreign_share 0.5.
	if stored != 50 || refused != 60 {
		t.Fatalf("spam: %d stored, %d refused; want 50 and 60", stored, refused)
	}
	if v := servertest.MetricValue(t, srv, `simpled_limited_total{limit="mailbox_foreign"}`); v != 60 {
		t.Errorf(`simpled_limited_total{limit="mailbox_foreign"} = %v, want 60`, v)
	}

	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	for i := range 20 {
		bob.WithAuth(servertest.Message("bob", "carol", fmt.Sprintf("bob-%d", i), "text/plain", "dinner?"), "bob", "sip:carol@example.test", `^SIP/2.0 202 `)
	}
	if n := servertest.Pending(t, srv, "carol@example.test"); n != 70 {
		t.Fatalf("carol has %d messages, want 50 of spam and bob's 20", n)
	}
	// Bob's own quota (offline_max_per_sender 20) stops him, not the mailbox.
	res := bob.WithAuth(servertest.Message("bob", "carol", "bob-20", "text/plain", "hello??"), "bob", "sip:carol@example.test", `^SIP/2.0 480 `)
	if !strings.Contains(res.Reason, "Sender") {
		t.Errorf("480 reason %q does not name the sender's quota", res.Reason)
	}
	if v := servertest.MetricValue(t, srv, `simpled_limited_total{limit="mailbox_sender"}`); v != 1 {
		t.Errorf(`simpled_limited_total{limit="mailbox_sender"} = %v, want 1`, v)
	}
	// Alice still gets in.
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.WithAuth(servertest.Message("alice", "carol", "alice-1", "text/plain", "hi"), "alice", "sip:carol@example.test", `^SIP/2.0 202 `)
}

// TestMailboxSenderQuota: one sender gets offline_max_per_sender messages into one mailbox, the
// next 480; another sender, and the same sender to another user, are not affected.
func TestMailboxSenderQuota(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Messages.OfflineMaxPerSender = 5 })
	servertest.MakeKnown(t, srv, "carol")
	servertest.MakeKnown(t, srv, "dave")
	w := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	for i := range 8 {
		w.Send(foreignMessage("pest", "evil.example", "carol", fmt.Sprintf("pest-%d", i), "hi"))
		want := `^SIP/2.0 202 `
		if i >= 5 {
			want = `^SIP/2.0 480 `
		}
		w.Expect(want)
	}
	w.Send(foreignMessage("pest", "evil.example", "dave", "pest-dave", "hi"))
	w.Expect(`^SIP/2.0 202 `)
	w.Send(foreignMessage("friend", "good.example", "carol", "friend-1", "hi"))
	w.Expect(`^SIP/2.0 202 `)
	if n := servertest.Pending(t, srv, "carol@example.test"); n != 6 {
		t.Fatalf("carol has %d messages, want 6", n)
	}
}

// TestMailboxDedupScopedBySender: a spammer who sends first with the Call-ID and CSeq (or
// imdn.Message-ID) of bob's coming message does not make simpled take bob's message for a
// duplicate: both are stored, and bob's is delivered.
func TestMailboxDedupScopedBySender(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.UsersFile = servertest.UsersFile(t, "bob", "carol") })
	spammer := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	// bob's MESSAGE goes out as CSeq 2 (after the 407 to CSeq 1).
	msg := strings.Replace(foreignMessage("spam", "evil.example", "carol", "bob-call", "fake"), "CSeq: 1 ", "CSeq: 2 ", 1)
	spammer.Send(msg)
	spammer.Expect(`^SIP/2.0 202 `)

	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.WithAuth(servertest.Message("bob", "carol", "bob-call", "text/plain", "the real one"), "bob", "sip:carol@example.test", `^SIP/2.0 202 `)
	msgs, err := srv.Store().Messages(t.Context(), "carol@example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range msgs {
		bodies = append(bodies, string(m.Body))
	}
	if len(msgs) != 2 || bodies[1] != "the real one" {
		t.Fatalf("carol's mailbox holds %q, want the spam and bob's message", bodies)
	}
	if msgs[1].Sender != "bob@example.test" || msgs[1].Foreign || msgs[0].Sender != "spam@evil.example" || !msgs[0].Foreign {
		t.Errorf("senders %q/%v and %q/%v", msgs[0].Sender, msgs[0].Foreign, msgs[1].Sender, msgs[1].Foreign)
	}
}
