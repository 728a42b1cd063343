#!/usr/bin/env bash
# Load benchmark of mktd against this machine's limits, in one run:
#
#   1. builds mktd, its plugins and bench/ (Release, -O2) out of tree;
#   2. mktd + loadgen at full speed (config/mktd.yaml's campaigns, clock:
#      event, a fresh temporary database, synchronous normal);
#   3. the limits: bare_sqlite (the same event and action rows, same batch,
#      WAL, synchronous NORMAL and FULL) and bare_ingest + loadgen;
#   4. mktd's throughput as a ratio of the smaller limit;
#   5. p99 at 20,000 events/s offered; mktd with synchronous full; RSS after
#      1,000,000 distinct users.
#
#   bench/run.sh [--quick] [--repeat N] [--workdir DIR] [--no-build] [--keep]
#
# --quick: ~1 minute (short runs, 100,000 users for the RSS run). Default:
# ~10 minutes on 2 cores. --repeat N runs each throughput figure N times
# (default 2; --quick 1). Results go to stdout and DIR/summary.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
quick=0
repeat=
workdir=/tmp/mktd-bench
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --repeat) repeat=$2; shift ;;
    --workdir) workdir=$2; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--quick] [--repeat N] [--workdir DIR] [--no-build] [--keep]" >&2; exit 2 ;;
    esac
    shift
done

if [ "$quick" = 1 ]; then
    dur=8 warm=2 rate_dur=8 full_dur=6 rss_users=100000 sql_count=200000 ingest_dur=4
    repeat=${repeat:-1}
else
    dur=40 warm=5 rate_dur=30 full_dur=25 rss_users=1000000 sql_count=1000000 ingest_dur=10
    repeat=${repeat:-2}
fi
conns=4
window=256
http_port=${MKTD_BENCH_HTTP_PORT:-17412}

rel=$workdir/release
bb=$workdir/bench
run=$workdir/run
mkdir -p "$workdir"
rm -rf "$run"
mkdir -p "$run"
summary=$workdir/summary.txt
: >"$summary"

say() { echo "$*" | tee -a "$summary"; }
# value of key=... in the RESULT line of a file
res() { grep '^RESULT' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

if [ "$build" = 1 ]; then
    echo "== build (Release, -O2) into $workdir"
    cmake -S "$repo" -B "$rel" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_C_FLAGS_RELEASE=-O2 -g -DNDEBUG" -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$rel" >/dev/null
    cmake -S "$here" -B "$bb" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
    cmake --build "$bb" >/dev/null
fi

say "== mktd load benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  mode: $([ $quick = 1 ] && echo quick || echo full)"
say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/{print $2}') RAM"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    [ "$keep" = 1 ] || rm -rf "$run"
}
trap cleanup EXIT

wait_sock() {
    for _ in $(seq 1 200); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    echo "no socket $1" >&2
    return 1
}

# mktd_start NAME SYNC: a fresh database and config in $run/NAME: the daemon
# section below, then the frozen campaigns of bench/campaigns.yaml
mktd_start() {
    local d=$run/$1
    rm -rf "$d"
    mkdir -p "$d"
    cat >"$d/bench.yaml" <<EOF
daemon:
  listen: ["unix:$d/mktd.sock"]
  http: "127.0.0.1:$http_port"
  database: $d/mktd.db
  plugin_dirs: [$rel/plugins]
  clock: event
  commit: {max_batch: 1024, max_delay_ms: 2, synchronous: $2}
  limits: {max_event_bytes: 65536, max_connections: 1024, max_http_body: 16777216, max_future: 1d}
  log: {level: warn}

EOF
    cat "$here/campaigns.yaml" >>"$d/bench.yaml"
    "$rel/mktd" -c "$d/bench.yaml" 2>"$d/mktd.log" &
    pid=$!
    wait_sock "$d/mktd.sock"
    sock=$d/mktd.sock
}

