"""Cluster mode (spec 18), config changes through the stream: `mktd
cluster reload -c FILE` puts FILE's campaigns into every partition as a
config message; each partition's owner applies it at that point, so the
events before it run on the old campaigns and the events after it on the
new ones, on every worker alike, and a takeover that replays a partition
makes the same decisions. Against a real three-node NATS JetStream
cluster on 127.0.0.1."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import mktd  # noqa: E402

USERS = 400 // W.SCALE


def campaigns(value):
    return f"""campaigns:
  - id: welcome
    plugin: coupon
    when: {{event: order.paid}}
    params: {{value: {value}, valid_for: 7d}}
"""


def orders(start, n):
    return [{"id": f"o{i}", "type": "order.paid", "user": f"u{i}", "ts": W.T0 + i * 1000,
             "props": {"order_id": f"o{i}", "amount": 5000}} for i in range(start, start + n)]


def set_value(cfg, value):
    """Edits the campaign's value in a worker's config file."""
    with open(cfg) as f:
        text = f.read()
    head = text[:text.index("campaigns:")]
    with open(cfg, "w") as f:
        f.write(head + campaigns(value))


def reload(cfg):
    r = mktd("cluster", "reload", "-c", cfg, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"published to {W.PARTITIONS} partitions" in r.stdout, r.stdout
    return r


def issued_values(got):
    """user -> the coupon value issued, from the actions stream."""
    return {a["user"]: a["payload"]["value"] for a in got if a["kind"] == "coupon.issued"}


def test_a_reload_applies_at_the_same_point_of_every_partition():
    nc, d, ws = W.setup(2, campaigns(500))
    cfg = ws[0].cfg
    a, b = orders(0, USERS), orders(USERS, USERS)
    with W.workers_running(ws):
        # `cluster init` put the first campaigns into the stream: a replay
        # from sequence 1 runs on them, whatever the files say by then
        W.start_fair(ws)
        W.publish(cfg, a)
        W.wait_for("the first orders applied", lambda: W.applied_all(cfg, ws, len(a)), 40)
        # a config the campaigns cannot build is refused before anything
        # is published
        bad = os.path.join(d, "bad.yaml")
        with open(cfg) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("value: 500", "value: -3"))
        r = mktd("cluster", "reload", "-c", bad, timeout=60)
        assert r.returncode == 1 and "not published" in r.stderr, (r.returncode, r.stderr)
        # w1's file gets the new value (w2's keeps the old one: the stream,
        # not the file, says what a partition runs)
        set_value(cfg, 800)
        reload(cfg)
        W.publish(cfg, b)
        shards = W.wait_for("every order applied",
                            lambda: W.applied_all(cfg, ws, len(a) + len(b)), 40)
        W.check_exactly_once(cfg, shards, a + b)
        values = issued_values(W.stream_actions(cfg))
        assert len(values) == len(a) + len(b), len(values)
        assert all(values[e["user"]] == 500 for e in a)
        assert all(values[e["user"]] == 800 for e in b)
        logs = ""
        for w in ws:
            with open(w.log, errors="replace") as f:
                logs += f.read()
        # two configs in each partition, each applied there (a partition
        # handed over to w2 at its start applied its first one twice)
        applied = set(re.findall(r"partition (\d+): config applied at stream sequence (\d+)", logs))
        # the graph partition (numbered after the others) applies partition 0's copy
        graph = {s for p, s in applied if p == str(W.PARTITIONS)}
        assert graph == {s for p, s in applied if p == "0"}, sorted(applied)
        applied -= {(str(W.PARTITIONS), s) for s in graph}
        assert len(applied) == 2 * W.PARTITIONS, sorted(applied)
        assert {p for p, _ in applied} == {str(p) for p in range(W.PARTITIONS)}
        # status: configs are no events
        # (each owner says so within a second)
        W.wait_for("status to count the orders alone",
                   lambda: W.status(cfg)["events"] == len(a) + len(b), 20)

        # w2 stops; w1 takes its partitions over without their shards
        # (another machine): it replays them from sequence 1, the first
        # config, the first orders, the second config, the second orders,
        # and its shards say what the stream says, values included
        mine = [i for i, o in enumerate(W.owners(cfg)) if o == "w2"]
        ws[1].stop()
        W.wait_for("w1 owns every partition",
                   lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 30)
        shards = W.wait_for("every order applied by w1",
                            lambda: W.applied_all(cfg, ws[:1], len(a) + len(b)), 40)
        for p in mine:
            for user, payload in W.shard_rows(
                    shards[p], "SELECT user, payload FROM actions WHERE kind = 'coupon.issued'"):
                assert json.loads(payload)["value"] == values[user], (p, user, payload)
        W.check_exactly_once(cfg, shards, a + b)
        # a reopened shard keeps the campaigns the stream gave it, though
        # w2's file still says 500: w2 comes back, takes a share, and the
        # next orders of its partitions get 800
        ws[1].start()
        W.wait_for("8 partitions each",
                   lambda: W.fair_shares(cfg, ws), 30)
        c = orders(2 * USERS, USERS)
        W.publish(cfg, c)
        W.wait_for("the last orders applied",
                   lambda: W.applied_all(cfg, ws, len(a) + len(b) + len(c)), 40)
        values = issued_values(W.stream_actions(cfg))
        assert all(values[e["user"]] == 800 for e in c), \
            sorted({values.get(e["user"]) for e in c}, key=str)
