package servertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Kamailio is a Kamailio started by a test beside simpled (a PBX-side element: a publisher of
// dialog state, say), from a configuration in testdata.
type Kamailio struct {
	Cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
}

// StartKamailio runs kamailio in the foreground with one worker on config, giving it
// defines (kamailio -A NAME=VALUE: a string value must be quoted inside, `"sip:..."`; "{dir}"
// in a value is its working directory), and files copied into that directory (a db_text
// database, say). It waits until Kamailio listens and stops it (SIGTERM to its
// main process, which ends its workers) when the test ends. It skips when kamailio is not
// installed (see Skip).
func StartKamailio(t testing.TB, config string, defines map[string]string, files ...string) *Kamailio {
	t.Helper()
	bin := Tool(t, "kamailio", "kamailio")
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-f", config, "-DD", "-E", "-n", "1", "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid")}
	for k, v := range defines {
		args = append(args, "-A", k+"="+strings.ReplaceAll(v, "{dir}", dir))
	}
	k := &Kamailio{Cmd: exec.Command(bin, args...), out: &SyncBuffer{}, done: make(chan struct{})}
	setParentDeath(k.Cmd)
	k.Cmd.Stdout, k.Cmd.Stderr = k.out, k.out
	if err := k.Cmd.Start(); err != nil {
		t.Fatalf("start kamailio: %v", err)
	}
	go func() { _ = k.Cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		_ = k.Cmd.Process.Signal(syscall.SIGTERM) // its main process: it ends its workers
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			_ = k.Cmd.Process.Kill()
			t.Errorf("kamailio (pid %d) did not exit on SIGTERM", k.Cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("kamailio output:\n%s", k.out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(k.out.String(), "Listening on") || !strings.Contains(k.out.String(), "init_tcp") {
		select {
		case <-k.done:
			t.Fatalf("kamailio exited at start-up:\n%s", k.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio did not start in 10 s:\n%s", k.out.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // its workers bind after the main process prints
	return k
}

// Output is what Kamailio printed so far.
func (k *Kamailio) Output() string { return k.out.String() }
