package server

import (
	"bufio"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"

	"github.com/emiago/sipgo/sip"
)

// fastPresence shortens the expiry floor and the NOTIFY interval so tests see expiries and
// several NOTIFYs within a second.
func fastPresence(o *config.Options) {
	o.Registrar.MinExpires = 1
	o.Presence.MinNotifyInterval = time.Millisecond
}

// TestPublishLifecycle: an initial PUBLISH gets 200 with SIP-ETag and Expires; a refresh
// without body and a modification each get a new entity tag; the old tag is then unknown
// (412); Expires 0 removes the publication, after which its tag is unknown too.
func TestPublishLifecycle(t *testing.T) {
	srv := startServer(t, nil)
	alice := dial(t, "udp", srv.Listener("udp"))
	alice.send(publish("alice", "pub-1", 1, "", 600, pidfDoc("alice", "t1", "open")))
	res := alice.expect(`^SIP/2.0 200 `)
	etag1 := res.GetHeader("SIP-ETag")
	if etag1 == nil || res.GetHeader("Expires").Value() != "600" {
		t.Fatalf("200 without SIP-ETag or Expires 600:\n%s", res)
	}

	alice.send(publish("alice", "pub-1", 2, etag1.Value(), 600, ""))
	etag2 := alice.expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	if etag2 == etag1.Value() {
		t.Errorf("refresh kept the entity tag %s", etag2)
	}
	alice.send(publish("alice", "pub-1", 3, etag1.Value(), 600, ""))
	alice.expect(`^SIP/2.0 412 `)

	alice.send(publish("alice", "pub-1", 4, etag2, 600, pidfDoc("alice", "t1", "closed")))
	etag3 := alice.expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	snap := presenceState(t, srv, "alice@example.test")
	if len(snap.Publications) != 1 || !strings.Contains(snap.Document, "<basic>closed</basic>") {
		t.Fatalf("after modify: %d publications, document %s", len(snap.Publications), snap.Document)
	}

	alice.send(publish("alice", "pub-1", 5, etag3, 0, ""))
	alice.expect(`^SIP/2.0 200 `)
	if snap := presenceState(t, srv, "alice@example.test"); len(snap.Publications) != 0 {
		t.Fatalf("%d publications after removal", len(snap.Publications))
	}
	alice.send(publish("alice", "pub-1", 6, etag3, 600, ""))
	alice.expect(`^SIP/2.0 412 `)
}

// TestPublishBadInput: every malformed or unwanted PUBLISH gets its answer and stores
// nothing.
func TestPublishBadInput(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Limits.MaxBodySize = 4096 })
	w := dial(t, "udp", srv.Listener("udp"))
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test"><tuple id="a"><status><basic>&lol2;</basic></status></tuple></presence>`
	cases := []struct {
		name, msg, want string
	}{
		{"unknown event", strings.Replace(publish("alice", "bad-1", 1, "", 600, pidfDoc("alice", "t", "open")), "Event: presence", "Event: dialog", 1), `^SIP/2.0 489 (?s:.*)Allow-Events: presence`},
		{"no event", strings.Replace(publish("alice", "bad-2", 1, "", 600, pidfDoc("alice", "t", "open")), "Event: presence\n", "", 1), `^SIP/2.0 489 `},
		{"expires too brief", publish("alice", "bad-3", 1, "", 10, pidfDoc("alice", "t", "open")), `^SIP/2.0 423 (?s:.*)Min-Expires: 60`},
		{"not pidf", strings.Replace(publish("alice", "bad-4", 1, "", 600, "hello"), "application/pidf+xml", "text/plain", 1), `^SIP/2.0 415 (?s:.*)Accept: application/pidf\+xml`},
		{"invalid xml", publish("alice", "bad-5", 1, "", 600, "<presence"), `^SIP/2.0 400 `},
		{"wrong namespace", publish("alice", "bad-6", 1, "", 600, strings.Replace(pidfDoc("alice", "t", "open"), "urn:ietf:params:xml:ns:pidf\"", "urn:example:other\"", 1)), `^SIP/2.0 400 `},
		{"no tuple", publish("alice", "bad-7", 1, "", 600, `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test"/>`), `^SIP/2.0 400 `},
		{"billion laughs", publish("alice", "bad-8", 1, "", 600, laughs), `^SIP/2.0 400 `},
		{"too large", publish("alice", "bad-9", 1, "", 600, pidfDoc("alice", "t", "open", "<note>"+strings.Repeat("x", 5000)+"</note>")), `^SIP/2.0 413 `},
		{"initial without body", publish("alice", "bad-10", 1, "", 600, ""), `^SIP/2.0 400 `},
		{"unknown etag", publish("alice", "bad-11", 1, "nosuchtag", 600, ""), `^SIP/2.0 412 `},
		{"someone else's presence", strings.Replace(publish("alice", "bad-12", 1, "", 600, pidfDoc("alice", "t", "open")), "From: <sip:alice@", "From: <sip:mallory@", 1), `^SIP/2.0 403 `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.t = t
			w.send(c.msg)
			w.expect(c.want)
		})
	}
	w.t = t
	if snap := presenceState(t, srv, "alice@example.test"); len(snap.Publications) != 0 {
		t.Fatalf("bad input stored %d publications", len(snap.Publications))
	}
}

