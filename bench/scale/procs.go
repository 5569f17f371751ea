package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is a child process the tool started; it is stopped by its PID and nothing else.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed once Wait returned
}

// startProc starts path with args, its stdout and stderr appended to logPath.
func startProc(name, path string, args []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process and waits for it at most grace, then kills it. It
// returns how long the exit took and the exit code (-1 when killed by a signal).
func (p *proc) stop(grace time.Duration) (time.Duration, int, error) {
	start := time.Now()
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), -1, fmt.Errorf("%s (pid %d) still running %s after SIGTERM: killed", p.name, p.pid(), grace)
	}
	return time.Since(start), p.cmd.ProcessState.ExitCode(), nil
}

// freeTCPPort and freeUDPPort return a port free on 127.0.0.1 a moment ago.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// findRepo returns dir, or the first directory from the working directory up that holds
// simpled's go.mod.
func findRepo(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
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
	return "", errors.New("simpled's repository not found from the working directory: give -repo or -simpled")
}

// buildSimpled builds ./cmd/simpled of repo into dir.
func buildSimpled(ctx context.Context, repo, dir string) (string, error) {
	out := filepath.Join(dir, "simpled")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/simpled")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/simpled in %s: %v\n%s", repo, err, b)
	}
	return out, nil
}

// waitReady polls url until it answers 200, p exits or timeout passes.
func waitReady(ctx context.Context, url string, p *proc, timeout time.Duration) error {
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
		if p.exited() {
			return fmt.Errorf("%s exited before %s answered 200", p.name, url)
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

// procMem is what /proc/PID/status says of a process's memory, in bytes.
type procMem struct {
	RSS  int64 `json:"rss_bytes"`
	Peak int64 `json:"rss_peak_bytes"` // VmHWM
}

func readProcMem(pid int) (procMem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procMem{}, err
	}
	var m procMem
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch name {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// goStats are a few of simpled's Go runtime metrics (its /metrics).
type goStats struct {
	HeapInuse  int64 `json:"heap_inuse_bytes"`
	HeapAlloc  int64 `json:"heap_alloc_bytes"`
	NextGC     int64 `json:"next_gc_bytes"`
	GOGC       int64 `json:"gogc_percent"`
	Goroutines int64 `json:"goroutines"`
	// LiveAtGC estimates the heap live at the last collection: the heap goal is that times
	// 1+GOGC/100 (simpled runs with GOGC 400, so in-use heap is mostly garbage between
	// collections).
	LiveAtGC int64 `json:"live_heap_at_last_gc_bytes"`
}

func readGoStats(ctx context.Context, base string) (goStats, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	res, err := client.Do(req)
	if err != nil {
		return goStats{}, err
	}
	defer res.Body.Close()
	var g goStats
	sc := bufio.NewScanner(io.LimitReader(res.Body, 32<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuse = int64(f)
		case "go_memstats_heap_alloc_bytes":
			g.HeapAlloc = int64(f)
		case "go_memstats_next_gc_bytes":
			g.NextGC = int64(f)
		case "go_gc_gogc_percent":
			g.GOGC = int64(f)
		case "go_goroutines":
			g.Goroutines = int64(f)
		}
	}
	if g.GOGC > 0 {
		g.LiveAtGC = g.NextGC * 100 / (100 + g.GOGC)
	}
	return g, sc.Err()
}

// redisMem is Redis's used_memory (INFO memory) and key count (DBSIZE).
type redisMem struct {
	UsedMemory int64 `json:"used_memory"`
	Keys       int64 `json:"keys"`
}

func readRedisMem(ctx context.Context, rc *redis.Client) (redisMem, error) {
	info, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		return redisMem{}, err
	}
	var m redisMem
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			m.UsedMemory, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if m.Keys, err = rc.DBSize(ctx).Result(); err != nil {
		return m, err
	}
	return m, nil
}

// waitRedis pings rc until it answers, p exits or timeout passes.
func waitRedis(ctx context.Context, rc *redis.Client, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := rc.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("redis-server exited: %v", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %s: %v", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// logSummary counts the lines of simpled's JSON logs by level and lists the most frequent
// warning and error messages.
type logSummary struct {
	Lines  int            `json:"lines"`
	Levels map[string]int `json:"levels"`
	Top    []logMessage   `json:"top_warnings_errors,omitempty"`
}

type logMessage struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Count int    `json:"count"`
	First string `json:"first"` // the first such line, whole
}

func summarizeLogs(paths ...string) logSummary {
	s := logSummary{Levels: map[string]int{}}
	byMsg := map[string]*logMessage{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for lines := 0; sc.Scan() && lines < 10_000_000; lines++ {
			s.Lines++
			var l struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Level == "" {
				l.Level, l.Msg = "unparsed", sc.Text()
			}
			s.Levels[l.Level]++
			if l.Level == "debug" || l.Level == "info" {
				continue
			}
			k := l.Level + "\x00" + l.Msg
			if m := byMsg[k]; m != nil {
				m.Count++
			} else {
				byMsg[k] = &logMessage{Level: l.Level, Msg: l.Msg, Count: 1, First: truncate(sc.Text(), 400)}
			}
		}
		f.Close()
	}
	for _, m := range byMsg {
		s.Top = append(s.Top, *m)
	}
	sort.Slice(s.Top, func(i, j int) bool { return s.Top[i].Count > s.Top[j].Count })
	if len(s.Top) > 8 {
		s.Top = s.Top[:8]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// logEnd returns "; its log ends:" and the last lines of a log file, "" when it is empty.
func logEnd(path string) string {
	if t := tail(path, 10); t != "" {
		return "; its log ends:\n" + t
	}
	return ""
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
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
