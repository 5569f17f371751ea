// Command simpled is a SIP SIMPLE registrar, proxy and presence server. See README.md and
// docs/cli.md for its flags; this file only turns them into a running server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"syscall"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/memlimit"
	"github.com/simpled/simpled/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, flags, err := config.FromArgs(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrUsage):
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "simpled:", err)
		return 1
	}
	if flags.Version {
		fmt.Fprintln(stdout, "simpled", version)
		return 0
	}
	if flags.Check {
		fmt.Fprint(stdout, opts.YAML())
		return 0
	}
	// GOGC stays Go's default (100): the heap grows to about twice what is live. GOGC=400,
	// the default until issue 18, spent less CPU collecting but let a server holding 100,000
	// subscriptions grow past 1 GB. The soft memory limit keeps a heap near the machine's
	// memory (or the cgroup's) from growing into the OOM killer: the collector works harder
	// there instead.
	_, envSet := os.LookupEnv("GOMEMLIMIT")
	cgroup, physical := memlimit.Detect()
	memLimit, memSource := memlimit.Choose(envSet, cgroup, physical)
	if memLimit > 0 {
		debug.SetMemoryLimit(memLimit)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Every datagram simpled relays costs a sendto, and on loopback or a busy host a
		// sendto holds its P for tens of microseconds while the kernel delivers the packet.
		// With one P per core those waits are not overlapped: under MESSAGE load the server's
		// socket overflowed at 80 % of its cores, and the UDP read loops starved. Two Ps per
		// core (at least 4) keep the cores busy; four per core, tried first, spent 9 % of the
		// CPU waking idle Ps (futex) and made PUBLISH and REGISTER steps fail that two per
		// core passed (bench/compare.sh, 2-core reference machine, 2026-11-23).
		runtime.GOMAXPROCS(max(4, 2*runtime.NumCPU()))
	}
	log, err := logging.New(logging.Options{Level: opts.LogLevel, Format: opts.LogFormat})
	if err != nil {
		fmt.Fprintln(stderr, "simpled:", err)
		return 1
	}
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP re-reads the users file. Caught from here on, so a SIGHUP during start-up does
	// not kill the process (its default action); one that arrives before the server exists
	// is served once it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv, err := server.New(ctx, opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "simpled:", err)
		return 1
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = srv.ReloadUsers() // logged by the server; the old users stay on error
			}
		}
	}()
	log.Sugar().Infow("simpled starting", "version", version, "node", srv.NodeID(), "store", opts.RedactedStore(),
		"memory_limit", debug.SetMemoryLimit(-1), "memory_limit_from", memSource, "gogc", gcPercent())
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "simpled:", err)
		return 1
	}
	return 0
}

// gcPercent is the GC percent in effect (GOGC).
func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