// TestPublicationsBounded: one presentity cannot pile up publications: past 32 live ones a
// new publication gets 403 while modifications of existing ones still work.
func TestPublicationsBounded(t *testing.T) {
	srv := startServer(t, nil)
	w := dial(t, "udp", srv.Listener("udp"))
	etag := ""
	for i := range 32 {
		// A tuple of its own each: publications that restate one another are duplicates,
		// dropped when composed.
		w.send(publish("alice", "many-"+string(rune('A'+i)), 1, "", 600, pidfDoc("alice", "t"+strconv.Itoa(i), "open")))
		etag = w.expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	}
	w.send(publish("alice", "many-x", 1, "", 600, pidfDoc("alice", "t", "open")))
	w.expect(`^SIP/2.0 403 `)
	w.send(publish("alice", "many-A", 2, etag, 600, pidfDoc("alice", "t31", "closed")))
	w.expect(`^SIP/2.0 200 `)
	if n := len(presenceState(t, srv, "alice@example.test").Publications); n != 32 {
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
			srv := startServer(t, fastPresence)
			makeKnown(t, srv, "bob")
			w := dial(t, network, srv.Listener(network))
			res, n := w.watch(subscribe("carol@example.test", "bob", "sub-"+network, 1, "presence", 600))
			if res.Contact() == nil || res.GetHeader("Expires").Value() != "600" || !res.To().Params.Has("tag") {
				t.Fatalf("200 lacks Contact, Expires or To tag:\n%s", res)
			}
			if !strings.HasPrefix(subState(n), "active;expires=") || n.ContentType().Value() != "application/pidf+xml" ||
				!strings.Contains(string(n.Body()), "<basic>closed</basic>") || n.ContentLength() == nil {
				t.Fatalf("first NOTIFY: want active, PIDF closed, Content-Length:\n%s", n)
			}
			if tag, _ := n.From().Params.Get("tag"); tag != tagOfTo(res) {
				t.Errorf("NOTIFY From tag %q, want the 200's To tag %q", tag, tagOfTo(res))
			}

			dev := newUA(t, srv, "udp", "bob")
			n2 := w.notify()
			if !strings.Contains(string(n2.Body()), "<basic>open</basic>") || n2.CSeq().SeqNo <= n.CSeq().SeqNo {
				t.Fatalf("after REGISTER: want open with a higher CSeq:\n%s", n2)
			}

			dev.send(publish("bob", "pub-bob", 1, "", 600, pidfDoc("bob", "tb", "closed", `<dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities></dm:person>`)))
			dev.expect(`^SIP/2.0 200 `)
			n3 := w.notify()
			if body := string(n3.Body()); !strings.Contains(body, "<rpid:away/>") || !strings.Contains(body, `tuple id="tb"`) {
				t.Fatalf("after PUBLISH: want the published document with its rpid prefix:\n%s", body)
			}

			w.sendTP(resubscribe(res, 2, 0))
			w.expect(`^SIP/2.0 200 `)
			n4 := w.notify()
			if !strings.HasPrefix(subState(n4), "terminated") {
				t.Fatalf("after un-SUBSCRIBE: Subscription-State %q, want terminated", subState(n4))
			}
			dev.send(publish("bob", "pub-bob2", 1, "", 600, pidfDoc("bob", "tc", "open")))
			dev.expect(`^SIP/2.0 200 `)
			w.expectNothing(300 * time.Millisecond)
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
	srv := startServer(t, nil)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	cases := []struct{ name, msg, want string }{
		{"unknown user", subscribe("carol@example.test", "nobody", "sb-1", 1, "presence", 600), `^SIP/2.0 404 `},
		{"unknown event", subscribe("carol@example.test", "bob", "sb-2", 1, "dialog", 600), `^SIP/2.0 489 (?s:.*)Allow-Events: presence`},
		{"expires too brief", subscribe("carol@example.test", "bob", "sb-3", 1, "presence", 5), `^SIP/2.0 423 (?s:.*)Min-Expires: 60`},
		{"unacceptable type", subscribe("carol@example.test", "bob", "sb-4", 1, "presence", 600, "Accept: application/xpidf+xml"), `^SIP/2.0 406 `},
		{"winfo of someone else", subscribe("carol@example.test", "bob", "sb-5", 1, "presence.winfo", 600), `^SIP/2.0 403 `},
		{"no dialog", strings.Replace(subscribe("carol@example.test", "bob", "sb-6", 2, "presence", 600), "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag=nosuch", 1), `^SIP/2.0 481 `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.t = t
			w.sendTP(c.msg)
			w.expect(c.want)
		})
	}
}

