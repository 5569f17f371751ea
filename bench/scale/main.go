// Command scale is the scale measurement of issue 7: it starts its own redis-server and
// simpled (with the Redis store), registers N users, subscribes N watchers to their presence,
// restarts simpled and times how soon it serves again, and prints what that cost: requests
// per second, Redis bytes per registration and per subscription, simpled's resident memory,
// the restart time and how soon a PUBLISH after the restart reaches every watcher.
//
// It is a load tool with its own folder (bench/scale) because it is a program, not a test:
// it runs for minutes, builds and starts processes, and is never imported by the server or
// its tests. It talks raw SIP over UDP with hand-built messages (the formats of
// internal/server/bench_test.go), from a few sockets on 127.0.0.1, so the tool costs little
// CPU beside the server it measures.
//
// Usage (from the repository):
//
//	go run ./bench/scale [-regs 100000] [-subs 100000] [-rate 5000] [-window 500]
//	    [-sockets 8] [-timeout 10m] [-simpled PATH | -repo DIR] [-redis-server PATH]
//	    [-json] [-keep] [-heap-profiles DIR] [-steady-time 90s -steady-users 20000]
//
// Everything listens on 127.0.0.1, on ports that were free a moment before. Every loop is
// bounded in count and in time (-timeout overall); every process started is stopped by its
// PID, on success, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/simpled/simpled/bench/internal/child"

	"github.com/simpled/simpled/bench/internal/rawsip"
)

const domain = "example.test"

type options struct {
	simpled, repo, redisServer string
	regs, subs                 int
	rate, window, sockets      int
	timeout                    time.Duration
	json, keep                 bool
	// steadyUsers and steadyTime: the steady phase in place of the three others.
	steadyUsers int
	steadyTime  time.Duration
	heapDir     string
}

