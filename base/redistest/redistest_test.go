package redistest

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	tests := []struct {
		name      string
		opts      []Option
		survives  bool // does a key survive Restart?
		clustered bool
	}{
		{name: "plain", survives: false},
		{name: "persistence", opts: []Option{WithPersistence()}, survives: true},
		{name: "cluster", opts: []Option{WithCluster(), WithPersistence()}, survives: true, clustered: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.opts...)
			if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/0") {
				t.Fatalf("URL() = %q", s.URL())
			}
			if got := mustCommand(t, s, "SET k v"); got != "+OK" {
				t.Fatalf("SET = %q", got)
			}
			if tc.clustered {
				if info := mustCommand(t, s, "CLUSTER INFO"); !strings.Contains(info, "cluster_state:ok") {
					t.Fatalf("CLUSTER INFO = %q", info)
				}
			}
			addr := s.Addr()
			s.Restart(t)
			if s.Addr() != addr {
				t.Fatalf("Restart moved from %s to %s", addr, s.Addr())
			}
			got := mustCommand(t, s, "GET k")
			if survived := got == "v"; survived != tc.survives {
				t.Fatalf("after Restart GET k = %q, want survive=%v", got, tc.survives)
			}

			s.Stop(t)
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				t.Fatalf("dial %s after Stop succeeded", addr)
			}
			s.Stop(t) // idempotent
		})
	}
}

func TestParallelStarts(t *testing.T) {
	// Several servers at once must get distinct ports.
	seen := map[string]bool{}
	for range 3 {
		s := Start(t)
		if seen[s.Addr()] {
			t.Fatalf("port %s handed out twice", s.Addr())
		}
		seen[s.Addr()] = true
		if got := mustCommand(t, s, "PING"); got != "+PONG" {
			t.Fatalf("PING = %q", got)
		}
	}
}

func mustCommand(t *testing.T, s *Server, line string) string {
	t.Helper()
	got, err := s.command(line)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return got
}

// TestAddrInUse: a port taken between choosing and binding is reported as errAddrInUse, which
// Start retries with another port.
func TestAddrInUse(t *testing.T) {
	s := Start(t)
	s.Stop(t)
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if err := s.start(); !errors.Is(err, errAddrInUse) {
		t.Fatalf("start on a taken port: %v, want errAddrInUse", err)
	}
}

// TestMissingBinary: without redis-server the test is skipped, not failed.
func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireEnv, "")
	old := debianPath
	debianPath = "/nonexistent/redis-server"
	defer func() { debianPath = old }()
	skipped := false
	t.Run("start", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Start(t)
		t.Error("Start returned without redis-server")
	})
	if !skipped {
		t.Fatal("Start did not skip the test")
	}
}
