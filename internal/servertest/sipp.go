package servertest

// sipp drives the benchmarks' load scenarios (bench/sipp/*.xml) in the tests: a bounded UAC
// run (RunSipp) and a UAS answering in the background (StartSippUAS), with load.sh's port
// layout.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RunSipp runs one bounded sipp UAC in dir and returns its SIP port and the last line of its
// statistics. sipp uses four ports (load.sh's layout): -p base, -mp base+1 (and base+3, its RTP
// echo), -cp base+2. contact is the scenarios' [contact] key, "" for sipp's own address.
func RunSipp(t testing.TB, bin, dir, target, scenario, users, contact string, calls, rate int) (int, map[string]int) {
	t.Helper()
	secs := calls/rate + 1
	for attempt := 1; ; attempt++ {
		base := FreePorts(t, 4, false)
		key := contact
		if key == "" {
			key = "127.0.0.1:" + strconv.Itoa(base)
		}
		stat := filepath.Join(dir, "stat.csv")
		_ = os.Remove(stat)
		args := []string{target,
			"-sf", scenario, "-inf", users,
			"-i", "127.0.0.1", "-p", strconv.Itoa(base), "-mp", strconv.Itoa(base + 1),
			"-cp", strconv.Itoa(base + 2), "-ci", "127.0.0.1", "-t", "u1",
			"-key", "domain", "example.test", "-key", "contact", key,
			"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
			"-timeout", strconv.Itoa(secs+10) + "s", "-recv_timeout", "5000",
			"-nostdin", "-default_behaviors", "all,-bye",
			"-trace_stat", "-stf", stat, "-fd", "1", "-trace_err", "-trace_screen",
		}
		// sipp's -timeout bounds the run; the context (SIGKILL to sipp's PID) is the backstop.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		out := &SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		err := cmd.Run()
		cancel()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("sipp: %v", err)
		}
		// 254 (-2): sipp could not bind a socket, i.e. a port was taken after the probe.
		if code == 254 && attempt < 3 {
			t.Logf("sipp could not bind its ports (base %d), retrying", base)
			continue
		}
		t.Logf("sipp exit %d after %v", code, time.Since(start).Round(time.Millisecond))
		stats, perr := SippStats(stat)
		if code != 0 || perr != nil {
			// 0: every call succeeded; 1: some failed; 97/99/255: sipp's own trouble.
			screens, _ := filepath.Glob(filepath.Join(dir, "*_screen.log"))
			errs, _ := filepath.Glob(filepath.Join(dir, "*_errors.log"))
			var extra string
			for _, f := range append(screens, errs...) {
				b, _ := os.ReadFile(f)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				extra += "\n--- " + filepath.Base(f) + "\n" + string(b)
			}
			t.Fatalf("sipp exit status %d (stats %v, %v)\n%s%s", code, stats, perr, out, extra)
		}
		return base, stats
	}
}

// SippStats returns the integer columns of the last line of a sipp -trace_stat file (header
// names as keys; cumulative counters end in "(C)").
func SippStats(file string) (map[string]int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("%s: no statistics line", file)
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	stats := map[string]int{}
	for i, name := range head {
		if i >= len(last) {
			break
		}
		if v, err := strconv.Atoi(strings.TrimSpace(last[i])); err == nil {
			stats[name] = v
		}
	}
	for _, k := range []string{"TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)"} {
		if _, ok := stats[k]; !ok {
			return stats, fmt.Errorf("%s: no column %s", file, k)
		}
	}
	return stats, nil
}

// SippUAS is a sipp answering scenario running in the background.
type SippUAS struct {
	cmd  *exec.Cmd
	dir  string
	stat string
	out  *SyncBuffer
	Port int // its SIP port on its address (127.0.0.1 unless StartSippUASAt says)
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// StartSippUAS starts sipp with an answering scenario on free loopback ports (load.sh's layout,
// as RunSipp), stopping by itself after calls calls or 60 s; t.Cleanup kills it by PID.
func StartSippUAS(t testing.TB, bin, scenario string, calls int) *SippUAS {
	t.Helper()
	return StartSippUASAt(t, bin, scenario, "127.0.0.1", calls)
}

// StartSippUASAt is StartSippUAS on loopback address ip (all four ports there), with extra
// arguments for sipp (-key name value for the scenario).
func StartSippUASAt(t testing.TB, bin, scenario, ip string, calls int, extra ...string) *SippUAS {
	t.Helper()
	for attempt := 1; ; attempt++ {
		base := FreePortsAt(t, ip, 4, false)
		u := &SippUAS{dir: t.TempDir(), out: &SyncBuffer{}, Port: base, done: make(chan struct{})}
		u.stat = filepath.Join(u.dir, "stat.csv")
		args := []string{
			"-sf", scenario,
			"-i", ip, "-p", strconv.Itoa(base), "-mp", strconv.Itoa(base + 1), "-mi", ip,
			"-cp", strconv.Itoa(base + 2), "-ci", ip, "-t", "u1",
			"-m", strconv.Itoa(calls), "-timeout", "60s",
			"-nostdin", "-default_behaviors", "all,-bye",
			"-trace_stat", "-stf", u.stat, "-fd", "1", "-trace_err", "-trace_screen",
		}
		args = append(args, extra...)
		u.cmd = exec.Command(bin, args...)
		u.cmd.Dir = u.dir
		u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
		if err := u.cmd.Start(); err != nil {
			t.Fatalf("start sipp UAS: %v", err)
		}
		go func() { u.err = u.cmd.Wait(); close(u.done) }()
		t.Cleanup(func() {
			select {
			case <-u.done:
				return
			default:
			}
			_ = u.cmd.Process.Kill() // SIGKILL to this PID only
			select {
			case <-u.done:
			case <-time.After(5 * time.Second):
				t.Errorf("sipp UAS pid %d did not exit after SIGKILL", u.cmd.Process.Pid)
			}
		})
		select {
		case <-u.done:
			// 254 (-2): sipp could not bind a socket, i.e. a port was taken after the probe.
			var exit *exec.ExitError
			if errors.As(u.err, &exit) && exit.ExitCode() == 254 && attempt < 3 {
				continue
			}
			t.Fatalf("sipp UAS exited at start-up (%v):\n%s", u.err, u.out)
		case <-time.After(300 * time.Millisecond):
		}
		return u
	}
}

// Wait waits for the UAS to end by itself (its -m count reached) and returns its statistics.
func (u *SippUAS) Wait(t testing.TB, timeout time.Duration) map[string]int {
	t.Helper()
	select {
	case <-u.done:
	case <-time.After(timeout):
		stats, _ := SippStats(u.stat)
		t.Fatalf("sipp UAS still running %v after the UAC ended (stats %v)\n%s", timeout, stats, u.out)
	}
	stats, err := SippStats(u.stat)
	if u.err != nil || err != nil {
		t.Fatalf("sipp UAS: exit %v, stats %v (%v)\n%s", u.err, stats, err, u.out)
	}
	return stats
}
