#!/bin/bash
# cost.sh — the Redis cost model of simpled (BENCHMARKS.md): for each load.sh scenario, the
# Redis commands (scripts' own calls included) and round trips one call costs, read from Redis's
# INFO commandstats and total_reads_processed around a run of the sipp scenario at a low rate.
# At that rate no two requests share a pipeline, so reads = round trips of one call alone;
# under load simpled's shared pipelines (storage/redis/batch.go) carry many calls per round trip.
#
# usage: bench/cost.sh   (from anywhere)
# env: SIMPLED_BIN [build ./cmd/simpled]  CALLS [1000]  RATE [200]
#      SCENARIOS ["register register_auth message publish subscribe"]
#      OUTDIR [$TMPDIR/simpled-bench/cost-<date>]
# Ports: free loopback ports for simpled, Redis and its HTTP; sipp on 25061-25068. Every process
# is stopped by its PID.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIPP_DIR=$HERE/sipp
CALLS=${CALLS:-1000}
RATE=${RATE:-200}
SCENARIOS=${SCENARIOS:-"register register_auth message publish subscribe"}
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/simpled-bench/cost-$(date +%Y%m%d-%H%M%S)}
UAC=25061 UAS=25065 DOMAIN=example.test
mkdir -p "$OUTDIR" || exit 1

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
SPID="" RPID="" UPID=""
stop() { local p; for p in "$@"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; return 0; }
trap 'stop "$UPID" "$SPID" "$RPID"' EXIT

BIN=${SIMPLED_BIN:-}
if [ -z "$BIN" ]; then BIN=$OUTDIR/simpled; (cd "$ROOT" && go build -o "$BIN" ./cmd/simpled) || exit 1; fi
"$SIPP_DIR/gen-users.sh" 20000 1000 2000 "$OUTDIR" > /dev/null
awk 'BEGIN{for(i=1;i<=20000;i++) printf "u%06d@example.test:pw%06d\n", i, i}' > "$OUTDIR/users.txt"

RPORT=$(free_port) SPORT=$(free_port) HPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUTDIR" \
    --logfile "$OUTDIR/redis.log" --daemonize no &
RPID=$!
for _ in $(seq 50); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

# sipp sends from one address, far above limits.source_rate: lift it for the load generator.
printf 'limits:\n  source_rate: 1000000\n  source_burst: 1000000\n  max_inflight_per_source: 10000\nregistrar:\n  max_new_aors_per_source: 0\npresence:\n  max_watchers: 1000000\n  max_watchers_per_domain: 1000000\n' > "$OUTDIR/limits.yaml"

start_simpled() { # extra args
  "$BIN" -listen "udp://127.0.0.1:$SPORT" -domain $DOMAIN -store "redis://127.0.0.1:$RPORT/0" \
      -http "127.0.0.1:$HPORT" -log-level warn -log-format json -config "$OUTDIR/limits.yaml" "$@" > "$OUTDIR/simpled.log" 2>&1 &
  SPID=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$HPORT/readyz" && return 0; sleep 0.1; done
  echo "simpled did not start" >&2; exit 1
}
sipp_run() { # scenario-file csv port calls rate [args]
  local sf=$1 csv=$2 port=$3 m=$4 r=$5; shift 5
  sipp "127.0.0.1:$SPORT" -sf "$SIPP_DIR/$sf" -inf "$OUTDIR/$csv" -i 127.0.0.1 -p "$port" -mp $((port+1)) \
      -cp $((port+2)) -ci 127.0.0.1 -t u1 -key domain $DOMAIN -nostdin -default_behaviors all,-bye \
      -m "$m" -r "$r" -timeout 120s "$@" > "$OUTDIR/sipp.out" 2>&1
}
# snapshot -> "commands reads" and per-command calls in $OUTDIR/cmd.<tag>
snap() {
  redis-cli -p "$RPORT" info commandstats | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_/{print substr($1,9), $3}' > "$OUTDIR/cmd.$1"
  redis-cli -p "$RPORT" info stats | tr -d '\r' | awk -F: '/^total_commands_processed|^total_reads_processed/{printf "%s ", $2}'
}

echo "# Redis commands and round trips per call, alone (no shared pipelines), background sweeps subtracted;"
echo "# per-command figures include the background"
printf "%-14s %8s %10s %10s  %s\n" scenario calls cmds/call rt/call "commands per call (scripts' calls included)"
for scen in $SCENARIOS; do
  redis-cli -p "$RPORT" flushall > /dev/null
  extra=""
  [ "$scen" = register_auth ] && extra="-users $OUTDIR/users.txt"
  # shellcheck disable=SC2086
  start_simpled $extra
  case $scen in
    message)
      sipp -sf "$SIPP_DIR/message_uas.xml" -i 127.0.0.1 -p $UAS -mp $((UAS+1)) -cp $((UAS+2)) -ci 127.0.0.1 -t u1 \
          -nostdin -timeout 300s > "$OUTDIR/uas.out" 2>&1 &
      UPID=$!
      sipp_run register.xml callees.csv $UAC 1000 1000 -key contact "127.0.0.1:$UAS;transport=udp"
      ;;
    subscribe) sipp_run publish_seed.xml presentities.csv $UAC 2000 1000 ;;
  esac
  sleep 1
  # the background (expiry sweeps) per second, subtracted below
  read -r ic0 ir0 < <(snap i0); sleep 3; read -r ic1 ir1 < <(snap i1)
  idle_c=$(echo "$ic0 $ic1" | awk '{print ($2-$1-2)/3}'); idle_r=$(echo "$ir0 $ir1" | awk '{print ($2-$1-2)/3}')
  t0=$(date +%s.%N)
  read -r c0 r0 < <(snap a)
  case $scen in
    register)      sipp_run register.xml users.csv $UAC "$CALLS" "$RATE" -key contact "127.0.0.1:$UAC;transport=udp" ;;
    register_auth) sipp_run register_auth.xml users.csv $UAC "$CALLS" "$RATE" -key contact "127.0.0.1:$UAC;transport=udp" ;;
    message)       sipp_run message_uac.xml callees.csv $UAC "$CALLS" "$RATE" ;;
    publish)       sipp_run publish.xml users.csv $UAC "$CALLS" "$RATE" ;;
    subscribe)     sipp_run subscribe.xml presentities.csv $UAC "$CALLS" "$RATE" ;;
  esac
  sleep 2 # events after the last answer (offline check, presence)
  read -r c1 r1 < <(snap b)
  dt=$(echo "$t0 $(date +%s.%N)" | awk '{print $2-$1}')
  per=$(join -a2 -e0 -o 0,1.2,2.2 <(sort "$OUTDIR/cmd.a") <(sort "$OUTDIR/cmd.b") |
        awk -v n="$CALLS" '{d=$3-$2; if (d>0) printf "%s %.2f, ", $1, d/n}' | sed 's/, $//')
  printf "%-14s %8s %10.2f %10.2f  %s\n" "$scen" "$CALLS" \
      "$(echo "$c0 $c1 $CALLS $idle_c $dt" | awk '{print ($2-$1-2-$4*$5)/$3}')" \
      "$(echo "$r0 $r1 $CALLS $idle_r $dt" | awk '{print ($2-$1-2-$4*$5)/$3}')" "$per"
  stop "$UPID"; UPID=""
  stop "$SPID"; SPID=""
done
