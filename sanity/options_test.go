package sanity

import (
	"context"
	"testing"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// TestOptionsStage: an OPTIONS to the server itself is answered 200 with what the server
// supports, one it cannot satisfy (Require) 420, and anything else goes on to the next stage.
func TestOptionsStage(t *testing.T) {
	next := 0
	plugin, err := SetupOptions(DefaultOptionsConfig(), OptionsDeps{
		IsOurs: func(h string) bool { return h == "example.test" },
		Allow:  func() string { return "INVITE, OPTIONS" },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := plugin(sipx.HandlerFunc{NameText: "next", F: func(context.Context, sip.ServerTransaction, *sip.Request) (int, error) {
		next++
		return 0, nil
	}})
	if h.Name() != "options" {
		t.Fatalf("Name = %q", h.Name())
	}
	tests := []struct {
		name, method, uri, extra string
		status                   int
	}{
		{name: "to the server", method: "OPTIONS", uri: "sip:example.test", status: 200},
		{name: "unsupported Require", method: "OPTIONS", uri: "sip:example.test", extra: "Require: 100rel\r\n", status: 420},
		{name: "to a user", method: "OPTIONS", uri: "sip:bob@example.test", status: 0},
		{name: "another method", method: "MESSAGE", uri: "sip:example.test", status: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.method + " " + tt.uri + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo1\r\n" +
				"From: <sip:a@example.test>;tag=1\r\nTo: <" + tt.uri + ">\r\nCall-ID: o1\r\nCSeq: 1 " + tt.method + "\r\n" +
				"Max-Forwards: 70\r\n" + tt.extra + "Content-Length: 0\r\n\r\n"
			msg, err := sipx.NewParser(1 << 16).ParseSIP([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			req := msg.(*sip.Request)
			tx := siptest.NewServerTxRecorder(req)
			status, err := h.ServeSIP(context.Background(), tx, req)
			if err != nil || status != tt.status {
				t.Fatalf("status %d, %v; want %d", status, err, tt.status)
			}
			if tt.status != 200 {
				return
			}
			res := tx.Result()[0]
			if a := res.GetHeader("Allow"); a == nil || a.Value() != "INVITE, OPTIONS" {
				t.Errorf("Allow = %v", a)
			}
			if s := res.GetHeader("Supported"); s == nil || s.Value() != "path" {
				t.Errorf("Supported = %v", s)
			}
		})
	}
	if next != 2 {
		t.Errorf("next stage called %d times, want 2", next)
	}
}

// TestSetupNeedsIsOurs: a stage that cannot tell requests to the server from others is refused.
func TestSetupNeedsIsOurs(t *testing.T) {
	if _, err := Setup(Config{MaxBodySize: 10}, Deps{}); err == nil {
		t.Error("Setup without IsOurs: no error")
	}
	if _, err := SetupOptions(DefaultOptionsConfig(), OptionsDeps{IsOurs: func(string) bool { return true }}); err == nil {
		t.Error("SetupOptions without Allow: no error")
	}
}
