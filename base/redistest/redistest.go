// Package redistest starts a real, throw-away redis-server for tests.
//
// It is its own folder because it has one clear responsibility that several packages share:
// every Redis-backed test (storage/redis, and later the registrar, presence and server
// integration tests) needs a private Redis on a free loopback port, with its data in the
// test's temporary directory, stopped when the test ends. Nothing outside tests imports it.
//
// The server is the Debian redis-server binary (found on PATH or at /usr/bin/redis-server).
// When it is missing the test is skipped with a reason, unless the environment variable
// SIMPLED_REQUIRE_REDIS=1 is set, in which case the test fails (CI sets it so Redis tests
// cannot silently stop running).
//
//	srv := redistest.Start(t)
//	store, err := redis.New(ctx, srv.URL(), redis.Options{})
//
// The server listens on 127.0.0.1 only, never saves RDB snapshots, and is stopped by its PID
// (SIGTERM, then SIGKILL after 5 s) in t.Cleanup; on Linux the kernel kills it should the test
// binary die without running its cleanups.
//
// StartCluster starts a real Redis Cluster of three masters, three such servers joined by
// `redis-cli --cluster create` (redis-cli is in Debian's redis-tools, a dependency of
// redis-server), for tests of what a one-node cluster (WithCluster) cannot show: keys on
// several nodes, redirections, a client's view of the slot map.
//
//	c := redistest.StartCluster(t)
//	store, err := redis.New(ctx, c.URL(), redis.Options{})
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing redis-server from a skip into a
// test failure.
const RequireEnv = "SIMPLED_REQUIRE_REDIS"

const (
	startTimeout = 10 * time.Second // until PING answers +PONG
	stopTimeout  = 5 * time.Second  // between SIGTERM and SIGKILL
	bindAttempts = 5                // free-port races retried
)

// Option configures Start.
type Option func(*config)

type config struct {
	persistence bool
	cluster     bool // a one-node cluster owning every slot
	clusterNode bool // a cluster node owning no slot (StartCluster assigns them)
	args        []string
}

// WithPersistence turns on the append-only file (appendfsync always), so data survives
// Restart.
func WithPersistence() Option { return func(c *config) { c.persistence = true } }

// WithCluster starts the server in Redis Cluster mode as a one-node cluster that owns all
// 16384 slots. Redis then enforces the Cluster rules (no command or script may touch keys of
// different slots), so a single process tests slot discipline. Use ClusterURL to connect.
func WithCluster() Option { return func(c *config) { c.cluster = true } }

// WithArgs appends raw redis-server arguments, e.g. "--maxmemory", "10mb".
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one running (or stopped) redis-server owned by a test.
type Server struct {
	bin     string
	dir     string
	port    int
	busPort int // the cluster bus, for cluster nodes
	cfg     config

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	logPath string
}

// Start starts a redis-server on a free port of 127.0.0.1 and waits until it answers PING.
// It is stopped in t.Cleanup. Without a redis-server binary the test is skipped (or fails
// when SIMPLED_REQUIRE_REDIS=1).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := requireBinary(t)
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	return launch(t, bin, cfg)
}

// requireBinary returns the redis-server binary, or skips (fails) the test without one.
func requireBinary(t testing.TB) string {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("redistest: %v (%s=1)", err, RequireEnv)
		}
		t.Skipf("redistest: %v; install the redis-server package to run this test", err)
	}
	return bin
}

// launch starts one server with cfg on free ports, stopped in t.Cleanup.
func launch(t testing.TB, bin string, cfg config) *Server {
	t.Helper()
	s := &Server{bin: bin, dir: t.TempDir(), cfg: cfg}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("redistest: cleanup: %v", err)
		}
	})

	var lastErr error
	for range bindAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.port = port
		if cfg.cluster || cfg.clusterNode {
			// The cluster bus port defaults to port+10000, which is past 65535 for a third of
			// the kernel's ephemeral ports: give it a free port of its own.
			if s.busPort, err = freePort(); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	t.Fatalf("redistest: start: %v", lastErr)
	return nil
}

// URL returns the server's address as redis://127.0.0.1:PORT/0.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr()) }

