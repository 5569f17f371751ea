package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
)

// makeKnown registers user and removes the binding again: the user is known and offline.
func makeKnown(t *testing.T, srv *Server, user string) {
	t.Helper()
	w := dial(t, "udp", srv.Listener("udp"))
	w.send(register(user, "known-"+user, 1, "Contact: <sip:"+user+"@{local}>"))
	w.expect(`^SIP/2.0 200 `)
	w.send(register(user, "known-"+user, 2, "Contact: <sip:"+user+"@{local}>;expires=0"))
	w.expect(`^SIP/2.0 200 `)
	waitKnown(t, srv, user+"@example.test")
}

func pending(t *testing.T, srv *Server, aor string) int {
	t.Helper()
	msgs, err := srv.Store().Messages(t.Context(), aor, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

func waitPending(t *testing.T, srv *Server, aor string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pending(t, srv, aor) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d pending messages, want %d", aor, pending(t, srv, aor), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOfflineMessageDeliveredOnRegistration: a MESSAGE to a known user with no device is
// stored (202); when the user registers, it arrives with its original From, To, Call-ID, CSeq,
// Content-Type and body, and a Date; after the 200 it is gone from the store.
func TestOfflineMessageDeliveredOnRegistration(t *testing.T) {
	srv := startServer(t, nil)
	makeKnown(t, srv, "olga")
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "olga", "off-1", "text/plain", "while you were out"))
	alice.expect(`^SIP/2.0 202 `)
	if n := pending(t, srv, "olga@example.test"); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}

	dev := newUA(t, srv, "udp", "olga")
	got := dev.request("MESSAGE")
	if string(got.Body()) != "while you were out" || got.CallID().Value() != "off-1" || got.CSeq().SeqNo != 1 {
		t.Errorf("delivered message differs from the one sent:\n%s", got)
	}
	if from := got.From().Address.String(); from != "sip:alice@example.test" {
		t.Errorf("From %s, want the original sender", from)
	}
	if got.GetHeader("Date") == nil || got.ContentType().Value() != "text/plain" {
		t.Errorf("delivered without Date or Content-Type:\n%s", got)
	}
	dev.reply(got, 200)
	waitPending(t, srv, "olga@example.test", 0)
	dev.expectNothing(300 * time.Millisecond) // delivered once
}

// TestOfflineDeliveryRetried: a device that does not take the message (480) gets it again
// after the backoff; it is removed only after the 200.
func TestOfflineDeliveryRetried(t *testing.T) {
	srv := startServer(t, nil)
	makeKnown(t, srv, "petra")
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "petra", "retry-1", "text/plain", "again"))
	alice.expect(`^SIP/2.0 202 `)
	dev := newUA(t, srv, "udp", "petra")
	first := dev.request("MESSAGE")
	dev.reply(first, 480)
	if n := pending(t, srv, "petra@example.test"); n != 1 {
		t.Fatalf("message dropped after a 480: %d pending", n)
	}
	_ = dev.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	second := dev.request("MESSAGE")
	if second.CallID().Value() != "retry-1" {
		t.Fatalf("retry carries another message:\n%s", second)
	}
	dev.reply(second, 200)
	waitPending(t, srv, "petra@example.test", 0)
}

// TestOfflineDuplicateStoredOnce: the same MESSAGE sent twice (a client re-sending after a
// timeout) is stored once and delivered once.
func TestOfflineDuplicateStoredOnce(t *testing.T) {
	srv := startServer(t, nil)
	makeKnown(t, srv, "quinn")
	alice := dial(t, "udp", srv.Listener("udp"))
	for range 2 {
		alice.send(message("alice", "quinn", "dup-1", "text/plain", "once"))
		alice.expect(`^SIP/2.0 202 `)
	}
	if n := pending(t, srv, "quinn@example.test"); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

// TestOfflineStormBounded: a storm of MESSAGEs to one offline user fills the mailbox up to
// its limit; the rest get 480 Mailbox Full, and nothing past the limit is kept.
func TestOfflineStormBounded(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Messages.OfflineMaxCount = 20 })
	makeKnown(t, srv, "rita")
	alice := dial(t, "udp", srv.Listener("udp"))
	stored, full := 0, 0
	for i := range 60 {
		alice.send(message("alice", "rita", fmt.Sprintf("storm-%d", i), "text/plain", "spam"))
		res := alice.expect(`^SIP/2.0 (202|480) `)
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
	if n := pending(t, srv, "rita@example.test"); n != 20 {
		t.Fatalf("%d kept, want 20", n)
	}
}

