//go:build linux && !race

// The race detector caps a process at 8128 goroutines, and every connection is one: this file
// runs without -race (make unit runs it separately).

package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// Ten thousand idle TCP connections, and five hundred more: the listener keeps exactly
// transport.max_connections open and closes the rest at once, memory stays bounded (what each
// costs is logged), UDP keeps serving, and everything is released when the peers leave.
func TestIdleConnectionsBounded(t *testing.T) {
	const limit, extra = 10000, 500
	srv := servertest.Start(t, servertest.LoadGenerator(func(o *config.Options) { // every client is on 127.0.0.1
		o.Transport.MaxConnections = limit
		o.Transport.IdleTimeout = 10 * time.Minute
	}))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	child := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$", "-test.count=1")
	child.Env = append(os.Environ(), "IDLE_HELPER_ADDR="+srv.Listener("tcp"), "IDLE_HELPER_N="+strconv.Itoa(limit+extra),
		"IDLE_HELPER_REFUSED="+strconv.Itoa(extra))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "idle:") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	var open, refused int
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("helper process ended without a report")
		}
		if _, err := fmt.Sscanf(line, "idle: open %d refused %d", &open, &refused); err != nil {
			t.Fatalf("helper report %q: %v", line, err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("helper process did not report within 2 minutes")
	}
	if open != limit || refused != extra {
		t.Fatalf("%d connections open and %d refused, want %d and %d", open, refused, limit, extra)
	}
	if got := servertest.MetricValue(t, srv, `simpled_connections{transport="tcp"}`); got != limit {
		t.Fatalf("simpled_connections{tcp} = %v, want %d", got, limit)
	}
	if got := servertest.MetricValue(t, srv, `simpled_connections_rejected_total{reason="limit",transport="tcp"}`); got != extra {
		t.Fatalf("rejected for the limit: %v, want %d", got, extra)
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	perConn := (int64(during.HeapAlloc) - int64(before.HeapAlloc)) / limit
	stacks := (int64(during.StackInuse) - int64(before.StackInuse)) / limit
	t.Logf("per idle connection: %d B heap, %d B goroutine stack, %d goroutines for %d connections",
		perConn, stacks, runtime.NumGoroutine()-goroutines, limit)
	// sipgo's 64 KiB read buffer and a few KiB of ours: bounded, whatever the peers do.
	if perConn > 96<<10 {
		t.Fatalf("%d B of heap per idle connection, want at most 96 KiB", perConn)
	}

	// The full TCP listener does not stop the rest of the server.
	servertest.NewUA(t, srv, "udp", "still-served")

	if err := stdin.Close(); err != nil { // the helper closes every connection
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for servertest.MetricValue(t, srv, `simpled_connections{transport="tcp"}`) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v connections still open 30 s after the peers left", servertest.MetricValue(t, srv, `simpled_connections{transport="tcp"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	servertest.NewUA(t, srv, "tcp", "after-the-flood")
	for time.Now().Before(deadline) && runtime.NumGoroutine() > goroutines+50 {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+50 {
		t.Fatalf("%d goroutines after the connections closed, %d before", n, goroutines)
	}
}

// TestIdleClientsHelper is TestIdleConnectionsBounded's peer, run in its own process (its file
// descriptors do not count against the server's): it opens IDLE_HELPER_N connections, reports
// how many the server kept open, and holds them until its stdin closes.
func TestIdleClientsHelper(t *testing.T) {
	addr := os.Getenv("IDLE_HELPER_ADDR")
	if addr == "" {
		t.Skip("helper process of TestIdleConnectionsBounded")
	}
	n, _ := strconv.Atoi(os.Getenv("IDLE_HELPER_N"))
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// The server closes the ones beyond its limit as soon as it accepts them; on a loaded
	// machine the last may still wait in the accept backlog, so count again (a refused
	// connection stays refused) until as many as expected are, for 30 s at most.
	expect, _ := strconv.Atoi(os.Getenv("IDLE_HELPER_REFUSED"))
	closed := make([]bool, len(conns))
	refused := 0
	buf := make([]byte, 1)
	for deadline := time.Now().Add(30 * time.Second); refused < expect && time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		for i, c := range conns {
			if closed[i] {
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(buf); errors.Is(err, io.EOF) || (err != nil && !isTimeout(err)) {
				closed[i] = true
				refused++
			}
		}
	}
	fmt.Printf("idle: open %d refused %d\n", len(conns)-refused, refused)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
