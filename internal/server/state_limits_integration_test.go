package server_test

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/pidf"
)

// TestNewAORFloodBounded: anonymous REGISTERs of made-up AORs, 10 contacts each, from one
// source (open mode) get 200 for registrar.max_new_aors_per_source of them a minute, then 503
// with Retry-After (counted as limit new_aors); the store and the heap stay bounded, and a
// phone from another address registers meanwhile. Before the limit 3,000 of them took simpled
// from 34 to 419 MB.
func TestNewAORFloodBounded(t *testing.T) {
	// Loopback, no users file: auth.mode off. The per-source request rate would cut the flood
	// first: lifted, so that this test sees the new-AOR limit alone.
	srv := servertest.Start(t, func(o *config.Options) { o.Limits.SourceRate, o.Limits.SourceBurst = 1_000_000, 1_000_000 })
	const flood, limit = 3000, 60
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	attacker := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	var contacts []string
	for j := range 10 {
		contacts = append(contacts, fmt.Sprintf("Contact: <sip:d%d-%s@127.0.0.2:5060>", j, strings.Repeat("x", 200)))
	}
	ok, refused := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for i := range flood {
		if time.Now().After(deadline) {
			t.Fatalf("flood not done within 60 s (%d sent)", i)
		}
		callID := "flood-" + strconv.Itoa(i)
		attacker.Send(servertest.Register("spam"+strconv.Itoa(i), callID, 1, contacts...))
		switch res := attacker.AnswerTo(callID); res.StatusCode {
		case 200:
			ok++
		case 503:
			refused++
			if res.GetHeader("Retry-After") == nil {
				t.Fatalf("503 without Retry-After:\n%s", res)
			}
		default:
			t.Fatalf("REGISTER %d: %d %s", i, res.StatusCode, res.Reason)
		}
		if i == flood/2 {
			// A phone elsewhere registers in the middle of the flood.
			phone := servertest.Dial(t, "udp", srv.Listener("udp"))
			phone.Send(servertest.Register("alice", "phone-1", 1, "Contact: <sip:alice@{local}>"))
			phone.Expect(`^SIP/2.0 200 `)
		}
	}
	if ok != limit || refused != flood-limit {
		t.Errorf("%d REGISTERs of new AORs got 200 and %d got 503; want %d and %d", ok, refused, limit, flood-limit)
	}
	if n := servertest.MetricValue(t, srv, `simpled_limited_total{limit="new_aors"}`); n != float64(flood-limit) {
		t.Errorf(`simpled_limited_total{limit="new_aors"} = %v, want %d`, n, flood-limit)
	}
	bindings := 0
	for i := range flood {
		bs, err := srv.Store().Bindings(t.Context(), "spam"+strconv.Itoa(i)+"@example.test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		bindings += len(bs)
	}
	if bindings != 10*limit {
		t.Errorf("%d bindings stored, want %d", bindings, 10*limit)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("heap grew %d MB during the flood, want less than 32", grew>>20)
	}
}

// TestWatcherFloodKeepsWinfo: a flood of SUBSCRIBEs to one presentity gets 403 past
// presence.max_watchers_per_domain from one foreign domain, and past presence.max_watchers in
// all (local watchers still get in when the foreign domain has used its share), counted by
// limit; the presentity's own watcher-info subscription keeps working, each document within
// its bound, the pending watchers listed. Before, 3,000 SUBSCRIBEs to alice grew her
// winfo NOTIFY until it was refused, which ended her subscription.
func TestWatcherFloodKeepsWinfo(t *testing.T) {
	srv := servertest.Start(t, func(o *config.Options) {
		servertest.FastPresence(o)
		o.Presence.MaxWatchers = 200
		o.Presence.MaxWatchersPerDomain = 20
	})
	servertest.MakeKnown(t, srv, "alice")
	alice := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	winfo, _ := alice.Watch(servertest.Subscribe("alice@example.test", "alice", "alice-winfo", 1, "presence.winfo", 600,
		"Accept: application/watcherinfo+xml"))

	attacker := servertest.DialFrom(t, "udp", "127.0.0.2", srv.Listener("udp"))
	flood := func(watcher func(i int) string, n, wantOK int, what string) {
		t.Helper()
		ok := 0
		for i := range n {
			callID := fmt.Sprintf("%s-%d", what, i)
			attacker.Send(strings.ReplaceAll(servertest.Subscribe(watcher(i), "alice", callID, 1, "presence", 600), "{tp}", "udp"))
			switch res := attacker.AnswerTo(callID); res.StatusCode {
			case 200:
				ok++
			case 403:
			default:
				t.Fatalf("%s SUBSCRIBE %d: %d %s", what, i, res.StatusCode, res.Reason)
			}
		}
		if ok != wantOK {
			t.Errorf("%d of %d %s watchers accepted, want %d", ok, n, what, wantOK)
		}
	}
	flood(func(i int) string { return fmt.Sprintf("spam%d@evil.example", i) }, 40, 20, "foreign")
	long := strings.Repeat("w", 150)
	flood(func(i int) string { return fmt.Sprintf("%s%d@example.test", long, i) }, 220, 180, "local")
	if n := servertest.MetricValue(t, srv, `simpled_limited_total{limit="watchers_per_domain"}`); n != 20 {
		t.Errorf(`simpled_limited_total{limit="watchers_per_domain"} = %v, want 20`, n)
	}
	if n := servertest.MetricValue(t, srv, `simpled_limited_total{limit="watchers"}`); n != 40 {
		t.Errorf(`simpled_limited_total{limit="watchers"} = %v, want 40`, n)
	}

	// Alice answers her NOTIFYs: each document is within the bound and parses; applied in
	// turn (full, then partial: RFC 3858 §4.4) they list the 20 pending watchers of
	// evil.example and fewer than max_watchers in all.
	view := map[string]string{}
	docs := 0
	for {
		msg := alice.Read(2 * time.Second)
		if msg == "" {
			break
		}
		if !strings.HasPrefix(msg, "NOTIFY ") {
			continue
		}
		n := servertest.ParseRequest(t, msg)
		alice.Reply(n, 200)
		if len(n.Body()) > 48<<10 {
			t.Fatalf("watcherinfo NOTIFY body of %d bytes, want at most 48 KiB", len(n.Body()))
		}
		w, err := pidf.ParseWatcherInfo(n.Body())
		if err != nil {
			t.Fatalf("watcherinfo does not parse: %v", err)
		}
		docs++
		if w.State == "full" {
			clear(view)
		}
		for _, x := range w.Lists[0].Watchers {
			if x.Status == "terminated" {
				delete(view, x.ID)
			} else {
				view[x.ID] = x.Status
			}
		}
	}
	if docs == 0 {
		t.Fatal("alice got no watcherinfo NOTIFY during the flood")
	}
	pending := 0
	for _, st := range view {
		if st == "pending" {
			pending++
		}
	}
	if pending != 20 || len(view) > 200 {
		t.Errorf("alice's watcherinfo lists %d watchers, %d pending; want at most 200 and the 20 pending",
			len(view), pending)
	}
	// Her subscription is alive: a refresh gets 200, not 481.
	alice.SendTP(servertest.Resubscribe(winfo, 2, 600))
	alice.Expect(`^SIP/2.0 200 `)
}
