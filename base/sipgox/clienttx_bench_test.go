package sipgox_test

import (
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
)

// BenchmarkNonInviteTransaction measures simpled's own non-INVITE client transaction over
// loopback UDP, which carries every relayed MESSAGE and every NOTIFY: the request sent,
// answered 200 by the peer, the answer matched back to the transaction through the
// StrayRouter and passed up.
func BenchmarkNonInviteTransaction(b *testing.B) {
	txs, ours, peer := txHarness(b)
	buf := make([]byte, 65535)
	b.ReportAllocs()
	for b.Loop() {
		tx, err := txs.Start(message(b, ours, peer), 0)
		if err != nil {
			b.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := peer.ReadFrom(buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := peer.WriteTo([]byte(sipgoxtest.Response(string(buf[:n]), "200 OK")), from); err != nil {
			b.Fatal(err)
		}
		select {
		case res := <-tx.Responses():
			if res.StatusCode != 200 {
				b.Fatalf("got %d", res.StatusCode)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("no answer passed up")
		}
		// The transaction itself lingers for Timer K (absorbing repeated answers): not waited.
	}
}
