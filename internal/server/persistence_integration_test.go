package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newLogged builds (without starting) a server on the Redis at url and returns what it
// logged at Warn and above.
func newLogged(t *testing.T, url string, mod func(*config.Options)) []observer.LoggedEntry {
	t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	opts := config.Default()
	opts.Listen = []string{"udp://127.0.0.1:0"}
	opts.HTTP = ""
	opts.Domains = []string{"example.test"}
	opts.Store = url
	if mod != nil {
		mod(&opts)
	}
	srv, err := server.New(context.Background(), opts, zap.New(core))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	server.CloseAll(srv)
	return logs.FilterMessageSnippet("Redis").All()
}

// At start with a Redis that keeps nothing across a restart, simpled warns once, naming the
// risk: offline messages already answered 202 can be lost. A Redis with an append-only file
// gets no warning, and store_persistence_warning: false silences it.
func TestRedisPersistenceWarning(t *testing.T) {
	t.Run("no persistence", func(t *testing.T) {
		rs := redistest.Start(t)
		logs := newLogged(t, rs.URL(), nil)
		if len(logs) != 1 || logs[0].Level != zapcore.WarnLevel || !strings.Contains(logs[0].Message, "202") ||
			!strings.Contains(logs[0].Message, "appendonly") {
			t.Fatalf("logged %+v, want one warning naming 202-acknowledged messages and appendonly", logs)
		}
		if f := logs[0].ContextMap(); f["appendonly"] != false || f["save"] != "" {
			t.Errorf("fields %v", f)
		}
	})
	t.Run("append-only file", func(t *testing.T) {
		rs := redistest.Start(t, redistest.WithPersistence())
		if logs := newLogged(t, rs.URL(), nil); len(logs) != 0 {
			t.Fatalf("warned about a durable Redis: %+v", logs)
		}
	})
	t.Run("snapshots only", func(t *testing.T) {
		rs := redistest.Start(t, redistest.WithArgs("--save", "60 1"))
		logs := newLogged(t, rs.URL(), nil)
		if len(logs) != 1 || !strings.Contains(logs[0].Message, "snapshot") {
			t.Fatalf("logged %+v, want one warning about snapshots only", logs)
		}
	})
	t.Run("silenced", func(t *testing.T) {
		rs := redistest.Start(t)
		if logs := newLogged(t, rs.URL(), func(o *config.Options) { o.StorePersistenceWarning = false }); len(logs) != 0 {
			t.Fatalf("store_persistence_warning: false still warned: %+v", logs)
		}
	})
	t.Run("config renamed", func(t *testing.T) {
		rs := redistest.Start(t, redistest.WithArgs("--rename-command", "CONFIG", ""))
		logs := newLogged(t, rs.URL(), nil)
		if len(logs) != 1 || !strings.Contains(logs[0].Message, "could not check") || !strings.Contains(logs[0].Message, "202") {
			t.Fatalf("logged %+v, want one warning that persistence could not be checked", logs)
		}
	})
}