func main() {
	var o options
	flag.StringVar(&o.simpled, "simpled", "", "simpled binary to measure; empty builds ./cmd/simpled of the repository into the temporary directory")
	flag.StringVar(&o.repo, "repo", "", "simpled's repository, to build it (default: found from the working directory up)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.IntVar(&o.regs, "regs", 100000, "registrations (distinct AORs)")
	flag.IntVar(&o.subs, "subs", 100000, "subscriptions (distinct watchers, 10 per presentity)")
	flag.IntVar(&o.rate, "rate", 5000, "requests per second, at most")
	flag.IntVar(&o.window, "window", 500, "requests awaiting their answer, at most")
	flag.IntVar(&o.sockets, "sockets", 8, "UDP sockets the requests leave from (and NOTIFYs reach)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "overall time limit")
	flag.BoolVar(&o.json, "json", false, "print the report as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, binary) and print its path")
	flag.DurationVar(&o.steadyTime, "steady-time", 0, "instead of the three phases, -steady-users users re-register at -rate for this long while simpled's memory is sampled")
	flag.IntVar(&o.steadyUsers, "steady-users", 20000, "users of the steady phase (-steady-time)")
	flag.StringVar(&o.heapDir, "heap-profiles", "", "save simpled's heap profile (live objects) after each phase in this directory")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "scale: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	switch {
	case o.regs < 1 || o.regs > 9_999_999:
		fmt.Fprintln(os.Stderr, "scale: -regs must be 1 to 9999999")
		os.Exit(2)
	case o.subs < 0 || o.subs > 9_999_999:
		fmt.Fprintln(os.Stderr, "scale: -subs must be 0 to 9999999")
		os.Exit(2)
	case o.rate < 1 || o.window < 1 || o.sockets < 1 || o.sockets > 256:
		fmt.Fprintln(os.Stderr, "scale: -rate and -window must be at least 1, -sockets 1 to 256")
		os.Exit(2)
	case o.timeout <= 0:
		fmt.Fprintln(os.Stderr, "scale: -timeout must be positive")
		os.Exit(2)
	case o.steadyTime < 0 || o.steadyUsers < 1:
		fmt.Fprintln(os.Stderr, "scale: -steady-time must not be negative, -steady-users at least 1")
		os.Exit(2)
	}
	os.Exit(run(o, os.Stdout, os.Stderr))
}

// report is everything measured; sections are nil when their phase did not run.
type report struct {
	Simpled       string         `json:"simpled"`
	Redis         string         `json:"redis"`
	CPUs          int            `json:"cpus"`
	Regs          int            `json:"regs"`
	Subs          int            `json:"subs"`
	Rate          int            `json:"rate"`
	Window        int            `json:"window"`
	Sockets       int            `json:"sockets"`
	Baseline      *memPoint      `json:"baseline,omitempty"`
	Registrations *regReport     `json:"registrations,omitempty"`
	Subscriptions *subReport     `json:"subscriptions,omitempty"`
	Restart       *restartReport `json:"restart,omitempty"`
	Steady        *steadyReport  `json:"steady,omitempty"`
	Client        clientCounters `json:"client"`
	Log           *logSummary    `json:"simpled_log,omitempty"`
	TempDir       string         `json:"temp_dir,omitempty"`
	Errors        []string       `json:"errors,omitempty"`
}

// memPoint is the memory of Redis and simpled at one moment.
type memPoint struct {
	Redis   redisMem `json:"redis"`
	Simpled procMem  `json:"simpled"`
	Go      goStats  `json:"simpled_go"`
}

type regReport struct {
	phaseStats
	RedisBytesPer float64 `json:"redis_bytes_per_registration"`
	RedisKeysPer  float64 `json:"redis_keys_per_registration"`
	// LiveHeapPer is the growth of simpled's live heap (estimated at its last GC) per
	// registration: a rough figure, the last GC may be a while back.
	LiveHeapPer float64  `json:"simpled_live_heap_bytes_per_registration"`
	After       memPoint `json:"after"`
}

type subReport struct {
	phaseStats
	Presentities     int      `json:"presentities"`
	Notifies         int64    `json:"notifies"`
	NotifyRetrans    int64    `json:"notifies_retransmitted"`
	Terminated       int64    `json:"notifies_terminated"`
	WatchersNotified int      `json:"watchers_notified"`
	NotifyTailSecs   float64  `json:"all_notified_after_last_answer_seconds"`
	RedisBytesPer    float64  `json:"redis_bytes_per_subscription"`
	RedisKeysPer     float64  `json:"redis_keys_per_subscription"`
	LiveHeapPer      float64  `json:"simpled_live_heap_bytes_per_subscription"`
	After            memPoint `json:"after"`
}

type restartReport struct {
	StopSeconds   float64  `json:"stop_seconds"`
	ExitCode      int      `json:"exit_code"`
	ReadySeconds  float64  `json:"ready_seconds"`
	AfterReady    procMem  `json:"after_ready"`
	Presentity    string   `json:"presentity,omitempty"`
	Watchers      int      `json:"watchers"`
	PublishMs     float64  `json:"publish_answer_ms"`
	FirstNotifyMs float64  `json:"first_notify_ms"`
	AllNotifyMs   float64  `json:"all_notified_ms"`
	Notified      int      `json:"watchers_notified"`
	After         memPoint `json:"after"`
}

type clientCounters struct {
	Retransmits   int64 `json:"retransmitted"`
	WriteErrors   int64 `json:"send_errors"`
	StrayAnswers  int64 `json:"stray_answers"`
	OtherRequests int64 `json:"other_requests"`
}

// bench holds the processes and connections of one run.
type bench struct {
	o       options
	tmp     string
	stderr  io.Writer
	rep     *report
	redis   *child.Proc
	rc      *redis.Client
	simpled *child.Proc
	binary  string
	args    []string
	logs    []string
	http    string // http://127.0.0.1:PORT
	client  *udpClient
}

func run(o options, stdout, stderr io.Writer) int {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rep := &report{CPUs: runtime.NumCPU(), Regs: o.regs, Subs: o.subs, Rate: o.rate, Window: o.window, Sockets: o.sockets}
	tmp, err := os.MkdirTemp("", "simpled-scale-")
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	b := &bench{o: o, tmp: tmp, stderr: stderr, rep: rep}
	err = b.measure(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = fmt.Errorf("interrupted: %w", err)
		}
		rep.Errors = append(rep.Errors, err.Error())
	}
	for _, e := range b.close() {
		// One already reported says more (simpled's exit, with its log) than close does.
		if !slices.ContainsFunc(rep.Errors, func(s string) bool { return strings.HasPrefix(s, e.Error()) }) {
			rep.Errors = append(rep.Errors, e.Error())
		}
	}
	if len(b.logs) > 0 {
		s := summarizeLogs(b.logs...)
		rep.Log = &s
	}
	if o.keep {
		rep.TempDir = tmp
	} else {
		_ = os.RemoveAll(tmp)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if len(rep.Errors) > 0 {
		return 1
	}
	return 0
}

// close stops the client, simpled and redis-server, in that order, each by its PID.
func (b *bench) close() []error {
	var errs []error
	if b.client != nil {
		b.rep.Client = clientCounters{Retransmits: b.client.retransmits.Load(), WriteErrors: b.client.writeErrs.Load(),
			StrayAnswers: b.client.strays.Load(), OtherRequests: b.client.otherReqs.Load()}
		b.client.close()
	}
	if b.simpled != nil {
		if _, code, err := b.simpled.Stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		} else if code != 0 {
			errs = append(errs, fmt.Errorf("simpled (pid %d) exited with status %d", b.simpled.PID(), code))
		}
	}
	if b.rc != nil {
		_ = b.rc.Close()
	}
	if b.redis != nil {
		if _, _, err := b.redis.Stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// alive reports an error once simpled has exited.
func (b *bench) alive() error {
	if b.simpled == nil || !b.simpled.Exited() {
		return nil
	}
	return fmt.Errorf("simpled (pid %d) exited with status %d%s",
		b.simpled.PID(), b.simpled.ExitCode(), logEnd(b.logs[len(b.logs)-1]))
}

// startSimpled starts simpled (logging to a new file) and waits for its /readyz.
func (b *bench) startSimpled(ctx context.Context) (time.Duration, error) {
	logPath := filepath.Join(b.tmp, "simpled-"+strconv.Itoa(len(b.logs)+1)+".log")
	b.logs = append(b.logs, logPath)
	start := time.Now()
	p, err := child.Start("simpled", b.binary, b.args, "", logPath)
	if err != nil {
		return 0, err
	}
	b.simpled = p
	if err := child.WaitHTTP(ctx, b.http+"/readyz", p, time.Minute); err != nil {
		return 0, fmt.Errorf("%w%s", err, logEnd(logPath))
	}
	return time.Since(start), nil
}

func (b *bench) mem(ctx context.Context) (memPoint, error) {
	var m memPoint
	var err error
	if m.Redis, err = readRedisMem(ctx, b.rc); err != nil {
		return m, fmt.Errorf("redis INFO: %w", err)
	}
	if m.Simpled, err = readProcMem(b.simpled.PID()); err != nil {
		return m, err
	}
	if m.Go, err = readGoStats(ctx, b.http); err != nil {
		return m, fmt.Errorf("simpled /metrics: %w", err)
	}
	return m, nil
}

// livePer is the growth of simpled's estimated live heap per item, 0 (not reported) while
// that heap is small: Go's minimum heap goal (4 MB x GOGC/100) puts a floor of some 20 MiB
// under the estimate, and a last GC long past blurs it.
func livePer(before, after memPoint, n int) float64 {
	if after.Go.LiveAtGC < 64<<20 || n == 0 {
		return 0
	}
	return float64(after.Go.LiveAtGC-before.Go.LiveAtGC) / float64(n)
}

// settle gives simpled and Redis a moment to finish what a phase started.
func settle(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *bench) measure(ctx context.Context) error {
	o := b.o
	// Redis, on a free port, nothing saved.
	rport, err := child.FreeTCPPort()
	if err != nil {
		return err
	}
	redisLog := filepath.Join(b.tmp, "redis.log")
	if b.redis, err = child.Start("redis-server", o.redisServer, []string{"--port", strconv.Itoa(rport),
		"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", b.tmp}, "", redisLog); err != nil {
		return err
	}
	b.rc = redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(rport), DisableIdentity: true})
	if err := waitRedis(ctx, b.rc, b.redis, 10*time.Second); err != nil {
		return fmt.Errorf("%w%s", err, logEnd(redisLog))
	}
	if info, err := b.rc.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				b.rep.Redis = v
			}
		}
	}

	// simpled, built unless given.
	b.binary = o.simpled
	if b.binary == "" {
		repo, err := findRepo(o.repo)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.stderr, "scale: building simpled from %s\n", repo)
		if b.binary, err = child.BuildSimpled(ctx, repo, b.tmp); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, b.binary, "-version").Output(); err == nil {
		b.rep.Simpled = strings.TrimSpace(string(out))
	}
	sipPort, err := child.FreeUDPPort()
	if err != nil {
		return err
	}
	hport, err := child.FreeTCPPort()
	if err != nil {
		return err
	}
	b.http = "http://127.0.0.1:" + strconv.Itoa(hport)
	// Every subscription comes from 127.0.0.1: lift the per-source bounds (subscriptions,
	// request rate, requests in flight).
	cfg := filepath.Join(b.tmp, "simpled.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "# written by bench/scale: every watcher is on 127.0.0.1\n"+
		"presence:\n  max_subscriptions_per_source: %d\n  max_watchers: 1000000\n  max_watchers_per_domain: 1000000\n"+
		"limits:\n  source_rate: 1000000\n  source_burst: 1000000\n  max_inflight_per_source: 10000\n"+
		"registrar:\n  max_new_aors_per_source: 0\n"+
		"store_persistence_warning: false # the tool's own Redis persists nothing, on purpose\n",
		max(10000, o.subs+1000)), 0o644); err != nil {
		return err
	}
	b.args = []string{"-config", cfg, "-listen", "udp://127.0.0.1:" + strconv.Itoa(sipPort), "-domain", domain,
		"-store", "redis://127.0.0.1:" + strconv.Itoa(rport) + "/0", "-http", "127.0.0.1:" + strconv.Itoa(hport),
		"-log-level", "warn", "-log-format", "json"}
	pprof, err := b.pprofArgs()
	if err != nil {
		return err
	}
	b.args = append(b.args, pprof...)
	if _, err := b.startSimpled(ctx); err != nil {
		return err
	}
	if b.client, err = newUDPClient("127.0.0.1:"+strconv.Itoa(sipPort), o.sockets); err != nil {
		return err
	}
	base, err := b.mem(ctx)
	if err != nil {
		return err
	}
	b.rep.Baseline = &base
	fmt.Fprintf(b.stderr, "scale: simpled pid %d, redis-server pid %d, temporary directory %s\n", b.simpled.PID(), b.redis.PID(), b.tmp)

	return b.phases(ctx, base)
}

