#!/usr/bin/env bash
# Load benchmark of mktd, each figure beside the bare-SQLite loop (and the
# bare ingest limit) measured in the same run on the same events:
#
#   1. builds mktd, its plugins and bench/ (Release, -O2) out of tree;
#   2. the cached regime: 300,000 events over 37,500 users at full speed,
#      mktd (the frozen campaigns of bench/campaigns.yaml, clock: event, a
#      fresh database, synchronous normal), then bare_sqlite over the same
#      events; events/s, WAL bytes per event, the ratio mktd / bare loop;
#      the same with synchronous full;
#   3. bare_ingest + loadgen: the ingest limit;
#   4. p99 at 20,000 events/s offered, and at half of mktd's best;
#   5. RSS after 1,000,000 distinct users;
#   6. the sweep of 100,000 users falling dormant at once (bench/sweep.sh).
#
# With --explain, only the cost of dry runs and explanations instead: the
# cached regime's events sent plain, with "explain": true, with "dry": true
# (a dry-only stream) and with both, each --repeat times (~2 minutes).
#
# With --event-log, only the cost of daemon.event_log instead: the cached
# regime's events with the log off and on (keep: 30d), interleaved, each
# --repeat times: events/s, WAL bytes per event, and the log's bytes per
# event in the database (its table and index, by SQLite's dbstat).
#
# With --large, only the large regime instead: 10,000,000 events (or
# --large-count N) over N / 10 users (1,000,000), random 32-hex-digit ids;
# mktd then bare_sqlite over the same events, with events/s and WAL bytes
# per event for each 1,000,000 events (a growth curve). ~30 minutes on 2
# cores; a disk guard stops loadgen early if mktd's WAL passes
# MKTD_BENCH_WAL_LIMIT_GB (default 30).
#
#   bench/run.sh [--quick] [--repeat N] [--workdir DIR] [--no-build] [--keep]
#   bench/run.sh --large [--large-count N] [--workdir DIR] [--no-build] [--keep]
#   bench/run.sh --explain [--repeat N] [--workdir DIR] [--no-build] [--keep]
#   bench/run.sh --event-log [--repeat N] [--workdir DIR] [--no-build] [--keep]
#   bench/run.sh --cached [--repeat N] [--campaigns FILE] [--workdir DIR] [--no-build] [--keep]
#
# --cached: the cached regime alone (mktd then the bare loop, N times) and
# the 20,000 events/s offered run (~1.5 minutes with --repeat 2).
# --campaigns FILE: mktd runs these campaigns instead of
# bench/campaigns.yaml (e.g. one of them alone).
#
# --quick: ~1 minute (short runs, 100,000 users for the RSS run, 20,000 for
# the sweep). Default: ~6-7 minutes on 2 cores. --repeat N runs each cached
# figure N times (default 2; --quick 1). Results go to stdout and
# DIR/summary.txt (DIR/large.txt for --large).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
quick=0
large=0
explain=0
event_log=0
cached_only=0
campaigns=$here/campaigns.yaml
large_count=10000000
repeat=
workdir=/tmp/mktd-bench
build=1
keep=0
usage() {
    echo "usage: $0 [--quick] [--repeat N] [--workdir DIR] [--no-build] [--keep]" >&2
    echo "       $0 --large [--large-count N] [--workdir DIR] [--no-build] [--keep]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --large) large=1 ;;
    --explain) explain=1 ;;
    --event-log) event_log=1 ;;
    --cached) cached_only=1 ;;
    --campaigns) campaigns=$(realpath "$2"); shift ;;
    --large-count) large_count=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --workdir) workdir=$2; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    *) usage ;;
    esac
    shift
done

if [ "$quick" = 1 ]; then
    rate_dur=8 warm=2 rss_users=100000 ingest_dur=4 sweep_users=20000
    repeat=${repeat:-1}
else
    rate_dur=30 warm=5 rss_users=1000000 ingest_dur=10 sweep_users=100000
    repeat=${repeat:-2}
fi
conns=4
window=256
http_port=${MKTD_BENCH_HTTP_PORT:-17412}

