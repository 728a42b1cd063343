"""Cluster mode, webhook outputs (spec 15 and 17): the worker that holds
the graph partition delivers the actions stream to each output, signed
NDJSON in stream order, at least once, its position kept in the meta
bucket; a failed request is tried again with the same actions; when the
graph's holder dies, the worker that takes the graph over goes on from
the recorded position. Against a real three-node NATS JetStream cluster
on 127.0.0.1 and a receiver on 127.0.0.1."""
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_cluster_gateway as G  # noqa: E402
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from test_outputs import SECRET, Receiver  # noqa: E402


def campaigns_with_output(rec, secret):
    return W.CAMPAIGNS + ("outputs:\n"
                          f'  - {{id: crm, url: "{rec.url()}", secret_file: {secret},'
                          " kinds: [coupon.issued], batch: 50}\n")


def receiver():
    """The outputs' secret file (in a temp dir) and a receiver."""
    d = tempfile.mkdtemp(prefix="mktd-clo-")
    harness._TEMP_DIRS.append(d)
    secret = os.path.join(d, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET + b"\n")
    return secret, Receiver()


def delivered_keys(rec):
    """(partition, seq) of the actions in 2xx-answered requests, in order."""
    return [(a["partition"], a["seq"]) for a in rec.delivered()]


def coupons_in_stream(cfg):
    got = W.stream_actions(cfg, passing=True) or []
    return {(a["partition"], a["seq"]) for a in got if a["kind"] == "coupon.issued"}


