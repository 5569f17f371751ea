package presence_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// TestPublishLifecycle: an initial PUBLISH gets 200 with SIP-ETag and Expires; a refresh
// without body and a modification each get a new entity tag; the old tag is then unknown
// (412); Expires 0 removes the publication, after which its tag is unknown too.
func TestPublishLifecycle(t *testing.T) {
	srv := servertest.Start(t, nil)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	alice.Send(servertest.Publish("alice", "pub-1", 1, "", 600, servertest.PIDFDoc("alice", "t1", "open")))
	res := alice.Expect(`^SIP/2.0 200 `)
	etag1 := res.GetHeader("SIP-ETag")
	if etag1 == nil || res.GetHeader("Expires").Value() != "600" {
		t.Fatalf("200 without SIP-ETag or Expires 600:\n%s", res)
	}

	alice.Send(servertest.Publish("alice", "pub-1", 2, etag1.Value(), 600, ""))
	etag2 := alice.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	if etag2 == etag1.Value() {
		t.Errorf("refresh kept the entity tag %s", etag2)
	}
	alice.Send(servertest.Publish("alice", "pub-1", 3, etag1.Value(), 600, ""))
	alice.Expect(`^SIP/2.0 412 `)

	alice.Send(servertest.Publish("alice", "pub-1", 4, etag2, 600, servertest.PIDFDoc("alice", "t1", "closed")))
	etag3 := alice.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	snap := servertest.PresenceState(t, srv, "alice@example.test")
	if len(snap.Publications) != 1 || !strings.Contains(snap.Document, "<basic>closed</basic>") {
		t.Fatalf("after modify: %d publications, document %s", len(snap.Publications), snap.Document)
	}

	alice.Send(servertest.Publish("alice", "pub-1", 5, etag3, 0, ""))
	alice.Expect(`^SIP/2.0 200 `)
	if snap := servertest.PresenceState(t, srv, "alice@example.test"); len(snap.Publications) != 0 {
		t.Fatalf("%d publications after removal", len(snap.Publications))
	}
	alice.Send(servertest.Publish("alice", "pub-1", 6, etag3, 600, ""))
	alice.Expect(`^SIP/2.0 412 `)
}

// TestPublishBadInput: every malformed or unwanted PUBLISH gets its answer and stores
// nothing.
func TestPublishBadInput(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Limits.MaxBodySize = 4096 })
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test"><tuple id="a"><status><basic>&lol2;</basic></status></tuple></presence>`
	cases := []struct {
		name, msg, want string
	}{
		{"unknown event", strings.Replace(servertest.Publish("alice", "bad-1", 1, "", 600, servertest.PIDFDoc("alice", "t", "open")), "Event: presence", "Event: x-unknown", 1), `^SIP/2.0 489 (?s:.*)Allow-Events: presence`},
		{"no event", strings.Replace(servertest.Publish("alice", "bad-2", 1, "", 600, servertest.PIDFDoc("alice", "t", "open")), "Event: presence\n", "", 1), `^SIP/2.0 489 `},
		{"expires too brief", servertest.Publish("alice", "bad-3", 1, "", 10, servertest.PIDFDoc("alice", "t", "open")), `^SIP/2.0 423 (?s:.*)Min-Expires: 60`},
		{"not pidf", strings.Replace(servertest.Publish("alice", "bad-4", 1, "", 600, "hello"), "application/pidf+xml", "text/plain", 1), `^SIP/2.0 415 (?s:.*)Accept: application/pidf\+xml`},
		{"invalid xml", servertest.Publish("alice", "bad-5", 1, "", 600, "<presence"), `^SIP/2.0 400 `},
		{"wrong namespace", servertest.Publish("alice", "bad-6", 1, "", 600, strings.Replace(servertest.PIDFDoc("alice", "t", "open"), "urn:ietf:params:xml:ns:pidf\"", "urn:example:other\"", 1)), `^SIP/2.0 400 `},
		{"no tuple", servertest.Publish("alice", "bad-7", 1, "", 600, `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test"/>`), `^SIP/2.0 400 `},
		{"billion laughs", servertest.Publish("alice", "bad-8", 1, "", 600, laughs), `^SIP/2.0 400 `},
		{"too large", servertest.Publish("alice", "bad-9", 1, "", 600, servertest.PIDFDoc("alice", "t", "open", "<note>"+strings.Repeat("x", 5000)+"</note>")), `^SIP/2.0 413 `},
		{"initial without body", servertest.Publish("alice", "bad-10", 1, "", 600, ""), `^SIP/2.0 400 `},
		{"unknown etag", servertest.Publish("alice", "bad-11", 1, "nosuchtag", 600, ""), `^SIP/2.0 412 `},
		{"someone else's presence", strings.Replace(servertest.Publish("alice", "bad-12", 1, "", 600, servertest.PIDFDoc("alice", "t", "open")), "From: <sip:alice@", "From: <sip:mallory@", 1), `^SIP/2.0 403 `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.T = t
			w.Send(c.msg)
			w.Expect(c.want)
		})
	}
	w.T = t
	if snap := servertest.PresenceState(t, srv, "alice@example.test"); len(snap.Publications) != 0 {
		t.Fatalf("bad input stored %d publications", len(snap.Publications))
	}
}