# The cached regime: the events of loadgen with these options, for mktd and
# the bare loop alike.
cached_gen="--count 300000 --users 37500 --new-users 12.5 --run-id c --seed 1"
# The bare loop of the issue: 0.3 actions per event, batches of 1,024.
bare_ape=0.3

# absolute: the configs written below live elsewhere, and their relative
# paths would resolve against their own folder
workdir=$(realpath -m "$workdir")
rel=$workdir/release
bb=$workdir/bench
run=$workdir/run
mkdir -p "$workdir"
rm -rf "$run"
mkdir -p "$run"
if [ "$large" = 1 ]; then
    summary=$workdir/large.txt
else
    summary=$workdir/summary.txt
fi
: >"$summary"

say() { echo "$*" | tee -a "$summary"; }
# value of key=... in the RESULT line of a file
res() { grep '^RESULT' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.1f", 100 * a / b; else print "?"}'; }

if [ "$build" = 1 ]; then
    echo "== build (Release, -O2) into $workdir"
    cmake -S "$repo" -B "$rel" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_C_FLAGS_RELEASE=-O2 -g -DNDEBUG" -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$rel" >/dev/null
    cmake -S "$here" -B "$bb" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
    cmake --build "$bb" >/dev/null
fi

mode=full
[ "$quick" = 1 ] && mode=quick
[ "$large" = 1 ] && mode="large ($large_count events)"
[ "$explain" = 1 ] && mode="dry runs and explanations"
[ "$event_log" = 1 ] && mode="the event log"
[ "$cached_only" = 1 ] && mode="the cached regime and 20,000 events/s offered"
say "== mktd load benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  mode: $mode"
say "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (plus uncommitted changes)')"
say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/{print $2}') RAM"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "campaigns: $campaigns"

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

# mktd_start NAME SYNC [LINE]: a fresh database and config in $run/NAME: the
# daemon section below (plus LINE, e.g. "event_log: {keep: 30d}"), then the
# frozen campaigns of bench/campaigns.yaml (or --campaigns FILE)
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
  ${3:-}

EOF
    cat "$campaigns" >>"$d/bench.yaml"
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

# bare NAME SYNC GEN-OPTIONS...: the bare loop over the events of GEN-OPTIONS,
# into a fresh database; output in $run/NAME.txt
bare() {
    local name=$1 sync=$2
    shift 2
    rm -f "$run/bare.db"*
    "$bb/bare_sqlite" --db "$run/bare.db" --sync "$sync" --actions-per-event $bare_ape "$@" \
        >"$run/$name.txt"
    rm -f "$run/bare.db"*
}

# the database and its WAL, in MB
db_mb() {
    echo "$(du -m "$run/$1/mktd.db" | cut -f1) MB (WAL $(du -m "$run/$1/mktd.db-wal" 2>/dev/null | cut -f1 || echo 0) MB)"
}

# -------------------------------------------------------------- explain ----
if [ "$explain" = 1 ]; then
    say ""
    say "== the cached regime ($cached_gen), each event as sent:"
    plain=
    for flags in none explain dry dry,explain; do
        best=0
        for r in $(seq 1 "$repeat"); do
            name=flags-${flags/,/-}-$r
            mktd_start "$name" normal
            f=()
            [ "$flags" != none ] && f=(--flags "$flags")
            lg --unix "$sock" $cached_gen --pid "$pid" "${f[@]}" --quiet >"$run/$name.txt"
            mktd_stop "$name"
            eps=$(res "$run/$name.txt" eps)
            best=$(awk -v a="$best" -v b="$eps" 'BEGIN{print (b > a) ? b : a}')
            say "  $flags run $r: $eps events/s, p99 $(res "$run/$name.txt" p99_ms) ms, errors $(res "$run/$name.txt" errors)"
        done
        [ -z "$plain" ] && plain=$best
        say "$flags: best $best events/s ($(ratio "$best" "$plain")% of plain)"
    done
    exit 0
fi

# ------------------------------------------------------------ event log ----
if [ "$event_log" = 1 ]; then
    say ""
    say "== the cached regime ($cached_gen), daemon.event_log off and on:"
    best_off=0
    best_on=0
    for r in $(seq 1 "$repeat"); do
        for log in off on; do
            name=evlog-$log-$r
            line=
            [ "$log" = on ] && line="event_log: {keep: 30d}"
            mktd_start "$name" normal "$line"
            lg --unix "$sock" $cached_gen --pid "$pid" --quiet >"$run/$name.txt"
            mktd_stop "$name"
            eps=$(res "$run/$name.txt" eps)
            extra=
            if [ "$log" = on ]; then
                best_on=$(awk -v a="$best_on" -v b="$eps" 'BEGIN{print (b > a) ? b : a}')
                # the log's share of the database: its table's and index's
                # pages, and the lines themselves
                extra=$(sqlite3 "$run/$name/mktd.db" "SELECT printf(', event_log %d rows, %.0f bytes per event in the database (table and index), lines %.0f bytes on average', (SELECT count(*) FROM event_log), (SELECT sum(pgsize) FROM dbstat WHERE name IN ('event_log', 'event_log_received')) * 1.0 / (SELECT count(*) FROM event_log), (SELECT avg(length(body)) FROM event_log))")
            else
                best_off=$(awk -v a="$best_off" -v b="$eps" 'BEGIN{print (b > a) ? b : a}')
            fi
            say "  $log run $r: $eps events/s, p99 $(res "$run/$name.txt" p99_ms) ms, WAL $(res "$run/$name.txt" wal_b_per_ev) bytes per event, errors $(res "$run/$name.txt" errors), database $(db_mb "$name")$extra"
        done
    done
    say "event log off: best $best_off events/s; on: best $best_on events/s ($(ratio "$best_on" "$best_off")% of off)"
    exit 0
fi

# ---------------------------------------------------------------- large ----
if [ "$large" = 1 ]; then
    large_users=$((large_count / 10))
    large_gen="--users $large_users --new-users 10 --ids random --run-id L --seed 1"
    every=1000000
    [ "$large_count" -lt 5000000 ] && every=$((large_count / 5))
    say ""
    say "== large regime: $large_count events over $large_users users, random ids"
    say "   (loadgen --count $large_count $large_gen), mktd then the bare loop over the same events"
    mktd_start large normal
    lg --unix "$sock" --count $large_count $large_gen --pid "$pid" --report-every $every \
        --drain-timeout 600 >"$run/large/loadgen.txt" &
    lgpid=$!
    # A guard for the disk: when mktd's WAL passes the limit (default 30 GB),
    # loadgen stops sending, and both runs cover the events sent so far.
    wal_limit=$((${MKTD_BENCH_WAL_LIMIT_GB:-30} * 1024 * 1024 * 1024))
    (
        while kill -0 "$lgpid" 2>/dev/null; do
            w=$(stat -c %s "$run/large/mktd.db-wal" 2>/dev/null || echo 0)
            if [ "$w" -gt "$wal_limit" ]; then
                echo "mktd's WAL passed $((wal_limit >> 30)) GB: loadgen stopped" >"$run/guard.txt"
                kill -TERM "$lgpid"
                break
            fi
            sleep 1
        done
    ) &
    guard=$!
    wait "$lgpid" || true
    kill "$guard" 2>/dev/null || true
    wait "$guard" 2>/dev/null || true
    large_db=$(db_mb large)
    mktd_stop large
    [ "$keep" = 1 ] || rm -f "$run/large/mktd.db"*
    f=$run/large/loadgen.txt
    sent=$(res "$f" sent)
    if [ -s "$run/guard.txt" ]; then
        say "  $(cat "$run/guard.txt") after $sent events; the bare loop runs the same $sent"
    fi
    say "  mktd: $(res "$f" eps) events/s over the run, $(res "$f" wal_b_per_ev) WAL bytes per" \
        "event, errors $(res "$f" errors), $(res "$f" users) users, actions/event" \
        "$(res "$f" actions_per_event), avg batch $(batch_avg large), daemon cpu" \
        "$(res "$f" daemon_cpu)%, waiting for a cpu $(res "$f" runq_pct)%, RSS $(res "$f" rss_mb) MB" \
        "(peak $(res "$f" hwm_mb)), database $large_db; $(wal_stats large)"
    "$bb/bare_sqlite" --db "$run/bare.db" --sync normal --actions-per-event $bare_ape \
        --count "$sent" $large_gen --report-every $every >"$run/bare-large.txt"
    bare_db=$(du -m "$run/bare.db" | cut -f1)
    rm -f "$run/bare.db"*
    b=$run/bare-large.txt
    say "  bare loop: $(res "$b" eps) events/s (SQLite time), $(res "$b" wal_b_per_ev) WAL bytes per" \
        "event, database $bare_db MB"
    say "  mktd / bare loop: $(ratio "$(res "$f" eps)" "$(res "$b" eps)") %"
    say ""
    say "  per $every events:       mktd events/s  bare events/s  mktd/bare  mktd WAL B/ev  bare WAL B/ev  mktd RSS MB"
    # loadgen: PROGRESS answered t_s eps cum_eps wal_b_per_ev rss_mb (fields 1-7);
    # bare_sqlite: PROGRESS events t_s eps cum_eps wal_b_per_ev db_mb (8-14)
    paste <(grep '^PROGRESS' "$f") <(grep '^PROGRESS' "$b") | awk -v every=$every '
        { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[i] = kv[2] } }
        { printf "  %9d-%-9d %14s %14s %9.1f%% %14s %14s %12s\n", (NR - 1) * every, NR * every,
                 v[4], v[11], (v[11] > 0 ? 100 * v[4] / v[11] : 0), v[6], v[13], v[7] }' |
        tee -a "$summary"
    exit 0