def test_outputs_delivered_by_the_graphs_holder_across_a_takeover():
    secret, rec = receiver()
    rec.status = [500]  # the first request fails: tried again, same actions
    nc, _, ws = W.setup(2, campaigns_with_output(rec, secret))
    cfg = ws[0].cfg
    try:
        with W.workers_running(ws):
            W.start_fair(ws)
            evs = W.events(2000 // W.SCALE)
            a = len(evs) // 2
            W.publish(cfg, evs[:a])
            W.wait_for("applied", lambda: W.applied_all(cfg, ws, a), 40)
            want = W.wait_for("the coupons published", lambda: coupons_in_stream(cfg), 30)
            rec.wait(lambda reqs: set(delivered_keys(rec)) >= want, 30)
            reqs = list(rec.requests)
            assert reqs[0]["status"] == 500, reqs[0]
            h0 = {k.lower(): v for k, v in reqs[0]["headers"].items()}
            h1 = {k.lower(): v for k, v in reqs[1]["headers"].items()}
            assert reqs[1]["body"] == reqs[0]["body"] and h1["x-mktd-seq"] == h0["x-mktd-seq"]
            last = 0
            for r in reqs:
                h = {k.lower(): v for k, v in r["headers"].items()}
                assert h["content-type"] == "application/x-ndjson" and h["x-mktd-output"] == "crm"
                sig = "sha256=" + hmac.new(SECRET, r["body"], hashlib.sha256).hexdigest()
                assert hmac.compare_digest(h["x-mktd-signature"], sig), h
                rows = [json.loads(x) for x in r["body"].split(b"\n") if x]
                assert rows and all(x["kind"] == "coupon.issued" for x in rows), rows[:2]
                first_seq, last_seq = (int(x) for x in h["x-mktd-seq"].split("-"))
                if 200 <= r["status"] < 300:
                    assert first_seq > last, (first_seq, last)  # in stream order
                    last = last_seq
            keys = delivered_keys(rec)
            assert len(keys) == len(set(keys)) and set(keys) == want, (len(keys), len(want))

            # the graph's holder dies: the other takes the graph over and
            # goes on from the recorded position
            holder = next(w for w in ws if w.name == W.status(cfg)["graph"]["owner"])
            other = next(w for w in ws if w is not holder)
            holder.kill9()
            W.publish(cfg, evs[a:])
            W.wait_for("the other holds the graph",
                       lambda: W.status(cfg)["graph"]["owner"] == other.name, 30)
            W.wait_for("applied", lambda: W.applied_all(cfg, [other], len(evs)), 60)
            want = W.wait_for("the coupons published",
                              lambda: (lambda s: s if len(s) > len(want) else None)(
                                  coupons_in_stream(cfg)), 30)
            rec.wait(lambda reqs: set(delivered_keys(rec)) >= want, 60)
            keys = delivered_keys(rec)
            assert set(keys) == want, (len(set(keys)), len(want))  # at least once, none missing
            with open(other.log, errors="replace") as f:
                log = f.read()
            assert "outputs: 1, delivered from the actions stream" in log, other.tail()
            assert "output crm: delivering actions stream sequences" in open(
                holder.log, errors="replace").read() + log  # the 500, logged
    finally:
        rec.close()


def metrics(port):
    """name{labels} -> value of a worker's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return G.metrics_of(r.read().decode())


def test_outputs_follow_a_cluster_reload():
    """Which outputs there are is the graph's config: `mktd cluster
    reload` with an `outputs:` block starts one at the actions stream's
    end (what came before is not delivered), and a reload without it
    stops it."""
    secret, rec = receiver()
    nc, _, ws = W.setup(1)
    w = ws[0]
    cfg = w.cfg
    mport = harness.free_port()
    with open(cfg) as f:
        plain = f.read().replace("daemon:\n", f'daemon:\n  metrics: "127.0.0.1:{mport}"\n', 1)
    with open(cfg, "w") as f:
        f.write(plain)
    with_output = os.path.join(os.path.dirname(cfg), "with-output.yaml")
    with open(with_output, "w") as f:
        f.write(plain + "outputs:\n"
                f'  - {{id: crm, url: "{rec.url()}", secret_file: {secret},'
                " kinds: [coupon.issued], batch: 50}\n")

    def reload(path, outputs):
        r = harness.mktd("cluster", "reload", "-c", path, timeout=60)
        assert r.returncode == 0, r.stderr
        W.wait_for(f"outputs: {outputs}", lambda: f"outputs: {outputs}, as the graph's config "
                   "has them" in open(w.log, errors="replace").read(), 30)

    def applied_and_published(n, before):
        W.wait_for("applied", lambda: W.applied_all(cfg, ws, n), 40)
        return W.wait_for("their coupons published", lambda: (lambda s: s if len(s) > len(
            before) else None)(coupons_in_stream(cfg)), 30)

    try:
        with W.workers_running(ws):
            w.start()
            W.wait_for("every partition owned", lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 30)
            evs = W.events(2400 // W.SCALE)
            a, b = len(evs) // 3, 2 * len(evs) // 3
            W.publish(cfg, evs[:a])
            first = applied_and_published(a, set())
            time.sleep(1)
            assert rec.requests == [], rec.requests[:1]  # no output in the file

            reload(with_output, 1)
            W.wait_for("the output's start recorded", lambda: "output crm: new, starting at" in
                       open(w.log, errors="replace").read(), 30)
            W.publish(cfg, evs[a:b])
            second = applied_and_published(b, first)
            rec.wait(lambda reqs: set(delivered_keys(rec)) >= second - first, 30)
            keys = delivered_keys(rec)
            assert set(keys) == second - first and len(keys) == len(set(keys)), \
                (len(set(keys)), len(second - first), len(set(keys) & first))
            # the holder's /metrics: the output's deliveries, its lag down
            # to nothing, a success
            lab = '{output="crm"}'

            def caught_up():
                m = metrics(mport)
                return m if m.get("mktd_output_lag" + lab) == 0 else None
            m = W.wait_for("the output's lag at 0", caught_up, 20)
            assert m["mktd_output_delivered_total" + lab] == len(keys), m
            assert m["mktd_output_failures_total" + lab] == 0, m
            assert m["mktd_output_last_success_timestamp_seconds" + lab] > time.time() - 120, m

            reload(cfg, 0)
            assert not any(k.startswith("mktd_output_") for k in metrics(mport)), metrics(mport)
            n = len(rec.requests)
            W.publish(cfg, evs[b:])
            third = applied_and_published(len(evs), second)
            time.sleep(1.5)
            assert third - second and len(rec.requests) == n, (len(third - second), n,
                                                                  len(rec.requests))
    finally:
        rec.close()


def test_retention_prunes_published_actions_in_the_shards():
    """daemon.retention in cluster mode: a shard's actions older than the
    retention go once published (the last one stays, as for one daemon);
    the actions stream keeps them (its own limits apply there)."""
    nc, d, ws = W.setup(1)
    w = ws[0]
    with open(w.cfg) as f:
        text = f.read()
    with open(w.cfg, "w") as f:  # the events are of 2026-01-01: older than 30 days
        f.write(text.replace("daemon:\n", "daemon:\n  retention: {actions: 30d}\n", 1))
    cfg = w.cfg
    with W.workers_running(ws):
        w.start()
        W.wait_for("every partition owned", lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 30)
        evs = W.events(1600 // W.SCALE)
        W.publish(cfg, evs)
        shards = W.wait_for("applied", lambda: W.applied_all(cfg, ws, len(evs)), 40)

        cutoff = (time.time() - 30 * 86400) * 1000

        def pruned():
            """Every shard: no action older than 30 days but its last,
            some gone (those of January; actions made at the partition's
            "now", the stream's time, stay)."""
            out = {}
            for p, path in shards.items():
                rows = W.shard_rows(path, "SELECT seq, ts FROM actions")
                if not rows:
                    return None
                last = max(r[0] for r in rows)
                if len(rows) >= last or any(ts < cutoff for s, ts in rows if s != last):
                    return None
                out[p] = last
            return out
        last = W.wait_for("the shards' old actions pruned, the last kept", pruned, 30)

        def in_stream():
            """The actions stream still holds every action of every shard."""
            got = W.stream_actions(cfg, passing=True) or []
            n = {}
            for a in got:
                n[a["partition"]] = n.get(a["partition"], 0) + 1
            return all(n.get(p, 0) >= seq for p, seq in last.items())
        W.wait_for("the actions stream to hold them all", in_stream, 30)
        assert "actions and 0 logged events pruned" in open(w.log, errors="replace").read()
