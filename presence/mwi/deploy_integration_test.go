package mwi_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// onRedis is the options of one node of a deployment on the Redis at url.
func onRedis(url, id string) func(*config.Options) {
	return func(o *config.Options) {
		trustPBX(o)
		o.Store, o.NodeID = url, id
		o.Auth.NonceSecret = "one secret for the whole deployment"
		o.Cluster.Lease = 2 * time.Second
	}
}

// TestMessageSummaryTwoNodes: two nodes on one Redis; alice subscribes through node B, the
// voicemail hook sets her mailbox through node A's admin API, and the change reaches her over
// her connection to B — then clearing it through A turns her lamp off.
func TestMessageSummaryTwoNodes(t *testing.T) {
	rs := redistest.Start(t)
	a, b := servertest.Start(t, onRedis(rs.URL(), "a")), servertest.Start(t, onRedis(rs.URL(), "b"))
	servertest.MakeKnown(t, a, "alice")
	alice := servertest.Dial(t, "udp", b.Listener("udp"))
	_, n := alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mw2-1", 1, "message-summary", 600))
	wantSummary(t, n, "Messages-Waiting: no\r\n")

	base := "http://" + a.HTTPAddr() + "/api/v1/mwi/alice@example.test"
	servertest.HTTPDo(t, "PUT", base, `{"waiting": true, "voice": {"new": 4, "old": 2}}`, 200)
	wantSummary(t, alice.Notify(), "Messages-Waiting: yes\r\n", "Voice-Message: 4/2 (0/0)\r\n")
	if got := servertest.HTTPGet(t, "http://"+b.HTTPAddr()+"/api/v1/mwi/alice@example.test", 200); !strings.Contains(got, `"new": 4`) {
		t.Fatalf("node B's admin API does not show node A's change: %s", got)
	}
	servertest.HTTPDo(t, "DELETE", base, "", 200)
	wantSummary(t, alice.Notify(), "Messages-Waiting: no\r\n")
	alice.ExpectNothing(200 * time.Millisecond)
}

// TestMessageSummarySurvivesRestart: the PBX's unsolicited NOTIFY sets alice's mailbox; simpled
// is stopped and another simpled started on the same Redis; alice's new SUBSCRIBE gets the
// waiting messages in its first NOTIFY.
func TestMessageSummarySurvivesRestart(t *testing.T) {
	rs := redistest.Start(t)
	before := servertest.Start(t, onRedis(rs.URL(), "before"))
	servertest.MakeKnown(t, before, "alice")
	pbx := servertest.DialFrom(t, "udp", pbxAddr, before.Listener("udp"))
	pbx.Send(summaryRequest("NOTIFY", "alice", "mwr-n1", "Messages-Waiting: yes\r\nMessage-Account: sip:*97@example.test\r\nVoice-Message: 3/1 (1/0)\r\n"))
	pbx.Expect(`^SIP/2.0 200 `)
	if err := before.Shutdown(); err != nil {
		t.Fatal(err)
	}

	after := servertest.Start(t, onRedis(rs.URL(), "after"))
	alice := servertest.Dial(t, "udp", after.Listener("udp"))
	_, n := alice.Watch(servertest.Subscribe("alice@example.test", "alice", "mwr-s1", 1, "message-summary", 600))
	wantSummary(t, n, "Messages-Waiting: yes\r\n", "Message-Account: sip:*97@example.test\r\n", "Voice-Message: 3/1 (1/0)\r\n")
}

// TestMessageSummaryServer: with mwi.server, alice's (registered) message-summary SUBSCRIBE
// is forwarded to the voicemail server, record-routed; its 200 reaches alice, and its NOTIFY,
// sent along the Record-Route, reaches her through simpled and her 200 reaches it back. Her
// presence SUBSCRIBE is still simpled's: answered, notified, never seen by the voicemail
// server.
func TestMessageSummaryServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", pbxAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	vm := servertest.PacketWire(t, pc, nil)
	srv := servertest.Start(t, func(o *config.Options) {
		servertest.FastPresence(o)
		o.MWI.Server = "sip:" + pc.LocalAddr().String()
	})
	servertest.MakeKnown(t, srv, "bob")
	alice := servertest.NewUA(t, srv, "udp", "alice")

	alice.SendTP(servertest.Subscribe("alice@example.test", "alice", "mws-1", 1, "message-summary", 600))
	sub := vm.Request("SUBSCRIBE")
	if sub.GetHeader("Record-Route") == nil {
		t.Fatalf("SUBSCRIBE forwarded without Record-Route:\n%s", sub)
	}
	vmContact := "Contact: <sip:vm@" + pc.LocalAddr().String() + ">"
	vm.Reply(sub, 200, vmContact, "Expires: 600")
	if res := alice.Expect(`^SIP/2.0 200 `); !strings.Contains(res.To().Value(), "tag=uas200") {
		t.Fatalf("the 200 is not the voicemail server's:\n%s", res)
	}

	notify := "NOTIFY " + sub.Contact().Address.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP {local};branch=z9hG4bK" + servertest.NextBranch() + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"Route: " + sub.GetHeader("Record-Route").Value() + "\r\n" +
		"From: " + sub.To().Value() + ";tag=uas200\r\n" +
		"To: " + sub.From().Value() + "\r\n" +
		"Call-ID: mws-1\r\n" +
		"CSeq: 1 NOTIFY\r\n" +
		vmContact + "\r\n" +
		"Event: message-summary\r\n" +
		"Subscription-State: active;expires=600\r\n" +
		"Content-Type: application/simple-message-summary\r\n"
	body := "Messages-Waiting: yes\r\nVoice-Message: 7/0 (0/0)\r\n"
	vm.Send(notify + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	wantSummary(t, alice.Notify(), "Voice-Message: 7/0 (0/0)\r\n")
	vm.Expect(`^SIP/2.0 200 `)

	_, n := alice.Watch(servertest.Subscribe("alice@example.test", "bob", "mws-2", 1, "presence", 600))
	if n.GetHeader("Event").Value() != "presence" {
		t.Fatalf("presence SUBSCRIBE: NOTIFY of another event:\n%s", n)
	}
	vm.ExpectNothing(200 * time.Millisecond)
}
