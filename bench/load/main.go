package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the flags: every run is bounded in calls and in time.
const (
	maxCalls    = 20_000_000
	maxRate     = 1_000_000
	maxDuration = time.Hour
	maxSockets  = 256
)

type config struct {
	target        *net.UDPAddr
	domain        string
	scenario      string
	rate          float64
	duration      time.Duration
	calls         int
	sockets       int
	calleeSockets int
	local         string
	users         int
	callees       int
	presentities  int
	setupRate     float64
	seed          bool
	t1, t2        time.Duration
	timerF        time.Duration
	drain         time.Duration
	tick          time.Duration
	batch         int
	cpuProfile    string

	responder        string
	responderSockets int
	responderAuth    bool
	responderFor     time.Duration
}

var scenarios = []string{"register", "register_auth", "message", "publish", "subscribe"}

func parseFlags(args []string, errOut io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(errOut)
	target := fs.String("target", "", "the server under test, host:port (UDP)")
	fs.StringVar(&cfg.domain, "domain", "example.test", "the SIP domain of the AORs")
	fs.StringVar(&cfg.scenario, "scenario", "register", "register, register_auth, message, publish or subscribe")
	fs.Float64Var(&cfg.rate, "rate", 1000, "calls started per second (open loop)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long calls are started; -calls = rate × duration unless set")
	fs.IntVar(&cfg.calls, "calls", 0, "calls to start (0: rate × duration)")
	fs.IntVar(&cfg.sockets, "sockets", 4, "UDP sockets the calls are spread over, one goroutine each")
	fs.IntVar(&cfg.calleeSockets, "callee-sockets", 2, "message: sockets of the callees, which answer the relayed MESSAGEs")
	fs.StringVar(&cfg.local, "local", "127.0.0.1:0", "local address; with a port P, socket k binds P+k and callee socket k P+sockets+k")
	fs.IntVar(&cfg.users, "users", 20000, "users u000001.. (password pw000001..) for register, register_auth and publish")
	fs.IntVar(&cfg.callees, "callees", 1000, "message: callees c00001.. registered to the callee sockets first")
	fs.IntVar(&cfg.presentities, "presentities", 2000, "subscribe: presentities (the first users), published first")
	fs.Float64Var(&cfg.setupRate, "setup-rate", 2000, "calls/s of the setup (callee registration, presentity publication)")
	fs.BoolVar(&cfg.seed, "seed", true, "subscribe: publish each presentity once before the load")
	fs.DurationVar(&cfg.t1, "t1", 500*time.Millisecond, "RFC 3261 T1: first retransmission interval")
	fs.DurationVar(&cfg.t2, "t2", 4*time.Second, "RFC 3261 T2: the longest retransmission interval")
	fs.DurationVar(&cfg.timerF, "timer-f", 32*time.Second, "RFC 3261 Timer F (64×T1): a transaction unanswered this long fails; also the longest wait for a NOTIFY")
	fs.DurationVar(&cfg.drain, "drain", 0, "after the last call starts, how long calls may still run before they count as failed (0: timer-f + 8s)")
	fs.DurationVar(&cfg.tick, "tick", time.Millisecond, "calls due within a tick are sent in one batch")
	fs.IntVar(&cfg.batch, "batch", 64, "datagrams per recvmmsg/sendmmsg")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write the generator's CPU profile of the load to this file")
	fs.StringVar(&cfg.responder, "responder", "", "run the stateless responder on this address instead (host:port)")
	fs.IntVar(&cfg.responderSockets, "responder-sockets", 2, "responder: sockets sharing the address (SO_REUSEPORT)")
	fs.BoolVar(&cfg.responderAuth, "responder-auth", false, "responder: challenge REGISTERs without credentials (register_auth)")
	fs.DurationVar(&cfg.responderFor, "responder-for", 10*time.Minute, "responder: stop after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.responder != "" {
		return cfg, checkResponder(cfg)
	}
	if *target == "" {
		return nil, errors.New("-target is required")
	}
	addr, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		return nil, fmt.Errorf("-target: %w", err)
	}
	cfg.target = addr
	return cfg, cfg.check()
}

func checkResponder(cfg *config) error {
	if cfg.responderSockets < 1 || cfg.responderSockets > maxSockets {
		return fmt.Errorf("-responder-sockets must be 1..%d", maxSockets)
	}
	if cfg.responderFor <= 0 || cfg.responderFor > 24*time.Hour {
		return errors.New("-responder-for must be in (0, 24h]")
	}
	if cfg.batch < 1 || cfg.batch > 1024 {
		return errors.New("-batch must be 1..1024")
	}
	return nil
}