// TestFetchAndExpiry: Expires 0 is a fetch (200, one NOTIFY terminated with the state); a
// subscription that is not refreshed ends with NOTIFY terminated;reason=timeout on time.
func TestFetchAndExpiry(t *testing.T) {
	srv := startServer(t, fastPresence)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	_, n := w.watch(subscribe("carol@example.test", "bob", "fetch-1", 1, "presence", 0))
	if !strings.HasPrefix(subState(n), "terminated") || len(n.Body()) == 0 {
		t.Fatalf("fetch: want terminated with a body:\n%s", n)
	}

	start := time.Now()
	w.watch(subscribe("carol@example.test", "bob", "exp-1", 1, "presence", 2))
	n = w.notify()
	if got := subState(n); got != "terminated;reason=timeout" {
		t.Fatalf("expiry: Subscription-State %q", got)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("expiry NOTIFY after %s, want about 2 s", d)
	}
}

// TestRefreshAndCSeqOrder: a refresh gets 200 and a full NOTIFY; a SUBSCRIBE with an old
// CSeq gets 500.
func TestRefreshAndCSeqOrder(t *testing.T) {
	srv := startServer(t, fastPresence)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	res, _ := w.watch(subscribe("carol@example.test", "bob", "ref-1", 1, "presence", 600))
	w.sendTP(resubscribe(res, 5, 300))
	if got := w.expect(`^SIP/2.0 200 `).GetHeader("Expires").Value(); got != "300" {
		t.Errorf("refresh Expires %s, want 300", got)
	}
	if n := w.notify(); !strings.HasPrefix(subState(n), "active") {
		t.Fatalf("refresh NOTIFY state %q", subState(n))
	}
	w.sendTP(resubscribe(res, 3, 300))
	w.expect(`^SIP/2.0 500 `)
}