// TestPublicationsBounded: one presentity cannot pile up publications: past 32 live ones a
// new publication gets 403 while modifications of existing ones still work.
func TestPublicationsBounded(t *testing.T) {
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	etag := ""
	for i := range 32 {
		// A tuple of its own each: publications that restate one another are duplicates,
		// dropped when composed.
		w.Send(servertest.Publish("alice", "many-"+string(rune('A'+i)), 1, "", 600, servertest.PIDFDoc("alice", "t"+strconv.Itoa(i), "open")))
		etag = w.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	}
	w.Send(servertest.Publish("alice", "many-x", 1, "", 600, servertest.PIDFDoc("alice", "t", "open")))
	w.Expect(`^SIP/2.0 403 `)
	w.Send(servertest.Publish("alice", "many-A", 2, etag, 600, servertest.PIDFDoc("alice", "t31", "closed")))
	w.Expect(`^SIP/2.0 200 `)
	if n := len(servertest.PresenceState(t, srv, "alice@example.test").Publications); n != 32 {
		t.Errorf("%d publications, want 32", n)
	}
}

// TestSubscribeNotify: a watcher gets 200 (with Contact, Expires and our tag) then a NOTIFY
// with the full state — from registration while the presentity publishes nothing — then a
// NOTIFY for each change: registered (open), published (the document as composed), and a
// final NOTIFY terminated after its un-SUBSCRIBE.
func TestSubscribeNotify(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := servertest.Start(t, servertest.FastPresence)
			servertest.MakeKnown(t, srv, "bob")
			w := servertest.Dial(t, network, srv.Listener(network))
			res, n := w.Watch(servertest.Subscribe("carol@example.test", "bob", "sub-"+network, 1, "presence", 600))
			if res.Contact() == nil || res.GetHeader("Expires").Value() != "600" || !res.To().Params.Has("tag") {
				t.Fatalf("200 lacks Contact, Expires or To tag:\n%s", res)
			}
			if !strings.HasPrefix(servertest.SubState(n), "active;expires=") || n.ContentType().Value() != "application/pidf+xml" ||
				!strings.Contains(string(n.Body()), "<basic>closed</basic>") || n.ContentLength() == nil {
				t.Fatalf("first NOTIFY: want active, PIDF closed, Content-Length:\n%s", n)
			}
			if tag, _ := n.From().Params.Get("tag"); tag != tagOfTo(res) {
				t.Errorf("NOTIFY From tag %q, want the 200's To tag %q", tag, tagOfTo(res))
			}

			dev := servertest.NewUA(t, srv, "udp", "bob")
			n2 := w.Notify()
			if !strings.Contains(string(n2.Body()), "<basic>open</basic>") || n2.CSeq().SeqNo <= n.CSeq().SeqNo {
				t.Fatalf("after REGISTER: want open with a higher CSeq:\n%s", n2)
			}

			dev.Send(servertest.Publish("bob", "pub-bob", 1, "", 600, servertest.PIDFDoc("bob", "tb", "closed", `<dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities></dm:person>`)))
			dev.Expect(`^SIP/2.0 200 `)
			n3 := w.Notify()
			if body := string(n3.Body()); !strings.Contains(body, "<rpid:away/>") || !strings.Contains(body, `tuple id="tb"`) {
				t.Fatalf("after PUBLISH: want the published document with its rpid prefix:\n%s", body)
			}

			w.SendTP(servertest.Resubscribe(res, 2, 0))
			w.Expect(`^SIP/2.0 200 `)
			n4 := w.Notify()
			if !strings.HasPrefix(servertest.SubState(n4), "terminated") {
				t.Fatalf("after un-SUBSCRIBE: Subscription-State %q, want terminated", servertest.SubState(n4))
			}
			dev.Send(servertest.Publish("bob", "pub-bob2", 1, "", 600, servertest.PIDFDoc("bob", "tc", "open")))
			dev.Expect(`^SIP/2.0 200 `)
			w.ExpectNothing(300 * time.Millisecond)
		})
	}
}

