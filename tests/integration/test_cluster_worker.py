"""Cluster mode (spec 17), the workers: `mktd -c FILE` with daemon.cluster
takes a fair share of the partitions with leases, applies each to its own
shard and publishes the shard's actions; checked against a real
three-node NATS JetStream cluster on 127.0.0.1 started by the test.

The checks of every test: each event is in exactly one current owner's
shard (the union of their event-id tables is the input, no id twice), and
the actions stream holds each action of the shards exactly once."""
import atexit
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time

import harness
from harness import PLUGINS, TEST_PLUGINS, command, mktd, slow
from natscluster import NatsCluster

# fewer events under valgrind (MKTD_VALGRIND=1), where every process is ~10x slower
SCALE = 10 if harness.VALGRIND else 1

PARTITIONS = 16
T0 = 1767225600000  # 2026-01-01, ms

CAMPAIGNS = """campaigns:
  - id: welcome
    plugin: coupon
    when: {event: order.paid}
    params: {value: 500, valid_for: 7d}
  - id: winback
    plugin: reactivation
    params: {inactive_for: 1h}
"""


def write_config(d, nats, worker, campaigns=CAMPAIGNS, extra="", plugin_dirs=(PLUGINS,)):
    """A worker's config; extra: more keys of daemon.cluster ("snapshot: 1s")."""
    path = os.path.join(d, f"{worker}.yaml")
    urls = ", ".join(f'"{u}"' for u in nats)
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("the workers' shared secret\n")
    with open(path, "w") as f:
        f.write("daemon:\n"
                f"  database: {d}/{worker}/mktd.db\n"
                f"  plugin_dirs: {json.dumps(list(plugin_dirs))}\n"
                f"  cluster: {{nats: [{urls}], partitions: {PARTITIONS}, worker: {worker},"
                " takeover: 2s, secret_file: cluster.secret"
                + (", " + extra if extra else "") + "}\n" + campaigns)
    os.makedirs(os.path.join(d, worker), exist_ok=True)
    return path


def init(cfg):
    deadline = time.time() + slow(30)
    while True:
        r = mktd("cluster", "init", "-c", cfg)
        if r.returncode == 0 or time.time() > deadline:
            assert r.returncode == 0, r.stderr
            return
        time.sleep(0.5)


def partition_of(user):
    """FNV-1a 32 of the user id mod PARTITIONS (spec 17)."""
    h = 2166136261
    for b in user.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % PARTITIONS


