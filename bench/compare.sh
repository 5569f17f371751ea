#!/bin/bash
# compare.sh — throughput of one load.sh scenario (SCENARIO: register, message, ...) for simpled
# (memory store, Redis store) against Kamailio,
# measured in one run and interleaved, as bench/RESULTS.md asks ("Noise": compare
# with several runs each, interleaved with Kamailio runs).
#
# For each of ROUNDS rounds, one target after another:
#   memory    simpled -store memory                       on udp://127.0.0.1:15060
#   redis     simpled -store redis://127.0.0.1:PORT/0      (a private redis-server on a free
#                                                          loopback port, flushed before each run)
#   kamailio  bench/run-kamailio.sh CHILDREN     (VARIANT=bigbuf, 4 children)
# each driven by bench/load.sh with SCENARIOS=$SCENARIO (register: distinct AORs from
# users.csv, one REGISTER -> 200 per call; message: one MESSAGE relayed through the server to a
# registered sipp UAS -> 200; the best rate passes with < 0.1 % failed calls and <= 0.1 %
# retransmissions). Then it prints the best sustained calls/s per target and round,
# the medians and the simpled/Kamailio ratios (table.txt, results.tsv in OUTDIR).
#
# usage: [SCENARIO=message] bench/compare.sh   (from anywhere; the repository is this script's
#        parent; make bench-register and make bench-message call it)
#
# Environment (defaults in brackets):
#   ROUNDS [2]                  rounds of all targets
#   TARGETS ["memory redis kamailio"]   order within a round
#   SCENARIO [register]         the load.sh scenario: register, message, register_auth, ...
#   OUTDIR [$TMPDIR/simpled-bench/<scenario>-<date>]
#   BENCH [<repo>/bench]        the folder holding load.sh, run-kamailio.sh and the sipp scenarios
#   KAM_VARIANT [bigbuf; auth for register_auth]  KAM_CHILDREN [4]   Kamailio reference
#                               configuration (register_auth: digest REGISTER, Kamailio's auth_db
#                               and simpled -users, the same 20,000 users and passwords)
#   HALF [1]                    after each target's search, one more step at half its best rate
#                               for latency (p50/p99) and CPU per 1,000 calls off the overload;
#                               0 takes them from the best step (bench-quick's fixed rates)
#   SIMPLED_BIN                 run this binary instead of building ./cmd/simpled
#   BEFORE_BIN                  a second simpled binary (say, built from an older commit) for the
#                               targets memory-before and redis-before: before/after in one run
#   SIMPLED_ARGS                extra simpled flags (word-split)
#   SIMPLED_LOG_LEVEL [info]
#   (load.sh's cpu_server column: simpled's PID, plus redis-server's for the redis target;
#   Kamailio: all its processes)
#   PAUSE_SECS [5]              idle time between two targets
#   DRIVER [go]                 load.sh's driver: go (bench/load, built once here into OUTDIR
#                               unless LOAD_BIN names it) or sipp
#   Passed through to load.sh: TRANSPORT [u1] (t1: every sipp over TCP, DRIVER=sipp; simpled
#   and Kamailio listen on both), GO_SOCKETS [4], STEP_SECS [10], RATES_register ["2000 5000 10000 15000 20000
#   25000 30000"], MAX_STEPS [8], N_USERS [20000], MAX_FAIL_PCT, MAX_RETRANS_PCT, NOISE_PCT ...
#
# Ports: 15060 (the server under test, one at a time; load.sh and run-kamailio.sh expect it),
# 15061-15064 (load.sh's sipp UAC, or the Go driver's GO_SOCKETS sockets and, for message,
# its callee sockets after them), a free port for Redis and one for simpled's HTTP (/readyz,
# /metrics). All on 127.0.0.1. Every process is started and stopped by its PID; nothing is
# killed by name.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH=${BENCH:-$HERE}
ROUNDS=${ROUNDS:-2}
TARGETS=${TARGETS:-"memory redis kamailio"}
SCENARIO=${SCENARIO:-register}
if [ "$SCENARIO" = register_auth ]; then KAM_VARIANT=${KAM_VARIANT:-auth}; else KAM_VARIANT=${KAM_VARIANT:-bigbuf}; fi
HALF=${HALF:-1}
KAM_CHILDREN=${KAM_CHILDREN:-4}
SIMPLED_LOG_LEVEL=${SIMPLED_LOG_LEVEL:-info}
SIMPLED_ARGS=${SIMPLED_ARGS:-}
PAUSE_SECS=${PAUSE_SECS:-5}
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/simpled-bench/$SCENARIO-$(date +%Y%m%d-%H%M%S)}
PORT=15060
DOMAIN=example.test
export DRIVER=${DRIVER:-go}

mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/$SCENARIO.log
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -x "$BENCH/load.sh" ] && [ -x "$BENCH/run-kamailio.sh" ] || die "no load.sh/run-kamailio.sh in $BENCH (set BENCH)"
TOOLS="curl ss"; [ "$DRIVER" = sipp ] && TOOLS="sipp $TOOLS"
for tool in $TOOLS; do command -v $tool >/dev/null || die "$tool not found"; done
case " $TARGETS " in *" redis "*|*" redis-before "*) command -v redis-server >/dev/null || die "redis-server not found" ;; esac
case " $TARGETS " in *" kamailio "*)
  command -v kamailio >/dev/null || die "kamailio not found (Debian kamailio, kamailio-presence-modules)"
  # run-kamailio.sh loads db_sqlite and creates its tables from these files
  [ -r /usr/share/kamailio/db_sqlite/standard-create.sql ] && command -v sqlite3 >/dev/null ||
    die "Kamailio's db_sqlite is missing: apt-get install kamailio-sqlite-modules sqlite3"
  ;;
esac

alive() { # pid running and not a zombie
  local s
  [ -r /proc/$1/stat ] || return 1
  s=$(sed 's/^.*) //' /proc/$1/stat 2>/dev/null | cut -d' ' -f1)
  [ -n "$s" ] && [ "$s" != Z ]
}
port_busy() { # port: any udp or tcp socket bound to it
  ss -Hlnu "sport = :$1" | grep -q . || ss -Hlnt "sport = :$1" | grep -q .
}
free_port() { # a port free on udp and tcp, drawn below the ephemeral range (bounded tries)
  local i p
  for i in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}
stop_pid() { # pid name: TERM, then KILL after 10 s; only this PID
  local p=$1 n=$2 i=0
  [ -n "$p" ] || return 0
  if alive "$p"; then
    kill "$p" 2>/dev/null
    while alive "$p" && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
    if alive "$p"; then log "$n pid $p did not stop on TERM, sending KILL"; kill -9 "$p" 2>/dev/null; fi
  fi
  wait "$p" 2>/dev/null
  log "stopped $n (pid $p)"
}