func (cfg *config) check() error {
	if !contains(scenarios, cfg.scenario) {
		return fmt.Errorf("-scenario must be one of %s", strings.Join(scenarios, ", "))
	}
	if cfg.rate <= 0 || cfg.rate > maxRate || cfg.setupRate <= 0 || cfg.setupRate > maxRate {
		return fmt.Errorf("-rate and -setup-rate must be in (0, %d]", maxRate)
	}
	if cfg.duration <= 0 || cfg.duration > maxDuration {
		return fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	}
	if cfg.calls == 0 {
		cfg.calls = int(cfg.rate * cfg.duration.Seconds())
	}
	if cfg.calls < 1 || cfg.calls > maxCalls {
		return fmt.Errorf("-calls (or rate × duration) must be 1..%d", maxCalls)
	}
	if cfg.sockets < 1 || cfg.sockets > maxSockets || cfg.calleeSockets < 1 || cfg.calleeSockets > maxSockets {
		return fmt.Errorf("-sockets and -callee-sockets must be 1..%d", maxSockets)
	}
	if cfg.users < 1 || cfg.callees < 1 || cfg.presentities < 1 || cfg.users > 999999 || cfg.callees > 99999 {
		return errors.New("-users must be 1..999999, -callees 1..99999, -presentities at least 1")
	}
	cfg.presentities = min(cfg.presentities, cfg.users)
	if cfg.t1 <= 0 || cfg.t2 < cfg.t1 || cfg.timerF < cfg.t1 || cfg.timerF > 10*time.Minute {
		return errors.New("need 0 < -t1 <= -t2 and -t1 <= -timer-f <= 10m")
	}
	if cfg.drain == 0 {
		cfg.drain = cfg.timerF + 8*time.Second
	}
	if cfg.drain < 0 || cfg.drain > 4*cfg.timerF+time.Minute {
		return errors.New("-drain must be in [0, 4×timer-f + 1m]")
	}
	if cfg.tick <= 0 || cfg.tick > time.Second {
		return errors.New("-tick must be in (0, 1s]")
	}
	if cfg.batch < 1 || cfg.batch > 1024 {
		return errors.New("-batch must be 1..1024")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "load:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.responder != "" {
		ctx, cancel := context.WithTimeout(ctx, cfg.responderFor)
		defer cancel()
		fmt.Fprintf(os.Stderr, "load: responder on %s (%d sockets) for at most %s\n", cfg.responder, cfg.responderSockets, cfg.responderFor)
		opts := respondOpts{auth: cfg.responderAuth, notify: true}
		if err := respond(ctx, cfg.responder, cfg.responderSockets, cfg.batch, opts); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		return
	}
	res, err := generate(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	fmt.Println(res.summary())
}

// result is what one run measured.
type result struct {
	cfg        *config
	st         stats
	setupName  string
	setup      stats
	setupCalls int
	cpu        time.Duration // the generator's user + system CPU during the load
}

// generate opens the sockets, runs the scenario's setup and then the load.
func generate(ctx context.Context, cfg *config, log io.Writer) (*result, error) {
	conns, callees, err := openSockets(cfg)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer closeAll(callees)
	for _, c := range callees {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newServer(c, respondOpts{}, cfg.batch).serve()
		}()
	}
	// the context's end (a signal) makes every worker stop at once: closed sockets
	stopOnDone := context.AfterFunc(ctx, func() { closeAll(conns) })
	defer stopOnDone()

	res := &result{cfg: cfg}
	if setup := setupPhase(cfg, callees); setup != nil {
		res.setupName, res.setupCalls = setup.name, setup.calls
		res.setup = runPhase(conns, setup)
		fmt.Fprintf(log, "load: setup %s: %d of %d answered 200 (%d failed)\n", setup.name, res.setup.ok, setup.calls, res.setup.failed)
	}
	ph := newPhase(cfg, cfg.scenario, cfg.rate, cfg.calls)
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	res.st = runPhase(conns, ph)
	res.cpu = cpuTime() - cpu0
	return res, ctx.Err()
}