// TestMessageStoredWhenEveryDeviceFails: the only device's connection is gone (TCP closed):
// the branch fails and the MESSAGE is stored (202) rather than lost.
func TestMessageStoredWhenEveryDeviceFails(t *testing.T) {
	srv := startServer(t, nil)
	dev := newUA(t, srv, "tcp", "sven")
	dev.conn.Close()
	time.Sleep(100 * time.Millisecond)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "sven", "gone-1", "text/plain", "are you there"))
	alice.expect(`^SIP/2.0 202 `)
	if n := pending(t, srv, "sven@example.test"); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

// TestRedisOfflineSurvivesRestart: stored through one simpled, delivered by a new simpled on
// the same Redis when the user registers, exactly once.
func TestRedisOfflineSurvivesRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *config.Options) { o.Store = rs.URL() }
	a := startServer(t, mod)
	makeKnown(t, a, "tina")
	alice := dial(t, "udp", a.Listener("udp"))
	alice.send(message("alice", "tina", "persist-1", "text/plain", "kept in redis"))
	alice.expect(`^SIP/2.0 202 `)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t)

	b := startServer(t, mod)
	dev := newUA(t, b, "udp", "tina")
	got := dev.request("MESSAGE")
	if string(got.Body()) != "kept in redis" {
		t.Fatalf("body %q", got.Body())
	}
	dev.reply(got, 200)
	waitPending(t, b, "tina@example.test", 0)
	dev.expectNothing(500 * time.Millisecond)
}

// TestRedisOutageWhileStoring: with Redis down, an offline MESSAGE gets 503 — never a 202 for a
// message that was not stored.
func TestRedisOutageWhileStoring(t *testing.T) {
	rs := redistest.Start(t)
	srv := startServer(t, func(o *config.Options) { o.Store = rs.URL() })
	makeKnown(t, srv, "ulla")
	rs.Stop(t)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(message("alice", "ulla", "down-1", "text/plain", "lost?"))
	res := alice.expect(`^SIP/2.0 (5\d\d) `)
	if res.GetHeader("Retry-After") == nil && res.StatusCode == 503 {
		t.Errorf("503 without Retry-After")
	}
}

func httpDo(t *testing.T, method, url, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // else 415
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d\n%s", method, url, resp.StatusCode, want, b)
	}
	return string(b)
}

// TestAdminMessages: an operator lists and deletes a user's pending messages, and sends a
// MESSAGE as the system user — delivered to a registered device, stored for a known offline
// user, refused for an unknown one.
func TestAdminMessages(t *testing.T) {
	srv := startServer(t, nil)
	api := "http://" + srv.HTTPAddr() + "/api/v1/messages"
	makeKnown(t, srv, "vera")
	alice := dial(t, "udp", srv.Listener("udp"))
	for i := range 3 {
		alice.send(message("alice", "vera", fmt.Sprintf("adm-%d", i), "text/plain", fmt.Sprintf("note %d", i)))
		alice.expect(`^SIP/2.0 202 `)
	}
	var list struct {
		Messages []struct {
			ID   string `json:"id"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, api+"/vera@example.test", 200)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Messages) != 3 || list.Messages[0].Body != "note 0" {
		t.Fatalf("pending messages: %+v", list.Messages)
	}
	httpDo(t, "DELETE", api+"/vera@example.test/"+list.Messages[0].ID, "", 200)
	httpDo(t, "DELETE", api+"/vera@example.test/"+list.Messages[0].ID, "", 404)
	if got := httpDo(t, "DELETE", api+"/vera@example.test", "", 200); !strings.Contains(got, `"deleted": 2`) {
		t.Fatalf("DELETE all: %s", got)
	}

	// Send: stored for the known offline user, delivered to a registered device, 404 unknown.
	httpDo(t, "POST", api, `{"to":"vera@example.test","body":"from the operator"}`, 202)
	dev := newUA(t, srv, "udp", "wim")
	done := make(chan string, 1)
	// Only as the system user: the API does not know which user is asking.
	httpDo(t, "POST", api, `{"from":"sip:ops@example.test","to":"sip:wim@example.test","body":"x"}`, 403)
	go func() {
		done <- httpDo(t, "POST", api, `{"from":"sip:system@example.test","to":"sip:wim@example.test","content_type":"text/plain","body":"maintenance at 22:00"}`, 200)
	}()
	got := dev.request("MESSAGE")
	if string(got.Body()) != "maintenance at 22:00" || got.From().Address.User != "system" {
		t.Fatalf("admin MESSAGE arrived as:\n%s", got)
	}
	dev.reply(got, 200)
	<-done
	httpDo(t, "POST", api, `{"to":"nobody@example.test","body":"x"}`, 404)
	httpDo(t, "POST", api, `{"to":"x@elsewhere.example","body":"x"}`, 400)
	httpDo(t, "POST", api, `{"to":"wim@example.test","body":"x","content_type":"application/x-foo"}`, 415)
	httpDo(t, "POST", api, `not json`, 400)
}
