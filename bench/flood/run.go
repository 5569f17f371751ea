package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/bench/internal/child"
)

// run floods one target and measures it: legitimate traffic alone for -warmup, the flood
// with the legitimate traffic going on, then up to -recovery for the target to recover.
func run(ctx context.Context, o options, name, dir string) (*report, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t, err := startTarget(ctx, o, name, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := t.stop(); err != nil {
			fmt.Fprintln(o.progress, "flood:", err)
		}
	}()
	rep := &report{Target: name, AttackRate: o.rate, RecLat: -1, RecGor: -1,
		IPv6Note: "skipped: Linux binds ::1 alone on lo (no /64 of loopback without adding addresses)"}
	if name == "simpled" {
		rep.Store = o.store
	}

	l, err := newLegit(t.sip)
	if err != nil {
		return nil, err
	}
	defer l.close()
	if err := l.setup(); err != nil {
		return nil, fmt.Errorf("legitimate devices: %w", err)
	}
	c := collect(l, o.interval)
	defer c.stop()
	s := startSampling(ctx, o, t)
	defer s.stop()

	fmt.Fprintf(o.progress, "flood: %s: legitimate traffic alone for %s\n", name, o.warmup)
	if err := sleep(ctx, o.warmup); err != nil {
		return nil, err
	}
	rep.IdleRSS = t.memory()
	if t.metrics != "" {
		rep.IdleGor = goroutines(ctx, t.metrics)
	}
	st, floodStart, floodEnd, err := attack(ctx, o, name, t, s.tooBig, rep)
	if err != nil {
		return nil, err
	}
	if err := awaitRecovery(ctx, o, name, t, c, floodEnd, rep); err != nil {
		return nil, err
	}
	rep.EndRSS = t.memory()
	if t.metrics != "" {
		rep.EndGor = goroutines(ctx, t.metrics)
	}
	s.stop()
	c.stop()

	rep.FloodSeconds = floodEnd.Sub(floodStart).Seconds()
	rep.AttackSent, rep.AttackWriteErrs, rep.AttackRequests = st.sent.Load(), st.writeErrs.Load(), st.requestsIn.Load()
	rep.AttackPerSecond = float64(rep.AttackSent) / rep.FloodSeconds
	rep.AttackAnswers = map[string]int64{}
	for code := range st.codes {
		if n := st.codes[code].Load(); n > 0 {
			rep.AttackAnswers[strconv.Itoa(code)] = n
			rep.AttackAnswered += n
		}
	}
	rep.PeakRSS = max(s.peakMem, t.peak(), rep.IdleRSS)
	rep.PeakGor = max(s.peakGor, rep.IdleGor, s.lastGor)
	tally(rep, c.results, floodStart, floodEnd)
	return rep, nil
}

// startTarget builds (unless -bin names it) and starts simpled, or starts Kamailio.
func startTarget(ctx context.Context, o options, name, dir string) (*target, error) {
	switch name {
	case "simpled":
		bin := o.bin
		if bin == "" {
			repo, err := child.FindRepo()
			if err != nil {
				return nil, err
			}
			if bin, err = child.BuildSimpled(ctx, repo, dir); err != nil {
				return nil, err
			}
		}
		return startSimpled(ctx, bin, o.store, dir)
	case "kamailio":
		cfg := o.kamailioCfg
		if cfg == "" {
			repo, err := child.FindRepo()
			if err != nil {
				return nil, err
			}
			cfg = filepath.Join(repo, "bench", "kamailio", "flood.cfg")
		}
		return startKamailio(ctx, o.kamailio, cfg, dir)
	}
	return nil, fmt.Errorf("unknown target %q (simpled, kamailio)", name)
}

// collector runs the legitimate client and gathers its results.
type collector struct {
	mu        sync.Mutex
	results   []result // under mu until stop has returned
	stopLegit chan struct{}
	legitDone chan struct{}
	collected chan struct{}
	once      sync.Once
}

func collect(l *legit, interval time.Duration) *collector {
	c := &collector{stopLegit: make(chan struct{}), legitDone: make(chan struct{}), collected: make(chan struct{})}
	go func() {
		defer close(c.collected)
		for r := range l.results {
			c.mu.Lock()
			c.results = append(c.results, r)
			c.mu.Unlock()
		}
	}()
	go func() { l.run(interval, c.stopLegit); close(c.legitDone) }()
	return c
}

// stop ends the legitimate traffic and waits for the last result; it may be called again.
func (c *collector) stop() {
	c.once.Do(func() { close(c.stopLegit) })
	<-c.legitDone
	<-c.collected
}

// sampler reads the target's memory every 250 ms and its goroutines every second; tooBig
// closes when the memory passes -max-rss. Its peaks are read after stop.
type sampler struct {
	tooBig                    chan struct{}
	mu                        sync.Mutex
	peakMem, peakGor, lastGor int64
	stopping, done            chan struct{}
	once                      sync.Once
}