// TestNotify481EndsSubscription: a watcher that answers 481 is forgotten: the next change
// sends it nothing and the presentity has no watcher left.
func TestNotify481EndsSubscription(t *testing.T) {
	srv := startServer(t, fastPresence)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	w.sendTP(subscribe("carol@example.test", "bob", "gone-1", 1, "presence", 600))
	w.expect(`^SIP/2.0 200 `)
	n := w.request("NOTIFY")
	w.reply(n, 481)
	waitFor(t, "the subscription to end", func() bool {
		return len(presenceState(t, srv, "bob@example.test").Subscriptions) == 0
	})
	bob := dial(t, "udp", srv.Listener("udp"))
	bob.send(publish("bob", "pub-g", 1, "", 600, pidfDoc("bob", "t", "open")))
	bob.expect(`^SIP/2.0 200 `)
	w.expectNothing(300 * time.Millisecond)
}

// TestNotifyNeverAnswered: a UDP watcher that never answers is no amplifier (issue 15): its
// unanswered SUBSCRIBE, whose source may be forged, gets the 200 and one NOTIFY with at most
// 2 retransmissions (sipgo's Timer E schedule sent 11), counted as datagrams at the silent
// socket; at Timer F (32 s) its subscription ends and later changes send it nothing. Slow by
// nature, so it runs beside the other parallel tests.
func TestNotifyNeverAnswered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, fastPresence)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	w.sendTP(subscribe("carol@example.test", "bob", "mute-1", 1, "presence", 600))
	datagrams := 0
	first := (*sip.Request)(nil)
	deadline := time.Now().Add(45 * time.Second)
	for first == nil || len(presenceState(t, srv, "bob@example.test").Subscriptions) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscription of a watcher that never answers is still there after 45 s")
		}
		msg := w.read(500 * time.Millisecond)
		if msg == "" {
			continue
		}
		datagrams++
		if strings.HasPrefix(msg, "NOTIFY ") {
			n := parseRequest(t, msg)
			if first == nil {
				first = n
			} else if n.CSeq().SeqNo != first.CSeq().SeqNo {
				t.Fatalf("a second NOTIFY to a watcher that never answered the first:\n%s", msg)
			}
		}
	}
	// Datagrams still under way when the subscription went.
	for msg := w.read(time.Second); msg != ""; msg = w.read(time.Second) {
		datagrams++
	}
	if datagrams < 2 || datagrams > 4 {
		t.Errorf("the silent watcher got %d datagrams, want the 200 and a NOTIFY sent at most 3 times", datagrams)
	}
	if n := metricValue(t, srv, `simpled_limited_total{limit="unanswered_notify"}`); n != 1 {
		t.Errorf(`simpled_limited_total{limit="unanswered_notify"} = %v, want 1`, n)
	}
	bob := dial(t, "udp", srv.Listener("udp"))
	bob.send(publish("bob", "mute-pub", 1, "", 600, pidfDoc("bob", "t", "open")))
	bob.expect(`^SIP/2.0 200 `)
	for {
		msg := w.read(500 * time.Millisecond)
		if msg == "" {
			break
		}
		if strings.HasPrefix(msg, "NOTIFY ") && parseRequest(t, msg).CSeq().SeqNo != first.CSeq().SeqNo {
			t.Fatalf("a NOTIFY after the subscription ended:\n%s", msg)
		}
	}
}