// phases runs the steady phase, or the three others, once simpled is up.
func (b *bench) phases(ctx context.Context, base memPoint) error {
	if b.o.steadyTime > 0 {
		return b.steady(ctx)
	}
	if err := b.registrations(ctx, base); err != nil {
		return err
	}
	if err := b.heapProfile(ctx, "registrations"); err != nil {
		return err
	}
	pres, subOK, err := b.subscriptions(ctx)
	if err != nil {
		return err
	}
	if err := b.heapProfile(ctx, "subscriptions"); err != nil {
		return err
	}
	return b.restart(ctx, pres, subOK)
}

func user(prefix byte, i int) string { return fmt.Sprintf("%c%06d", prefix, i) }

// registrations is phase 1: o.regs REGISTERs of distinct AORs, each expected to get 200.
func (b *bench) registrations(ctx context.Context, base memPoint) error {
	c := b.client
	build := func(i int) request {
		k := i % len(c.socks)
		local, u, id := c.local(k), user('r', i), "scale-r-"+strconv.Itoa(i)
		msg := "REGISTER sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + id + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + u + "@" + domain + ">;tag=" + id + "\r\nTo: <sip:" + u + "@" + domain + ">\r\n" +
			"Call-ID: " + id + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:" + u + "@" + local + ">\r\nExpires: 3600\r\n" +
			"User-Agent: simpled-bench-scale\r\nContent-Length: 0\r\n\r\n"
		return request{callID: id, sock: k, msg: []byte(msg)}
	}
	fmt.Fprintf(b.stderr, "scale: phase 1, %d REGISTERs\n", b.o.regs)
	st, err := c.runPhase(ctx, "registrations", b.o.regs, b.o.rate, b.o.window, build, nil, b.alive, b.stderr)
	r := &regReport{phaseStats: *st}
	b.rep.Registrations = r
	if err != nil {
		return err
	}
	if err := settle(ctx, time.Second); err != nil {
		return err
	}
	if r.After, err = b.mem(ctx); err != nil {
		return err
	}
	if st.OK > 0 {
		r.RedisBytesPer = float64(r.After.Redis.UsedMemory-base.Redis.UsedMemory) / float64(st.OK)
		r.RedisKeysPer = float64(r.After.Redis.Keys-base.Redis.Keys) / float64(st.OK)
		r.LiveHeapPer = livePer(base, r.After, st.OK)
	}
	if st.Failed > 0 {
		return fmt.Errorf("%d of %d REGISTERs failed (by status, 0 = no answer: %v)", st.Failed, st.Requests, st.Statuses)
	}
	return nil
}

