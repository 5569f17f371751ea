// Command flood is the flood test of issue 15: it starts a server itself (simpled, or
// Kamailio with pike and ratelimit for comparison), floods it from 127.0.0.2 and 127.0.0.3
// with the garbage a scanner sends (REGISTERs with wrong passwords, REGISTERs of random AORs,
// OPTIONS, INVITEs to nobody, SUBSCRIBEs, MESSAGEs to a user whose device never answers)
// while a legitimate client on 127.0.0.1 registers with digest, sends MESSAGEs to a second
// user (whose device answers 200) and keeps a presence subscription refreshed, one request
// every 20 ms. It reports the share of legitimate requests answered correctly within 1 s
// (target: at least 95 %), the server's peak resident memory (target: under 300 MB), the
// attack rate achieved, the answers the attackers got by status code and how long the
// server took to recover after the flood (a legitimate request answered within 50 ms again;
// simpled's goroutines back near idle).
//
// It is a program, not a test, because it runs for minutes and starts processes; its
// short variant (flood_test.go, a 5 s flood at a modest rate) runs in make test. Nothing
// else imports it.
//
// Usage (from the repository; make flood runs simpled and kamailio for 60 s):
//
//	go run ./bench/flood [-target simpled,kamailio] [-duration 60s] [-rate 50000]
//	    [-attackers 4] [-bin PATH] [-store memory|redis://HOST:PORT/DB]
//	    [-kamailio PATH] [-kamailio-cfg bench/kamailio/flood.cfg] [-warmup 3s]
//	    [-recovery 30s] [-json] [-keep]
//
// -rate is packets per second over all attackers; the default, 50,000/s, is about ten times
// simpled's sustained REGISTER rate on a small machine (BENCHMARKS.md). The attackers send
// from 127.0.0.2 and 127.0.0.3 only: Linux binds IPv6 loopback ::1 alone (::1/128), so
// an IPv6 /64 of several sources is not available without adding addresses to lo, which the
// tool does not do.
//
// Everything listens on 127.0.0.1 on ports free a moment before; every loop is bounded in
// count and in time; every process started is stopped by its PID.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the flags of one run.
type options struct {
	targets               []string
	duration, warmup      time.Duration
	recovery, interval    time.Duration
	rate, attackers       int
	bin, store            string
	kamailio, kamailioCfg string
	maxRSS                int64
	json, keep            bool
	attackSources         []string
	progress              io.Writer
}

func main() {
	var o options
	var targets string
	flag.StringVar(&targets, "target", "simpled", "servers to flood, one after another: simpled, kamailio (comma separated)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long the flood lasts")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "legitimate traffic alone before the flood (the idle figures)")
	flag.DurationVar(&o.recovery, "recovery", 30*time.Second, "how long to wait for recovery after the flood, at most")
	flag.IntVar(&o.rate, "rate", 50000, "attack packets per second, over all attackers")
	flag.IntVar(&o.attackers, "attackers", 4, "attacking sockets (each its own goroutine), alternately on 127.0.0.2 and 127.0.0.3")
	flag.StringVar(&o.bin, "bin", "", "simpled binary; empty builds ./cmd/simpled of the repository")
	flag.StringVar(&o.store, "store", "memory", "simpled's store: memory or redis://HOST:PORT/DB (a Redis the caller runs)")
	flag.StringVar(&o.kamailio, "kamailio", "kamailio", "kamailio binary")
	flag.StringVar(&o.kamailioCfg, "kamailio-cfg", "", "Kamailio configuration (default bench/kamailio/flood.cfg of the repository)")
	var maxRSS int
	flag.IntVar(&maxRSS, "max-rss", 4096, "stop the flood early when the server's resident memory passes this many MB (a shared machine's safety)")
	flag.BoolVar(&o.json, "json", false, "print only the machine-readable lines")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, configuration) and print its path")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "flood: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	o.targets = strings.Split(targets, ",")
	o.maxRSS = int64(maxRSS) << 20
	o.interval = 20 * time.Millisecond
	o.attackSources = []string{"127.0.0.2", "127.0.0.3"}
	o.progress = os.Stderr
	if o.rate < 1 || o.attackers < 1 || o.attackers > 256 || o.duration <= 0 || o.duration > time.Hour {
		fmt.Fprintln(os.Stderr, "flood: -rate and -attackers (at most 256) must be positive, -duration 0 to 1h")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	dir, err := os.MkdirTemp("", "simpled-flood-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "flood: keeping", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }() // a temporary directory: what is left is the OS's to clean
	}
	var reports []*report
	failed := false
	for _, t := range o.targets {
		r, err := run(ctx, o, t, filepath.Join(dir, t))
		if err != nil {
			fmt.Fprintf(os.Stderr, "flood: %s: %v\n", t, err)
			failed = true
			continue
		}
		reports = append(reports, r)
	}
	if !o.json {
		printTable(os.Stdout, reports)
	}
	for _, r := range reports {
		b, _ := json.Marshal(r)
		fmt.Printf("FLOOD %s\n", b)
	}
	if failed {
		os.Exit(1)
	}
}

