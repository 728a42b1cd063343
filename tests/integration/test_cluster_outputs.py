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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from test_outputs import SECRET, Receiver  # noqa: E402


def campaigns_with_output(rec, secret):
    return W.CAMPAIGNS + ("outputs:\n"
                          f'  - {{id: crm, url: "{rec.url()}", secret_file: {secret},'
                          " kinds: [coupon.issued], batch: 50}\n")


def delivered_keys(rec):
    """(partition, seq) of the actions in 2xx-answered requests, in order."""
    return [(a["partition"], a["seq"]) for a in rec.delivered()]


def coupons_in_stream(cfg):
    got = W.stream_actions(cfg, passing=True) or []
    return {(a["partition"], a["seq"]) for a in got if a["kind"] == "coupon.issued"}


def test_outputs_delivered_by_the_graphs_holder_across_a_takeover():
    d = tempfile.mkdtemp(prefix="mktd-clo-")
    harness._TEMP_DIRS.append(d)
    secret = os.path.join(d, "secret")
    with open(secret, "wb") as f:
        f.write(SECRET + b"\n")
    rec = Receiver()
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
