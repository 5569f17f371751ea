#!/bin/bash
# bench.sh — `make bench` and `make bench-quick`: the Go benchmarks of the core packages, then
# every SIP load of bench/load.sh (register, register_auth, message, publish,
# subscribe) against simpled with the memory store, simpled with Redis and Kamailio
# (run-kamailio.sh VARIANT=bigbuf, 4 children; VARIANT=auth for register_auth), each scenario
# interleaved across the three (compare.sh), and one table at the end: sustained calls/s,
# p50/p99 latency at half that rate, server CPU per 1,000 calls and simpled's ratios to Kamailio.
#
# usage: bench/bench.sh            full: rate search, 2 rounds, half-rate latency step (~2 h)
#        MODE=quick bench/bench.sh fixed rates, 1 round, 5 s steps (< 5 min)
#
# Environment (defaults in brackets):
#   MODE [full]             full | quick
#   SCENARIOS ["register register_auth message publish subscribe"]
#   TARGETS ["memory redis kamailio"]
#   ROUNDS [2; quick 1]     rounds per scenario (compare.sh)
#   GO_BENCH [1]            0 skips the Go benchmarks
#   GO_BENCHTIME [1s; quick 100ms]
#   DRIVER [go]             the load driver: go (bench/load, built once here) or sipp
#   OUTDIR [$TMPDIR/simpled-bench/bench-<mode>-<date>]
#   everything else (STEP_SECS, RATES_*, KAM_*, SIMPLED_ARGS ...) is passed to compare.sh
#
# Needs sipp, kamailio (+ presence and sqlite modules), sqlite3, redis-server, curl, ss: as root
# they are installed with apt-get when missing (make bench-deps).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MODE=${MODE:-full}
SCENARIOS=${SCENARIOS:-"register register_auth message publish subscribe"}
TARGETS=${TARGETS:-"memory redis kamailio"}
GO_BENCH=${GO_BENCH:-1}
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/simpled-bench/bench-$MODE-$(date +%Y%m%d-%H%M%S)}
export TARGETS

case $MODE in
  full)
    export ROUNDS=${ROUNDS:-2}
    GO_BENCHTIME=${GO_BENCHTIME:-1s}
    GO_SKIP='^$'
    ;;
  quick)
    # One step per target at a fixed rate every server sustains on the reference machine:
    # the comparison is then latency and CPU per 1,000 calls at equal load.
    export ROUNDS=${ROUNDS:-1} HALF=0 MAX_STEPS=1 STEP_SECS=${STEP_SECS:-5} PAUSE_SECS=${PAUSE_SECS:-1}
    export RATES_register=${RATES_register:-5000} RATES_register_auth=${RATES_register_auth:-2000}
    export RATES_message=${RATES_message:-4000} RATES_publish=${RATES_publish:-1500}
    export RATES_subscribe=${RATES_subscribe:-1000}
    GO_BENCHTIME=${GO_BENCHTIME:-100ms}
    # the whole-server benchmarks set up thousands of subscriptions: full mode only
    GO_SKIP='BenchmarkNotifyFanout|BenchmarkRegisterStream'
    ;;
  *) echo "MODE must be full or quick" >&2; exit 2 ;;
esac

mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/bench.log
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

# ---------------------------------------------------------------- tools
"$HERE/deps.sh" || exit 1

# ---------------------------------------------------------------- Go benchmarks
start=$(date +%s)
if [ "$GO_BENCH" = 1 ]; then
  log "Go benchmarks (-benchtime $GO_BENCHTIME) -> $OUTDIR/go-bench.txt"
  (cd "$ROOT" && go test -run '^$' -bench . -skip "$GO_SKIP" -benchmem -benchtime "$GO_BENCHTIME" -count 1 \
      ./registrar/... ./proxy/... ./base/sipgox/... ./presence/... ./pidf/... ./cpim/... ./storage/... ./auth/... \
      ./base/transport/... ./internal/server/...) > "$OUTDIR/go-bench.txt" 2>&1
  rc=$?
  grep -E '^(Benchmark|ok|FAIL|---)' "$OUTDIR/go-bench.txt" | tee -a "$LOG" >&2
  [ $rc = 0 ] || log "WARNING: the Go benchmarks failed (rc=$rc), see $OUTDIR/go-bench.txt"
fi

# ---------------------------------------------------------------- SIP loads
# compare.sh builds simpled (and the Go driver) once per scenario unless given binaries:
# build them once here.
if [ -z "${SIMPLED_BIN:-}" ]; then
  (cd "$ROOT" && go build -o "$OUTDIR/simpled" ./cmd/simpled) || { log "go build failed"; exit 1; }
  export SIMPLED_BIN=$OUTDIR/simpled