// ClusterURL returns redis+cluster://127.0.0.1:PORT, for a server started WithCluster.
func (s *Server) ClusterURL() string { return "redis+cluster://" + s.Addr() }

// Addr returns 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir returns the server's working directory (AOF files live there).
func (s *Server) Dir() string { return s.dir }

// Stop stops the server (SIGTERM, SIGKILL after 5 s) and leaves it stopped, for outage
// tests. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("redistest: stop: %v", err)
	}
}

// Restart stops the server if it runs and starts it again on the same port and directory.
// With WithPersistence the data survives.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
	// The old process is gone, but the kernel may briefly keep the port; retry a little.
	var err error
	for range bindAttempts {
		if err = s.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

var errAddrInUse = errors.New("address already in use")

// debianPath is where the Debian package installs redis-server (a variable for tests).
var debianPath = "/usr/bin/redis-server"

func findBinary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath, nil
	}
	return "", fmt.Errorf("redis-server not found on PATH or at %s", debianPath)
}

// freePort asks the kernel for a free loopback port. Another process may take it before
// redis-server binds it; Start retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	return port, nil
}

func (s *Server) args() []string {
	aof := "no"
	if s.cfg.persistence {
		aof = "yes"
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--save", "",
		"--appendonly", aof,
		"--appendfsync", "always",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "notice",
	}
	if s.cfg.cluster || s.cfg.clusterNode {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(s.busPort),
			"--cluster-config-file", "nodes-"+strconv.Itoa(s.port)+".conf",
			"--cluster-announce-ip", "127.0.0.1",
		)
	}
	return append(args, s.cfg.args...)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	s.logPath = filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	setParentDeath(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	if err := s.waitReady(done); err != nil {
		s.killLocked()
		log := s.logTail()
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("port %d: %w", s.port, errAddrInUse)
		}
		return fmt.Errorf("port %d: %w\n%s", s.port, err, log)
	}
	if s.cfg.cluster {
		if err := s.claimSlots(); err != nil {
			s.killLocked()
			return fmt.Errorf("cluster setup: %w\n%s", err, s.logTail())
		}
	}
	return nil
}

// waitReady polls PING until it answers +PONG (not -LOADING), the process exits, or the
// start timeout passes.
func (s *Server) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return errors.New("redis-server exited during start")
		default:
		}
		reply, err := s.command("PING")
		if err == nil && reply == "+PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG after %v (last: %q, %v)", startTimeout, reply, err) //nolint:errorlint // err may be nil: the reply tells then
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// claimSlots makes a fresh cluster node own every slot and waits for cluster_state:ok. A
// node restarted from its nodes.conf already owns them.
func (s *Server) claimSlots() error {
	info, err := s.command("CLUSTER INFO")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_slots_assigned:16384") {
		if reply, err := s.command("CLUSTER ADDSLOTSRANGE 0 16383"); err != nil || reply != "+OK" {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %q %v", reply, err) //nolint:errorlint // err may be nil: the reply tells then
		}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := s.command("CLUSTER INFO")
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster_state not ok after %v: %q %v", startTimeout, info, err) //nolint:errorlint // err may be nil: the reply tells then
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one inline command and returns the first reply line, or for a bulk reply
// its body.
func (s *Server) command(line string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	first, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	first = strings.TrimRight(first, "\r\n")
	if !strings.HasPrefix(first, "$") {
		return first, nil
	}
	n, err := strconv.Atoi(first[1:])
	if err != nil || n < 0 {
		return first, nil
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}

// stop ends the process by its PID: SIGTERM (Redis flushes its AOF and exits), then SIGKILL
// if it is still there after stopTimeout.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	err := s.cmd.Process.Signal(syscall.SIGTERM)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.killLocked()
		return fmt.Errorf("SIGTERM pid %d: %w", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.killLocked()
		return fmt.Errorf("pid %d ignored SIGTERM for %v; killed", s.cmd.Process.Pid, stopTimeout)
	}
	s.cmd, s.done = nil, nil
	return nil
}

// killLocked sends SIGKILL to the process and waits for it. s.mu is held.
func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// logTail returns the last lines of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
