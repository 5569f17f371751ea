package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// steadyReport is the steady phase (-steady-time): users re-registering at a fixed rate, and
// simpled's memory sampled every few seconds while they do.
type steadyReport struct {
	phaseStats
	Users   int        `json:"users"`
	Samples []memPoint `json:"samples"`
	// MaxRSS is the highest RSS sampled; Last the last sample, taken as the phase ends.
	MaxRSS int64    `json:"max_rss_bytes"`
	Last   memPoint `json:"last"`
	// CPUPerRequest is simpled's CPU time (user and system) per REGISTER sent, in µs.
	CPUPerRequest float64 `json:"simpled_cpu_us_per_request"`
}

// steady is the steady phase: o.steadyUsers users REGISTER again and again (same Call-ID,
// rising CSeq, a new branch each time, as a phone refreshing its registration would), at
// o.rate requests/s for o.steadyTime. Every 5 s simpled's memory is sampled.
func (b *bench) steady(ctx context.Context) error {
	c, users := b.client, b.o.steadyUsers
	n := int(int64(b.o.rate) * int64(b.o.steadyTime) / int64(time.Second))
	build := func(i int) request {
		k, u := i%len(c.socks), i%users
		local, name, id := c.local(k), user('r', u), "scale-r-"+strconv.Itoa(u)
		cseq, branch := strconv.Itoa(i/users+1), "z9hG4bK-"+strconv.Itoa(i)
		msg := "REGISTER sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=" + branch + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + name + "@" + domain + ">;tag=" + id + "\r\nTo: <sip:" + name + "@" + domain + ">\r\n" +
			"Call-ID: " + id + "\r\nCSeq: " + cseq + " REGISTER\r\nContact: <sip:" + name + "@" + local + ">\r\nExpires: 3600\r\n" +
			"User-Agent: simpled-bench-scale\r\nContent-Length: 0\r\n\r\n"
		return request{callID: id, sock: k, msg: []byte(msg)}
	}
	r := &steadyReport{Users: users}
	b.rep.Steady = r
	cpu0, err := readCPU(b.simpled.PID())
	if err != nil {
		return err
	}
	var mu sync.Mutex
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if m, err := b.mem(sctx); err == nil {
				mu.Lock()
				r.Samples = append(r.Samples, m)
				r.MaxRSS = max(r.MaxRSS, m.Simpled.RSS)
				mu.Unlock()
			}
		}
	})
	fmt.Fprintf(b.stderr, "scale: steady, %d REGISTERs of %d users in %s\n", n, users, b.o.steadyTime)
	st, err := c.runPhase(ctx, "steady", n, b.o.rate, b.o.window, build, nil, b.alive, b.stderr)
	stop()
	wg.Wait()
	r.phaseStats = *st
	if err != nil {
		return err
	}
	cpu1, err := readCPU(b.simpled.PID())
	if err != nil {
		return err
	}
	r.CPUPerRequest = float64((cpu1 - cpu0).Microseconds()) / float64(n)
	if r.Last, err = b.mem(ctx); err != nil {
		return err
	}
	r.MaxRSS = max(r.MaxRSS, r.Last.Simpled.RSS)
	if err := b.heapProfile(ctx, "steady"); err != nil {
		return err
	}
	if st.Failed > 0 {
		return fmt.Errorf("%d of %d REGISTERs failed (by status, 0 = no answer: %v)", st.Failed, st.Requests, st.Statuses)
	}
	return nil
}

func printSteady(w io.Writer, s *steadyReport) {
	fmt.Fprintf(w, "steady: %s users re-registering %s", commas(int64(s.Users)), phaseLine(s.phaseStats))
	fmt.Fprintf(w, "; simpled CPU %.0f µs per REGISTER, RSS at most %s, at the end %s\n", s.CPUPerRequest, mib(s.MaxRSS), simpledMem(s.Last))
	for i, m := range s.Samples {
		fmt.Fprintf(w, "  %3d s: %s\n", 5*(i+1), simpledMem(m))
	}
}

// adminToken is the bearer token of the profiler (-heap-profiles): simpled serves pprof only
// with one.
const adminToken = "bench-scale-profiler-token"

// pprofArgs writes the token file and returns the flags that turn simpled's profiler on, or
// nothing when no profiles are asked for.
func (b *bench) pprofArgs() ([]string, error) {
	if b.o.heapDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(b.o.heapDir, 0o755); err != nil {
		return nil, err
	}
	tok := filepath.Join(b.tmp, "admin.token")
	if err := os.WriteFile(tok, []byte(adminToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []string{"-pprof", "-admin-token-file", tok}, nil
}

// heapProfile saves simpled's heap profile (taken after a collection, so its in-use figures
// are what is live) as heap-<name>.pb.gz in -heap-profiles, when that is set.
func (b *bench) heapProfile(ctx context.Context, name string) error {
	if b.o.heapDir == "" {
		return nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.http+"/debug/pprof/heap?gc=1", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", res.Status)
	}
	f, err := os.Create(filepath.Join(b.o.heapDir, "heap-"+name+".pb.gz"))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(res.Body, 256<<20)); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