// subscriptions is phase 2: o.subs watchers SUBSCRIBE, ten to each presentity, and every
// NOTIFY is answered 200. It returns the number of presentities and which SUBSCRIBEs got 200.
func (b *bench) subscriptions(ctx context.Context) (int, []bool, error) {
	c, n := b.client, b.o.subs
	pres := min(b.o.regs, max(1, (n+9)/10))
	w := newWatcherTable(n)
	c.watchers.Store(w)
	subOK := make([]bool, n) // each index written once, by its transaction's answer
	if n == 0 {
		return pres, subOK, nil
	}
	before, err := b.mem(ctx)
	if err != nil {
		return 0, nil, err
	}
	build := func(i int) request {
		k := i % len(c.socks)
		local, u, id := c.local(k), user('w', i), "scale-s-"+strconv.Itoa(i)
		p := user('r', (i/10)%pres)
		msg := "SUBSCRIBE sip:" + p + "@" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + id + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + u + "@" + domain + ">;tag=" + id + "\r\nTo: <sip:" + p + "@" + domain + ">\r\n" +
			"Call-ID: " + id + "\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:" + u + "@" + local + ">\r\nEvent: presence\r\n" +
			"Accept: application/pidf+xml\r\nExpires: 3600\r\nUser-Agent: simpled-bench-scale\r\nContent-Length: 0\r\n\r\n"
		return request{callID: id, sock: k, msg: []byte(msg)}
	}
	fmt.Fprintf(b.stderr, "scale: phase 2, %d SUBSCRIBEs to %d presentities\n", n, pres)
	st, err := c.runPhase(ctx, "subscriptions", n, b.o.rate, b.o.window, build, func(i int) { subOK[i] = true }, b.alive, b.stderr)
	r := &subReport{phaseStats: *st, Presentities: pres}
	b.rep.Subscriptions = r
	counts := func() {
		r.Notifies, r.NotifyRetrans, r.Terminated = c.notifies.Load(), c.notifyDups.Load(), c.terminated.Load()
		r.WatchersNotified = 0
		for i := range n {
			if w.notified[i].Load() > 0 {
				r.WatchersNotified++
			}
		}
	}
	if err != nil {
		counts()
		return 0, nil, err
	}
	// Every accepted subscription gets its first NOTIFY at once: wait for them (30 s at most).
	phaseEnd := time.Now()
	deadline := phaseEnd.Add(30 * time.Second)
	for {
		counts()
		if r.WatchersNotified >= st.OK || time.Now().After(deadline) {
			break
		}
		if err := settle(ctx, 20*time.Millisecond); err != nil {
			return 0, nil, err
		}
	}
	r.NotifyTailSecs = time.Since(phaseEnd).Seconds()
	if err := settle(ctx, time.Second); err != nil {
		return 0, nil, err
	}
	counts()
	if r.After, err = b.mem(ctx); err != nil {
		return 0, nil, err
	}
	if st.OK > 0 {
		r.RedisBytesPer = float64(r.After.Redis.UsedMemory-before.Redis.UsedMemory) / float64(st.OK)
		r.RedisKeysPer = float64(r.After.Redis.Keys-before.Redis.Keys) / float64(st.OK)
		r.LiveHeapPer = livePer(before, r.After, st.OK)
	}
	switch {
	case st.Failed > 0:
		return 0, nil, fmt.Errorf("%d of %d SUBSCRIBEs failed (by status, 0 = no answer: %v)", st.Failed, st.Requests, st.Statuses)
	case r.WatchersNotified < st.OK:
		return 0, nil, fmt.Errorf("%d of %d accepted subscriptions got no NOTIFY within 30 s", st.OK-r.WatchersNotified, st.OK)
	}
	return pres, subOK, nil
}

