#!/usr/bin/env python3
"""Cluster workers end to end against one daemon, on the same events: a
three-node NATS cluster on 127.0.0.1 (tests/integration/natscluster.py),
16 partitions, bench/campaigns.yaml, N events (page views, 1 in 7 a paid
order, 40,000 users, no ts), written once to files that every phase reads.

  single:    one daemon (no cluster section, the same campaigns and
             defaults) on a Unix socket; the first N events, then N more,
             each sent by CONNS `mktd send` processes at once (the lines
             dealt out in turn): the time until every line is answered;
  one:       one worker. catch-up: the first N published, then the worker
             started: the time from its start until every event is in a
             shard; live: the worker running, N more published: the time
             from the start of `mktd publish` until every event is in a
             shard (and until the actions stream holds every action);
  two:       a fresh NATS cluster, w1 and w2 (each its own database), once
             they hold 8 partitions each: the first N published live
             (fresh shards), then N more (shards that hold the first N);
  takeover:  w1 and w2 as left by `two`, N more published; once a fifth
             of them is in the shards, w2 is killed with SIGKILL: the time
             from the kill until w1 holds all 16 leases, and until every
             event is in w1's shards (w2's partitions replayed from its
             last snapshot or from sequence 1) and every action published.

"Every action published": every action of the graph's shard is
delivered (its key kept in its user's partition's shard, recorded or
capped there), and the sum over partitions of actions_published (`mktd
cluster status --format json`) equals the number of actions rows in the
current owners' shards.

CPU: utime + stime of every process of a phase (/proc/<pid>/stat for the
daemon, workers and nats-servers, wait4 for `mktd send` and `mktd
publish`) over the measured stretch, per event. The NATS path's cost is
the CPU per event of the one-worker live run (nats-servers, publisher,
worker) less that of the daemon's second N (daemon, senders), and the
wall-clock difference 1/rate(one worker, live) - 1/rate(daemon, second N).

With referral in the campaigns, the graph partition (docs/cluster.md)
applies every event too: "every event in a shard" includes the graph's
shard. --no-referral leaves the referral campaign out (the graph idle),
to show what the graph costs.

usage: bench/cluster_worker.py [N] [--phases single,one,two,takeover]
           [--conns 4] [--takeover 10s] [--keep] [--no-referral]
           (MKTD_BIN, MKTD_PLUGINS: a Release build)
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import BIN, PLUGINS, command, mktd  # noqa: E402
from natscluster import NatsCluster  # noqa: E402

PARTS = 16
TICK = os.sysconf("SC_CLK_TCK")
LOGLEVEL = os.environ.get("LOGLEVEL", "info")  # workers log no line per batch below debug


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


def load():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu(pid):
    """utime + stime of a live process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpus(pids):
    return {p: cpu(p) for p in pids}


def spent(before, after=None):
    after = after or cpus(before)
    return sum(after[p] - before[p] for p in before)


class Cli:
    """A mktd command run in the background, its output to files; a thread
    reaps it (wait4) the moment it ends: its exit status, end time and own
    CPU seconds."""

    def __init__(self, d, name, *args):
        self.out = os.path.join(d, name + ".out")
        self.err = os.path.join(d, name + ".err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(command(*args), stdout=o, stderr=e)
        self.rc = self.end = self.cpu = None
        self.ended = threading.Event()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self):
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.end = time.time()
        self.cpu = ru.ru_utime + ru.ru_stime
        self.proc.returncode = self.rc = os.waitstatus_to_exitcode(status)
        self.ended.set()

    def wait(self):
        self.ended.wait()
        return self.rc

    def done(self):
        return self.ended.is_set()

    def text(self):
        with open(self.out, errors="replace") as o, open(self.err, errors="replace") as e:
            return o.read() + e.read()


def write_events(d, n, start, name):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(events(n, start))
    return path


NO_REFERRAL = False  # --no-referral: bench/campaigns.yaml without `invite`


