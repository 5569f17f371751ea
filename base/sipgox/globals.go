package sipgox

import (
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// configured guards sipgo's package-level settings: they are process-wide, and are written
// once, before the first transport exists (later servers in the same process, as in tests,
// share them).
var configured sync.Once

// Configure sets sipgo's process-wide settings, once per process; it is called before the
// first user agent is built.
//
// Datagrams up to the UDP maximum are read whole (TransportBufferReadSize: the transport's
// guard answers 513 for a datagram that fills the buffer), and responses are never refused for
// size (UDPMTUSize: sipgo refuses a UDP message over UDPMTUSize-200 bytes with
// ErrUDPMTUCongestion, but RFC 3261 §18.2.2 sends a response where the request came from;
// requests larger than the MTU are the proxy's to move to TCP, §18.1.1). sipgo's default
// logger goes into ours (logger).
//
// sipgo keeps every finished client transaction for Timer D (32 s), non-INVITE ones included,
// where RFC 3261 §17.1.2.2 asks Timer K = T4 (5 s): at thousands of relayed MESSAGEs a second
// that is a hundred thousand live transactions and their timers. Both get T4, as Kamailio's
// 5 s wait timer does; the cost is that an INVITE's final answer retransmitted more than 5 s
// after our ACK (six ACKs lost) is no longer matched and is dropped.
func Configure(logger *slog.Logger) {
	configured.Do(func() {
		sip.TransportBufferReadSize = 65535
		sip.UDPMTUSize = 1 << 17
		sip.Timer_D = sip.T4
		sip.SetDefaultLogger(logger)
	})
}

// timers are sipgo's timer variables, saved and restored by ShortTimers.
type timers struct {
	t1, t2, t4, a, b, d, e, f, g, h, i, j, k, l, m, x1 time.Duration
}

func saveTimers() timers {
	return timers{sip.T1, sip.T2, sip.T4, sip.Timer_A, sip.Timer_B, sip.Timer_D, sip.Timer_E,
		sip.Timer_F, sip.Timer_G, sip.Timer_H, sip.Timer_I, sip.Timer_J, sip.Timer_K, sip.Timer_L,
		sip.Timer_M, sip.Timer_1xx}
}

func (t timers) restore() {
	sip.T1, sip.T2, sip.T4 = t.t1, t.t2, t.t4
	sip.Timer_A, sip.Timer_B, sip.Timer_D, sip.Timer_E = t.a, t.b, t.d, t.e
	sip.Timer_F, sip.Timer_G, sip.Timer_H, sip.Timer_I = t.f, t.g, t.h, t.i
	sip.Timer_J, sip.Timer_K, sip.Timer_L, sip.Timer_M = t.j, t.k, t.l, t.m
	sip.Timer_1xx = t.x1
}

// Short timer values for tests: T1 = 10 ms makes Timer F, J and H (64*T1) 640 ms, so a test
// of a timeout or of a transaction that must end waits under a second instead of 32 s.
const (
	ShortT1 = 10 * time.Millisecond
	ShortT2 = 40 * time.Millisecond
	ShortT4 = 50 * time.Millisecond
)

// ShortTimers sets sipgo's SIP timers (RFC 3261 §17, Table 4) to ShortT1, ShortT2 and
// ShortT4, every timer derived from them likewise, and Timer D to T4 as Configure does
// (sip.SetTimers alone would put it back to 32 s). It returns a function that restores the
// timers it found.
//
// The timers are package variables of sipgo, read without synchronisation by every transaction
// that starts: call ShortTimers only where no transaction runs, in TestMain before m.Run or at
// the start of a test that runs no other test in parallel, and restore likewise. A retransmission
// cache takes Timer J when it is built (NewRetransCache), so build servers after ShortTimers.
func ShortTimers() (restore func()) { return SetTimers(ShortT1, ShortT2, ShortT4) }

// SetTimers sets sipgo's SIP timers from t1, t2 and t4 as ShortTimers does (Timer D kept at
// T4), under the same rule of when it may be called, and returns the function that restores
// the timers it found. Whole-server tests take longer values than ShortTimers' (a test UA must
// answer within one T1).
func SetTimers(t1, t2, t4 time.Duration) (restore func()) {
	saved := saveTimers()
	sip.SetTimers(t1, t2, t4)
	sip.Timer_D = sip.T4
	return saved.restore
}