mktd_stop() {
    curl -s "http://127.0.0.1:$http_port/metrics" >"$run/$1/metrics.txt" || true
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

# average events per commit, from the daemon's /metrics
batch_avg() {
    awk '/^mktd_commits_total /{c=$2} /^mktd_batch_events_total /{e=$2}
         END{if (c>0) printf "%.0f", e/c; else print "?"}' "$run/$1/metrics.txt"
}

# the WAL and the checkpointer, from the daemon's /metrics
wal_stats() {
    awk '/^mktd_wal_restarts_total /{r=$2} /^mktd_db_lock_waits_total /{w=$2}
         /^mktd_db_lock_wait_seconds_total /{s=$2}
         END{printf "WAL restarts %d, loop waited for a lock %d times (%.1f ms)", r, w, s * 1000}' \
        "$run/$1/metrics.txt"
}

lg() { "$bb/loadgen" --conns $conns --window $window "$@"; }

# ---- mktd at full speed ----
say ""
say "== mktd, full speed, synchronous normal ($dur s + ${warm} s warmup each, $conns conns, window $window)"
best_mktd=0
for i in $(seq 1 "$repeat"); do
    mktd_start "full$i" normal
    lg --unix "$sock" --duration $((dur + warm)) --warmup $warm --pid "$pid" --run-id "full$i" \
        >"$run/full$i/loadgen.txt" || true
    mktd_stop "full$i"
    f=$run/full$i/loadgen.txt
    say "  run $i: $(res "$f" eps) events/s  p50 $(res "$f" p50_ms) ms  p99 $(res "$f" p99_ms) ms" \
        " p99.9 $(res "$f" p999_ms) ms  errors $(res "$f" errors)  actions/event" \
        "$(res "$f" actions_per_event)  daemon cpu $(res "$f" daemon_cpu)%  avg batch" \
        "$(batch_avg "full$i")  RSS $(res "$f" rss_mb) MB  waiting for a cpu $(res "$f" runq_pct)%" \
        " $(res "$f" eps_per_cpu) events per cpu-second; $(wal_stats "full$i")"
    e=$(res "$f" eps)
    [ "$e" -gt "$best_mktd" ] && best_mktd=$e
    ape=$(res "$f" actions_per_event)
    obs_batch=$(batch_avg "full$i")
done

# ---- the limits ----
say ""
say "== limit 1: bare SQLite ($sql_count events, $ape actions/event, batch 1024, WAL)"
best_sql=0
best_sql_full=0
for i in $(seq 1 "$repeat"); do
    for sync in normal full; do
        rm -f "$run/bare.db"*
        "$bb/bare_sqlite" --db "$run/bare.db" --count $sql_count --sync $sync \
            --actions-per-event "$ape" --run-id "sql$i" >"$run/sql-$sync-$i.txt"
        e=$(res "$run/sql-$sync-$i.txt" eps)
        say "  run $i synchronous $sync: $e events/s ($(res "$run/sql-$sync-$i.txt" rows_per_s) rows/s)"
        if [ $sync = normal ]; then
            [ "$e" -gt "$best_sql" ] && best_sql=$e
        else
            [ "$e" -gt "$best_sql_full" ] && best_sql_full=$e
        fi
    done
done
if [ "$obs_batch" != "?" ]; then
    rm -f "$run/bare.db"*
    "$bb/bare_sqlite" --db "$run/bare.db" --count $sql_count --batch "$obs_batch" \
        --actions-per-event "$ape" >"$run/sql-obs.txt"
    say "  for reference, at mktd's observed average batch ($obs_batch):" \
        "$(res "$run/sql-obs.txt" eps) events/s"
fi
rm -f "$run/bare.db"*

say ""
say "== limit 2: bare ingest + loadgen ($ingest_dur s each)"
best_ing=0
for i in $(seq 1 "$repeat"); do
    "$bb/bare_ingest" --unix "$run/bare.sock" 2>/dev/null >"$run/bare-ingest.out" &
    pid=$!
    wait_sock "$run/bare.sock"
    lg --unix "$run/bare.sock" --duration $((ingest_dur + 1)) --warmup 1 --pid "$pid" \
        --run-id "ing$i" >"$run/ingest$i.txt" || true
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    rm -f "$run/bare.sock"
    f=$run/ingest$i.txt
    e=$(res "$f" eps)
    say "  run $i: $e events/s  p99 $(res "$f" p99_ms) ms  loadgen cpu $(res "$f" loadgen_cpu)%" \
        " server cpu $(res "$f" daemon_cpu)%"
    [ "$e" -gt "$best_ing" ] && best_ing=$e
done

limit=$best_sql
[ "$best_ing" -lt "$limit" ] && limit=$best_ing
ratio=$(awk -v a="$best_mktd" -v b="$limit" 'BEGIN{printf "%.1f", b ? 100*a/b : 0}')

# ---- p99 at 20,000 events/s offered ----
say ""
say "== mktd at 20,000 events/s offered ($rate_dur s + ${warm} s warmup, window 1024)"
for i in $(seq 1 "$repeat"); do
    mktd_start "rate$i" normal
    lg --unix "$sock" --rate 20000 --window 1024 --duration $((rate_dur + warm)) --warmup $warm \
        --pid "$pid" --run-id "rate$i" >"$run/rate$i/loadgen.txt" || true
    mktd_stop "rate$i"
    f=$run/rate$i/loadgen.txt
    say "  run $i: answered $(res "$f" eps) events/s  p50 $(res "$f" p50_ms) ms  p99" \
        "$(res "$f" p99_ms) ms  p99.9 $(res "$f" p999_ms) ms  largest backlog" \
        "$(res "$f" backlog) events  waiting for a cpu $(res "$f" runq_pct)%; $(wal_stats "rate$i")"
    p99_rate=$(res "$f" p99_ms)
done
# and at half of what mktd sustained: its latency without a queue
half=$((best_mktd / 2))
mktd_start half normal
lg --unix "$sock" --rate $half --window 1024 --duration $((rate_dur + warm)) --warmup $warm \
    --pid "$pid" --run-id half >"$run/half/loadgen.txt" || true
mktd_stop half
f=$run/half/loadgen.txt
say "  at $half events/s offered (half of mktd's best): answered $(res "$f" eps) events/s  p50" \
    "$(res "$f" p50_ms) ms  p99 $(res "$f" p99_ms) ms  p99.9 $(res "$f" p999_ms) ms"

# ---- synchronous full ----
say ""
say "== mktd, full speed, synchronous full ($full_dur s + ${warm} s warmup)"
best_full=0
for i in $(seq 1 "$repeat"); do
    mktd_start "sync$i" full
    lg --unix "$sock" --duration $((full_dur + warm)) --warmup $warm --pid "$pid" \
        --run-id "sync$i" >"$run/sync$i/loadgen.txt" || true
    mktd_stop "sync$i"
    f=$run/sync$i/loadgen.txt
    e=$(res "$f" eps)
    say "  run $i: $e events/s  p50 $(res "$f" p50_ms) ms  p99 $(res "$f" p99_ms) ms" \
        " p99.9 $(res "$f" p999_ms) ms  avg batch $(batch_avg "sync$i")"
    [ "$e" -gt "$best_full" ] && best_full=$e
done

# ---- RSS after N distinct users ----
say ""
say "== mktd RSS after $rss_users distinct users (each user's signup, then 20% more events)"
mktd_start rss normal
rss_count=$((rss_users + rss_users / 5))
lg --unix "$sock" --users $rss_users --user-order seq --count $rss_count --pid "$pid" \
    --run-id rss --drain-timeout 120 >"$run/rss/loadgen.txt" || true
mktd_stop rss
f=$run/rss/loadgen.txt
rss=$(res "$f" rss_mb)
hwm=$(res "$f" hwm_mb)
say "  $(res "$f" users) users, $(res "$f" answered) events at $(res "$f" eps) events/s:" \
    "VmRSS $rss MB  VmHWM $hwm MB  database $(du -m "$run/rss/mktd.db" | cut -f1) MB"

# ---- summary ----
verdict() { if awk "BEGIN{exit !($1)}"; then echo met; else echo MISSED; fi; }
say ""
say "== summary (best of $repeat; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
say "  mktd                     $best_mktd events/s   (target >= 100000: $(verdict "$best_mktd >= 100000"))"
say "  (mktd waited for a cpu: see the runs above; loaded machines halve events/s)"
say "  bare SQLite (normal)     $best_sql events/s"
say "  bare SQLite (full)       $best_sql_full events/s"
say "  bare ingest              $best_ing events/s"
say "  mktd / smaller limit     $ratio %   (target >= 50 %: $(verdict "$ratio >= 50"))"
say "  p99 at 20,000/s offered  $p99_rate ms   (target <= 5 ms: $(verdict "$p99_rate <= 5"))"
say "  RSS after $rss_users users  $rss MB (peak $hwm MB)   (target <= 150 MB: $(verdict "$hwm <= 150"))"
say "  mktd synchronous full    $best_full events/s   (reported)"
