package logging

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestSlogBridgeTruncatesRawData(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := Slog(zap.New(core))
	s.Error("failed to parse", "data", strings.Repeat("x", 70000), "error", "bad")
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("entries = %d", len(entries))
	}
	e := entries[0]
	if e.LoggerName != "sipgo" {
		t.Errorf("logger name %q", e.LoggerName)
	}
	data, _ := e.ContextMap()["data"].(string)
	if len(data) > MaxLoggedData+20 || !strings.HasSuffix(data, "(truncated)") {
		t.Errorf("data field of %d bytes not truncated", len(data))
	}
}

func TestSlogBridgeSamplesFloods(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := Slog(zap.New(core))
	for range 1000 {
		s.Error("failed to parse", "error", "bad")
	}
	if n := logs.Len(); n >= 100 {
		t.Errorf("%d lines logged for 1000 identical errors in one second", n)
	}
}

func TestNewRejectsBadLevelAndFormat(t *testing.T) {
	if _, err := New(Options{Level: "loud"}); err == nil {
		t.Error("level loud accepted")
	}
	if _, err := New(Options{Format: "xml"}); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := New(Options{Level: "debug", Format: "json"}); err != nil {
		t.Error(err)
	}
}
