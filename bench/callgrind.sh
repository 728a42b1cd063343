#!/usr/bin/env bash
# Instructions per event of a mktd build, under callgrind: the daemon runs
# the frozen campaigns of bench/campaigns.yaml; loadgen sends COUNT events of
# the cached mix on one connection (with --flags FLAGS when given); the
# instructions of a run with no events are taken off. LINE, when given, is
# one more line of the daemon section (e.g. "event_log: {keep: 30d}").
#
#   bench/callgrind.sh RELEASE_BUILD_DIR LOADGEN [COUNT] [FLAGS] [LINE]
#   e.g. bench/callgrind.sh /tmp/mktd-bench/release /tmp/mktd-bench/bench/loadgen 30000 explain
#        bench/callgrind.sh /tmp/mktd-bench/release /tmp/mktd-bench/bench/loadgen 30000 none \
#            "event_log: {keep: 30d}"
# Environment: MKTD_CG_CAMPAIGNS, another campaigns file than
# bench/campaigns.yaml (e.g. one campaign alone); MKTD_CG_KEEP, a folder
# to keep the callgrind output of the run with events in (cg.out), for
# callgrind_annotate.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rel=$1 loadgen=$2 count=${3:-30000} flags=${4:-none} line=${5:-}
rel=$(realpath "$rel") # the config below is elsewhere: paths in it must be absolute
w=$(mktemp -d /tmp/mktd-cg.XXXXXX)
trap 'rm -rf "$w"' EXIT
campaigns=${MKTD_CG_CAMPAIGNS:-$here/campaigns.yaml}
run() { # N: instructions of a run with N events
    local d=$w/$1
    mkdir -p "$d"
    cat >"$d/c.yaml" <<Y
daemon:
  listen: ["unix:$d/s"]
  database: $d/db
  plugin_dirs: [$rel/plugins]
  clock: event
  commit: {max_batch: 1024, max_delay_ms: 2, synchronous: normal}
  log: {level: warn}
  $line

Y
    cat "$campaigns" >>"$d/c.yaml"
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$d/cg.out" "$rel/mktd" -c "$d/c.yaml" 2>"$d/log" &
    local pid=$!
    for _ in $(seq 600); do [ -S "$d/s" ] && break; sleep 0.1; done
    local f=()
    [ "$flags" != none ] && f=(--flags "$flags")
    if [ "$1" -gt 0 ]; then
        "$loadgen" --conns 1 --window 64 --unix "$d/s" --count "$1" --users 37500 \
            --new-users 12.5 --run-id c --seed 1 --quiet "${f[@]}" >/dev/null
    fi
    kill "$pid"
    wait "$pid" || true
    if [ "$1" -gt 0 ] && [ -n "${MKTD_CG_KEEP:-}" ]; then
        mkdir -p "$MKTD_CG_KEEP"
        cp "$d/cg.out" "$MKTD_CG_KEEP/cg.out"
    fi
    grep -m1 '^summary\|^totals' "$d/cg.out" | awk '{print $2}'
}
base=$(run 0)
total=$(run "$count")
echo "instructions/event: $(( (total - base) / count ))  ($count events, flags $flags${line:+, $line})"
