package servertest

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipgox"

	"go.uber.org/goleak"
)

// Test timers: RFC 3261's T1 500 ms, T2 4 s, T4 5 s make a transaction that is never answered
// last Timer F = 64·T1 = 32 s, and keep finished ones for Timer J/K. Shortened by 2.5 (T1
// 200 ms: Timer F 12.8 s), a test that waits for a timeout (a watcher that never answers a
// NOTIFY) is faster, while a retransmission still comes later than the 3 s a Wire waits only
// when nothing answers, as before: every UA of the tests answers within one T1.
const (
	testT1 = 200 * time.Millisecond
	testT2 = 1600 * time.Millisecond
	testT4 = 2 * time.Second
)

// ShortTimers sets sipgo's process-wide SIP timers to the test values (see testT1). Call it
// before any server starts: sipgo reads the timers when a transaction starts, and server.New
// derives the retransmission cache's lifetime from Timer J.
func ShortTimers() { sipgox.SetTimers(testT1, testT2, testT4) }

// LeakOptions are goleak's settings for a test binary of simpled:
//   - an idle goroutine of a gopool.Pool (the server's request workers, the presence
//     notifier's senders) is no leak: it waits for the pool's next job and ends by itself
//     10 s after its last one, a wait Shutdown does not shorten (a pooled goroutine still
//     running a job has that job on top of its stack, and is counted);
//   - a client transaction simpled started (a relayed request, a NOTIFY) lives until its
//     final response or Timer F, also after Shutdown, and so does the goroutine watching it:
//     the check retries for up to about 20 s, past Timer F with the test timers, before it
//     reports what is still running;
//   - sipgo reads each UDP connection it dials for a client (a sipgo UA of a test sending
//     from an unbound socket) until the connection closes, and UA.Close does not close the
//     ones it dialled (sipgo v1.7.2, transport_udp.go createConnection): such a reader is
//     sipgo's, not simpled's. simpled's own UDP listeners are read by
//     readListenerConnection called from Serve, which the check still counts.
//
// Everything else simpled starts — listeners, connection readers, sweepers, the Redis
// client's — must have ended when Shutdown returned.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/simpled/simpled/base/gopool.(*Pool).work"),
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportUDP).readUDPConnection"),
	}
}

// leakWait bounds how long Main waits for goroutines on their way out (see LeakOptions).
const leakWait = 20 * time.Second

// Main is the TestMain of a package with integration tests: it shortens the SIP timers
// (ShortTimers), runs the tests and then, when they passed, fails the binary if goroutines
// the tests started are still running after leakWait (goleak with LeakOptions).
//
//	func TestMain(m *testing.M) { servertest.Main(m) }
//
// ignore adds goleak options to LeakOptions for what one package knows to linger, each with
// its reason beside it.
func Main(m *testing.M, ignore ...goleak.Option) {
	// sipgo's process-wide settings are written once, by the first server built; a test that
	// sends with a sipgo client before any server exists would race with that write. They are
	// written here first, before any test runs (the logger stays that of the first call).
	sipgox.Configure(slog.New(slog.DiscardHandler))
	ShortTimers()
	code := m.Run()
	if code == 0 {
		if err := findLeaks(ignore); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines still running %v after the tests passed: %v\n", leakWait, err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks asks goleak (which retries for about a second) until it finds nothing or
// leakWait has passed.
func findLeaks(ignore []goleak.Option) error {
	deadline := time.Now().Add(leakWait)
	for {
		err := goleak.Find(append(LeakOptions(), ignore...)...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