func tagOfTo(res interface{ String() string }) string {
	s := res.String()
	i := strings.Index(s, "\r\nTo:")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(s[i+2:], "\r\n")
	_, tag, _ := strings.Cut(line, "tag=")
	tag, _, _ = strings.Cut(tag, ";")
	return tag
}

// TestSubscribeBadInput: each refused SUBSCRIBE gets its status.
func TestSubscribeBadInput(t *testing.T) {
	srv := servertest.Start(t, nil)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	cases := []struct{ name, msg, want string }{
		{"unknown user", servertest.Subscribe("carol@example.test", "nobody", "sb-1", 1, "presence", 600), `^SIP/2.0 404 `},
		{"unknown event", servertest.Subscribe("carol@example.test", "bob", "sb-2", 1, "x-unknown", 600), `^SIP/2.0 489 (?s:.*)Allow-Events: presence`},
		{"expires too brief", servertest.Subscribe("carol@example.test", "bob", "sb-3", 1, "presence", 5), `^SIP/2.0 423 (?s:.*)Min-Expires: 60`},
		{"unacceptable type", servertest.Subscribe("carol@example.test", "bob", "sb-4", 1, "presence", 600, "Accept: application/xpidf+xml"), `^SIP/2.0 406 `},
		{"winfo of someone else", servertest.Subscribe("carol@example.test", "bob", "sb-5", 1, "presence.winfo", 600), `^SIP/2.0 403 `},
		{"no dialog", strings.Replace(servertest.Subscribe("carol@example.test", "bob", "sb-6", 2, "presence", 600), "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag=nosuch", 1), `^SIP/2.0 481 `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.T = t
			w.SendTP(c.msg)
			w.Expect(c.want)
		})
	}
}

// TestFetchAndExpiry: Expires 0 is a fetch (200, one NOTIFY terminated with the state); a
// subscription that is not refreshed ends with NOTIFY terminated;reason=timeout on time.
func TestFetchAndExpiry(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := w.Watch(servertest.Subscribe("carol@example.test", "bob", "fetch-1", 1, "presence", 0))
	if !strings.HasPrefix(servertest.SubState(n), "terminated") || len(n.Body()) == 0 {
		t.Fatalf("fetch: want terminated with a body:\n%s", n)
	}

	start := time.Now()
	w.Watch(servertest.Subscribe("carol@example.test", "bob", "exp-1", 1, "presence", 2))
	n = w.Notify()
	if got := servertest.SubState(n); got != "terminated;reason=timeout" {
		t.Fatalf("expiry: Subscription-State %q", got)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("expiry NOTIFY after %s, want about 2 s", d)
	}
}

// TestRefreshAndCSeqOrder: a refresh gets 200 and a full NOTIFY; a SUBSCRIBE with an old
// CSeq gets 500.
func TestRefreshAndCSeqOrder(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	res, _ := w.Watch(servertest.Subscribe("carol@example.test", "bob", "ref-1", 1, "presence", 600))
	w.SendTP(servertest.Resubscribe(res, 5, 300))
	if got := w.Expect(`^SIP/2.0 200 `).GetHeader("Expires").Value(); got != "300" {
		t.Errorf("refresh Expires %s, want 300", got)
	}
	if n := w.Notify(); !strings.HasPrefix(servertest.SubState(n), "active") {
		t.Fatalf("refresh NOTIFY state %q", servertest.SubState(n))
	}
	w.SendTP(servertest.Resubscribe(res, 3, 300))
	w.Expect(`^SIP/2.0 500 `)
}

