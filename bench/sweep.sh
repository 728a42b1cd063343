#!/usr/bin/env bash
# Dormancy sweep: N users (default 100,000) active at nearly the same
# moment, then one event 31 days later makes all of them dormant at once.
# Prints how long that one event took to be answered (every offer, holdout
# and chained coupon committed first), and the daemon's RSS.
#   bench/sweep.sh [N]     (uses build/mktd and build/plugins)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100000}
bin=${MKTD_BIN:-$repo/build/mktd}
plugins=$(realpath -m "${MKTD_PLUGINS:-$repo/build/plugins}") # absolute: the config is elsewhere
d=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$d"' EXIT
cat >"$d/sweep.yaml" <<YAML
daemon:
  listen: ["unix:$d/mktd.sock"]
  database: $d/mktd.db
  plugin_dirs: [$plugins]
  clock: event
  log: {level: warn}
campaigns:
  - id: winback
    plugin: reactivation
    params: {inactive_for: 30d, holdout_percent: 10, offer: {title: "We miss you"}}
  - id: winback-coupon
    plugin: coupon
    when: {event: reactivation.offer}
    params: {value: 1500, valid_for: 14d}
YAML
python3 - "$n" "$d" <<'PY'
import json, sys
n, d = int(sys.argv[1]), sys.argv[2]
t0 = 1735689600000
with open(f"{d}/users.ndjson", "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"u{i}", "type": "app.open", "user": f"user{i}", "ts": t0 + i}) + "\n")
with open(f"{d}/wake.ndjson", "w") as f:
    f.write(json.dumps({"id": "wake", "type": "app.open", "user": "someone", "ts": t0 + 31 * 86400000}) + "\n")
PY
"$bin" -c "$d/sweep.yaml" 2>"$d/mktd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$d/mktd.sock" ] && break; sleep 0.05; done
"$bin" send "unix:$d/mktd.sock" "$d/users.ndjson" >/dev/null
t0=$(date +%s.%N)
"$bin" send "unix:$d/mktd.sock" "$d/wake.ndjson" >/dev/null
t1=$(date +%s.%N)
actions=$(sqlite3 "$d/mktd.db" "SELECT count(*) FROM actions")
rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
printf 'sweep: %d users dormant at once -> %d actions committed in %.2f s; daemon peak RSS %d MB\n' \
    "$n" "$actions" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" $((rss / 1024))
