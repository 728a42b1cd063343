"""Cluster mode (spec 17), shard snapshots: an owner publishes a copy of
each partition's shard on the snapshot stream every `cluster.snapshot`;
a worker that takes a partition over without its shard restores the
newest snapshot and applies only the events after it. A snapshot that
does not check out is replayed from the stream instead. Checked against a
real three-node NATS JetStream cluster on 127.0.0.1.

Each test: w1 applies events and snapshots them, stops; its shards are
deleted (a new machine); more events come; w2 takes everything over. The
union of w2's shards' event ids is the input with none twice, and the
actions stream holds every action once."""
import glob
import json
import os
import re
import tempfile
import urllib.request

import harness
import test_cluster_worker as cw
from harness import PLUGINS, mktd
from natscluster import NatsCluster

SCALE = cw.SCALE
PARTITIONS = cw.PARTITIONS


def setup(extra="snapshot: 1s"):
    nc = NatsCluster(3)
    d = tempfile.mkdtemp(prefix="mktd-snap-")
    harness._TEMP_DIRS.append(d)
    ws = [cw.Worker(d, cw.write_config(d, nc.urls(), n, extra=extra), n) for n in ("w1", "w2")]
    cw.init(ws[0].cfg)
    return nc, d, ws


def shard_applied(path):
    rows = cw.shard_rows(path, "SELECT value FROM meta WHERE key = 'cluster_applied'")
    return rows[0][0] if rows else 0


def snapshots_current(cfg, w):
    """Every partition's recorded snapshot is at its shard's applied
    sequence: {partition: snapshot} (the graph's too)."""
    st = cw.status(cfg)
    out = {}
    for p in st["partitions"]:
        snap = p.get("snapshot")
        if not snap or snap["applied_seq"] != shard_applied(w.shard(p["partition"])):
            return None
        out[p["partition"]] = snap
    # and the graph partition's (worker.c), kept the same way
    snap = st["graph"].get("snapshot")
    if not snap or snap["applied_seq"] != shard_applied(os.path.join(w.d, w.name,
                                                                     "mktd.db.graph")):
        return None
    out["graph"] = snap
    return out


def snapshot_stream_messages(nc, stream="MKTD_SNAPSHOTS"):
    """Messages in the snapshot stream (or another), as a NATS server's
    monitor says."""
    for i in range(nc.n):
        try:
            url = f"http://127.0.0.1:{nc.monitor[i]}/jsz?accounts=true&streams=true"
            with urllib.request.urlopen(url, timeout=2) as r:
                jsz = json.load(r)
        except OSError:
            continue
        for acc in jsz.get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                if s.get("name") == stream:
                    return s["state"]["messages"]
    return None


def first_run(nc, ws, evs, a):
    """w1 applies evs[:a] and snapshots every partition, stops; its shards
    go; evs[a:] are published while no worker runs. The snapshots then."""
    cfg = ws[0].cfg
    ws[0].start()
    cw.wait_for("w1 owns every partition", lambda: cw.owners(cfg) == ["w1"] * PARTITIONS, 20)
    cw.publish(cfg, evs[:a])
    cw.wait_for("w1 applied", lambda: cw.applied_all(cfg, ws, a), 40)
    snaps = cw.wait_for("a snapshot of every partition at its applied sequence",
                        lambda: snapshots_current(cfg, ws[0]), 20)
    ws[0].stop()
    with open(ws[0].log, errors="replace") as f:
        log = f.read()
    assert "snapshot at applied stream sequence" in log, ws[0].tail()
    # older snapshots were purged: the stream holds the recorded ones' chunks
    # (a server's monitor may be a moment behind the stream's leader)
    want = sum(s["chunks"] for s in snaps.values())
    seen = []
    try:
        cw.wait_for("older snapshots purged",
                    lambda: seen.append(snapshot_stream_messages(nc)) or seen[-1] == want, 10)
    except AssertionError:
        raise AssertionError(f"snapshot stream: {seen[-5:]} messages, {want} chunks recorded")
    # a new machine: w1's shards are gone
    for f in glob.glob(os.path.join(ws[0].d, "w1", "mktd.db.*")):
        os.unlink(f)
    cw.publish(cfg, evs[a:])
    del snaps["graph"]  # the user partitions' below
    return snaps


def started_at(log):
    """partition -> the stream sequence its consumer started at (last)."""
    out = {}
    for m in re.finditer(r"partition (\d+): applying from stream sequence (\d+)", log):
        out[int(m.group(1))] = int(m.group(2))
    return out


