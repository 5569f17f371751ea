package sipx

import (
	"strconv"
	"testing"
	"time"
)

// TestLogGate: one line per key per interval, and a flood of keys neither grows the gate
// past its bound nor logs more than that bound per interval.
func TestLogGate(t *testing.T) {
	g := NewLogGate[string](time.Minute)
	t0 := time.Unix(1000, 0)
	if !g.Allow("a", t0) || g.Allow("a", t0.Add(59*time.Second)) || !g.Allow("a", t0.Add(time.Minute)) {
		t.Fatal("want one line per key per minute")
	}
	logged := 0
	for i := range 3 * maxLogKeys {
		if g.Allow(strconv.Itoa(i), t0.Add(time.Minute)) {
			logged++
		}
	}
	if logged >= maxLogKeys || len(g.last) > maxLogKeys {
		t.Errorf("%d lines logged, %d keys kept; want fewer than %d", logged, len(g.last), maxLogKeys)
	}
	if !g.Allow("new", t0.Add(3*time.Minute)) {
		t.Error("a new key is not logged once the old ones are stale")
	}
}