SPID=""; RPID=""; CHILD=""
cleanup() {
  # load.sh / run-kamailio.sh stop their own sipp and Kamailio on TERM (their EXIT traps)
  [ -n "$CHILD" ] && stop_pid "$CHILD" "load driver"
  stop_pid "$SPID" simpled; SPID=""
  stop_pid "$RPID" redis-server; RPID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- preflight
LAST_PORT=$((PORT + 4))
[ "$SCENARIO" = message ] && LAST_PORT=$((PORT + 8)) # load.sh's sipp UAS (the MESSAGE callee)
if [ "$DRIVER" = go ]; then # the Go driver's sockets, and for message its callee sockets
  n=${GO_SOCKETS:-4}; [ "$SCENARIO" = message ] && n=$((n + ${GO_CALLEE_SOCKETS:-2}))
  [ $((PORT + n)) -gt "$LAST_PORT" ] && LAST_PORT=$((PORT + n))
fi
for p in $(seq $PORT $LAST_PORT); do
  port_busy "$p" && die "port $p is in use (needed: $PORT for the server, $((PORT+1))-$LAST_PORT for sipp)"
done

if [ -n "${SIMPLED_BIN:-}" ]; then
  BIN=$SIMPLED_BIN
else
  BIN=$OUTDIR/simpled
  log "building simpled -> $BIN"
  (cd "$ROOT" && go build -o "$BIN" ./cmd/simpled) || die "go build failed"
fi
[ -x "$BIN" ] || die "$BIN is not executable"
if [ "$DRIVER" = go ] && [ -z "${LOAD_BIN:-}" ]; then
  LOAD_BIN=$OUTDIR/load
  log "building bench/load -> $LOAD_BIN"
  (cd "$ROOT" && go build -o "$LOAD_BIN" ./bench/load) || die "go build ./bench/load failed"
fi
export LOAD_BIN

HTTP_PORT=$(free_port) || die "no free port for simpled's HTTP"

# register_auth: simpled knows load.sh's users (u000001..) and callees with their passwords,
# as Kamailio's subscriber table does (run-kamailio.sh VARIANT=auth)
USERS_ARGS=""
if [ "$SCENARIO" = register_auth ]; then
  awk -v n="${N_USERS:-20000}" 'BEGIN{for(i=1;i<=n;i++) printf "u%06d@example.test:pw%06d\n", i, i}' > "$OUTDIR/users.txt"
  USERS_ARGS="-users $OUTDIR/users.txt"
fi

# sipp sends everything from 127.0.0.1: one source, far above limits.source_rate and its
# share of in-flight requests, which exist to stop exactly that. The load generator is lifted
# out of them (an older binary too when it knows the keys).
cat > "$OUTDIR/limits.yaml" <<'YAML'
limits:
  source_rate: 1000000
  source_burst: 1000000
  max_inflight_per_source: 10000
registrar:
  max_new_aors_per_source: 0
presence:
  max_watchers: 1000000
  max_watchers_per_domain: 1000000
YAML
LIMITS_ARGS="-config $OUTDIR/limits.yaml"

REDIS_URL=""
case " $TARGETS " in *" redis "*|*" redis-before "*)
  RPORT=$(free_port) || die "no free port for Redis"
  mkdir -p "$OUTDIR/redis"
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUTDIR/redis" \
      --logfile "$OUTDIR/redis/redis.log" --daemonize no &
  RPID=$!
  for i in $(seq 1 100); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; alive "$RPID" || break; sleep 0.1; done
  redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG || die "redis-server did not start (see $OUTDIR/redis/redis.log)"
  REDIS_URL=redis://127.0.0.1:$RPORT/0
  log "redis-server pid=$RPID $REDIS_URL"
  ;;
esac

{
  echo "# bench/compare.sh SCENARIO=$SCENARIO $(date -Is)"
  echo "# host: $(nproc) CPU, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# simpled $(cd "$ROOT" && git describe --always --dirty 2>/dev/null) ($("$BIN" -version 2>&1 | head -1)), $(go version 2>/dev/null | awk '{print $3}')"
  echo "# $(kamailio -v 2>/dev/null | head -1 | awk '{print "kamailio", $3}') VARIANT=$KAM_VARIANT children=$KAM_CHILDREN; $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1); $(redis-server --version 2>/dev/null | awk '{print "redis", $3}')"
  echo "# driver=$DRIVER rounds=$ROUNDS targets=\"$TARGETS\" STEP_SECS=${STEP_SECS:-10} MAX_STEPS=${MAX_STEPS:-8} RATES_$SCENARIO=\"$(eval echo \"\${RATES_$SCENARIO:-load.sh default}\")\" N_USERS=${N_USERS:-20000}"
} > "$OUTDIR/header.txt"
cat "$OUTDIR/header.txt" | tee -a "$LOG" >&2

# ---------------------------------------------------------------- one target run
# run_target round target -> appends a line to results.tsv
RESULTS=$OUTDIR/results.tsv
echo -e "round\ttarget\tbest_calls_s\tfirst_fail\tachieved_s\tcpu_server%\tcpu_driver%\tother%_at_best\tmax_other%\tloadavg_before\tlat_rate\tp50_ms\tp99_ms\tcpu_ms_per_1000\tdir" > "$RESULTS"

