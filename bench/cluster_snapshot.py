#!/usr/bin/env python3
"""Shard snapshots of cluster mode: a three-node NATS cluster on 127.0.0.1
(tests/integration/natscluster.py), ONE partition (so that one shard holds
every user), bench/campaigns.yaml, USERS users with 3 events each (page
views, 1 in 7 a paid order).

  w1 applies the events with `snapshot: 3s`, at log level debug: the
     copy and publish times of each snapshot (from its log), and the
     apply thread's batches while a copy ran against the others (the
     copy is made on a connection of its own: it should not stall them);
  w1 stops; EXTRA more events are published;
  w2 (another database: a new machine) takes over: restore time (its log)
     and the time from its start until every event is in its shard;
  w3 (another database, `snapshot: 0`: no restore) does the same by
     replaying the partition from stream sequence 1, for comparison.

usage: bench/cluster_snapshot.py [USERS [EXTRA]]   (MKTD_BIN, MKTD_PLUGINS: a Release build)
"""
import datetime
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import PLUGINS, command, mktd  # noqa: E402
from natscluster import NatsCluster  # noqa: E402

import cluster_worker  # noqa: E402  (bench/: the same events)

USERS = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
EXTRA = int(sys.argv[2]) if len(sys.argv) > 2 else 10000


def events(n, start):
    return cluster_worker.events(n, start, USERS)


def applied(path):
    if not os.path.exists(path):
        return 0
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        n = c.execute("SELECT count(*) FROM events").fetchone()[0]
        c.close()
        return n
    except sqlite3.OperationalError:
        return 0


def wait_applied(path, n, timeout=600):
    deadline = time.time() + timeout
    while applied(path) < n:
        assert time.time() < deadline, f"{path}: not all applied"
        time.sleep(0.05)


def config(d, nc, name, snapshot, level):
    cfg = os.path.join(d, f"{name}.yaml")
    urls = ", ".join(f'"{u}"' for u in nc.urls())
    with open(os.path.join(HERE, "campaigns.yaml")) as f:
        campaigns = f.read()
    os.makedirs(os.path.join(d, name), exist_ok=True)
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("the bench's cluster secret\n")
    with open(cfg, "w") as f:
        f.write("daemon:\n"
                f"  database: {d}/{name}/mktd.db\n"
                f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
                f"  log: {{level: {level}}}\n"
                f"  cluster: {{nats: [{urls}], partitions: 1, worker: {name}, takeover: 2s,"
                f" snapshot: {snapshot}, secret_file: cluster.secret}}\n" + campaigns)
    return cfg


def ts(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def run(d, cfg, name, n):
    """Starts worker name, waits until its shard holds n events, stops it:
    (seconds from start to applied, its log)."""
    logpath = os.path.join(d, f"{name}.log")
    with open(logpath, "ab") as log:
        t = time.time()
        w = subprocess.Popen(command("-c", cfg), stderr=log)
        try:
            wait_applied(os.path.join(d, name, "mktd.db.p0"), n)
            dt = time.time() - t
            return dt, w
        except BaseException:
            w.kill()
            raise


def stop(w):
    w.terminate()
    w.wait()


def main():
    nc = NatsCluster(3)
    d = tempfile.mkdtemp(prefix="mktd-bench-snap-")
    cfg1 = config(d, nc, "w1", "3s", "debug")
    while mktd("cluster", "init", "-c", cfg1).returncode != 0:
        time.sleep(0.5)
    n = 3 * USERS
    r = mktd("publish", "-c", cfg1, "-", input=events(n, 0), timeout=900)
    assert r.returncode == 0, r.stderr
    dt, w1 = run(d, cfg1, "w1", n)
    print(f"w1: {n} events of {USERS} users applied in {dt:.1f} s")
    # the last snapshot (at the final applied sequence)
    deadline = time.time() + 60
    while True:
        st = json.loads(mktd("cluster", "status", "-c", cfg1, "--format", "json").stdout)
        p = st["partitions"][0]
        if p.get("snapshot") and p["snapshot"]["applied_seq"] == n:
            break
        assert time.time() < deadline, p
        time.sleep(0.2)
    stop(w1)
    snap = p["snapshot"]
    with open(os.path.join(d, "w1.log"), errors="replace") as f:
        log1 = f.read().splitlines()
    # snapshots: copy and publish; the copy's window in time
    copies = []
    for line in log1:
        m = re.search(r"snapshot at applied stream sequence (\d+): (\d+) bytes in (\d+) chunks"
                      r".*\(copy (\d+) ms, publish (\d+) ms\)", line)
        if m:
            end = ts(line) - int(m.group(5)) / 1000
            copies.append((end - int(m.group(4)) / 1000, end, int(m.group(2)), int(m.group(4)),
                           int(m.group(5)), int(m.group(3))))
    for c in copies:
        print(f"snapshot: {c[2] / 1e6:.1f} MB in {c[5]} chunks: copy {c[3]} ms, "
              f"publish {c[4]} ms")
    # the apply thread's batches: during a copy and not
    during, other = [], []
    for line in log1:
        m = re.search(r"partition 0: (\d+) events: fetch (\d+) ms, apply and commit (\d+) ms",
                      line)
        if m:
            t = ts(line)
            dur = int(m.group(3)) / 1000
            over = any(t - dur < c[1] and t > c[0] for c in copies)
            (during if over else other).append((int(m.group(1)), int(m.group(3))))

    def rate(b):
        ev = sum(x[0] for x in b)
        ms = sum(x[1] for x in b)
        return (f"{len(b)} batches, {ev / max(ms, 1) * 1000:,.0f} events/s, "
                f"max {max((x[1] for x in b), default=0)} ms")
    print(f"apply batches while a copy ran: {rate(during)}; otherwise: {rate(other)}")

    r = mktd("publish", "-c", cfg1, "-", input=events(EXTRA, n), timeout=900)
    assert r.returncode == 0, r.stderr
    total = n + EXTRA
    cfg2 = config(d, nc, "w2", "60s", "info")
    dt, w2 = run(d, cfg2, "w2", total)
    stop(w2)
    with open(os.path.join(d, "w2.log"), errors="replace") as f:
        log2 = f.read()
    m = re.search(r"restored from snapshot at applied stream sequence (\d+) \((\d+) bytes, "
                  r"(\d+) chunks, (\d+) ms", log2)
    assert m, log2[-3000:]
    start = re.search(r"partition 0: applying from stream sequence (\d+)", log2).group(1)
    print(f"w2 (restore): snapshot of {int(m.group(2)) / 1e6:.1f} MB ({m.group(3)} chunks) "
          f"restored in {m.group(4)} ms, consumer from stream sequence {start}; "
          f"start -> {total} events applied: {dt:.1f} s")
    cfg3 = config(d, nc, "w3", "0", "info")
    dt3, w3 = run(d, cfg3, "w3", total)
    stop(w3)
    print(f"w3 (no snapshot: replay from 1): start -> {total} events applied: {dt3:.1f} s")
    print(f"(snapshot applied seq {snap['applied_seq']}, {snap['bytes']} bytes)")


if __name__ == "__main__":
    main()
