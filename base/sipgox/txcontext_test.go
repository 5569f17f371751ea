package sipgox

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// TestTxContextLivesWithTheTransaction guards against sipgo's ServerTransactionContext, whose
// context is born cancelled.
func TestTxContextLivesWithTheTransaction(t *testing.T) {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.test"})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "127.0.0.1", Port: 5070, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK1"}}})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	tx := siptest.NewServerTxRecorder(req)
	ctx, cancel := TxContext(tx)
	if err := ctx.Err(); err != nil {
		t.Fatalf("fresh context already done: %v", err)
	}
	tx.Terminate()
	<-ctx.Done()
	cancel()
}

// A transaction already terminated gives a context already done: nothing waits on it.
func TestTxContextOfTerminatedTransaction(t *testing.T) {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.test"})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "127.0.0.1", Port: 5070, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK2"}}})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	tx := siptest.NewServerTxRecorder(req)
	tx.Terminate()
	ctx, cancel := TxContext(tx)
	defer cancel()
	if ctx.Err() == nil {
		t.Fatal("context of a terminated transaction is not done")
	}
}