wait_ready() { # pid: /readyz answers 200 within 15 s
  local i
  for i in $(seq 1 150); do
    alive "$1" || return 1
    curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/readyz" && return 0
    sleep 0.1
  done
  return 1
}

run_target() {
  local round=$1 target=$2
  local d=$OUTDIR/r$round-$target
  mkdir -p "$d"
  local la; la=$(cut -d' ' -f1 /proc/loadavg)
  for p in $(seq $PORT $LAST_PORT); do
    port_busy "$p" && { log "port $p busy before $target round $round, skipping"; record "$round" "$target" "$d" "$la"; return; }
  done
  log "round $round: $target (load average $la)"
  case $target in
    memory|redis|memory-before|redis-before)
      local store=memory bin=$BIN limits=$LIMITS_ARGS
      case $target in *-before)
        bin=${BEFORE_BIN:-}
        [ -x "$bin" ] || { log "$target needs BEFORE_BIN"; record "$round" "$target" "$d" "$la"; return; }
        # The limits file too, when the older binary knows its keys (it checks them with -t).
        "$bin" -t $LIMITS_ARGS >/dev/null 2>&1 || limits="" ;;
      esac
      if [ "${target%-before}" = redis ]; then
        store=$REDIS_URL
        redis-cli -p "$RPORT" flushall >/dev/null || log "redis flushall failed"
      fi
      # shellcheck disable=SC2086
      "$bin" -listen "udp://127.0.0.1:$PORT" -listen "tcp://127.0.0.1:$PORT" -domain "$DOMAIN" -store "$store" \
          -http "127.0.0.1:$HTTP_PORT" -log-level "$SIMPLED_LOG_LEVEL" -log-format json $USERS_ARGS $limits $SIMPLED_ARGS \
          > "$d/simpled.log" 2>&1 &
      SPID=$!
      if ! wait_ready "$SPID"; then
        log "simpled did not get ready: $(tail -3 "$d/simpled.log")"
        stop_pid "$SPID" simpled; SPID=""
        record "$round" "$target" "$d" "$la"; return
      fi
      log "simpled pid=$SPID store=$store"
      # CPU accounting covers the whole server side: simpled, plus redis-server for redis
      local pids=$SPID
      [ "${target%-before}" = redis ] && pids="$SPID $RPID"
      SERVER_PIDS=$pids OUTDIR=$d/load SCENARIOS=$SCENARIO "$BENCH/load.sh" "127.0.0.1:$PORT" "$DOMAIN" \
          > "$d/load.out" 2>&1 &
      CHILD=$!
      wait "$CHILD"; CHILD=""
      half=$(half_rate "$d")
      if [ -n "$half" ]; then
        log "round $round: $target at half its best rate, $half calls/s"
        env SERVER_PIDS="$pids" OUTDIR="$d/half" SCENARIOS="$SCENARIO" "RATES_$SCENARIO=$half" MAX_STEPS=1 \
            "$BENCH/load.sh" "127.0.0.1:$PORT" "$DOMAIN" > "$d/half.out" 2>&1 &
        CHILD=$!
        wait "$CHILD"; CHILD=""
      fi
      curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" > "$d/metrics.txt" 2>/dev/null
      ps -o rss=,vsz= -p "$SPID" | awk '{print "rss_kb=" $1, "vsz_kb=" $2}' > "$d/simpled-mem.txt"
      stop_pid "$SPID" simpled; SPID=""
      ;;
    kamailio)
      OUTDIR=$d/load VARIANT=$KAM_VARIANT SCENARIOS=$SCENARIO "$BENCH/run-kamailio.sh" "$KAM_CHILDREN" \
          > "$d/load.out" 2>&1 &
      CHILD=$!
      wait "$CHILD"; CHILD=""
      half=$(half_rate "$d")
      if [ -n "$half" ]; then
        log "round $round: $target at half its best rate, $half calls/s"
        sleep "$PAUSE_SECS"
        env OUTDIR="$d/half" VARIANT="$KAM_VARIANT" SCENARIOS="$SCENARIO" "RATES_$SCENARIO=$half" MAX_STEPS=1 \
            "$BENCH/run-kamailio.sh" "$KAM_CHILDREN" > "$d/half.out" 2>&1 &
        CHILD=$!
        wait "$CHILD"; CHILD=""
      fi
      ;;
    *) log "unknown target $target"; return ;;
  esac
  record "$round" "$target" "$d" "$la"
}