def campaigns():
    with open(os.path.join(HERE, "campaigns.yaml")) as f:
        text = f.read()
    if NO_REFERRAL:  # the campaign's comment and block, up to the blank line after it
        text = re.sub(r"\n  # 分销.*?\n(?=\n)", "\n", text, flags=re.S)
        assert "referral" not in text
    return text


def daemon_head(d, name, listen=""):
    os.makedirs(os.path.join(d, name), exist_ok=True)
    return ("daemon:\n"
            + (f"  listen: [{json.dumps(listen)}]\n" if listen else "")
            + f"  database: {d}/{name}/mktd.db\n"
            f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
            f"  log: {{level: {LOGLEVEL}}}\n")


def worker_config(d, nc, name, takeover):
    cfg = os.path.join(d, f"{name}.yaml")
    urls = ", ".join(f'"{u}"' for u in nc.urls())
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("the bench's cluster secret\n")
    with open(cfg, "w") as f:
        f.write(daemon_head(d, name)
                + f"  cluster: {{nats: [{urls}], partitions: {PARTS}, worker: {name},"
                f" takeover: {takeover}, secret_file: cluster.secret}}\n" + campaigns())
    return cfg


def shard_count(path, table):
    if not os.path.exists(path):
        return 0
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            c.close()
    except sqlite3.OperationalError:  # being created
        return 0


def shard(d, worker, p):
    return f"{d}/{worker}/mktd.db.p{p}"


def applied(d, owners, table="events"):
    """Rows of table over the shards of each partition's owner (owners: a
    list of 16 worker names; one name: that worker owns all)."""
    return sum(shard_count(shard(d, o, p), table) for p, o in enumerate(owners) if o)


