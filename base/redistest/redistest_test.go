package redistest

import (
	"errors"
	"net"
	"strconv"
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

// TestCluster: three masters that share the slots, each answering for its own and redirecting
// the rest, and a URL naming all three.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t)
	t.Logf("cluster up in %v", time.Since(start))
	if len(c.Nodes()) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes()))
	}
	if want := "redis+cluster://" + strings.Join(c.Addrs(), ","); c.URL() != want || strings.Count(c.URL(), "127.0.0.1:") != 3 {
		t.Fatalf("URL() = %q, want %q", c.URL(), want)
	}
	seen := map[string]bool{}
	stored, moved := 0, 0
	for _, n := range c.Nodes() {
		if seen[n.Addr()] {
			t.Fatalf("node %s twice", n.Addr())
		}
		seen[n.Addr()] = true
		info := mustCommand(t, n, "CLUSTER INFO")
		for _, want := range []string{"cluster_state:ok", "cluster_size:3", "cluster_known_nodes:3"} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: CLUSTER INFO lacks %s:\n%s", n.Addr(), want, info)
			}
		}
		// The keys' slots, 15495 ({a}), 3300 ({b}) and 7365 ({c}), fall in the three even
		// ranges: each node stores one and redirects two.
		for _, k := range []string{"{a}", "{b}", "{c}"} {
			switch got := mustCommand(t, n, "SET "+k+" v"); {
			case got == "+OK":
				stored++
			case strings.HasPrefix(got, "-MOVED "):
				moved++
			default:
				t.Errorf("%s: SET %s = %q", n.Addr(), k, got)
			}
		}
	}
	if stored != 3 || moved != 6 {
		t.Errorf("SETs stored %d and moved %d, want 3 and 6", stored, moved)
	}
}

// TestClusterMissingCLI: without redis-cli the test is skipped, not failed.
func TestClusterMissingCLI(t *testing.T) {
	if _, err := findBinary(); err != nil {
		t.Skip("no redis-server")
	}
	bin, _ := findBinary()
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireEnv, "")
	t.Setenv(RequireToolsEnv, "")
	oldServer, oldCLI := debianPath, debianCLIPath
	debianPath, debianCLIPath = bin, "/nonexistent/redis-cli"
	defer func() { debianPath, debianCLIPath = oldServer, oldCLI }()
	skipped := false
	t.Run("start", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		StartCluster(t)
		t.Error("StartCluster returned without redis-cli")
	})
	if !skipped {
		t.Fatal("StartCluster did not skip the test")
	}
}

// TestClusterHighPort: a cluster node on a port above 55535, where the default bus port
// (port+10000) does not exist, starts: its bus has a port of its own. Before, one Start of
// WithCluster in five failed so, the kernel handing out ports up to 60999.
func TestClusterHighPort(t *testing.T) {
	bin := requireBinary(t)
	s := &Server{bin: bin, dir: t.TempDir(), cfg: config{cluster: true}}
	t.Cleanup(func() { _ = s.stop() })
	var err error
	for p := 60999; p > 55535; p -= 97 {
		l, lerr := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if lerr != nil {
			continue
		}
		_ = l.Close()
		if s.busPort, err = freePort(); err != nil {
			t.Fatal(err)
		}
		s.port = p
		if err = s.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("start on port %d: %v", s.port, err)
	}
	if info := mustCommand(t, s, "CLUSTER INFO"); !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO = %q", info)
	}
}