// TestNotify481EndsSubscription: a watcher that answers 481 is forgotten: the next change
// sends it nothing and the presentity has no watcher left.
func TestNotify481EndsSubscription(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.SendTP(servertest.Subscribe("carol@example.test", "bob", "gone-1", 1, "presence", 600))
	w.Expect(`^SIP/2.0 200 `)
	n := w.Request("NOTIFY")
	w.Reply(n, 481)
	servertest.WaitFor(t, "the subscription to end", func() bool {
		return len(servertest.PresenceState(t, srv, "bob@example.test").Subscriptions) == 0
	})
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(servertest.Publish("bob", "pub-g", 1, "", 600, servertest.PIDFDoc("bob", "t", "open")))
	bob.Expect(`^SIP/2.0 200 `)
	w.ExpectNothing(300 * time.Millisecond)
}

// TestNotifyNeverAnswered: a UDP watcher that never answers is no amplifier (issue 15): its
// unanswered SUBSCRIBE, whose source may be forged, gets the 200 and one NOTIFY with at most
// 2 retransmissions (sipgo's Timer E schedule sent 11), counted as datagrams at the silent
// socket; at Timer F (32 s) its subscription ends and later changes send it nothing. Slow by
// nature, so it runs beside the other parallel tests.
func TestNotifyNeverAnswered(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.FastPresence)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.SendTP(servertest.Subscribe("carol@example.test", "bob", "mute-1", 1, "presence", 600))
	datagrams := 0
	first := (*sip.Request)(nil)
	deadline := time.Now().Add(45 * time.Second)
	for first == nil || len(servertest.PresenceState(t, srv, "bob@example.test").Subscriptions) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscription of a watcher that never answers is still there after 45 s")
		}
		msg := w.Read(500 * time.Millisecond)
		if msg == "" {
			continue
		}
		datagrams++
		if strings.HasPrefix(msg, "NOTIFY ") {
			n := servertest.ParseRequest(t, msg)
			if first == nil {
				first = n
			} else if n.CSeq().SeqNo != first.CSeq().SeqNo {
				t.Fatalf("a second NOTIFY to a watcher that never answered the first:\n%s", msg)
			}
		}
	}
	// Datagrams still under way when the subscription went.
	for msg := w.Read(time.Second); msg != ""; msg = w.Read(time.Second) {
		datagrams++
	}
	if datagrams < 2 || datagrams > 4 {
		t.Errorf("the silent watcher got %d datagrams, want the 200 and a NOTIFY sent at most 3 times", datagrams)
	}
	if n := servertest.MetricValue(t, srv, `simpled_limited_total{limit="unanswered_notify"}`); n != 1 {
		t.Errorf(`simpled_limited_total{limit="unanswered_notify"} = %v, want 1`, n)
	}
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(servertest.Publish("bob", "mute-pub", 1, "", 600, servertest.PIDFDoc("bob", "t", "open")))
	bob.Expect(`^SIP/2.0 200 `)
	for {
		msg := w.Read(500 * time.Millisecond)
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "NOTIFY ") && servertest.ParseRequest(t, msg).CSeq().SeqNo != first.CSeq().SeqNo {
			t.Fatalf("a NOTIFY after the subscription ended:\n%s", msg)
		}
	}
}

// TestCompositionNewestWins: two publications carrying the same tuple id (baresip's duplicate
// initial PUBLISH) compose to the newest one's tuple; distinct tuple ids are merged.
func TestCompositionNewestWins(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(servertest.Publish("bob", "dup-1", 1, "", 600, servertest.PIDFDoc("bob", "t4109", "open")))
	bob.Expect(`^SIP/2.0 200 `)
	bob.Send(servertest.Publish("bob", "dup-2", 1, "", 600, servertest.PIDFDoc("bob", "t4109", "closed")))
	bob.Expect(`^SIP/2.0 200 `)
	bob.Send(servertest.Publish("bob", "dup-3", 1, "", 600, servertest.PIDFDoc("bob", "other", "open")))
	bob.Expect(`^SIP/2.0 200 `)
	doc := servertest.PresenceState(t, srv, "bob@example.test").Document
	if strings.Count(doc, `id="t4109"`) != 1 || !strings.Contains(doc, `id="other"`) {
		t.Fatalf("want one t4109 tuple and the other one:\n%s", doc)
	}
	i := strings.Index(doc, `id="t4109"`)
	if !strings.Contains(doc[i:i+120], "closed") {
		t.Errorf("t4109 should be the newest (closed):\n%s", doc)
	}
}