half_rate() { # dir: half the best rate of the search (multiple of 50), "" when HALF=0 or none passed
  [ "$HALF" = 1 ] || return 0
  awk -F'\t' -v s="$SCENARIO" 'NR>1 && $1==s && $3!="NONE" && $2+0>=100 {printf "%d", int($2/2/50)*50; exit}' "$1/load/best.tsv" 2>/dev/null
}

# latency_of steps.tsv scenario rate -> "p50 p99 cpu_ms_per_1000" of that step (the Go driver's
# whole call, 3 % buckets; sipp's rtd1, 4 ms quanta), or "- - -"
latency_of() {
  awk -F'\t' -v s="$2" -v r="$3" 'NR>1 && $1==s && $2==r && $3=="PASS" {line=$0} END{
    if (line=="") {print "- - -"; exit}
    n=split(line, f, "\t"); lat=f[17]; p50="-"; p99="-"
    if (match(lat, /p50=[0-9.]+ms/)) p50=substr(lat, RSTART+4, RLENGTH-6)
    if (match(lat, /p99=[0-9.]+ms/)) p99=substr(lat, RSTART+4, RLENGTH-6)
    cpu="-"; if (f[10]+0>0) cpu=sprintf("%.1f", f[11]*10000/f[10])
    print p50, p99, cpu }' "$1" 2>/dev/null
}

record() { # round target dir loadavg: best line of load.sh's best.tsv / steps.tsv -> results.tsv
  local round=$1 target=$2 d=$3 la=$4
  local best=$d/load/best.tsv steps=$d/load/steps.tsv
  local line
  line=$(awk -F'\t' -v s="$SCENARIO" 'NR>1 && $1==s {print; exit}' "$best" 2>/dev/null)
  local rate achieved cpus cpup other
  if [ -z "$line" ]; then
    rate=ERR; achieved=-; cpus=-; cpup=-; other=-
    log "$target round $round gave no result; end of $d/load.out:"
    tail -5 "$d/load.out" 2>/dev/null | tee -a "$LOG" >&2
  else
    rate=$(echo "$line" | cut -f2)
    [ "$(echo "$line" | cut -f3)" = NONE ] && rate=0
    achieved=$(echo "$line" | cut -f10); cpus=$(echo "$line" | cut -f11); cpup=$(echo "$line" | cut -f12)
    other=$(echo "$line" | cut -f15 | cut -d/ -f2)
  fi
  local ff maxo
  # the failing step that ended the search: the lowest failing rate above the best one (a
  # failed step that passed on its noise retry does not count)
  ff=$(awk -F'\t' -v s="$SCENARIO" -v b="${rate:-0}" 'NR>1 && $1==s && $3=="FAIL" && $2+0>b+0 {if (m=="" || $2+0<m) m=$2+0} END{print (m==""?"-":m)}' "$steps" 2>/dev/null)
  maxo=$(awk -F'\t' -v s="$SCENARIO" 'NR>1 && $1==s {split($15,a,"/"); if (a[2]+0>m) m=a[2]+0} END{print m+0}' "$steps" 2>/dev/null)
  # latency and CPU per call: from the half-rate step when there is one, else the best step
  local lrate lat
  lrate=$(awk -F'\t' -v s="$SCENARIO" 'NR>1 && $1==s && $3=="PASS" {print $2; exit}' "$d/half/steps.tsv" 2>/dev/null)
  if [ -n "$lrate" ]; then lat=$(latency_of "$d/half/steps.tsv" "$SCENARIO" "$lrate")
  elif [ "${rate:-0}" != ERR ] && [ "${rate:-0}" != 0 ]; then lrate=$rate; lat=$(latency_of "$steps" "$SCENARIO" "$rate")
  else lrate=-; lat="- - -"; fi
  set -- $lat
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$round" "$target" "$rate" "${ff:--}" "${achieved:--}" \
      "${cpus:--}" "${cpup:--}" "${other:--}" "${maxo:-0}" "$la" "$lrate" "$1" "$2" "$3" "$d" >> "$RESULTS"
  log "round $round $target: best ${rate} calls/s (first failing step ${ff:--}, server CPU ${cpus:--} %, other load up to ${maxo:-0} %)"
}

