package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/simpled/simpled/bench/internal/child"
)

// findRepo returns dir, or the repository found from the working directory.
func findRepo(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	repo, err := child.FindRepo()
	if err != nil {
		return "", fmt.Errorf("%w: give -repo or -simpled", err)
	}
	return repo, nil
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
	// 1+GOGC/100 (with simpled's default GOGC of 100 up to half the in-use heap is garbage between
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
func waitRedis(ctx context.Context, rc *redis.Client, p *child.Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := rc.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("redis-server exited: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %s: %w", timeout, err)
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
	if t := child.Tail(path, 10); t != "" {
		return "; its log ends:\n" + t
	}
	return ""
}

// readCPU is the CPU time (user and system) process pid has used, from /proc/<pid>/stat
// (clock ticks of 10 ms, the value of USER_HZ on Linux).
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