// TestAuthorizationAndWinfo: with policy confirm, a watcher is pending (NOTIFY pending, no
// body) and shows up in the presentity's winfo; a rule set through the admin API promotes it
// (active and the full document); polite-block shows it a neutral closed document; block ends
// its subscription (rejected).
func TestAuthorizationAndWinfo(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { servertest.FastPresence(o); o.Presence.Policy = "confirm" })
	bobDev := servertest.NewUA(t, srv, "udp", "bob")
	bobDev.Send(servertest.Publish("bob", "auth-pub", 1, "", 600, servertest.PIDFDoc("bob", "tb", "open")))
	bobDev.Expect(`^SIP/2.0 200 `)

	winfo := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, wn := winfo.Watch(servertest.Subscribe("bob@example.test", "bob", "winfo-1", 1, "presence.winfo", 600))
	if wn.ContentType().Value() != "application/watcherinfo+xml" {
		t.Fatalf("winfo NOTIFY type %v", wn.ContentType())
	}

	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	_, n := w.Watch(servertest.Subscribe("carol@example.test", "bob", "auth-1", 1, "presence", 600))
	if !strings.HasPrefix(servertest.SubState(n), "pending") || len(n.Body()) != 0 {
		t.Fatalf("want pending without body:\n%s", n)
	}
	wn = winfo.Notify()
	if body := string(wn.Body()); !strings.Contains(body, `status="pending"`) || !strings.Contains(body, "carol@example.test") {
		t.Fatalf("winfo does not list carol pending:\n%s", body)
	}

	base := "http://" + srv.HTTPAddr() + "/api/v1/presence/bob@example.test"
	servertest.HTTPDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"allow"}`, 200)
	n = w.Notify()
	if !strings.HasPrefix(servertest.SubState(n), "active") || !strings.Contains(string(n.Body()), `tuple id="tb"`) {
		t.Fatalf("after allow: want active with bob's document:\n%s", n)
	}
	wn = winfo.Notify()
	if !strings.Contains(string(wn.Body()), `status="active"`) {
		t.Fatalf("winfo after allow:\n%s", wn.Body())
	}

	servertest.HTTPDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"polite-block"}`, 200)
	n = w.Notify()
	if body := string(n.Body()); !strings.HasPrefix(servertest.SubState(n), "active") || strings.Contains(body, `tuple id="tb"`) || !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after polite-block: want active with a neutral closed document:\n%s", n)
	}

	servertest.HTTPDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"block"}`, 200)
	n = w.Notify()
	if got := servertest.SubState(n); got != "terminated;reason=rejected" {
		t.Fatalf("after block: Subscription-State %q", got)
	}
	w.SendTP(servertest.Subscribe("carol@example.test", "bob", "auth-2", 1, "presence", 600))
	w.Expect(`^SIP/2.0 403 `)

	snap := servertest.PresenceState(t, srv, "bob@example.test")
	if snap.Rules["carol@example.test"] != "block" {
		t.Errorf("rules %v", snap.Rules)
	}
	servertest.HTTPDo(t, "DELETE", base+"/rules/carol@example.test", "", 200)
	servertest.HTTPDo(t, "DELETE", base+"/rules/carol@example.test", "", 404)
	servertest.HTTPDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"maybe"}`, 400)
	servertest.HTTPDo(t, "GET", "http://"+srv.HTTPAddr()+"/api/v1/presence/bob@elsewhere.test", "", 400)
}

