package sipgox

import (
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ShortTimers shortens every timer derived from T1, keeps Timer D at T4 (as Configure has it),
// and its restore function puts back exactly what it found.
func TestShortTimersAndRestore(t *testing.T) {
	before := saveTimers()
	restore := ShortTimers()
	if sip.T1 != ShortT1 || sip.Timer_J != 64*ShortT1 || sip.Timer_F != 64*ShortT1 || sip.Timer_K != ShortT4 {
		t.Errorf("short timers: T1 %v, J %v, F %v, K %v", sip.T1, sip.Timer_J, sip.Timer_F, sip.Timer_K)
	}
	if sip.Timer_D != ShortT4 {
		t.Errorf("Timer D = %v, want T4 %v", sip.Timer_D, ShortT4)
	}
	restore()
	if after := saveTimers(); after != before {
		t.Fatalf("restored timers %+v, want %+v", after, before)
	}
}

// Configure writes sipgo's globals once: Timer D is T4, messages are read whole, and a second
// call (another server in the same process) changes nothing.
func TestConfigureOnce(t *testing.T) {
	Configure(slog.Default())
	if sip.Timer_D != sip.T4 || sip.TransportBufferReadSize != 65535 || sip.UDPMTUSize != 1<<17 {
		t.Fatalf("after Configure: Timer D %v (T4 %v), read buffer %d, UDP MTU %d",
			sip.Timer_D, sip.T4, sip.TransportBufferReadSize, sip.UDPMTUSize)
	}
	saved := sip.Timer_D
	sip.Timer_D = time.Second
	defer func() { sip.Timer_D = saved }()
	Configure(slog.Default())
	if sip.Timer_D != time.Second {
		t.Fatal("a second Configure wrote the globals again")
	}
}