fi

# --------------------------------------------------------------- cached ----
say ""
say "== cached regime: 300,000 events over 37,500 users, full speed ($conns conns, window $window)"
say "   (loadgen $cached_gen); mktd, then the bare loop over the same events"
best_mktd=0
best_bare=0
for i in $(seq 1 "$repeat"); do
    mktd_start "cached$i" normal
    lg --unix "$sock" $cached_gen --pid "$pid" >"$run/cached$i/loadgen.txt" || true
    mktd_stop "cached$i"
    f=$run/cached$i/loadgen.txt
    bare "bare-cached$i" normal $cached_gen
    b=$run/bare-cached$i.txt
    e=$(res "$f" eps)
    eb=$(res "$b" eps)
    say "  run $i: mktd $e events/s, WAL $(res "$f" wal_b_per_ev) B/event; bare loop $eb events/s," \
        "WAL $(res "$b" wal_b_per_ev) B/event; mktd / bare $(ratio "$e" "$eb") %"
    say "         mktd: errors $(res "$f" errors)  actions/event $(res "$f" actions_per_event)" \
        " avg batch $(batch_avg "cached$i")  daemon cpu $(res "$f" daemon_cpu)%  waiting for a cpu" \
        "$(res "$f" runq_pct)%  $(res "$f" eps_per_cpu) events per cpu-second  RSS $(res "$f" rss_mb) MB;" \
        "$(wal_stats "cached$i")"
    [ "$e" -gt "$best_mktd" ] && best_mktd=$e
    [ "$eb" -gt "$best_bare" ] && best_bare=$eb
    obs_batch=$(batch_avg "cached$i")