def status(cfg):
    r = mktd("cluster", "status", "-c", cfg, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def owners_of(cfg):
    return [p["owner"] for p in status(cfg)["partitions"]]


def wait_until(what, pred, timeout, every=0.1):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def actions_settled(d, cfg, owners):
    """Once the graph's actions are all delivered (each one's key kept in
    its user's partition, recorded or capped there) and the owners'
    shards' actions are all published: their number."""
    st = status(cfg)
    graph = st["graph"].get("owner")
    if graph:
        made = shard_count(f"{d}/{graph}/mktd.db.graph", "actions")
        got = applied(d, owners, "uniques WHERE ns = 'mktd:delivered'")
        if got < made:
            return None
    pub = sum(max(p.get("actions_published", 0), 0) for p in st["partitions"])
    rows = applied(d, owners, "actions")
    return rows if pub == rows else None


def graph_applied(d, cfg):
    """Event ids in the graph partition's shard (it applies every event
    while a referral campaign runs; without one it holds none)."""
    owner = status(cfg)["graph"].get("owner")
    return shard_count(f"{d}/{owner}/mktd.db.graph", "events") if owner else 0


def all_applied(d, cfg, owners, n):
    """The partitions' shards hold n events, and so does the graph's when
    it has a campaign."""
    return applied(d, owners) >= n and (NO_REFERRAL or graph_applied(d, cfg) >= n)


def wait_applied_and_published(d, cfg, owners, n, t0, at_applied=None, timeout=900):
    """Seconds from t0 until the owners' shards (and the graph's) hold n
    events (then at_applied() is called), and until every action of
    theirs is published; the number of actions."""
    wait_until(f"{n} events applied", lambda: all_applied(d, cfg, owners, n), timeout)
    t_applied = time.time() - t0
    if at_applied:
        at_applied()
    acts = wait_until("every action published", lambda: actions_settled(d, cfg, owners),
                      timeout, 0.2)
    return t_applied, time.time() - t0, acts


def rate(n, dt):
    return n / dt if dt > 0 else float("inf")


class Report:
    """The figures as printed, kept for the table at the end."""

    def __init__(self):
        self.rows = []  # (phase, figure, events or None, seconds, CPU seconds or None, load)

    def add(self, phase, figure, n, dt, cpu_parts=None, detail=""):
        """cpu_parts: {what: CPU seconds} over the stretch measured."""
        c = sum(cpu_parts.values()) if cpu_parts else None
        self.rows.append((phase, figure, n, dt, c, os.getloadavg()[0]))
        if n is None:
            print(f"{phase}: {figure}: {dt:.2f} s{detail}  [load {load()}]", flush=True)
            return
        cs = ""
        if cpu_parts:
            cs = f"; CPU {c / n * 1e6:,.0f} µs/event (" + ", ".join(
                f"{k} {v / n * 1e6:,.0f}" for k, v in cpu_parts.items()) + ")"
        print(f"{phase}: {figure}: {n:,} events in {dt:.2f} s = {rate(n, dt):,.0f} events/s{cs}"
              f"{detail}  [load {load()}]", flush=True)

    def get(self, phase, figure):
        for r in self.rows:
            if r[0] == phase and r[1] == figure:
                return r
        return None

    def table(self):
        print("\n| phase | figure | seconds | events/s | CPU µs/event | load (1 min) |")
        print("|---|---|---|---|---|---|")
        for phase, figure, n, dt, c, ld in self.rows:
            r = f"{rate(n, dt):,.0f}" if n else ""
            cs = f"{c / n * 1e6:,.0f}" if n and c is not None else ""
            print(f"| {phase} | {figure} | {dt:.2f} | {r} | {cs} | {ld:.1f} |")


def phase_single(d, files, n, conns, rep):
    """One daemon, no cluster: each file sent by conns `mktd send` at once."""
    sock = os.path.join(d, "single.sock")
    cfg = os.path.join(d, "single.yaml")
    with open(cfg, "w") as f:
        f.write(daemon_head(d, "single", f"unix:{sock}") + campaigns())
    # the lines dealt out in turn to conns files
    parts = []
    for k, path in enumerate(files):
        with open(path) as f:
            lines = f.readlines()
        names = []
        for c in range(conns):
            name = os.path.join(d, f"single.{k}.{c}.ndjson")
            with open(name, "w") as f:
                f.writelines(lines[c::conns])
            names.append(name)
        parts.append(names)
    with open(os.path.join(d, "single.log"), "ab") as log:
        proc = subprocess.Popen(command("-c", cfg), stdout=log, stderr=log)
    try:
        def listening():
            assert proc.poll() is None, "the daemon exited"
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sock)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_until("the daemon's socket", listening, 30)
        for k, names in enumerate(parts):
            before = cpus([proc.pid])
            t0 = time.time()
            senders = [Cli(d, f"send.{k}.{c}", "send", f"unix:{sock}", name)
                       for c, name in enumerate(names)]
            for s in senders:
                s.wait()
            dt = time.time() - t0
            c = {"daemon": spent(before), "mktd send": sum(s.cpu for s in senders)}
            ok = acts = 0
            for s in senders:
                out = s.text()
                assert s.rc == 0, out[-2000:]
                # "N answered: X ok (A actions), D duplicate, E error"
                words = out.split("answered:")[1].split()
                ok += int(words[0])
                acts += int(words[2].lstrip("("))
            assert ok == n, (ok, n)
            rep.add("single daemon", ["first N", "second N"][k] + f" ({conns} connections)",
                    n, dt, c, f"; {acts:,} actions")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def start_worker(d, cfg, name):
    log = open(os.path.join(d, f"{name}.log"), "ab")
    w = subprocess.Popen(command("-c", cfg), stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    return w


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def init(cfg):
    deadline = time.time() + 60
    while mktd("cluster", "init", "-c", cfg).returncode != 0:
        assert time.time() < deadline, "cluster init failed"
        time.sleep(0.5)


def publish(d, cfg, path, name):
    return Cli(d, name, "publish", "-c", cfg, path)


def nats_pids(nc):
    return [p.pid for p in nc.procs]


def live(d, cfg, path, n, total, owners, workers, nc, rep, phase, figure):
    """Publishes path (n events) with the workers running; the figures from
    the start of `mktd publish`: until every event is in a shard, until
    every action is published. CPU over that stretch."""
    nats = cpus(nats_pids(nc))
    work = cpus([w.pid for w in workers])
    t0 = time.time()
    pub = publish(d, cfg, path, "pub." + "".join(x if x.isalnum() else "_" for x in phase + figure))
    c = {}

    def at_applied():
        c.update({"nats-servers": spent(nats), "mktd publish": None, "workers": spent(work)})
    t_applied, t_pub, acts = wait_applied_and_published(d, cfg, owners, total, t0, at_applied)
    assert pub.wait() == 0, pub.text()[-2000:]
    c["mktd publish"] = pub.cpu
    rep.add(phase, f"{figure}: publish -> applied", n, t_applied, c,
            f"; publish itself {pub.end - t0:.2f} s")
    rep.add(phase, f"{figure}: publish -> actions published", n, t_pub, None,
            f"; {acts:,} actions in the shards, all published")


def phase_one(d, files, n, takeover, rep):
    nc = NatsCluster(3)
    try:
        cfg = worker_config(d, nc, "w1", takeover)
        init(cfg)
        before = cpus(nats_pids(nc))
        t0 = time.time()
        pub = publish(d, cfg, files[0], "pub.one.0")
        assert pub.wait() == 0, pub.text()[-2000:]
        rep.add("one worker", "publish alone (no worker)", n, pub.end - t0,
                {"nats-servers": spent(before), "mktd publish": pub.cpu})
        t0 = time.time()
        w = start_worker(d, cfg, "w1")
        try:
            before = cpus(nats_pids(nc) + [w.pid])
            wait_until(f"{n} events applied", lambda: all_applied(d, cfg, ["w1"] * PARTS, n), 900)
            rep.add("one worker", "catch-up (from the worker's start)", n, time.time() - t0,
                    {"nats-servers and worker": spent(before)})
            # the actions of the catch-up settled before the live run
            wait_until("the catch-up's actions published",
                       lambda: actions_settled(d, cfg, ["w1"] * PARTS), 120, 0.2)
            live(d, cfg, files[1], n, 2 * n, ["w1"] * PARTS, [w], nc, rep, "one worker",
                     "live, second N")
        finally:
            stop([w])
    finally:
        nc.close()


def phase_two(d, files, n, takeover, rep, do_takeover):
    nc = NatsCluster(3)
    ws = []
    try:
        cfgs = [worker_config(d, nc, name, takeover) for name in ("w1", "w2")]
        cfg = cfgs[0]
        init(cfg)
        ws = [start_worker(d, c, name) for c, name in zip(cfgs, ("w1", "w2"))]

        def shared():
            o = owners_of(cfg)
            return o if sorted(o.count(x) for x in ("w1", "w2")) == [8, 8] else None
        owners = wait_until("8 partitions each", shared, 120, 0.5)
        live(d, cfg, files[0], n, n, owners, ws, nc, rep, "two workers", "live, first N")
        assert owners_of(cfg) == owners, "partitions moved during the run"
        live(d, cfg, files[1], n, 2 * n, owners, ws, nc, rep, "two workers", "live, second N")
        assert owners_of(cfg) == owners, "partitions moved during the run"
        if do_takeover:
            takeover_run(d, cfg, files[2], n, owners, ws, rep)
    finally:
        stop(ws)
        nc.close()


def takeover_run(d, cfg, path, n, owners, ws, rep):
    t_start = time.time()
    pub = publish(d, cfg, path, "pub.takeover")
    wait_until("a fifth applied", lambda: applied(d, owners) >= 2 * n + n // 5, 300, 0.05)
    at_kill = applied(d, owners)
    ws[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    ws[1].wait()
    published_at_kill = pub.done()
    everything = ["w1"] * PARTS
    wait_until("w1 holds every lease", lambda: owners_of(cfg) == everything, 300, 0.1)
    t_leases = time.time() - t0
    t_applied, t_all, acts = wait_applied_and_published(d, cfg, everything, 3 * n, t0)
    assert pub.wait() == 0, pub.text()[-2000:]
    print(f"takeover: {n:,} events published from {t_start - t0:+.2f} s to {pub.end - t0:+.2f} s"
          f" of the kill{' (all before it)' if published_at_kill else ''}; {at_kill:,} of"
          f" {3 * n:,} events applied at the kill", flush=True)
    with open(os.path.join(d, "w1.log"), errors="replace") as f:
        log = f.read()
    theirs = [p for p, o in enumerate(owners) if o == "w2"]
    start = {}
    for line in log.splitlines():
        m = re.search(r"partition (\d+): applying from stream sequence (\d+)", line)
        if m and int(m.group(1)) in theirs:
            start[int(m.group(1))] = int(m.group(2))
    print(f"takeover: w1 restored {log.count('restored from snapshot')} partitions from a"
          f" snapshot; w2's partitions applied from stream sequences"
          f" {', '.join(f'p{p}: {s}' for p, s in sorted(start.items()))}", flush=True)
    rep.add("takeover", "kill -9 w2 -> w1 holds all 16 leases", None, t_leases)
    rep.add("takeover", f"kill -9 w2 -> all {3 * n:,} events in w1's shards", None, t_applied)
    rep.add("takeover", f"kill -9 w2 -> all {acts:,} actions published", None, t_all)


def git_head():
    r = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                       text=True)
    return r.stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=100000)
    ap.add_argument("--phases", default="single,one,two,takeover")
    ap.add_argument("--conns", type=int, default=4, help="mktd send processes for the daemon")
    ap.add_argument("--takeover", default="10s", help="the workers' cluster.takeover")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, shards)")
    ap.add_argument("--no-referral", action="store_true",
                    help="campaigns.yaml without its referral campaign (the graph partition idle)")
    a = ap.parse_args()
    global NO_REFERRAL
    NO_REFERRAL = a.no_referral
    phases = set(a.phases.split(","))
    unknown = phases - {"single", "one", "two", "takeover"}
    if unknown:
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    n = a.n
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {git_head()},"
          f" {os.cpu_count()} cores, {BIN}; N = {n:,}, {PARTS} partitions, takeover {a.takeover}")
    print(f"load average at start: {load()}", flush=True)
    d = tempfile.mkdtemp(prefix="mktd-bench-cluster-")
    files = [write_events(d, n, k * n, f"ev{k}.ndjson") for k in range(3)]
    rep = Report()

    def own(name):  # each phase's databases, configs and logs
        os.makedirs(os.path.join(d, name))
        return os.path.join(d, name)
    try:
        if "single" in phases:
            phase_single(own("single"), files[:2], n, a.conns, rep)
        if "one" in phases:
            phase_one(own("one"), files, n, a.takeover, rep)
        if "two" in phases or "takeover" in phases:
            phase_two(own("two"), files, n, a.takeover, rep, "takeover" in phases)
    except BaseException:
        print(f"(work dir kept: {d})")
        raise
    rep.table()
    one = rep.get("one worker", "live, second N: publish -> applied")
    single = rep.get("single daemon", f"second N ({a.conns} connections)")
    two = rep.get("two workers", "live, second N: publish -> applied")
    if one and two:
        print(f"\ntwo workers / one worker (live, second N): {one[3] / two[3]:.2f}x")
    if one and single:
        wall = (one[3] - single[3]) / n * 1e6
        cpu_s = (one[4] - single[4]) / n * 1e6
        print(f"the NATS path per event (one worker live against the daemon, second N): "
              f"wall {wall:+,.1f} µs; CPU {cpu_s:+,.1f} µs "
              f"({one[4] / n * 1e6:,.1f} against {single[4] / n * 1e6:,.1f})")
    print(f"load average at end: {load()}")
    if a.keep:
        print(f"(work dir {d})")
    else:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