def events(n, users=400, prefix="e", start=0):
    """Page views and paid orders of many users, a minute apart per 60
    events, with hours of quiet for some users (so reactivation fires)."""
    out = []
    for i in range(start, start + n):
        u = f"u{i % users}"
        ts = T0 + i * 1000 + (i // 5000) * 3 * 3600 * 1000
        if i % 7 == 0:
            out.append({"id": f"{prefix}{i}", "type": "order.paid", "user": u, "ts": ts,
                        "props": {"order_id": f"o{i}", "amount": 1000 + i % 500}})
        else:
            out.append({"id": f"{prefix}{i}", "type": "page.view", "user": u, "ts": ts})
    return out


def publish(cfg, evs):
    text = "".join(json.dumps(e) + "\n" for e in evs)
    r = mktd("publish", "-c", cfg, "-", input=text, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


class Worker:
    def __init__(self, d, cfg, name):
        self.d, self.cfg, self.name = d, cfg, name
        self.log = os.path.join(d, f"{name}.log")
        self.proc = None

    def start(self, env=None):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command("-c", self.cfg), stdout=subprocess.DEVNULL,
                                         stderr=log, env=dict(os.environ, **(env or {})))
        atexit.register(self._kill)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.terminate()
            try:
                rc = self.proc.wait(timeout=slow(20))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM:\n{self.tail()}")
            assert rc == 0, (rc, self.tail())

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def tail(self):
        if not os.path.exists(self.log):
            return "(not started)"
        with open(self.log, errors="replace") as f:
            return f.read()[-3000:]

    def shard(self, p):
        return os.path.join(self.d, self.name, f"mktd.db.p{p}")


def status(cfg):
    r = mktd("cluster", "status", "-c", cfg, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(what, pred, timeout):
    deadline = time.time() + slow(timeout)
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def shard_event_ids(path):
    """The event ids a shard remembers. In cluster mode an event is
    remembered as its id, 0x1f and its user's pseudonym (event ids are
    unique per user, spec 18)."""
    ids = []
    for (key,) in shard_rows(path, "SELECT id FROM events"):
        assert "\x1f" in key, key
        ids.append(key.rsplit("\x1f", 1)[0])
    return ids


def shard_rows(path, sql):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def shard_count(path):
    """Event ids in a shard; 0 while it is being created."""
    if not os.path.exists(path):
        return 0
    try:
        return shard_rows(path, "SELECT count(*) FROM events")[0][0]
    except sqlite3.OperationalError:  # the schema not there yet
        return 0


def current_shards(cfg, workers):
    """partition -> the current owner's shard path (every partition owned)."""
    st = status(cfg)
    by = {w.name: w for w in workers}
    out = {}
    for p in st["partitions"]:
        if p["owner"] not in by:
            return None
        out[p["partition"]] = by[p["owner"]].shard(p["partition"])
    return out


def applied_all(cfg, workers, n_events):
    """The current owners' shards once they hold n_events ids in all."""
    shards = current_shards(cfg, workers)
    if not shards:
        return None
    total = 0
    for p, path in shards.items():
        total += shard_count(path)
    return shards if total == n_events else None


def stream_actions(cfg, passing=False):
    """The actions stream read back; passing: None when JetStream did not
    answer in time (a server lost moments before), to be asked again."""
    r = mktd("cluster", "actions", "-c", cfg, timeout=60)
    if passing and r.returncode != 0 and "Timeout" in r.stderr:
        return None
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def check_exactly_once(cfg, shards, evs):
    ids = []
    for p, path in shards.items():
        ids += shard_event_ids(path)
    assert len(ids) == len(set(ids)), "an event applied twice"
    assert set(ids) == {e["id"] for e in evs}

    def settled():
        # the last batch's actions may still be on their way, and a tick
        # may fire a timer's action between the two reads: read again
        actions = {}
        for p, path in shards.items():
            for seq, campaign, kind, user, payload in shard_rows(
                    path, "SELECT seq, campaign, kind, user, payload FROM actions"):
                actions[(p, seq)] = (campaign, kind, user, json.loads(payload))
        got = stream_actions(cfg, passing=True)
        if got is None:
            return None
        keys = [(a["partition"], a["seq"]) for a in got]
        assert len(keys) == len(set(keys)), "an action published twice"
        return (actions, got) if set(keys) == set(actions) else None
    actions, got = wait_for("the actions stream to hold the shards' actions", settled, 60)
    assert actions, "no actions at all"
    kinds = {a[1] for a in actions.values()}
    assert "coupon.issued" in kinds or any("coupon" in k for k in kinds), kinds
    # as the shards hold them, payloads too: a partition replayed after a
    # takeover draws the same coupon codes as the owner that published them
    for a in got:
        want = actions[(a["partition"], a["seq"])]
        assert (a["campaign"], a["kind"], a["user"], a["payload"]) == want, (a, want)
    return len(actions)


@contextlib.contextmanager
def workers_running(ws):
    """A test's block with workers: each worker's log printed when it
    fails; at its end every worker still running stopped (SIGTERM to all
    at once, then each waited for: one stopped after another would first
    take over the other's partitions)."""
    try:
        yield
    except BaseException:
        for w in ws:
            print(f"--- {w.name}'s log:\n{w.tail()}")
        raise
    finally:
        for w in ws:
            if w.proc and w.proc.poll() is None:
                w.terminate()
        for w in ws:
            if w.proc and w.proc.poll() is None:
                w.stop()


def setup(n_workers=2, campaigns=CAMPAIGNS, max_payload=None, extra=""):
    """A three-node NATS cluster, n_workers workers (w1, w2, ...; not
    started) with these campaigns, and `cluster init` done; max_payload:
    the servers' (None: their default); extra: more keys of
    daemon.cluster."""
    nc = NatsCluster(3, max_payload=max_payload)
    d = tempfile.mkdtemp(prefix="mktd-clw-")
    harness._TEMP_DIRS.append(d)
    names = [f"w{i + 1}" for i in range(n_workers)]
    workers = [Worker(d, write_config(d, nc.urls(), n, campaigns, extra), n) for n in names]
    init(workers[0].cfg)
    return nc, d, workers


def owners(cfg):
    return [p["owner"] for p in status(cfg)["partitions"]]


def simulate(d, evs, campaigns):
    """The actions (objects) of `mktd simulate`, one daemon with clock:
    event, fed evs under these campaigns: what a cluster's shards are
    compared with."""
    cfg = os.path.join(d, "single.yaml")
    with open(cfg, "w") as f:
        f.write(f"daemon:\n  database: {d}/single.db\n  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
                "  clock: event\n" + campaigns)
    path = os.path.join(d, "events.ndjson")
    with open(path, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in evs)
    r = mktd("simulate", "-c", cfg, path, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def start_fair(workers, timeout=30):
    """Starts the workers and waits until they own the partitions evenly."""
    for w in workers:
        w.start()
    wait_for("a fair share each", lambda: fair_shares(workers[0].cfg, workers), timeout)


def fair_shares(cfg, workers):
    """Whether the workers own the partitions evenly (8 and 8 for two)."""
    got = sorted(owners(cfg).count(w.name) for w in workers)
    return got == [PARTITIONS // len(workers)] * len(workers)


def test_two_workers_apply_once_and_publish_once():
    nc, d, ws = setup()
    cfg = ws[0].cfg
    with workers_running(ws):
        for w in ws:
            w.start()
        # a fair share each: 8 and 8
        wait_for("8 partitions each",
                 lambda: fair_shares(cfg, ws), 20)
        # a third worker over w1's database is refused: shards have one writer
        with open(ws[0].cfg) as f:
            other = f.read().replace("worker: w1", "worker: w3")
        with open(os.path.join(d, "w3.yaml"), "w") as f:
            f.write(other)
        r = subprocess.run(command("-c", os.path.join(d, "w3.yaml")), capture_output=True,
                           text=True, timeout=slow(30))
        assert r.returncode == 1 and "w1/mktd.db" in r.stderr, (r.returncode, r.stderr)
        evs = events(20000 // SCALE)
        publish(cfg, evs)
        shards = wait_for("every event applied", lambda: applied_all(cfg, ws, len(evs)), 40)
        n = check_exactly_once(cfg, shards, evs)
        assert n > 2000 // SCALE, n
        # status: what each owner applied and published, as it recorded;
        # a partition gone quiet says so within a second (lag 0). Ticks
        # fire the last due timers: their actions count too, and a
        # partition's events are its messages less the ticks applied
        def recorded():
            st = status(cfg)
            return st if all(p.get("actions_published") is not None and p.get("lag") == 0
                             for p in st["partitions"]) \
                and sum(p["actions_published"] for p in st["partitions"]) \
                == len(stream_actions(cfg)) \
                and sum(p["events"] for p in st["partitions"]) == len(evs) else None
        st = wait_for("published actions and no lag recorded", recorded, 20)
        assert st["events"] == len(evs), st
        # the last applied sequence is the stream's last, in one partition
        assert max(p["applied_seq"] for p in st["partitions"]) == len(evs) + st["ticks"], st
        r = mktd("cluster", "status", "-c", cfg)
        assert r.returncode == 0 and "applied_seq" in r.stdout and " lag " in r.stdout, r.stdout
        # event ids are unique per user (spec 18): evs[0]'s id for another
        # user of its partition and for a user of another partition is
        # applied as two more events; evs[0] itself again is a duplicate
        first = evs[0]
        home = partition_of(first["user"])
        near = next(u for u in (f"v{i}" for i in range(1000))
                    if partition_of(u) == home and u != first["user"])
        far = next(u for u in (f"v{i}" for i in range(1000)) if partition_of(u) != home)
        again = [dict(first, user=near), dict(first, user=far), first]
        text = "".join(json.dumps(e) + "\n" for e in again)
        r = mktd("publish", "-c", cfg, "-", input=text, timeout=60)
        got = [json.loads(x)["status"] for x in r.stdout.splitlines()]
        assert got == ["ok", "ok", "duplicate"], (got, r.stderr)
        shards = wait_for("the two applied", lambda: applied_all(cfg, ws, len(evs) + 2), 20)
        ids = [i for path in shards.values() for i in shard_event_ids(path)]
        assert ids.count(first["id"]) == 3, ids.count(first["id"])
        assert sorted(shard_event_ids(shards[home])).count(first["id"]) == 2
    # a clean stop gives back every lease the worker held: each one taken
    # and not released, lost or let run out meanwhile (under valgrind a
    # renewal can come too late: the partition stops, and may be taken
    # again) (the keys are deleted; a read may come from a replica a moment
    # behind)
    for w in ws:
        with open(w.log, errors="replace") as f:
            log = f.read()
        held = log.count(": taken (") + log.count("(the graph): taken") \
            - log.count(": released") - log.count("lease lost") \
            - log.count("lease not renewed in time")
        assert held >= 1 and log.count("lease given back") == held, (held, w.tail())
        assert "not given back" not in log, w.tail()
    wait_for("no owners", lambda: owners(cfg) == [None] * PARTITIONS, 10)


def test_kill9_worker_mid_stream_is_taken_over():
    nc, d, ws = setup()
    cfg = ws[0].cfg
    with workers_running(ws):
        for w in ws:
            w.start()
        wait_for("8 partitions each",
                 lambda: fair_shares(cfg, ws), 20)
        evs = events(20000 // SCALE)
        half = len(evs) // 2
        publish(cfg, evs[:half])
        # w2 dies with part of the events applied
        mine = [i for i, o in enumerate(owners(cfg)) if o == "w2"]

        def w2_applied():
            return sum(shard_count(ws[1].shard(p)) for p in mine)
        wait_for("w2 applying", lambda: w2_applied() > 0, 20)
        ws[1].kill9()
        assert w2_applied() < half  # (likely far less: killed while applying)
        publish(cfg, evs[half:])
        wait_for("w1 owns every partition",
                 lambda: owners(cfg) == ["w1"] * PARTITIONS, 20)
        shards = wait_for("every event applied", lambda: applied_all(cfg, ws, len(evs)), 40)
        check_exactly_once(cfg, shards, evs)


def test_restarted_worker_takes_its_share_back():
    nc, d, ws = setup()
    cfg = ws[0].cfg
    with workers_running(ws):
        ws[0].start()
        wait_for("w1 owns every partition", lambda: owners(cfg) == ["w1"] * PARTITIONS, 20)
        evs = events(12000 // SCALE)
        a, b, c = len(evs) // 2, len(evs) * 3 // 4, len(evs) * 7 // 8
        publish(cfg, evs[:a])
        ws[1].start()
        wait_for("8 partitions each",
                 lambda: fair_shares(cfg, ws), 30)
        publish(cfg, evs[a:b])
        wait_for("applied so far", lambda: applied_all(cfg, ws, b), 40)
        # w2 goes away (cleanly): w1 takes everything; w2 comes back with
        # its old shards, which are behind: it catches up from their
        # applied sequence
        ws[1].stop()
        wait_for("w1 owns every partition", lambda: owners(cfg) == ["w1"] * PARTITIONS, 20)
        publish(cfg, evs[b:c])
        ws[1].start()
        wait_for("8 partitions each",
                 lambda: fair_shares(cfg, ws), 30)
        publish(cfg, evs[c:])
        shards = wait_for("every event applied", lambda: applied_all(cfg, ws, len(evs)), 40)
        check_exactly_once(cfg, shards, evs)


def test_worker_under_systemd():
    """Type=notify: READY=1 once registered, WATCHDOG=1 while it applies,
    SIGHUP (systemctl reload) refused with a warning and the worker goes
    on, STOPPING=1 on SIGTERM."""
    from test_ops import Notify
    nc, d, ws = setup(1)
    w = ws[0]
    cfg = w.cfg
    n = Notify(d)
    try:
        w.start(env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": str(slow(1) * 1000000)})
        assert n.next_state(timeout=slow(20)) == "READY=1", n.msgs
        wait_for("w1 owns every partition", lambda: owners(cfg) == ["w1"] * PARTITIONS, 20)
        # pings every half of WATCHDOG_USEC, while the apply thread goes round
        deadline = time.time() + slow(20)
        while sum(m == "WATCHDOG=1" for _, m in n.msgs) < 2 and time.time() < deadline:
            n.recv(0.5)
        assert sum(m == "WATCHDOG=1" for _, m in n.msgs) >= 2, n.msgs
        w.proc.send_signal(signal.SIGHUP)
        wait_for("the reload refused",
                 lambda: "reload: not applied by a signal in cluster mode" in w.tail(), 10)
        evs = events(300)
        publish(cfg, evs)
        shards = wait_for("every event applied", lambda: applied_all(cfg, ws, len(evs)), 40)
        check_exactly_once(cfg, shards, evs)
        assert w.proc.poll() is None
        w.terminate()
        assert n.next_state(timeout=slow(20)) == "STOPPING=1", n.msgs
    except BaseException:
        print(f"--- w1's log:\n{w.tail()}")
        raise
    finally:
        w.stop()
        n.close()


def test_an_event_a_plugin_fails_is_set_aside():
    """Spec 18: a partition whose event fails in a plugin sets that event
    aside with its error (mktd cluster failed) and goes on: the event is
    undone (its id not remembered, nothing of it recorded or published)."""
    nc = NatsCluster(3)
    d = tempfile.mkdtemp(prefix="mktd-clf-")
    harness._TEMP_DIRS.append(d)
    campaigns = CAMPAIGNS + "  - id: doom\n    plugin: probe\n"
    cfg = write_config(d, nc.urls(), "w1", campaigns, plugin_dirs=(PLUGINS, TEST_PLUGINS))
    init(cfg)
    w = Worker(d, cfg, "w1")
    good = events(600 // SCALE)
    bad = [{"id": f"bad{i}", "type": "page.view", "user": f"u{i * 37}", "ts": T0 + i * 1000,
            "props": {"fail": True}} for i in range(3)]
    try:
        r = mktd("cluster", "failed", "-c", cfg)
        assert r.returncode == 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
        w.start()
        publish(cfg, good[:300 // SCALE] + bad + good[300 // SCALE:])
        shards = wait_for("every good event applied", lambda: applied_all(cfg, [w], len(good)), 40)

        def listed():
            r = mktd("cluster", "failed", "-c", cfg, "--format", "json")
            assert r.returncode == 0, r.stderr
            got = [json.loads(x) for x in r.stdout.splitlines()]
            return got if len(got) == len(bad) else None
        got = wait_for("three events set aside", listed, 20)
        assert sorted(f["id"] for f in got) == [e["id"] for e in bad], got
        for f in got:
            e = next(b for b in bad if b["id"] == f["id"])
            assert f["user"] == e["user"] and f["type"] == "page.view" and f["worker"] == "w1", f
            assert f["error"] and isinstance(f["seq"], int) and 0 <= f["partition"] < PARTITIONS
        # by partition, then stream sequence
        assert [(f["partition"], f["seq"]) for f in got] == \
            sorted((f["partition"], f["seq"]) for f in got)
        r = mktd("cluster", "failed", "-c", cfg)
        assert r.returncode == 0 and "event bad0 of user u0: " in r.stdout, r.stdout
        # undone: the ids are not remembered, nothing doomed was recorded
        check_exactly_once(cfg, shards, good)
        assert all(a["kind"] != "probe.doomed" for a in stream_actions(cfg))
        assert "set aside" in w.tail()
        assert w.proc.poll() is None
    except BaseException:
        print(f"--- w1's log:\n{w.tail()}")
        raise
    finally:
        w.stop()


def test_a_purge_of_another_subject_skips_no_message():
    """nats-server before 2.9.13 moves a consumer whose filter takes in a
    purged subject (the graph's, of every partition) to the first message
    the purge leaves (a trim of one partition): a graph behind it would
    skip messages of other partitions, its consumer sequence without a
    gap. The worker sees its fetch start past a message of its subjects it
    has not applied, and reads again from there. Here w1 is paused while
    events of partition p and then one of partition q are stored, and q's
    subject purged up to that one: the graph applies every event once."""
    nc, d, ws = setup(1, CAMPAIGNS + "  - id: invite\n    plugin: referral\n"
                      "    params: {commission: [1000]}\n")
    w = ws[0]
    cfg = w.cfg
    graph = os.path.join(d, "w1", "mktd.db.graph")
    up = "u1"
    p = partition_of(up)
    uq = next(u for u in (f"u{i}" for i in range(2, 400)) if partition_of(u) != p)
    q = partition_of(uq)
    with workers_running(ws):
        w.start()
        wait_for("w1 owns every partition", lambda: owners(cfg) == ["w1"] * PARTITIONS, 20)
        publish(cfg, [{"id": "q0", "type": "page.view", "user": uq, "ts": T0}])
        wait_for("the graph to apply q's first event", lambda: shard_count(graph) == 1, 30)
        mine = [{"id": f"p{i}", "type": "page.view", "user": up, "ts": T0 + 1 + i}
                for i in range(20)]
        later = {"id": "q1", "type": "page.view", "user": uq, "ts": T0 + 100}
        w.proc.send_signal(signal.SIGSTOP)
        try:
            seqs = nc.publish_acked([(f"mktd.events.{p}", json.dumps(e)) for e in mine]
                                    + [(f"mktd.events.{q}", json.dumps(later))])
            r = json.loads(nc.request("$JS.API.STREAM.PURGE.MKTD_EVENTS", json.dumps(
                {"filter": f"mktd.events.{q}", "seq": seqs[-1]})))
            assert r.get("success") and r.get("purged") >= 1, r  # (with a config message)
        finally:
            w.proc.send_signal(signal.SIGCONT)
        shards = wait_for("every event applied", lambda: applied_all(cfg, ws, 22), 30)
        assert sorted(shard_event_ids(shards[p])) == sorted(e["id"] for e in mine)
        wait_for("the graph to apply every event", lambda: shard_count(graph) == 22, 30)
        assert "went on at stream sequence" in w.tail(), w.tail()