done
if [ "$obs_batch" != "?" ]; then
    bare bare-obs normal $cached_gen --batch "$obs_batch"
    say "  for reference, the bare loop at mktd's average batch ($obs_batch):" \
        "$(res "$run/bare-obs.txt" eps) events/s"
fi
bare bare-nockpt normal $cached_gen --autocheckpoint 0
say "  for reference, the bare loop without checkpoints (the WAL grows to the end):" \
    "$(res "$run/bare-nockpt.txt" eps) events/s"

if [ "$cached_only" = 0 ]; then
say ""
say "== cached regime, synchronous full"
best_full=0
best_bare_full=0
for i in $(seq 1 "$repeat"); do
    mktd_start "sync$i" full
    lg --unix "$sock" $cached_gen --pid "$pid" >"$run/sync$i/loadgen.txt" || true
    mktd_stop "sync$i"
    f=$run/sync$i/loadgen.txt
    bare "bare-full$i" full $cached_gen
    b=$run/bare-full$i.txt
    e=$(res "$f" eps)
    eb=$(res "$b" eps)
    say "  run $i: mktd $e events/s (avg batch $(batch_avg "sync$i")); bare loop $eb events/s;" \
        "mktd / bare $(ratio "$e" "$eb") %"
    [ "$e" -gt "$best_full" ] && best_full=$e
    [ "$eb" -gt "$best_bare_full" ] && best_bare_full=$eb