// TestCompositionNewestWins: two publications carrying the same tuple id (baresip's duplicate
// initial PUBLISH) compose to the newest one's tuple; distinct tuple ids are merged.
func TestCompositionNewestWins(t *testing.T) {
	srv := startServer(t, fastPresence)
	bob := dial(t, "udp", srv.Listener("udp"))
	bob.send(publish("bob", "dup-1", 1, "", 600, pidfDoc("bob", "t4109", "open")))
	bob.expect(`^SIP/2.0 200 `)
	bob.send(publish("bob", "dup-2", 1, "", 600, pidfDoc("bob", "t4109", "closed")))
	bob.expect(`^SIP/2.0 200 `)
	bob.send(publish("bob", "dup-3", 1, "", 600, pidfDoc("bob", "other", "open")))
	bob.expect(`^SIP/2.0 200 `)
	doc := presenceState(t, srv, "bob@example.test").Document
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
	srv := startServer(t, func(o *config.Options) { fastPresence(o); o.Presence.Policy = "confirm" })
	bobDev := newUA(t, srv, "udp", "bob")
	bobDev.send(publish("bob", "auth-pub", 1, "", 600, pidfDoc("bob", "tb", "open")))
	bobDev.expect(`^SIP/2.0 200 `)

	winfo := dial(t, "udp", srv.Listener("udp"))
	_, wn := winfo.watch(subscribe("bob@example.test", "bob", "winfo-1", 1, "presence.winfo", 600))
	if wn.ContentType().Value() != "application/watcherinfo+xml" {
		t.Fatalf("winfo NOTIFY type %v", wn.ContentType())
	}

	w := dial(t, "udp", srv.Listener("udp"))
	_, n := w.watch(subscribe("carol@example.test", "bob", "auth-1", 1, "presence", 600))
	if !strings.HasPrefix(subState(n), "pending") || len(n.Body()) != 0 {
		t.Fatalf("want pending without body:\n%s", n)
	}
	wn = winfo.notify()
	if body := string(wn.Body()); !strings.Contains(body, `status="pending"`) || !strings.Contains(body, "carol@example.test") {
		t.Fatalf("winfo does not list carol pending:\n%s", body)
	}

	base := "http://" + srv.HTTPAddr() + "/api/v1/presence/bob@example.test"
	httpDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"allow"}`, 200)
	n = w.notify()
	if !strings.HasPrefix(subState(n), "active") || !strings.Contains(string(n.Body()), `tuple id="tb"`) {
		t.Fatalf("after allow: want active with bob's document:\n%s", n)
	}
	wn = winfo.notify()
	if !strings.Contains(string(wn.Body()), `status="active"`) {
		t.Fatalf("winfo after allow:\n%s", wn.Body())
	}

	httpDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"polite-block"}`, 200)
	n = w.notify()
	if body := string(n.Body()); !strings.HasPrefix(subState(n), "active") || strings.Contains(body, `tuple id="tb"`) || !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after polite-block: want active with a neutral closed document:\n%s", n)
	}

	httpDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"block"}`, 200)
	n = w.notify()
	if got := subState(n); got != "terminated;reason=rejected" {
		t.Fatalf("after block: Subscription-State %q", got)
	}
	w.sendTP(subscribe("carol@example.test", "bob", "auth-2", 1, "presence", 600))
	w.expect(`^SIP/2.0 403 `)

	snap := presenceState(t, srv, "bob@example.test")
	if snap.Rules["carol@example.test"] != "block" {
		t.Errorf("rules %v", snap.Rules)
	}
	httpDo(t, "DELETE", base+"/rules/carol@example.test", "", 200)
	httpDo(t, "DELETE", base+"/rules/carol@example.test", "", 404)
	httpDo(t, "PUT", base+"/rules/carol@example.test", `{"rule":"maybe"}`, 400)
	httpDo(t, "GET", "http://"+srv.HTTPAddr()+"/api/v1/presence/bob@elsewhere.test", "", 400)
}

// TestSameDomainPolicy: by default a watcher of the presentity's domain is active, one of
// another domain pending.
func TestSameDomainPolicy(t *testing.T) {
	srv := startServer(t, fastPresence)
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	if _, n := w.watch(subscribe("carol@example.test", "bob", "sd-1", 1, "presence", 600)); !strings.HasPrefix(subState(n), "active") {
		t.Errorf("same domain: %q", subState(n))
	}
	if _, n := w.watch(subscribe("eve@elsewhere.test", "bob", "sd-2", 1, "presence", 600)); !strings.HasPrefix(subState(n), "pending") {
		t.Errorf("other domain: %q", subState(n))
	}
}

// TestRateControl: a burst of changes reaches a watcher as fewer NOTIFYs than changes, the
// last one carrying the final state.
func TestRateControl(t *testing.T) {
	srv := startServer(t, func(o *config.Options) { o.Presence.MinNotifyInterval = 400 * time.Millisecond })
	bob := dial(t, "udp", srv.Listener("udp"))
	bob.send(publish("bob", "rc", 1, "", 600, pidfDoc("bob", "t", "open")))
	etag := bob.expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	w := dial(t, "udp", srv.Listener("udp"))
	w.watch(subscribe("carol@example.test", "bob", "rc-1", 1, "presence", 600))
	for i := range 10 {
		note := "<note>step " + string(rune('0'+i)) + "</note>"
		bob.send(publish("bob", "rc", 2+i, etag, 600, pidfDoc("bob", "t", "open", note)))
		etag = bob.expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	}
	var last string
	count := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		msg := w.read(time.Until(deadline))
		if msg == "" || !strings.HasPrefix(msg, "NOTIFY ") {
			continue
		}
		n := parseRequest(t, msg)
		w.reply(n, 200)
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
	srv := startServer(t, func(o *config.Options) { o.Presence.MaxSubscriptionsPerSource = 3 })
	makeKnown(t, srv, "bob")
	w := dial(t, "udp", srv.Listener("udp"))
	for i := range 3 {
		w.watch(subscribe("carol@example.test", "bob", "lim-"+string(rune('a'+i)), 1, "presence", 600))
	}
	w.sendTP(subscribe("carol@example.test", "bob", "lim-d", 1, "presence", 600))
	if res := w.expect(`^SIP/2.0 503 `); res.GetHeader("Retry-After") == nil {
		t.Errorf("503 without Retry-After")
	}
}

// TestRedisSubscriptionSurvivesRestart: a subscription accepted by one simpled is notified by
// the next one on the same Redis when the presentity's state changes.
func TestRedisSubscriptionSurvivesRestart(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPersistence())
	mod := func(o *config.Options) { o.Store = rs.URL(); fastPresence(o) }
	// The restarted server has another node id, as a restarted process gets by default.
	a := startServer(t, func(o *config.Options) { mod(o); o.NodeID = "before" })
	makeKnown(t, a, "bob")
	w := dial(t, "udp", a.Listener("udp"))
	w.watch(subscribe("carol@example.test", "bob", "persist-sub", 1, "presence", 600))
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	rs.Restart(t)
	b := startServer(t, func(o *config.Options) { mod(o); o.NodeID = "after" })
	// The watcher keeps its address; its socket now talks to the new server.
	local := w.conn.LocalAddr().(*net.UDPAddr)
	w.conn.Close()
	raddr, err := net.ResolveUDPAddr("udp", b.Listener("udp"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", local, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w = &wire{t: t, conn: c, udp: true, rd: bufio.NewReader(c)}
	bob := dial(t, "udp", b.Listener("udp"))
	bob.send(publish("bob", "after-restart", 1, "", 600, pidfDoc("bob", "tr", "open")))
	bob.expect(`^SIP/2.0 200 `)
	n := w.notify()
	if !strings.Contains(string(n.Body()), `tuple id="tr"`) {
		t.Fatalf("NOTIFY after restart lacks the new state:\n%s", n)
	}
}

// presenceSnapshot mirrors GET /api/v1/presence/{aor}.
type presenceSnapshot struct {
	Document      string            `json:"document"`
	Publications  []json.RawMessage `json:"publications"`
	Subscriptions []struct {
		Watcher string `json:"watcher"`
		State   string `json:"state"`
	} `json:"watchers"`
	Rules map[string]string `json:"rules"`
}

func presenceState(t *testing.T, srv *Server, aor string) presenceSnapshot {
	t.Helper()
	body := httpDo(t, "GET", "http://"+srv.HTTPAddr()+"/api/v1/presence/"+aor, "", 200)
	var s presenceSnapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("presence snapshot: %v\n%s", err, body)
	}
	return s
}