fi
export DRIVER=${DRIVER:-go}
if [ "$DRIVER" = go ] && [ -z "${LOAD_BIN:-}" ]; then
  (cd "$ROOT" && go build -o "$OUTDIR/load" ./bench/load) || { log "go build ./bench/load failed"; exit 1; }
  export LOAD_BIN=$OUTDIR/load
fi
for scen in $SCENARIOS; do
  log "scenario $scen ($MODE): $TARGETS, $ROUNDS round(s)"
  SCENARIO=$scen OUTDIR=$OUTDIR/$scen "$HERE/compare.sh" > "$OUTDIR/$scen.out" 2>&1 ||
    log "compare.sh $scen failed: $(tail -2 "$OUTDIR/$scen.out")"
done

# ---------------------------------------------------------------- one table
median() {
  grep -E '^[0-9]+(\.[0-9]+)?$' | sort -n | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit}
    if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b>0) printf "%.2f", a/b; else printf "-" }'; }
# col scenario target column -> median over rounds of that results.tsv column
col() { awk -F'\t' -v t="$2" -v c="$3" 'NR>1 && $2==t {print $c}' "$OUTDIR/$1/results.tsv" 2>/dev/null | median; }

TABLE=$OUTDIR/table.txt
{
  echo "# make bench ($MODE) $(date -Is), $(cd "$ROOT" && git describe --always --dirty 2>/dev/null)"
  head -4 "$OUTDIR/$(set -- $SCENARIOS; echo "$1")/header.txt" 2>/dev/null | sed -n '2,4p'
  if [ "$MODE" = quick ]; then
    echo "# fixed rates (calls/s): register $RATES_register, register_auth $RATES_register_auth, message $RATES_message, publish $RATES_publish, subscribe $RATES_subscribe; ${STEP_SECS} s steps"
    echo "# calls/s = achieved at that rate (0 = the step failed: failures or retransmissions); latency and CPU at that rate"
  else
    echo "# calls/s = best sustained rate (median of $ROUNDS rounds; load.sh: < 0.1 % failed, <= 0.1 % retransmissions)"
    echo "# p50/p99 = the driver's ($DRIVER) call latency and cpu = server CPU ms per 1,000 calls, at half that rate"
  fi
  echo "# driver: $DRIVER (go: bench/load, whole-call latency; sipp: rtd1, 4 ms quanta)"
  echo "# Kamailio: VARIANT=bigbuf (auth for register_auth), 4 children, all state in shared memory"
  {
    hdr="scenario"
    for t in $TARGETS; do hdr="$hdr\t$t"; done
    for t in $TARGETS; do [ "$t" = kamailio ] || hdr="$hdr\t$t/kam"; done
    for t in $TARGETS; do hdr="$hdr\t${t}_p50/p99"; done
    for t in $TARGETS; do hdr="$hdr\t${t}_cpu"; done
    echo -e "$hdr"
    for scen in $SCENARIOS; do
      row="$scen"
      k=$(col "$scen" kamailio 3)
      if [ "$MODE" = quick ]; then k=$(col "$scen" kamailio 5); fi
      for t in $TARGETS; do
        if [ "$MODE" = quick ]; then v=$(col "$scen" "$t" 5); [ "$(col "$scen" "$t" 3)" = 0 ] && v=0; else v=$(col "$scen" "$t" 3); fi
        row="$row\t$v"
      done
      for t in $TARGETS; do
        [ "$t" = kamailio ] && continue
        if [ "$MODE" = quick ]; then
          # equal load: the ratio that matters is CPU per call (Kamailio's / simpled's)
          row="$row\t$(ratio "$(col "$scen" kamailio 14)" "$(col "$scen" "$t" 14)")c"
        else
          row="$row\t$(ratio "$(col "$scen" "$t" 3)" "$k")"
        fi
      done
      for t in $TARGETS; do row="$row\t$(col "$scen" "$t" 12)/$(col "$scen" "$t" 13)"; done
      for t in $TARGETS; do row="$row\t$(col "$scen" "$t" 14)"; done
      echo -e "$row"
    done
  } | column -t -s $'\t'
  [ "$MODE" = quick ] && echo "# X/kam in quick mode = Kamailio's CPU per call / X's (c): above 1, X needs less CPU for the same load"
  echo "# per scenario: $OUTDIR/<scenario>/table.txt; Go benchmarks: $OUTDIR/go-bench.txt"
  echo "# wall time: $(( $(date +%s) - start )) s"
} > "$TABLE"
cat "$TABLE"
log "results in $OUTDIR"
