package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
)

// A retransmitted UDP REGISTER (same branch, after the 200 went out) gets the very same 200
// again, To tag included, from the retransmission cache: the registrar does not run twice.
func TestUDPRetransmissionAnsweredWithSameResponse(t *testing.T) {
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	msg := w.Expand(servertest.Register("alice", "rtx-1", 1, "Contact: <sip:alice@{local}>", "Expires: 600"))
	w.Send(msg)
	first := w.Read(3 * time.Second)
	if !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("first answer %q", servertest.FirstLine(first))
	}
	before := servertest.MetricValue(t, srv, `simpled_sip_requests_total{method="REGISTER"}`)
	for i := range 3 {
		w.Send(msg)
		again := w.Read(3 * time.Second)
		if again != first {
			t.Fatalf("retransmission %d answered\n%s\nwant the first answer\n%s", i+1, again, first)
		}
	}
	if got := servertest.MetricValue(t, srv, "simpled_sip_retransmissions_answered_total"); got != 3 {
		t.Errorf("retransmissions answered = %v, want 3", got)
	}
	if after := servertest.MetricValue(t, srv, `simpled_sip_requests_total{method="REGISTER"}`); after != before {
		t.Errorf("the retransmissions reached the chain: REGISTER count %v -> %v", before, after)
	}
	// A new transaction (new branch) is processed, not answered from the cache.
	w.Send(servertest.Register("alice", "rtx-1", 2, "Contact: <sip:alice@{local}>", "Expires: 600"))
	if res := w.Expect(`^SIP/2.0 200 `); res.CSeq().SeqNo != 2 {
		t.Fatalf("answer to CSeq 2 has CSeq %d", res.CSeq().SeqNo)
	}
}

// Over TCP there is nothing to retransmit: the same request is a new request to the chain
// (sipgo ends reliable transactions at once), and is never answered from the cache.
func TestTCPRequestsNotCached(t *testing.T) {
	srv := servertest.Start(t, nil)
	w := servertest.Dial(t, "tcp", srv.Listener("tcp"))
	msg := w.Expand(servertest.Register("bob", "rtx-2", 1, "Contact: <sip:bob@{local};transport=tcp>", "Expires: 600"))
	w.Send(msg)
	w.Expect(`^SIP/2.0 200 `)
	// sipgo ends the first transaction at once but removes it from its table a moment later:
	// a copy sent in between is taken for its retransmission and dropped. What is checked is
	// that a copy is answered by the chain, never from the cache.
	answered := false
	for attempt := 0; attempt < 5 && !answered; attempt++ {
		w.Send(msg)
		answered = strings.HasPrefix(w.Read(time.Second), "SIP/2.0 ")
	}
	if !answered {
		t.Fatal("the same REGISTER sent again over TCP was never answered")
	}
	if got := servertest.MetricValue(t, srv, "simpled_sip_retransmissions_answered_total"); got != 0 {
		t.Errorf("retransmissions answered over TCP = %v, want 0", got)
	}
}
