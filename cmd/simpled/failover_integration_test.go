package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"

	"github.com/emiago/sipgo/sip"
)

// failoverWatchers is one UDP socket standing for many watchers (one subscription each, by
// Call-ID): it answers every NOTIFY 200 and keeps, per Call-ID, the NOTIFYs' CSeqs, bodies and
// the address each came from.
type failoverWatchers struct {
	pc       net.PacketConn
	mu       sync.Mutex
	ok       map[string]bool
	notifies map[string][]received
	messages []string
	refused  []string
}

type received struct {
	cseq uint32
	body string
	from string
}

func newFailoverWatchers(t *testing.T) *failoverWatchers {
	w := &failoverWatchers{pc: sipgoxtest.Listen(t), ok: map[string]bool{}, notifies: map[string][]received{}}
	go w.read()
	return w
}

// retransmission reports whether a NOTIFY repeats one already received: same sender, same
// CSeq. A loaded machine answers late and the notifier sends again (Timer E); that is one
// NOTIFY, not a duplicate notification. Called with w.mu held.
func (w *failoverWatchers) retransmission(id string, got received) bool {
	for _, r := range w.notifies[id] {
		if r.from == got.from && r.cseq == got.cseq {
			return true
		}
	}
	return false
}

func (w *failoverWatchers) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := w.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		text := string(buf[:n])
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		w.mu.Lock()
		switch m := msg.(type) {
		case *sip.Response:
			if m.StatusCode == 200 && m.CSeq().MethodName == sip.SUBSCRIBE {
				w.ok[m.CallID().Value()] = true
			} else if m.StatusCode >= 300 {
				w.refused = append(w.refused, fmt.Sprintf("%s %d %s", m.CallID().Value(), m.StatusCode, m.Reason))
			}
		case *sip.Request:
			switch m.Method {
			case sip.NOTIFY:
				id, got := m.CallID().Value(), received{cseq: m.CSeq().SeqNo, body: string(m.Body()), from: from.String()}
				if !w.retransmission(id, got) {
					w.notifies[id] = append(w.notifies[id], got)
				}
			case sip.MESSAGE:
				w.messages = append(w.messages, string(m.Body()))
			}
			_, _ = w.pc.WriteTo([]byte(sipgoxtest.Response(text, "200 OK")), from)
		}
		w.mu.Unlock()
	}
}

// send sends a request, its {local} replaced by the socket's address, to addr.
func (w *failoverWatchers) send(t *testing.T, addr, msg string) {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg = strings.ReplaceAll(msg, "{local}", w.pc.LocalAddr().String())
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "{transport}", "UDP"), "{tp}", "udp")
	if _, err := w.pc.WriteTo([]byte(strings.ReplaceAll(msg, "\n", "\r\n")), to); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond until it holds (true) or 15 s pass (false).
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startNode runs the simpled binary as node id of the deployment on store, with a short lease,
// and returns the process and its UDP listener.
func startNode(t *testing.T, bin, id, store string) (*exec.Cmd, string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), id+".yaml")
	// One socket stands for a thousand watchers: the per-source bounds are lifted.
	yaml := "cluster:\n  lease: 2s\nauth:\n  nonce_secret: one secret for the whole deployment\n" +
		"presence:\n  policy: allow\n  max_watchers: 100000\n  max_watchers_per_domain: 100000\n" +
		"limits:\n  source_rate: 100000\n  source_burst: 100000\n  max_inflight_per_source: 10000\n" +
		"store_persistence_warning: false\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startSimpled(t, bin, "-config", cfg, "-listen", "udp://127.0.0.1:0", "-http", "127.0.0.1:0",
		"-domain", "example.test", "-store", store, "-node-id", id, "-log-format", "json")
	line := proc.waitLine(t, `"listener":"udp://`)
	return proc.Cmd, regexp.MustCompile(`"listener":"udp://([^"]+)"`).FindStringSubmatch(line)[1]
}

