package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// statusKB returns the fields of /proc/PID/status named in names, in bytes.
func statusKB(pid int, names ...string) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range names {
			if name == want {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m[name] = kb << 10
				}
			}
		}
	}
	return m, nil
}

// treePSS returns the proportional set size of pid and all its descendants, in bytes: the
// memory of a multi-process server (Kamailio's children share its shm) counted once.
func treePSS(pid int) int64 {
	var total int64
	seen := map[int]bool{}
	var walk func(p int)
	walk = func(p int) {
		if seen[p] || len(seen) > 1024 {
			return
		}
		seen[p] = true
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/smaps_rollup"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "Pss:"); ok {
					if f := strings.Fields(v); len(f) > 0 {
						kb, _ := strconv.ParseInt(f[0], 10, 64)
						total += kb << 10
					}
				}
			}
		}
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(p) + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/task/" + t.Name() + "/children")
			if err != nil {
				continue
			}
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					walk(n)
				}
			}
		}
	}
	walk(pid)
	return total
}

// goroutines reads go_goroutines from simpled's /metrics; -1 when it cannot.
func goroutines(ctx context.Context, base string) int64 {
	client := &http.Client{Timeout: 2 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	res, err := client.Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(res.Body, 32<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return -1
}
