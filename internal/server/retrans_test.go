package server

import (
	"strings"
	"testing"
	"time"
)

// A retransmitted UDP REGISTER (same branch, after the 200 went out) gets the very same 200
// again, To tag included, from the retransmission cache: the registrar does not run twice.
func TestUDPRetransmissionAnsweredWithSameResponse(t *testing.T) {
	srv := startServer(t, nil)
	w := dial(t, "udp", srv.Listener("udp"))
	msg := w.expand(register("alice", "rtx-1", 1, "Contact: <sip:alice@{local}>", "Expires: 600"))
	w.send(msg)
	first := w.read(3 * time.Second)
	if !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("first answer %q", firstLine(first))
	}
	before := metricValue(t, srv, `simpled_sip_requests_total{method="REGISTER"}`)
	for i := range 3 {
		w.send(msg)
		again := w.read(3 * time.Second)
		if again != first {
			t.Fatalf("retransmission %d answered\n%s\nwant the first answer\n%s", i+1, again, first)
		}
	}
	if got := metricValue(t, srv, "simpled_sip_retransmissions_answered_total"); got != 3 {
		t.Errorf("retransmissions answered = %v, want 3", got)
	}
	if after := metricValue(t, srv, `simpled_sip_requests_total{method="REGISTER"}`); after != before {
		t.Errorf("the retransmissions reached the chain: REGISTER count %v -> %v", before, after)
	}
	// A new transaction (new branch) is processed, not answered from the cache.
	w.send(register("alice", "rtx-1", 2, "Contact: <sip:alice@{local}>", "Expires: 600"))
	if res := w.expect(`^SIP/2.0 200 `); res.CSeq().SeqNo != 2 {
		t.Fatalf("answer to CSeq 2 has CSeq %d", res.CSeq().SeqNo)
	}
}

// Over TCP there is nothing to retransmit: the same request is a new request to the chain
// (sipgo ends reliable transactions at once), and is never answered from the cache.
func TestTCPRequestsNotCached(t *testing.T) {
	srv := startServer(t, nil)
	w := dial(t, "tcp", srv.Listener("tcp"))
	msg := w.expand(register("bob", "rtx-2", 1, "Contact: <sip:bob@{local};transport=tcp>", "Expires: 600"))
	w.send(msg)
	w.expect(`^SIP/2.0 200 `)
	w.send(msg)
	w.expect(`^SIP/2.0 `)
	if got := metricValue(t, srv, "simpled_sip_retransmissions_answered_total"); got != 0 {
		t.Errorf("retransmissions answered over TCP = %v, want 0", got)
	}
}
