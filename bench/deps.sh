#!/bin/bash
# deps.sh — the tools the SIP loads need (make bench-deps): sipp, Kamailio with its presence
# and sqlite modules, sqlite3, redis-server, curl and ss. As root the missing Debian packages are
# installed with apt-get; otherwise it says which to install and fails.
set -u
missing=""
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}
need sipp sip-tester
need kamailio kamailio
need redis-server redis-server
need sqlite3 sqlite3
need curl curl
need ss iproute2
[ -r /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] || [ -n "$(find /usr/lib -path '*kamailio/modules/presence.so' 2>/dev/null | head -1)" ] ||
  missing="$missing kamailio-presence-modules"
[ -r /usr/share/kamailio/db_sqlite/standard-create.sql ] || missing="$missing kamailio-sqlite-modules"
missing=$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')
[ -z "${missing// /}" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || {
    echo "apt-get install$missing failed" >&2; exit 1; }
  # Debian starts the packaged servers as services; the benchmarks start their own on free ports
  exit 0
fi
echo "missing tools for the SIP loads; install them with:" >&2
echo "  sudo apt-get install -y$missing" >&2
exit 1