func startSampling(ctx context.Context, o options, t *target) *sampler {
	s := &sampler{tooBig: make(chan struct{}), lastGor: -1, stopping: make(chan struct{}), done: make(chan struct{})}
	var tooBigOnce sync.Once
	sample := func(withGor bool) {
		m := t.memory()
		var g int64 = -1
		if withGor && t.metrics != "" {
			g = goroutines(ctx, t.metrics)
		}
		if o.maxRSS > 0 && m > o.maxRSS {
			tooBigOnce.Do(func() { close(s.tooBig) })
		}
		s.mu.Lock()
		s.peakMem = max(s.peakMem, m)
		if g >= 0 {
			s.peakGor, s.lastGor = max(s.peakGor, g), g
		}
		s.mu.Unlock()
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stopping:
				return
			case <-tick.C:
				sample(i%4 == 0)
			}
		}
	}()
	return s
}

// stop ends the sampling and waits for it; it may be called again.
func (s *sampler) stop() {
	s.once.Do(func() { close(s.stopping) })
	<-s.done
}

// attack floods t for -duration, or until ctx ends or tooBig closes (noted in
// rep.StoppedEarly), and returns the attackers' counts and when the flood began and ended.
func attack(ctx context.Context, o options, name string, t *target, tooBig <-chan struct{}, rep *report) (*attackStats, time.Time, time.Time, error) {
	fmt.Fprintf(o.progress, "flood: %s: %d attack packets/s from %s for %s\n", name, o.rate, strings.Join(o.attackSources, ", "), o.duration)
	st := &attackStats{}
	floodStart := time.Now()
	stopFlood := make(chan struct{})
	var stopOnce sync.Once
	closeFlood := func() { stopOnce.Do(func() { close(stopFlood) }) }
	floodOver := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			closeFlood()
		case <-tooBig:
			rep.StoppedEarly = fmt.Sprintf("resident memory above -max-rss %d MB after %.1f s", o.maxRSS>>20, time.Since(floodStart).Seconds())
			fmt.Fprintf(o.progress, "flood: %s: %s: flood stopped\n", name, rep.StoppedEarly)
			closeFlood()
		case <-floodOver:
		}
	}()
	if err := flood(o.attackSources, o.attackers, t.sip, o.rate, floodStart.Add(o.duration), stopFlood, st); err != nil {
		return nil, floodStart, time.Time{}, fmt.Errorf("attackers: %w", err)
	}
	floodEnd := time.Now()
	close(floodOver)
	<-watchDone
	if ctx.Err() != nil {
		return nil, floodStart, floodEnd, ctx.Err()
	}
	if t.proc.Exited() {
		return nil, floodStart, floodEnd, fmt.Errorf("%s exited during the flood; its log ends:\n%s", name, child.Tail(t.logPath, 10))
	}
	return st, floodStart, floodEnd, nil
}

// awaitRecovery waits up to -recovery for a legitimate request started after the flood to
// be answered within 50 ms (rep.RecLat) and for the goroutines to be back within 10 % (at
// least 20) of idle (rep.RecGor).
func awaitRecovery(ctx context.Context, o options, name string, t *target, c *collector, floodEnd time.Time, rep *report) error {
	fmt.Fprintf(o.progress, "flood: %s: flood over, waiting up to %s for recovery\n", name, o.recovery)
	for time.Since(floodEnd) < o.recovery {
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
		c.mu.Lock()
		if rep.RecLat < 0 {
			for _, r := range c.results {
				if r.start.After(floodEnd) && r.correct && r.rtt <= 50*time.Millisecond {
					rep.RecLat = r.start.Add(r.rtt).Sub(floodEnd).Seconds()
					break
				}
			}
		}
		c.mu.Unlock()
		if rep.RecGor < 0 && t.metrics != "" {
			if g := goroutines(ctx, t.metrics); g >= 0 && g <= rep.IdleGor+max(rep.IdleGor/10, 20) {
				rep.RecGor = time.Since(floodEnd).Seconds()
			}
		}
		if rep.RecLat >= 0 && (rep.RecGor >= 0 || t.metrics == "") {
			break
		}
	}
	return nil
}

// tally sums the legitimate results into rep: before the flood (the idle share) and during
// it (the share correct within 1 s, failures by kind and reason, latency percentiles).
func tally(rep *report, results []result, floodStart, floodEnd time.Time) {
	var idle, idleOK int
	var lat []time.Duration
	rep.LegitByKnd = map[string]int{}
	for _, r := range results {
		switch {
		case r.start.Before(floodStart):
			idle++
			if r.correct {
				idleOK++
			}
		case r.start.Before(floodEnd):
			rep.Legit++
			if r.correct {
				rep.LegitOK++
			} else {
				rep.LegitByKnd[r.kind+" "+failure(r)]++
			}
			if r.code > 0 {
				lat = append(lat, r.rtt)
			}
		}
	}
	if rep.Legit > 0 {
		rep.LegitShare = float64(rep.LegitOK) / float64(rep.Legit)
	}
	if idle > 0 {
		rep.IdleShare = float64(idleOK) / float64(idle)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		rep.LegitP50, rep.LegitP99 = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	}
}

// failure says why a legitimate request did not count as correct.
func failure(r result) string {
	switch {
	case r.code == 0:
		return "no answer"
	case r.code < 0:
		return "not sent (200 in flight)"
	case r.code >= 200 && r.code < 300:
		return "2xx after 1 s"
	}
	return strconv.Itoa(r.code)
}