// TestFailoverAfterSIGKILL: node a (a process) holds 1,000 UDP subscriptions to p and an
// offline message for u; it is killed with SIGKILL. Once its lease has expired, a change of
// p's presence seen on node b reaches every one of the 1,000 watchers exactly once, from b,
// with a CSeq above the ones a sent; u, registering on b, gets the stored message once.
func TestFailoverAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a simpled process and 1,000 subscriptions")
	}
	bin := buildSimpled(t)
	rs := redistest.Start(t)
	procA, addrA := startNode(t, bin, "a", rs.URL())
	b := servertest.Start(t, func(o *config.Options) {
		o.Store, o.NodeID, o.Auth.NonceSecret = rs.URL(), "b", "one secret for the whole deployment"
		o.Cluster.Lease, o.Presence.Policy = 2*time.Second, "allow"
		o.Presence.MaxWatchers, o.Presence.MaxWatchersPerDomain = 100000, 100000
		o.Limits.SourceRate, o.Limits.SourceBurst, o.Limits.MaxInflightPerSource = 100000, 100000, 10000
	})
	addrB := b.Listener("udp")

	w := newFailoverWatchers(t)
	preg := servertest.Dial(t, "udp", addrB)
	preg.Send(servertest.Register("p", "fo-p", 1, "Contact: <sip:p@{local}>", "Expires: 600"))
	preg.Expect(`^SIP/2.0 200 `)
	const watchers = 1000
	subscribes := make([]string, watchers)
	for i := range watchers {
		subscribes[i] = servertest.Subscribe(fmt.Sprintf("w%d@example.test", i), "p", fmt.Sprintf("fo-%d", i), 1, "presence", 600)
	}
	// As a UDP client does, a SUBSCRIBE without an answer is sent again, unchanged (a
	// retransmission, answered from a's cache if only the answer was lost).
	for try := 0; try < 10; try++ {
		sent := 0
		for i, msg := range subscribes {
			w.mu.Lock()
			done := w.ok[fmt.Sprintf("fo-%d", i)]
			w.mu.Unlock()
			if !done {
				w.send(t, addrA, msg)
				if sent++; sent%50 == 0 {
					time.Sleep(10 * time.Millisecond) // a socket buffer is not a queue
				}
			}
		}
		if sent == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	count := func(n int) func() bool {
		return func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			for i := range watchers {
				if len(w.notifies[fmt.Sprintf("fo-%d", i)]) < n {
					return false
				}
			}
			return true
		}
	}
	if !waitUntil(count(1)) {
		w.mu.Lock()
		t.Fatalf("%d of %d subscriptions answered 200, %d notified; refused: %q", len(w.ok), watchers, len(w.notifies), w.refused[:min(len(w.refused), 5)])
	}

	// u is known (registered once, then unregistered) and offline: a MESSAGE to it is stored on a.
	u := newFailoverWatchers(t)
	reg := servertest.Dial(t, "udp", addrA)
	reg.Send(servertest.Register("u", "fo-u", 1, "Contact: <sip:u@"+u.pc.LocalAddr().String()+">", "Expires: 600"))
	reg.Expect(`^SIP/2.0 200 `)
	reg.Send(servertest.Register("u", "fo-u", 2, "Contact: <sip:u@"+u.pc.LocalAddr().String()+">", "Expires: 0"))
	reg.Expect(`^SIP/2.0 200 `)
	servertest.WaitKnown(t, b, "u@example.test") // a marks it after the answer; b reads the same store
	sender := servertest.Dial(t, "udp", addrA)
	sender.Send(servertest.Message("x", "u", "fo-msg", "text/plain", "kept for u"))
	sender.Expect(`^SIP/2.0 202 `)

	if err := procA.Process.Kill(); err != nil { // SIGKILL: no goodbye
		t.Fatal(err)
	}
	_ = procA.Wait()
	waitFor(t, "b to see a gone", func() bool { return !b.Cluster().Alive("a") })

	pub := servertest.Dial(t, "udp", addrB)
	pub.Send(servertest.Publish("p", "fo-pub", 1, "", 600, servertest.PIDFDoc("p", "t1", "closed")))
	pub.Expect(`^SIP/2.0 200 `)
	if !waitUntil(count(2)) {
		w.mu.Lock()
		n := 0
		for _, got := range w.notifies {
			if len(got) >= 2 {
				n++
			}
		}
		t.Fatalf("%d of %d watchers got the change's NOTIFY", n, watchers)
	}
	time.Sleep(500 * time.Millisecond) // any duplicate would be here by now
	w.mu.Lock()
	for i := range watchers {
		got := w.notifies[fmt.Sprintf("fo-%d", i)]
		if len(got) != 2 {
			t.Errorf("watcher %d: %d NOTIFYs, want 2 (the first from a, the change once from b): %s", i, len(got), describe(got))
			continue
		}
		if got[1].from != addrB || got[1].cseq <= got[0].cseq || !strings.Contains(got[1].body, "<basic>closed</basic>") {
			t.Errorf("watcher %d: the change came from %s with CSeq %d after %d:\n%s", i, got[1].from, got[1].cseq, got[0].cseq, got[1].body)
		}
	}
	w.mu.Unlock()

	u.send(t, addrB, servertest.Register("u", "fo-u", 3, "Contact: <sip:u@{local}>", "Expires: 600"))
	waitFor(t, "the stored message at u", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.messages) > 0
	})
	time.Sleep(500 * time.Millisecond)
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.messages) != 1 || u.messages[0] != "kept for u" {
		t.Errorf("u got %q, want the stored message once", u.messages)
	}
}

// describe lists NOTIFYs by sender and CSeq for a failure message.
func describe(got []received) string {
	parts := make([]string, len(got))
	for i, r := range got {
		parts[i] = fmt.Sprintf("%s CSeq %d", r.from, r.cseq)
	}
	return strings.Join(parts, ", ")
}