// setupPhase returns what the scenario needs done first: message registers the callees to
// the callee sockets, subscribe publishes the presentities (-seed); nil for the others.
func setupPhase(cfg *config, callees []*net.UDPConn) *phase {
	switch {
	case cfg.scenario == "message":
		ph := newPhase(cfg, "register_callees", cfg.setupRate, cfg.callees)
		for _, c := range callees {
			ph.contact = append(ph.contact, c.LocalAddr().String())
		}
		return ph
	case cfg.scenario == "subscribe" && cfg.seed:
		return newPhase(cfg, "publish_seed", cfg.setupRate, cfg.presentities)
	}
	return nil
}

// openSockets opens the callers' sockets, connected to the target, and (message) the
// callees' sockets.
func openSockets(cfg *config) (conns, callees []*net.UDPConn, err error) {
	host, portStr, err := net.SplitHostPort(cfg.local)
	if err != nil {
		return nil, nil, fmt.Errorf("-local: %w", err)
	}
	base, err := strconv.Atoi(portStr)
	if err != nil || base < 0 || base+cfg.sockets+cfg.calleeSockets > 65535 {
		return nil, nil, fmt.Errorf("-local: bad port %q", portStr)
	}
	ip := net.ParseIP(host)
	port := func(i int) int {
		if base == 0 {
			return 0
		}
		return base + i
	}
	for k := 0; k < cfg.sockets; k++ {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: ip, Port: port(k)}, cfg.target)
		if err != nil {
			closeAll(conns)
			return nil, nil, err
		}
		setBuffers(c)
		conns = append(conns, c)
	}
	if cfg.scenario != "message" {
		return conns, nil, nil
	}
	for k := 0; k < cfg.calleeSockets; k++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port(cfg.sockets + k)})
		if err != nil {
			closeAll(conns)
			closeAll(callees)
			return nil, nil, err
		}
		setBuffers(c)
		callees = append(callees, c)
	}
	return conns, callees, nil
}

// runPhase runs ph's calls over the sockets, one worker each, and merges their counts.
func runPhase(conns []*net.UDPConn, ph *phase) stats {
	ph.run = rand.Uint32()
	base := time.Now()
	workers := make([]*worker, len(conns))
	var wg sync.WaitGroup
	for k, c := range conns {
		workers[k] = newWorker(ph, k, c, base)
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[k].run()
		}()
	}
	wg.Wait()
	var st stats
	for _, w := range workers {
		st.merge(&w.st)
	}
	return st
}

// cpuTime returns the process's user + system CPU time (getrusage).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// summary is the machine-readable last line: LOAD-SUMMARY and key=value pairs.
func (r *result) summary() string {
	st := &r.st
	elapsed := float64(st.lastDone) / 1e9
	achieved := 0.0
	if elapsed > 0 {
		achieved = float64(st.ok) / elapsed
	}
	cpuPct := 0.0
	if elapsed > 0 {
		cpuPct = r.cpu.Seconds() / elapsed * 100
	}
	var b strings.Builder
	fmt.Fprintf(&b, "LOAD-SUMMARY scenario=%s rate=%g calls=%d created=%d ok=%d failed=%d", r.cfg.scenario, r.cfg.rate, r.cfg.calls, st.created, st.ok, st.failed)
	fmt.Fprintf(&b, " timeouts=%d unexpected=%d unfinished=%d retrans=%d strays=%d", st.timeouts, st.unexpected, st.broken, st.retrans, st.strays)
	fmt.Fprintf(&b, " elapsed_s=%.3f achieved=%.0f lag_max_ms=%.1f", elapsed, achieved, float64(st.lagMax)/1e6)
	fmt.Fprintf(&b, " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f", st.calls.quantile(0.5), st.calls.quantile(0.9), st.calls.quantile(0.99), st.calls.quantile(0.999), float64(st.calls.max)/1000)
	fmt.Fprintf(&b, " tx_p50_ms=%.3f tx_p99_ms=%.3f", st.txs.quantile(0.5), st.txs.quantile(0.99))
	fmt.Fprintf(&b, " cpu_s=%.3f cpu_pct=%.1f sockets=%d send_errors=%d read_errors=%d", r.cpu.Seconds(), cpuPct, r.cfg.sockets, st.sendErrs, st.readErrs)
	if r.setupName != "" {
		fmt.Fprintf(&b, " setup=%s setup_ok=%d setup_calls=%d", r.setupName, r.setup.ok, r.setupCalls)
	}
	fmt.Fprintf(&b, " codes=%s", codes(st.codes))
	return b.String()
}

// codes formats the unexpected answers by status: 404:3,500:1 (0 = a NOTIFY not active), "-"
// when none.
func codes(m map[int]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}