// TestSameDomainPolicy: by default a watcher of the presentity's domain is active, one of
// another domain pending.
func TestSameDomainPolicy(t *testing.T) {
	srv := servertest.Start(t, servertest.FastPresence)
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	if _, n := w.Watch(servertest.Subscribe("carol@example.test", "bob", "sd-1", 1, "presence", 600)); !strings.HasPrefix(servertest.SubState(n), "active") {
		t.Errorf("same domain: %q", servertest.SubState(n))
	}
	if _, n := w.Watch(servertest.Subscribe("eve@elsewhere.test", "bob", "sd-2", 1, "presence", 600)); !strings.HasPrefix(servertest.SubState(n), "pending") {
		t.Errorf("other domain: %q", servertest.SubState(n))
	}
}

// TestRateControl: a burst of changes reaches a watcher as fewer NOTIFYs than changes, the
// last one carrying the final state.
func TestRateControl(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Presence.MinNotifyInterval = 400 * time.Millisecond })
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(servertest.Publish("bob", "rc", 1, "", 600, servertest.PIDFDoc("bob", "t", "open")))
	etag := bob.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Watch(servertest.Subscribe("carol@example.test", "bob", "rc-1", 1, "presence", 600))
	for i := range 10 {
		note := "<note>step " + string(rune('0'+i)) + "</note>"
		bob.Send(servertest.Publish("bob", "rc", 2+i, etag, 600, servertest.PIDFDoc("bob", "t", "open", note)))
		etag = bob.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	}
	var last string
	count := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		msg := w.Read(time.Until(deadline))
		if msg == "" || !strings.HasPrefix(msg, "NOTIFY ") {
			continue
		}
		n := servertest.ParseRequest(t, msg)
		w.Reply(n, 200)
		count++
		last = string(n.Body())
		if strings.Contains(last, "step 9") {
			break
		}
	}
	if !strings.Contains(last, "step 9") {
		t.Fatalf("the last state never arrived (%d NOTIFYs, last %s)", count, last)
	}
	if count >= 10 {
		t.Errorf("%d NOTIFYs for 10 changes: nothing coalesced", count)
	}
}

// TestSubscriptionsPerSourceBounded: one source cannot hold more live subscriptions than
// presence.max_subscriptions_per_source; the next gets 503 with Retry-After.
func TestSubscriptionsPerSourceBounded(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) { o.Presence.MaxSubscriptionsPerSource = 3 })
	servertest.MakeKnown(t, srv, "bob")
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	for i := range 3 {
		w.Watch(servertest.Subscribe("carol@example.test", "bob", "lim-"+string(rune('a'+i)), 1, "presence", 600))
	}
	w.SendTP(servertest.Subscribe("carol@example.test", "bob", "lim-d", 1, "presence", 600))
	if res := w.Expect(`^SIP/2.0 503 `); res.GetHeader("Retry-After") == nil {
		t.Errorf("503 without Retry-After")
	}
}

// TestRedisSubscriptionSurvivesRestart: a subscription accepted by one simpled is notified by
// the next one on the same Redis when the presentity's state changes.
func TestRedisSubscriptionSurvivesRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *servertest.Options) { o.Store = rs.URL(); servertest.FastPresence(o) }
	// The restarted server has another node id, as a restarted process gets by default.
	a := servertest.Start(t, func(o *servertest.Options) { mod(o); o.NodeID = "before" })
	servertest.MakeKnown(t, a, "bob")
	w := servertest.Dial(t, "udp", a.Listener("udp"))
	w.Watch(servertest.Subscribe("carol@example.test", "bob", "persist-sub", 1, "presence", 600))
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t)
	b := servertest.Start(t, func(o *servertest.Options) { mod(o); o.NodeID = "after" })
	// The watcher keeps its address; its socket now talks to the new server.
	local := w.Conn.LocalAddr().(*net.UDPAddr)
	w.Conn.Close()
	raddr, err := net.ResolveUDPAddr("udp", b.Listener("udp"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", local, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w = servertest.UDPWireOn(t, c)
	bob := servertest.Dial(t, "udp", b.Listener("udp"))
	bob.Send(servertest.Publish("bob", "after-restart", 1, "", 600, servertest.PIDFDoc("bob", "tr", "open")))
	bob.Expect(`^SIP/2.0 200 `)
	n := w.Notify()
	if !strings.Contains(string(n.Body()), `tuple id="tr"`) {
		t.Fatalf("NOTIFY after restart lacks the new state:\n%s", n)
	}
}