def test_takeover_restores_the_snapshot_and_applies_what_came_after():
    nc, d, ws = setup()
    cfg = ws[0].cfg
    evs = cw.events(8000 // SCALE)
    a = len(evs) * 3 // 4
    try:
        snaps = first_run(nc, ws, evs, a)
        ws[1].start()
        cw.wait_for("w2 owns every partition", lambda: cw.owners(cfg) == ["w2"] * PARTITIONS, 20)
        shards = cw.wait_for("every event applied", lambda: cw.applied_all(cfg, ws, len(evs)), 40)
        cw.check_exactly_once(cfg, shards, evs)
        with open(ws[1].log, errors="replace") as f:
            log = f.read()
        starts = started_at(log)
        for p, snap in snaps.items():
            assert f"partition {p}: restored from snapshot at applied stream sequence " \
                f"{snap['applied_seq']} " in log, (p, snap, ws[1].tail())
            # the consumer started after the snapshot, not at 1
            assert starts[p] == snap["applied_seq"] + 1 > 1, (p, starts.get(p), snap)
        assert "not usable" not in log, ws[1].tail()
        # w2 snapshots what it applied in turn; status shows it
        cw.wait_for("w2's snapshots", lambda: snapshots_current(cfg, ws[1]), 20)
        r = mktd("cluster", "status", "-c", cfg)
        assert r.returncode == 0 and "snapshot_seq" in r.stdout and "snap_age" in r.stdout, \
            r.stdout
    except BaseException:
        for w in ws:
            if os.path.exists(w.log):
                print(f"--- {w.name}'s log:\n{w.tail()}")
        raise
    finally:
        for w in ws:
            w.stop()


def test_a_damaged_or_missing_snapshot_is_replayed_from_the_stream():
    """(cluster.trim off: the event stream keeps every event.)"""
    nc, d, ws = setup("snapshot: 1s, trim: false")
    cfg = ws[0].cfg
    evs = cw.events(6000 // SCALE)
    a = len(evs) // 2
    try:
        snaps = first_run(nc, ws, evs, a)
        # partition 0: chunks that do not hash to what was recorded; 1: its
        # chunks gone (the record points past the stream's end)
        bad = {0: dict(snaps[0]), 1: dict(snaps[1])}
        for p, s in bad.items():
            rec = {"seq": s["stream_seq"], "chunks": s["chunks"], "size": s["bytes"],
                   "sha256": "0" * 64, "applied": s["applied_seq"], "ms": 1}
            if p == 1:
                rec["seq"] = 10 ** 9
                rec["sha256"] = "1" * 64
            nc.publish(f"$KV.MKTD_EVENTS_meta.snap.p{p}", json.dumps(rec))
        st = cw.wait_for("the damaged records", lambda: (lambda s: s if all(
            s["partitions"][p]["snapshot"]["stream_seq"] == (10 ** 9 if p == 1 else
                                                             snaps[p]["stream_seq"])
            and s["partitions"][p]["snapshot"]["age_ms"] > 1000000 for p in bad) else None)(
                cw.status(cfg)), 10)
        assert st
        ws[1].start()
        cw.wait_for("w2 owns every partition", lambda: cw.owners(cfg) == ["w2"] * PARTITIONS, 20)
        shards = cw.wait_for("every event applied", lambda: cw.applied_all(cfg, ws, len(evs)), 40)
        cw.check_exactly_once(cfg, shards, evs)
        with open(ws[1].log, errors="replace") as f:
            log = f.read()
        starts = started_at(log)
        assert "partition 0: snapshot at applied stream sequence" in log \
            and "do not add up" in log, ws[1].tail()
        assert "partition 1: snapshot at applied stream sequence" in log \
            and "is gone" in log, ws[1].tail()
        for p in bad:
            assert starts[p] == 1, (p, starts.get(p))  # replayed from the stream
            assert f"partition {p}: restored" not in log
        for p in set(snaps) - set(bad):
            assert starts[p] == snaps[p]["applied_seq"] + 1, (p, starts.get(p), snaps[p])
        assert not glob.glob(os.path.join(d, "w2", "*.restore")), "a restore file left behind"
    except BaseException:
        for w in ws:
            if os.path.exists(w.log):
                print(f"--- {w.name}'s log:\n{w.tail()}")
        raise
    finally:
        for w in ws:
            w.stop()


def trimmed_everywhere(cfg, events):
    """Status once every partition's stream is trimmed up to where the
    snapshots allow (min of its own and the graph's) and it counts these
    events, else None."""
    st = cw.status(cfg)
    if st["events"] != events:
        return None
    graph = st["graph"].get("snapshot", {}).get("applied_seq", 0)
    for p in st["partitions"]:
        own = p.get("snapshot", {}).get("applied_seq", 0)
        if not own or not graph or p.get("trimmed_seq") != min(own, graph):
            return None
    return st


def test_the_event_stream_is_trimmed_behind_the_snapshots():
    """cluster.trim (default on): each partition's events up to its own
    and the graph's snapshot leave the stream; status still counts them;
    a takeover restores the snapshots and applies what came after; a
    shard behind a trim whose snapshot cannot be restored is not applied
    (it would miss events) while the other partitions go on."""
    nc, d, ws = setup()
    cfg = ws[0].cfg
    evs = cw.events(6000 // SCALE)
    a = len(evs) // 2
    with cw.workers_running(ws):
        ws[0].start()
        cw.wait_for("w1 owns every partition", lambda: cw.owners(cfg) == ["w1"] * PARTITIONS, 20)
        cw.publish(cfg, evs[:a])
        cw.wait_for("w1 applied", lambda: cw.applied_all(cfg, ws, a), 40)
        # trimmed events still counted (status counts a partition's
        # messages less its ticks as its owner last recorded them: a tick
        # just stored may count as an event for a moment)
        cw.wait_for("every partition trimmed, every event counted",
                    lambda: trimmed_everywhere(cfg, a), 30)
        held = snapshot_stream_messages(nc, "MKTD_EVENTS")
        assert held is not None and held < a // 2, (held, a)
        with open(ws[0].log, errors="replace") as f:
            assert "event stream trimmed up to stream sequence" in f.read(), ws[0].tail()
        ws[0].stop()
        for f in glob.glob(os.path.join(ws[0].d, "w1", "mktd.db.*")):
            os.unlink(f)
        cw.publish(cfg, evs[a:])
        ws[1].start()
        cw.wait_for("w2 owns every partition", lambda: cw.owners(cfg) == ["w2"] * PARTITIONS, 20)
        shards = cw.wait_for("every event applied", lambda: cw.applied_all(cfg, ws, len(evs)), 40)
        cw.check_exactly_once(cfg, shards, evs)
        with open(ws[1].log, errors="replace") as f:
            log = f.read()
        assert "partition 0: restored from snapshot" in log, ws[1].tail()
        cw.wait_for("every partition trimmed again, every event counted",
                    lambda: trimmed_everywhere(cfg, len(evs)), 30)
        ws[1].stop()

        # partition 0's snapshot damaged, no shard on w1's machine: not
        # applied from a stream that no longer has its first events
        snap = cw.status(cfg)["partitions"][0]["snapshot"]
        rec = {"seq": snap["stream_seq"], "chunks": snap["chunks"], "size": snap["bytes"],
               "sha256": "0" * 64, "applied": snap["applied_seq"], "ms": 1}
        nc.publish("$KV.MKTD_EVENTS_meta.snap.p0", json.dumps(rec))
        cw.wait_for("the damaged record", lambda: cw.status(cfg)["partitions"][0]["snapshot"][
            "age_ms"] > 1000000, 10)
        more = cw.events(400 // SCALE, prefix="m", start=len(evs))
        cw.publish(cfg, more)
        ws[0].start()
        def others_applied():
            # w1's own shards hold each other partition's events (the
            # status's applied_seq and lag are w2's until w1 writes them)
            st = cw.status(cfg)
            return all(p["owner"] == "w1" and p["events"] > 0 and
                       cw.shard_count(ws[0].shard(p["partition"])) == p["events"]
                       for p in st["partitions"][1:]) and "not applied, since events would be " \
                "missed" in open(ws[0].log, errors="replace").read()
        cw.wait_for("the other partitions applied, partition 0 refused", others_applied, 40)
        log = open(ws[0].log, errors="replace").read()
        assert "partition 0: the event stream was trimmed up to stream sequence" in log, log[-3000:]
        assert "do not add up" in log, log[-3000:]
        assert not os.path.exists(ws[0].shard(0)) or cw.shard_count(ws[0].shard(0)) == 0
        assert cw.shard_count(ws[0].shard(1)) > 0
