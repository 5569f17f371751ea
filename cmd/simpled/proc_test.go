package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// buildSimpled builds this command into the test's temporary directory and returns its path.
func buildSimpled(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "simpled")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// simpledProc is a simpled process a test started; Lines carries its log (stderr), a line at
// a time, until it exits (then Lines closes).
type simpledProc struct {
	Cmd   *exec.Cmd
	Lines <-chan string
}

// startSimpled runs bin with args. Its log is read as it comes, so simpled never blocks on a
// full pipe (lines the test does not take are dropped past 1,024); the process is killed by
// its PID when the test ends.
func startSimpled(t *testing.T, bin string, args ...string) *simpledProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	return &simpledProc{Cmd: cmd, Lines: lines}
}

// waitLine returns the first log line from now on that matches re, failing after 15 s or when
// the process exits first.
func (p *simpledProc) waitLine(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case line, ok := <-p.Lines:
			if !ok {
				t.Fatalf("simpled exited while waiting for %s", re)
			}
			if rx.MatchString(line) {
				return line
			}
		case <-deadline:
			t.Fatalf("no log line %s within 15 s", re)
		}
	}
}
