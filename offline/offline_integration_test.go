package offline_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"
)

// TestOfflineMessageDeliveredOnRegistration: a MESSAGE to a known user with no device is
// stored (202); when the user registers, it arrives with its original From, To, Call-ID, CSeq,
// Content-Type and body, and a Date; after the 200 it is gone from the store.
func TestOfflineMessageDeliveredOnRegistration(t *testing.T) {
	srv := servertest.Start(t, nil)
	servertest.MakeKnown(t, srv, "olga")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "olga", "off-1", "text/plain", "while you were out"))
	alice.Expect(`^SIP/2.0 202 `)
	if n := servertest.Pending(t, srv, "olga@example.test"); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}

	dev := servertest.NewUA(t, srv, "udp", "olga")
	got := dev.Request("MESSAGE")
	if string(got.Body()) != "while you were out" || got.CallID().Value() != "off-1" || got.CSeq().SeqNo != 1 {
		t.Errorf("delivered message differs from the one sent:\n%s", got)
	}
	if from := got.From().Address.String(); from != "sip:alice@example.test" {
		t.Errorf("From %s, want the original sender", from)
	}
	if got.GetHeader("Date") == nil || got.ContentType().Value() != "text/plain" {
		t.Errorf("delivered without Date or Content-Type:\n%s", got)
	}
	dev.Reply(got, 200)
	servertest.WaitPending(t, srv, "olga@example.test", 0)
	dev.ExpectNothing(300 * time.Millisecond) // delivered once
}

// TestOfflineDeliveryRetried: a device that does not take the message (480) gets it again
// after the backoff; it is removed only after the 200.
func TestOfflineDeliveryRetried(t *testing.T) {
	srv := servertest.Start(t, nil)
	servertest.MakeKnown(t, srv, "petra")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "petra", "retry-1", "text/plain", "again"))
	alice.Expect(`^SIP/2.0 202 `)
	dev := servertest.NewUA(t, srv, "udp", "petra")
	first := dev.Request("MESSAGE")
	dev.Reply(first, 480)
	if n := servertest.Pending(t, srv, "petra@example.test"); n != 1 {
		t.Fatalf("message dropped after a 480: %d pending", n)
	}
	_ = dev.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	second := dev.Request("MESSAGE")
	if second.CallID().Value() != "retry-1" {
		t.Fatalf("retry carries another message:\n%s", second)
	}
	dev.Reply(second, 200)
	servertest.WaitPending(t, srv, "petra@example.test", 0)
}

// TestOfflineDuplicateStoredOnce: the same MESSAGE sent twice (a client re-sending after a
// timeout) is stored once and delivered once.
func TestOfflineDuplicateStoredOnce(t *testing.T) {
	srv := servertest.Start(t, nil)
	servertest.MakeKnown(t, srv, "quinn")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	for range 2 {
		alice.Send(servertest.Message("alice", "quinn", "dup-1", "text/plain", "once"))
		alice.Expect(`^SIP/2.0 202 `)
	}
	if n := servertest.Pending(t, srv, "quinn@example.test"); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

// TestOfflineStormBounded: a storm of MESSAGEs to one offline user fills the mailbox up to
// its limit; the rest get 480 Mailbox Full, and nothing past the limit is kept.
func TestOfflineStormBounded(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Messages.OfflineMaxCount = 20 })
	servertest.MakeKnown(t, srv, "rita")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	stored, full := 0, 0
	for i := range 60 {
		alice.Send(servertest.Message("alice", "rita", fmt.Sprintf("storm-%d", i), "text/plain", "spam"))
		res := alice.Expect(`^SIP/2.0 (202|480) `)
		switch res.StatusCode {
		case 202:
			stored++
		case 480:
			full++
			if !strings.Contains(res.Reason, "Full") {
				t.Errorf("480 reason %q does not say the mailbox is full", res.Reason)
			}
		}
	}
	if stored != 20 || full != 40 {
		t.Fatalf("stored %d, refused %d; want 20 and 40", stored, full)
	}
	if n := servertest.Pending(t, srv, "rita@example.test"); n != 20 {
		t.Fatalf("%d kept, want 20", n)
	}
}

// TestMessageStoredWhenEveryDeviceFails: the only device's connection is gone (TCP closed):
// the branch fails and the MESSAGE is stored (202) rather than lost.
func TestMessageStoredWhenEveryDeviceFails(t *testing.T) {
	srv := servertest.Start(t, nil)
	dev := servertest.NewUA(t, srv, "tcp", "sven")
	dev.Conn.Close()
	time.Sleep(100 * time.Millisecond)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "sven", "gone-1", "text/plain", "are you there"))
	alice.Expect(`^SIP/2.0 202 `)
	if n := servertest.Pending(t, srv, "sven@example.test"); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

// TestRedisOfflineSurvivesRestart: stored through one simpled, delivered by a new simpled on
// the same Redis when the user registers, exactly once.
func TestRedisOfflineSurvivesRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *servertest.Options) { o.Store = rs.URL() }
	a := servertest.Start(t, mod)
	servertest.MakeKnown(t, a, "tina")
	alice := servertest.Dial(t, "udp", a.Listener("udp"))
	alice.Send(servertest.Message("alice", "tina", "persist-1", "text/plain", "kept in redis"))
	alice.Expect(`^SIP/2.0 202 `)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t)

	b := servertest.Start(t, mod)
	dev := servertest.NewUA(t, b, "udp", "tina")
	got := dev.Request("MESSAGE")
	if string(got.Body()) != "kept in redis" {
		t.Fatalf("body %q", got.Body())
	}
	dev.Reply(got, 200)
	servertest.WaitPending(t, b, "tina@example.test", 0)
	dev.ExpectNothing(500 * time.Millisecond)
}