# ---------------------------------------------------------------- rounds
first=1
for round in $(seq 1 "$ROUNDS"); do
  for target in $TARGETS; do
    [ $first = 1 ] || sleep "$PAUSE_SECS"
    first=0
    run_target "$round" "$target"
  done
done

# ---------------------------------------------------------------- table
median() { # numbers on stdin (non-numbers ignored) -> median, or "-"
  grep -E '^[0-9]+(\.[0-9]+)?$' | sort -n | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit}
    if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b>0) printf "%.2f", a/b; else printf "-" }'; }
val() { awk -F'\t' -v r="$1" -v t="$2" '$1==r && $2==t {print $3}' "$RESULTS"; }

{
  cat "$OUTDIR/header.txt"
  echo "# best sustained $SCENARIO calls/s (load.sh: fail < ${MAX_FAIL_PCT:-0.1} %, retransmissions <= ${MAX_RETRANS_PCT:-0.1} %)"
  hdr="round"; for t in $TARGETS; do hdr="$hdr\t$t"; done
  case " $TARGETS " in *" kamailio "*)
    for t in $TARGETS; do [ "$t" = kamailio ] || hdr="$hdr\t$t/kamailio"; done ;;
  esac
  {
    echo -e "$hdr"
    for round in $(seq 1 "$ROUNDS"); do
      row="$round"; k=$(val "$round" kamailio)
      for t in $TARGETS; do row="$row\t$(val "$round" "$t")"; done
      case " $TARGETS " in *" kamailio "*)
        for t in $TARGETS; do [ "$t" = kamailio ] || row="$row\t$(ratio "$(val "$round" "$t")" "$k")"; done ;;
      esac
      echo -e "$row"
    done
    row="median"; k=$(awk -F'\t' '$2=="kamailio"{print $3}' "$RESULTS" | median)
    for t in $TARGETS; do row="$row\t$(awk -F'\t' -v t="$t" '$2==t{print $3}' "$RESULTS" | median)"; done
    case " $TARGETS " in *" kamailio "*)
      for t in $TARGETS; do
        [ "$t" = kamailio ] || row="$row\t$(ratio "$(awk -F'\t' -v t="$t" '$2==t{print $3}' "$RESULTS" | median)" "$k")"
      done ;;
    esac
    echo -e "$row"
  } | column -t -s $'\t'
  echo
  if [ "$DRIVER" = go ]; then lat="whole call, bench/load"; else lat="sipp rtd1, 4 ms quanta"; fi
  echo "# latency ($lat) and server CPU per 1,000 calls, at half the best rate (medians)"
  {
    echo -e "target\trate\tp50_ms\tp99_ms\tcpu_ms_per_1000"
    for t in $TARGETS; do
      col() { awk -F'\t' -v t="$t" -v c="$1" '$2==t{print $c}' "$RESULTS" | median; }
      echo -e "$t\t$(col 11)\t$(col 12)\t$(col 13)\t$(col 14)"
    done
  } | column -t -s $'\t'
  echo
  echo "# per run (cpu in % of one core at the best step; other = CPU used by other tenants during a step)"
  column -t -s $'\t' "$RESULTS"
} > "$OUTDIR/table.txt"
cat "$OUTDIR/table.txt"
log "results in $OUTDIR"