done

# ---- the ingest limit ----
say ""
say "== bare ingest + loadgen ($ingest_dur s each)"
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

fi # not --cached

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
    p50_rate=$(res "$f" p50_ms)
done
if [ "$cached_only" = 1 ]; then
    say ""
    say "== summary (best of $repeat; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
    say "  cached: mktd $best_mktd events/s, bare loop $best_bare events/s, mktd / bare loop" \
        "$(ratio "$best_mktd" "$best_bare") %"
    say "  p99 at 20,000/s offered  $p99_rate ms, p50 $p50_rate ms"
    exit 0
fi
# and at half of what mktd sustained: its latency without a queue
half=$((best_mktd / 2))
mktd_start half normal
lg --unix "$sock" --rate $half --window 1024 --duration $((rate_dur + warm)) --warmup $warm \
    --pid "$pid" --run-id half >"$run/half/loadgen.txt" || true
mktd_stop half
f=$run/half/loadgen.txt
say "  at $half events/s offered (half of mktd's best): answered $(res "$f" eps) events/s  p50" \
    "$(res "$f" p50_ms) ms  p99 $(res "$f" p99_ms) ms  p99.9 $(res "$f" p999_ms) ms"

# ---- RSS after N distinct users ----
say ""
say "== mktd RSS after $rss_users distinct users (each user's signup, then 20% more events)"
mktd_start rss normal
rss_count=$((rss_users + rss_users / 5))
lg --unix "$sock" --users $rss_users --user-order seq --count $rss_count --pid "$pid" \
    --run-id rss --drain-timeout 120 >"$run/rss/loadgen.txt" || true
rss_db=$(db_mb rss)
mktd_stop rss
f=$run/rss/loadgen.txt
rss=$(res "$f" rss_mb)
hwm=$(res "$f" hwm_mb)
say "  $(res "$f" users) users, $(res "$f" answered) events at $(res "$f" eps) events/s:" \
    "VmRSS $rss MB  VmHWM $hwm MB  database $rss_db"

# ---- the dormancy sweep ----
say ""
say "== $sweep_users users dormant at once (bench/sweep.sh $sweep_users)"
sweep=$(MKTD_BIN=$rel/mktd MKTD_PLUGINS=$rel/plugins "$here/sweep.sh" $sweep_users)
say "  $sweep"
sweep_s=$(echo "$sweep" | sed -n 's/.* in \([0-9.]*\) s;.*/\1/p')

# ---- summary ----
verdict() { if awk "BEGIN{exit !($1)}"; then echo met; else echo MISSED; fi; }
say ""
say "== summary (best of $repeat; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
say "  cached: mktd             $best_mktd events/s   (target >= 100000: $(verdict "$best_mktd >= 100000"))"
say "  cached: bare loop        $best_bare events/s"
say "  cached: mktd / bare loop $(ratio "$best_mktd" "$best_bare") %"
say "  sync full: mktd          $best_full events/s; bare loop $best_bare_full events/s;" \
    "mktd / bare $(ratio "$best_full" "$best_bare_full") %"
say "  bare ingest              $best_ing events/s"
say "  p99 at 20,000/s offered  $p99_rate ms, p50 $p50_rate ms   (target <= 5 ms: $(verdict "$p99_rate <= 5"))"
say "  RSS after $rss_users users  $rss MB (peak $hwm MB)   (target <= 150 MB: $(verdict "$hwm <= 150"))"
say "  sweep of $sweep_users users    ${sweep_s:-?} s   (target <= 2 s for 100,000: $(verdict "${sweep_s:-99} <= 2"))"
say "  (the large regime: bench/run.sh --large)"