// TestRedisOutageWhileStoring: with Redis down, an offline MESSAGE gets 503 — never a 202 for a
// message that was not stored.
func TestRedisOutageWhileStoring(t *testing.T) {
	rs := redistest.Start(t)
	srv := servertest.Start(t, func(o *servertest.Options) { o.Store = rs.URL() })
	servertest.MakeKnown(t, srv, "ulla")
	rs.Stop(t)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Message("alice", "ulla", "down-1", "text/plain", "lost?"))
	res := alice.Expect(`^SIP/2.0 (5\d\d) `)
	if res.GetHeader("Retry-After") == nil && res.StatusCode == 503 {
		t.Errorf("503 without Retry-After")
	}
}

// TestAdminMessages: an operator lists and deletes a user's pending messages, and sends a
// MESSAGE as the system user — delivered to a registered device, stored for a known offline
// user, refused for an unknown one.
func TestAdminMessages(t *testing.T) {
	srv := servertest.Start(t, nil)
	api := "http://" + srv.HTTPAddr() + "/api/v1/messages"
	servertest.MakeKnown(t, srv, "vera")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	for i := range 3 {
		alice.Send(servertest.Message("alice", "vera", fmt.Sprintf("adm-%d", i), "text/plain", fmt.Sprintf("note %d", i)))
		alice.Expect(`^SIP/2.0 202 `)
	}
	var list struct {
		Messages []struct {
			ID   string `json:"id"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(servertest.HTTPGet(t, api+"/vera@example.test", 200)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Messages) != 3 || list.Messages[0].Body != "note 0" {
		t.Fatalf("pending messages: %+v", list.Messages)
	}
	servertest.HTTPDo(t, "DELETE", api+"/vera@example.test/"+list.Messages[0].ID, "", 200)
	servertest.HTTPDo(t, "DELETE", api+"/vera@example.test/"+list.Messages[0].ID, "", 404)
	if got := servertest.HTTPDo(t, "DELETE", api+"/vera@example.test", "", 200); !strings.Contains(got, `"deleted": 2`) {
		t.Fatalf("DELETE all: %s", got)
	}

	// Send: stored for the known offline user, delivered to a registered device, 404 unknown.
	servertest.HTTPDo(t, "POST", api, `{"to":"vera@example.test","body":"from the operator"}`, 202)
	dev := servertest.NewUA(t, srv, "udp", "wim")
	done := make(chan string, 1)
	// Only as the system user: the API does not know which user is asking.
	servertest.HTTPDo(t, "POST", api, `{"from":"sip:ops@example.test","to":"sip:wim@example.test","body":"x"}`, 403)
	go func() {
		done <- servertest.HTTPDo(t, "POST", api, `{"from":"sip:system@example.test","to":"sip:wim@example.test","content_type":"text/plain","body":"maintenance at 22:00"}`, 200)
	}()
	got := dev.Request("MESSAGE")
	if string(got.Body()) != "maintenance at 22:00" || got.From().Address.User != "system" {
		t.Fatalf("admin MESSAGE arrived as:\n%s", got)
	}
	dev.Reply(got, 200)
	<-done
	servertest.HTTPDo(t, "POST", api, `{"to":"nobody@example.test","body":"x"}`, 404)
	servertest.HTTPDo(t, "POST", api, `{"to":"x@elsewhere.example","body":"x"}`, 400)
	servertest.HTTPDo(t, "POST", api, `{"to":"wim@example.test","body":"x","content_type":"application/x-foo"}`, 415)
	servertest.HTTPDo(t, "POST", api, `not json`, 400)
}

// TestOfflineDeliveredOnceAcrossNodes: two nodes share a Redis, and with it every event of
// the registrar; a message stored through node A is delivered by node B, where the user
// registers, and only by B: the user's device gets it once.
func TestOfflineDeliveredOnceAcrossNodes(t *testing.T) {
	rs := redistest.Start(t)
	node := func(id string) *server.Server {
		return servertest.Start(t, func(o *config.Options) {
			o.Store, o.NodeID, o.Auth.NonceSecret = rs.URL(), id, "one secret for the whole deployment"
			o.Cluster.Lease = 1500 * time.Millisecond
		})
	}
	a, b := node("a"), node("b")
	servertest.WaitFor(t, "the nodes to see each other", func() bool {
		return a.Cluster().Alive("b") && b.Cluster().Alive("a")
	})
	servertest.MakeKnown(t, a, "olga")
	alice := servertest.Dial(t, "udp", a.Listener("udp"))
	alice.Send(servertest.Message("alice", "olga", "xnode-off-1", "text/plain", "once"))
	alice.Expect(`^SIP/2.0 202 `)

	// Over TCP with a flow token: A can reach this device only through B, and a delivery
	// from A would come down the same connection.
	dev := servertest.Dial(t, "tcp", b.Listener("tcp"))
	dev.Send(servertest.NATRegister("olga", "xnode-off-reg", "tcp"))
	dev.Expect(`^SIP/2.0 200 `)
	got := dev.Request("MESSAGE")
	if got.CallID().Value() != "xnode-off-1" {
		t.Fatalf("delivered:\n%s", got)
	}
	if n := len(got.GetHeaders("Via")); n != 1 {
		t.Errorf("delivered with %d Vias, want B's own", n)
	}
	dev.Reply(got, 200)
	servertest.WaitPending(t, a, "olga@example.test", 0)
	dev.ExpectNothing(500 * time.Millisecond) // not from A too
}