// report is one target's figures.
type report struct {
	Target string `json:"target"`
	Store  string `json:"store,omitempty"`

	FloodSeconds    float64          `json:"flood_seconds"`
	AttackRate      int              `json:"attack_rate_asked"`
	AttackSent      int64            `json:"attack_sent"`
	AttackPerSecond float64          `json:"attack_sent_per_second"`
	AttackWriteErrs int64            `json:"attack_write_errors"`
	AttackAnswers   map[string]int64 `json:"attack_answers_by_code"`
	AttackAnswered  int64            `json:"attack_answers"`
	AttackRequests  int64            `json:"attack_requests_received"` // NOTIFYs and the like sent back to the attackers

	Legit      int            `json:"legit_requests"`
	LegitOK    int            `json:"legit_correct_within_1s"`
	LegitShare float64        `json:"legit_share"` // LegitOK / Legit, 0..1
	LegitByKnd map[string]int `json:"legit_failures,omitempty"`
	LegitP50   float64        `json:"legit_p50_ms"`
	LegitP99   float64        `json:"legit_p99_ms"`
	IdleShare  float64        `json:"legit_share_before_flood"`

	IdleRSS      int64   `json:"idle_rss_bytes"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	EndRSS       int64   `json:"end_rss_bytes"`
	IdleGor      int64   `json:"idle_goroutines"`
	PeakGor      int64   `json:"peak_goroutines"`
	EndGor       int64   `json:"end_goroutines"`
	StoppedEarly string  `json:"stopped_early,omitempty"`     // why the flood ended before -duration
	RecLat       float64 `json:"recovery_latency_seconds"`    // until a legitimate request is answered within 50 ms; -1: not within -recovery
	RecGor       float64 `json:"recovery_goroutines_seconds"` // until goroutines are back near idle; -1: not within -recovery (or no /metrics)
	IPv6Note     string  `json:"ipv6"`
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// printTable prints the reports side by side, one row per figure.
func printTable(w io.Writer, rs []*report) {
	if len(rs) == 0 {
		return
	}
	mb := func(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }
	secs := func(s float64) string {
		if s < 0 {
			return "not within -recovery"
		}
		return fmt.Sprintf("%.1f s", s)
	}
	gor := func(g int64) string {
		if g <= 0 {
			return "-"
		}
		return strconv.FormatInt(g, 10)
	}
	rows := [][]string{{"figure"}}
	add := func(name string, f func(r *report) string) {
		row := []string{name}
		for _, r := range rs {
			row = append(row, f(r))
		}
		rows = append(rows, row)
	}
	for _, r := range rs {
		h := r.Target
		if r.Store != "" {
			h += " (" + r.Store + ")"
		}
		rows[0] = append(rows[0], h)
	}
	add("legitimate answered correctly < 1 s (>= 95 %)", func(r *report) string {
		return fmt.Sprintf("%.1f %% (%d/%d)", 100*r.LegitShare, r.LegitOK, r.Legit)
	})
	add("  before the flood", func(r *report) string { return fmt.Sprintf("%.1f %%", 100*r.IdleShare) })
	add("  latency p50 / p99", func(r *report) string { return fmt.Sprintf("%.1f / %.1f ms", r.LegitP50, r.LegitP99) })
	add("peak RSS (< 300 MB)", func(r *report) string { return mb(r.PeakRSS) })
	add("  idle / after recovery", func(r *report) string { return mb(r.IdleRSS) + " / " + mb(r.EndRSS) })
	add("goroutines idle / peak / end", func(r *report) string {
		return gor(r.IdleGor) + " / " + gor(r.PeakGor) + " / " + gor(r.EndGor)
	})
	add("attack sent/s (asked)", func(r *report) string {
		return fmt.Sprintf("%.0f (%d), %.1f s", r.AttackPerSecond, r.AttackRate, r.FloodSeconds)
	})
	add("attack answers by code", func(r *report) string {
		codes := make([]string, 0, len(r.AttackAnswers))
		for c := range r.AttackAnswers {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		var b strings.Builder
		for _, c := range codes {
			fmt.Fprintf(&b, "%s:%d ", c, r.AttackAnswers[c])
		}
		return fmt.Sprintf("%.1f %% answered: %s", 100*float64(r.AttackAnswered)/max(1, float64(r.AttackSent)), strings.TrimSpace(b.String()))
	})
	add("requests sent to attackers (NOTIFY...)", func(r *report) string { return strconv.FormatInt(r.AttackRequests, 10) })
	add("flood stopped early", func(r *report) string {
		if r.StoppedEarly == "" {
			return "no"
		}
		return r.StoppedEarly
	})
	add("recovery: legit answered < 50 ms", func(r *report) string { return secs(r.RecLat) })
	add("recovery: goroutines near idle", func(r *report) string {
		if r.IdleGor <= 0 {
			return "-"
		}
		return secs(r.RecGor)
	})
	add("legitimate failures", func(r *report) string {
		keys := make([]string, 0, len(r.LegitByKnd))
		for k := range r.LegitByKnd {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s:%d; ", k, r.LegitByKnd[k])
		}
		if b.Len() == 0 {
			return "none"
		}
		return strings.TrimSuffix(b.String(), "; ")
	})
	writeMarkdown(w, rows)
	fmt.Fprintln(w, "IPv6:", rs[0].IPv6Note)
}

// writeMarkdown writes rows as a Markdown table, the first row as its header, the columns
// padded to their widest cell.
func writeMarkdown(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	for i, row := range rows {
		var b strings.Builder
		for j, c := range row {
			fmt.Fprintf(&b, "| %-*s ", width[j], c)
		}
		fmt.Fprintln(w, b.String()+"|")
		if i == 0 {
			var sep strings.Builder
			for j := range row {
				sep.WriteString("|" + strings.Repeat("-", width[j]+2))
			}
			fmt.Fprintln(w, sep.String()+"|")
		}
	}
}
