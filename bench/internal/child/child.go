// Package child starts and stops the processes the benchmark tools (bench/scale, bench/flood)
// run — simpled, redis-server, Kamailio — and finds or builds the simpled under test. It is
// its own package so that the tools share one careful way of doing it: every child is stopped
// by its own PID and nothing else, in its own process group, and gets SIGTERM from the kernel
// should the tool die first.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process a tool started.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
}

// Start starts path with args in dir ("" for the tool's own), its stdout and stderr appended
// to logPath.
func Start(name, path string, args []string, dir, logPath string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status of a child that exited (-1 when a signal ended it or it runs).
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM to the child and waits for it at most grace, then kills it. It returns
// how long the exit took and the exit code (-1 when killed by a signal).
func (p *Proc) Stop(grace time.Duration) (time.Duration, int, error) {
	start := time.Now()
	if !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), -1, fmt.Errorf("%s (pid %d) still running %s after SIGTERM: killed", p.Name, p.PID(), grace)
	}
	return time.Since(start), p.cmd.ProcessState.ExitCode(), nil
}

// FreeTCPPort and FreeUDPPort return a port free on 127.0.0.1 a moment ago.
func FreeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeUDPPort returns a UDP port free on 127.0.0.1: see FreeTCPPort.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// FindRepo returns the first directory from the working directory up that holds simpled's
// go.mod.
func FindRepo() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/simpled/simpled\n")) {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			break
		}
		d = up
	}
	return "", errors.New("simpled's repository not found from the working directory")
}

// BuildSimpled builds ./cmd/simpled of repo into dir and returns the binary's path.
func BuildSimpled(ctx context.Context, repo, dir string) (string, error) {
	out := filepath.Join(dir, "simpled")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/simpled")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/simpled in %s: %w\n%s", repo, err, b)
	}
	return out, nil
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitHTTP polls url until it answers 200, p exits or timeout passes.
func WaitHTTP(ctx context.Context, url string, p *Proc, timeout time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if res, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before %s answered 200", p.Name, url)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
