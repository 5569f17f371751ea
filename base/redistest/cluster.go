package redistest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster sizes and bounds.
const (
	clusterMasters = 3
	createTimeout  = 30 * time.Second // redis-cli --cluster create, start to end
	joinTimeout    = 10 * time.Second // until every node says cluster_state:ok
)

// RequireToolsEnv is the environment variable that, like RequireEnv, turns a missing
// redis-cli into a test failure (CI sets both).
const RequireToolsEnv = "SIMPLED_REQUIRE_TOOLS"

// debianCLIPath is where the Debian package redis-tools installs redis-cli (a variable for
// tests).
var debianCLIPath = "/usr/bin/redis-cli"

// Cluster is a real Redis Cluster of three masters (no replicas), each its own redis-server
// process on a free port of 127.0.0.1 with its own directory, owned by a test.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts three redis-server processes in cluster mode, joins them with
// `redis-cli --cluster create --cluster-replicas 0` (slots split in three even ranges) and
// waits until every node reports cluster_state:ok. The nodes are stopped by their PIDs in
// t.Cleanup. Without redis-server or redis-cli (Debian's redis-tools, a dependency of
// redis-server) the test is skipped, or fails when SIMPLED_REQUIRE_REDIS=1 or
// SIMPLED_REQUIRE_TOOLS=1. opts apply to every node (WithCluster is ignored: the nodes are
// always cluster nodes). Start-up takes two seconds or a little more: a master reports
// cluster_state:ok no sooner than 2 s after it started (Redis's writable delay), and
// redis-cli checks once a second whether the nodes agree.
func StartCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	bin := requireBinary(t)
	cli, err := findCLI()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" || toolsRequired() {
			t.Fatalf("redistest: %v (%s or %s is set)", err, RequireEnv, RequireToolsEnv)
		}
		t.Skipf("redistest: %v; install the redis-tools package to run this test", err)
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cfg.cluster, cfg.clusterNode = false, true
	start := time.Now()
	c := &Cluster{}
	for range clusterMasters {
		c.nodes = append(c.nodes, launch(t, bin, cfg))
	}
	if err := c.create(cli); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	if err := c.waitJoined(); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	t.Logf("redistest: cluster %s up in %v", c.URL(), time.Since(start).Round(time.Millisecond))
	return c
}

// URL returns redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3, every node a seed.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Addrs returns the nodes' 127.0.0.1:PORT addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the three servers, for tests that stop one or look at one node's keys.
func (c *Cluster) Nodes() []*Server { return c.nodes }

func toolsRequired() bool {
	v := os.Getenv(RequireToolsEnv)
	return v != "" && v != "0"
}

func findCLI() (string, error) {
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(debianCLIPath); err == nil {
		return debianCLIPath, nil
	}
	return "", fmt.Errorf("redis-cli not found on PATH or at %s", debianCLIPath)
}

// create runs redis-cli --cluster create over the nodes. redis-cli assigns the slots, sends
// CLUSTER MEET and returns once the nodes agree on the configuration.
func (c *Cluster) create(cli string) error {
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	setParentDeath(cmd)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "All 16384 slots covered") {
		return fmt.Errorf("redis-cli --cluster create did not cover every slot:\n%s", out.String())
	}
	return nil
}

// waitJoined polls CLUSTER INFO on every node until each knows all three masters, sees every
// slot assigned and says cluster_state:ok, so a client's first CLUSTER SLOTS, from whichever
// node, gets the whole map.
func (c *Cluster) waitJoined() error {
	want := []string{"cluster_state:ok", "cluster_slots_assigned:16384", fmt.Sprintf("cluster_known_nodes:%d", clusterMasters)}
	deadline := time.Now().Add(joinTimeout)
	for _, n := range c.nodes {
		for {
			info, err := n.command("CLUSTER INFO")
			if err == nil && containsAll(info, want) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s not joined after %v: %q %v", n.Addr(), joinTimeout, info, err) //nolint:errorlint // err may be nil: the reply tells then
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