// restart is phase 3: simpled is stopped (SIGTERM) and started again on the same store;
// then one presentity with watchers PUBLISHes a new note, and the time until every watcher
// got a NOTIFY carrying it is measured.
func (b *bench) restart(ctx context.Context, pres int, subOK []bool) error {
	r := &restartReport{}
	b.rep.Restart = r
	fmt.Fprintf(b.stderr, "scale: phase 3, restart of simpled (pid %d)\n", b.simpled.PID())
	took, code, err := b.simpled.Stop(15 * time.Second)
	r.StopSeconds, r.ExitCode = took.Seconds(), code
	if err != nil {
		return err
	}
	b.simpled = nil
	ready, err := b.startSimpled(ctx)
	if err != nil {
		return err
	}
	r.ReadySeconds = ready.Seconds()
	if r.AfterReady, err = readProcMem(b.simpled.PID()); err != nil {
		return err
	}
	if b.o.subs == 0 {
		r.After, err = b.mem(ctx)
		return err
	}

	// The presentity in the middle, and its watchers whose SUBSCRIBE got 200.
	target := pres / 2
	var watchers []int
	for i, ok := range subOK {
		if ok && (i/10)%pres == target {
			watchers = append(watchers, i)
		}
	}
	u := user('r', target)
	r.Presentity, r.Watchers = "sip:"+u+"@"+domain, len(watchers)
	c := b.client
	w := c.watchers.Load()
	note := "scale resume " + strconv.FormatInt(time.Now().UnixNano(), 36)
	marker := []byte(note)
	w.marker.Store(&marker)
	start, err := b.publishNote(ctx, u, note, r)
	if err != nil {
		return err
	}
	deadline := start.Add(30 * time.Second)
	var first, last int64
	for {
		first, last, r.Notified = 0, 0, 0
		for _, i := range watchers {
			if at := w.resumeAt[i].Load(); at != 0 {
				r.Notified++
				if first == 0 || at < first {
					first = at
				}
				last = max(last, at)
			}
		}
		if r.Notified == len(watchers) || time.Now().After(deadline) {
			break
		}
		if err := settle(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	ms := func(at int64) float64 { return float64(time.Unix(0, at).Sub(start).Microseconds()) / 1000 }
	if first != 0 {
		r.FirstNotifyMs, r.AllNotifyMs = ms(first), ms(last)
	}
	if err := settle(ctx, time.Second); err != nil {
		return err
	}
	if r.After, err = b.mem(ctx); err != nil {
		return err
	}
	if r.Notified < len(watchers) {
		return fmt.Errorf("after the restart, %d of the %d watchers of %s got the PUBLISH's NOTIFY within 30 s",
			r.Notified, len(watchers), r.Presentity)
	}
	return nil
}

// publishNote PUBLISHes a document for user u carrying note and waits for the answer (its
// round trip in r.PublishMs). It returns when the PUBLISH was sent.
func (b *bench) publishNote(ctx context.Context, u, note string, r *restartReport) (time.Time, error) {
	c := b.client
	body := `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + u + `@` + domain + `">` +
		`<tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`
	id := "scale-p-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	local := c.local(0)
	msg := "PUBLISH sip:" + u + "@" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + id + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + u + "@" + domain + ">;tag=" + id + "\r\nTo: <sip:" + u + "@" + domain + ">\r\n" +
		"Call-ID: " + id + "\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n" +
		"Content-Type: application/pidf+xml\r\nUser-Agent: simpled-bench-scale\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	type answer struct {
		status int
		etag   bool
		rtt    time.Duration
	}
	answered := make(chan answer, 1)
	start := time.Now()
	if err := c.send(id, 0, []byte(msg), func(status int, resp []byte, rtt time.Duration) {
		answered <- answer{status, len(rawsip.HeaderValue(resp, "sip-etag", "")) > 0, rtt}
	}); err != nil {
		return time.Time{}, err
	}
	var pub answer
	select {
	case pub = <-answered: // the reaper answers 0 after giveUpAfter at most
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	r.PublishMs = float64(pub.rtt.Microseconds()) / 1000
	if pub.status != 200 {
		return time.Time{}, fmt.Errorf("PUBLISH for %s answered %d (0 = no answer)", r.Presentity, pub.status)
	}
	if !pub.etag {
		b.rep.Errors = append(b.rep.Errors, "PUBLISH 200 without SIP-ETag")
	}
	return start, nil
}

// printReport writes the plain-text report.
func printReport(w io.Writer, r *report) {
	fmt.Fprintf(w, "simpled scale (issue 7): %s, redis %s, %d CPUs; %s registrations, %s subscriptions; at most %s requests/s, window %d, %d sockets\n",
		orDash(r.Simpled), orDash(r.Redis), r.CPUs, commas(int64(r.Regs)), commas(int64(r.Subs)), commas(int64(r.Rate)), r.Window, r.Sockets)
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "baseline: redis used_memory %s, %d keys; simpled %s\n", mib(b.Redis.UsedMemory), b.Redis.Keys, simpledMem(*b))
	}
	if g := r.Registrations; g != nil {
		fmt.Fprintf(w, "registrations %s", phaseLine(g.phaseStats))
		if g.After.Simpled.RSS > 0 {
			fmt.Fprintf(w, "; redis %.0f B/registration (%.2f keys each); simpled %s%s",
				g.RedisBytesPer, g.RedisKeysPer, simpledMem(g.After), perItem(g.LiveHeapPer, "registration"))
		}
		fmt.Fprintln(w)
	}
	if s := r.Subscriptions; s != nil {
		fmt.Fprintf(w, "subscriptions to %s presentities %s; notifies %s to %s watchers (%s retransmitted, %s terminated)",
			commas(int64(s.Presentities)), phaseLine(s.phaseStats), commas(s.Notifies), commas(int64(s.WatchersNotified)),
			commas(s.NotifyRetrans), commas(s.Terminated))
		if s.After.Simpled.RSS > 0 {
			fmt.Fprintf(w, ", the last %.2f s after the last answer; redis %.0f B/subscription (%.2f keys each); simpled %s%s",
				s.NotifyTailSecs, s.RedisBytesPer, s.RedisKeysPer, simpledMem(s.After), perItem(s.LiveHeapPer, "subscription"))
		}
		fmt.Fprintln(w)
	}
	if x := r.Restart; x != nil {
		fmt.Fprintf(w, "restart: stopped in %.2f s (exit %d)", x.StopSeconds, x.ExitCode)
		if x.ReadySeconds > 0 {
			fmt.Fprintf(w, ", ready in %.3f s, RSS then %s", x.ReadySeconds, mib(x.AfterReady.RSS))
		}
		if x.Presentity != "" {
			fmt.Fprintf(w, "; PUBLISH for %s answered in %.1f ms; its new note reached %d of %d watchers, the first after %.1f ms, the last after %.1f ms",
				x.Presentity, x.PublishMs, x.Notified, x.Watchers, x.FirstNotifyMs, x.AllNotifyMs)
		}
		if x.After.Simpled.RSS > 0 {
			fmt.Fprintf(w, "; a second later simpled %s", simpledMem(x.After))
		}
		fmt.Fprintln(w)
	}
	if r.Steady != nil {
		printSteady(w, r.Steady)
	}
	if c := r.Client; c != (clientCounters{}) {
		fmt.Fprintf(w, "tool: %d requests retransmitted, %d send errors, %d stray answers, %d requests other than NOTIFY\n",
			c.Retransmits, c.WriteErrors, c.StrayAnswers, c.OtherRequests)
	}
	if l := r.Log; l != nil {
		fmt.Fprintf(w, "simpled log (-log-level warn): %d lines", l.Lines)
		for _, lv := range []string{"warn", "error", "dpanic", "panic", "fatal", "unparsed"} {
			if n := l.Levels[lv]; n > 0 {
				fmt.Fprintf(w, ", %d %s", n, lv)
			}
		}
		fmt.Fprintln(w)
		for _, m := range l.Top {
			fmt.Fprintf(w, "  %dx %s %q, first: %s\n", m.Count, m.Level, m.Msg, m.First)
		}
	}
	if r.TempDir != "" {
		fmt.Fprintf(w, "kept: %s\n", r.TempDir)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func phaseLine(p phaseStats) string {
	s := fmt.Sprintf("%s in %.1f s (%s/s), failed %d", commas(int64(p.Requests)), p.Seconds, commas(int64(p.PerSecond+0.5)), p.Failed)
	if len(p.Statuses) > 0 {
		s += fmt.Sprintf(" %v", p.Statuses)
	}
	s += fmt.Sprintf(", retransmitted %d", p.Retransmits)
	if p.LatencyMax > 0 {
		s += fmt.Sprintf("; answered in p50 %.1f ms, p99 %.1f ms, max %.0f ms", p.LatencyP50, p.LatencyP99, p.LatencyMax)
	}
	return s
}

func simpledMem(m memPoint) string {
	s := fmt.Sprintf("RSS %s (peak %s; Go heap in use %s", mib(m.Simpled.RSS), mib(m.Simpled.Peak), mib(m.Go.HeapInuse))
	if m.Go.LiveAtGC > 0 {
		s += fmt.Sprintf(", live at the last GC about %s", mib(m.Go.LiveAtGC))
	}
	return s + fmt.Sprintf("; %s goroutines)", commas(m.Go.Goroutines))
}

func perItem(live float64, what string) string {
	if live == 0 {
		return ""
	}
	return fmt.Sprintf(", live heap about %.0f B/%s", live, what)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// commas writes n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
