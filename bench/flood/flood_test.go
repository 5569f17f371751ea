package main

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
)

// hasConfigKey reports whether simpled's configuration has the YAML key path (dotted), as
// its Options struct declares it.
func hasConfigKey(path string) bool {
	t := reflect.TypeOf(config.Options{})
next:
	for _, name := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
				t = f.Type
				continue next
			}
		}
		return false
	}
	return true
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestFlood is make flood in short: a 5 s flood of 5,000 packets/s from 127.0.0.2 and
// 127.0.0.3 against a simpled built from this repository, while the legitimate client on
// 127.0.0.1 registers, messages and subscribes every 20 ms. It asserts what the limits of
// issue 15 guarantee: at least 95 % of the legitimate requests answered correctly within
// 1 s, and simpled's resident memory growing by less than 150 MB (today's code, without
// per-source limits, grows by about 400 MB in these 5 s: mostly the MESSAGEs held for the
// device that never answers and their transactions).
//
// It runs without -race (make unit's last line): it builds and starts simpled as a
// process, whose speed the race detector would not change, and the attackers in this
// process must keep their pace. Until the per-source rate limit exists (limits.source_rate
// in internal/config) it is skipped; FLOOD_TEST=1 runs it anyway.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the flood test starts simpled and floods it for 5 s")
	}
	if raceEnabled {
		t.Skip("the flood test runs without -race (make unit runs it on its own line)")
	}
	if !hasConfigKey("limits.source_rate") && os.Getenv("FLOOD_TEST") != "1" {
		t.Skip("limits.source_rate is not in internal/config yet: the flood test asserts what the per-source limits of issue 15 guarantee (FLOOD_TEST=1 runs it anyway, and it fails)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := options{
		duration:      5 * time.Second,
		warmup:        time.Second,
		recovery:      3 * time.Second,
		interval:      20 * time.Millisecond,
		rate:          5000,
		attackers:     2,
		store:         "memory",
		attackSources: []string{"127.0.0.2", "127.0.0.3"},
		progress:      logWriter{t},
	}
	r, err := run(ctx, o, "simpled", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printTable(&b, []*report{r})
	t.Log("\n" + b.String())
	if r.Legit < 100 {
		t.Fatalf("only %d legitimate requests during the flood: the client could not keep its pace", r.Legit)
	}
	if r.LegitShare < 0.95 {
		t.Errorf("legitimate requests answered correctly within 1 s: %.1f %% (%d/%d), want at least 95 %%; failures: %v",
			100*r.LegitShare, r.LegitOK, r.Legit, r.LegitByKnd)
	}
	if growth := r.PeakRSS - r.IdleRSS; growth > 150<<20 {
		t.Errorf("simpled's resident memory grew by %d MB during the flood (idle %d MB, peak %d MB), want under 150 MB",
			growth>>20, r.IdleRSS>>20, r.PeakRSS>>20)
	}
}
