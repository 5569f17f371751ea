package sanity

import (
	"context"
	"testing"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestSanityLogsWhatItRefuses: every refusal leaves a Warn line naming status and reason, and
// a request that passes reaches the next stage untouched.
func TestSanityLogsWhatItRefuses(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	next := 0
	s := &sanity{maxBody: 10, isOurs: func(string) bool { return false }, log: zap.New(core),
		next: sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
			next++
			return 0, nil
		}}}
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{name: "max-forwards 0", raw: "Max-Forwards: 0\r\n", status: 483},
		{name: "body too large", raw: "Max-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n01234567890123456789", status: 413},
		{name: "passes", raw: "Max-Forwards: 70\r\n", status: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.TakeAll()
			raw := "MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs1\r\n" +
				"From: <sip:a@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: s1\r\nCSeq: 1 MESSAGE\r\n" + tt.raw
			if tt.status != 413 {
				raw += "Content-Length: 0\r\n\r\n"
			}
			msg, err := sipx.NewParser(1 << 16).ParseSIP([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			req := msg.(*sip.Request)
			status, _ := s.ServeSIP(context.Background(), siptest.NewServerTxRecorder(req), req)
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			entries := logs.FilterMessage("request refused").All()
			if tt.status == 0 {
				if len(entries) != 0 {
					t.Fatalf("logged a refusal for a good request")
				}
				return
			}
			if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel ||
				entries[0].ContextMap()["status"] != int64(tt.status) || entries[0].ContextMap()["call_id"] != "s1" {
				t.Fatalf("log = %+v", entries)
			}
		})
	}
	if next != 1 {
		t.Errorf("next stage called %d times, want 1", next)
	}
}
