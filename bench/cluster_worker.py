#!/usr/bin/env python3
"""One cluster worker end to end: a three-node NATS cluster on 127.0.0.1
(tests/integration/natscluster.py), 16 partitions, bench/campaigns.yaml,
and N events (page views, 1 in 7 a paid order, 40,000 users).

  catch-up:  N events published first, then the worker started: the time
             from its start until every event is in a shard (partitions
             taken, shards and consumers opened, events applied, actions
             published);
  live:      the worker running, N more events published: the time from
             the start of `mktd publish` until every event is in a shard.

usage: bench/cluster_worker.py [N]   (MKTD_BIN, MKTD_PLUGINS: a Release build)
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import PLUGINS, command, mktd  # noqa: E402
from natscluster import NatsCluster  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
PARTS = 16


def events(n, start, users=40000):
    """n events from number start: 1 in 7 a paid order, the rest page views."""
    out = []
    for i in range(start, start + n):
        u = f"u{(i * 7919) % users}"
        e = {"id": f"e{i}", "user": u}  # no ts: time comes from the log
        if i % 7 == 0:
            e.update(type="order.paid", props={"order_id": f"o{i}", "amount": 5000 + (i % 9) * 2000})
        else:
            e["type"] = "page.view"
        out.append(json.dumps(e) + "\n")
    return "".join(out)


def applied(d):
    n = 0
    for p in range(PARTS):
        path = f"{d}/mktd.db.p{p}"
        if not os.path.exists(path):
            continue
        try:
            c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            n += c.execute("SELECT count(*) FROM events").fetchone()[0]
            c.close()
        except sqlite3.OperationalError:
            pass
    return n


def wait_applied(d, n):
    while applied(d) < n:
        time.sleep(0.1)


def main():
    nc = NatsCluster(3)
    d = tempfile.mkdtemp(prefix="mktd-bench-cluster-")
    cfg = os.path.join(d, "w1.yaml")
    urls = ", ".join(f'"{u}"' for u in nc.urls())
    with open(os.path.join(HERE, "campaigns.yaml")) as f:
        campaigns = f.read()
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("the bench's cluster secret\n")
    with open(cfg, "w") as f:
        f.write("daemon:\n"
                f"  database: {d}/mktd.db\n"
                f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
                "  log: {level: " + os.environ.get("LOGLEVEL", "warn") + "}\n"
                f"  cluster: {{nats: [{urls}], partitions: {PARTS}, worker: w1,"
                " secret_file: cluster.secret}\n" + campaigns)
    while mktd("cluster", "init", "-c", cfg).returncode != 0:
        time.sleep(0.5)
    text = events(N, 0)
    t = time.time()
    r = mktd("publish", "-c", cfg, "-", input=text, timeout=600)
    assert r.returncode == 0, r.stderr
    pub = time.time() - t
    print(f"publish: {N} events in {pub:.2f} s: {N / pub:,.0f} events/s")
    log = open(os.path.join(d, "w1.log"), "ab")
    t = time.time()
    w = subprocess.Popen(command("-c", cfg), stderr=log)
    try:
        wait_applied(d, N)
        dt = time.time() - t
        print(f"catch-up: {N} events applied in {dt:.2f} s from the worker's start:"
              f" {N / dt:,.0f} events/s")
        text = events(N, N)
        t = time.time()
        r = mktd("publish", "-c", cfg, "-", input=text, timeout=600)
        assert r.returncode == 0, r.stderr
        wait_applied(d, 2 * N)
        dt = time.time() - t
        print(f"live: {N} events published and applied in {dt:.2f} s: {N / dt:,.0f} events/s")
        r = mktd("cluster", "status", "-c", cfg, "--format", "json")
        st = json.loads(r.stdout)
        print("actions published:", sum(p.get("actions_published", 0) for p in st["partitions"]))
    finally:
        w.terminate()
        w.wait()


if __name__ == "__main__":
    main()
