"""Cluster mode (spec 17), time is in the log: an owner appends ticks to a
quiet partition whose timers are due, so they fire without new events;
coupon codes are derived (HMAC of cluster.secret_file and the action), so
a worker replaying a partition from stream sequence 1 issues the same
codes. Against a real three-node NATS JetStream cluster on 127.0.0.1."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
import harness  # noqa: E402
from harness import slow  # noqa: E402

INACTIVE_S = 3

CAMPAIGNS = f"""campaigns:
  - id: welcome
    plugin: coupon
    when: {{event: order.paid}}
    params: {{value: 500, valid_for: 7d, code_prefix: W-}}
  - id: winback
    plugin: reactivation
    params: {{inactive_for: {INACTIVE_S}s}}
"""

# fewer users under valgrind (MKTD_VALGRIND=1), where every process is ~10x slower
USERS = 8 if harness.VALGRIND else 24


def events(prefix):
    """A page view and a paid order per user, without ts: the events take
    their JetStream timestamps, so the winback timers fall due
    INACTIVE_S seconds after them, with no event behind them."""
    out = []
    for i in range(USERS):
        out.append({"id": f"{prefix}v{i}", "type": "page.view", "user": f"u{i}"})
        out.append({"id": f"{prefix}o{i}", "type": "order.paid", "user": f"u{i}",
                    "props": {"order_id": f"o{i}", "amount": 1000}})
    return out


def test_ticks_fire_timers_and_a_replay_issues_the_same_codes():
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        ws[0].start()
        W.wait_for("w1 owns every partition",
                   lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 20)
        evs = events("a")
        t_pub = time.time()
        W.publish(cfg, evs)
        # (a) every user's offer, through ticks alone: nothing is published
        # after the events
        def offers():
            got = [a for a in W.stream_actions(cfg) if a["kind"] == "reactivation.offer"]
            return got if len(got) == USERS else None
        got = W.wait_for("an offer per user", offers, 30)
        t_seen = time.time()
        assert {a["user"] for a in got} == {f"u{i}" for i in range(USERS)}
        for a in got:
            # the offer's ts is its due time: INACTIVE_S after the events
            assert abs(a["ts"] / 1000 - (t_pub + INACTIVE_S)) < slow(5), (a, t_pub)
        # and it came about when it fell due, not at some later event
        assert t_seen - t_pub < INACTIVE_S + slow(8), t_seen - t_pub
        st = W.status(cfg)
        assert st["events"] == len(evs) and st["ticks"] >= 1, st
        # (c) ticks are no events: the shards' event ids are the input,
        # once each; the actions stream is the shards' actions, once each
        shards = W.wait_for("every event applied",
                            lambda: W.applied_all(cfg, ws, len(evs)), 20)
        for path in shards.values():
            assert not W.shard_rows(path, "SELECT id FROM events WHERE id LIKE 'tick:%'")
        n = W.check_exactly_once(cfg, shards, evs)
        assert n == 2 * USERS, n  # a coupon and an offer per user
        first = {(a["partition"], a["seq"]): a for a in W.stream_actions(cfg)}
        codes = [a["payload"]["code"] for a in first.values() if a["kind"] == "coupon.issued"]
        assert len(codes) == USERS and len(set(codes)) == USERS, codes
        assert all(c.startswith("W-") and len(c) == 15 for c in codes), codes

        # (b) w1 goes; w2, with empty shards, replays every partition from
        # stream sequence 1, ticks included: the same actions, the same codes
        ws[0].stop()
        ws[1].start()
        W.wait_for("w2 owns every partition",
                   lambda: W.owners(cfg) == ["w2"] * W.PARTITIONS, 20)

        def replayed():
            rows = {}
            for p in range(W.PARTITIONS):
                path = ws[1].shard(p)
                if W.shard_count(path) == 0:
                    continue
                for seq, ts, campaign, kind, user, payload in W.shard_rows(
                        path, "SELECT seq, ts, campaign, kind, user, payload FROM actions"):
                    rows[(p, seq)] = (ts, campaign, kind, user, json.loads(payload))
            return rows if len(rows) >= len(first) else None
        rows = W.wait_for("w2's replay", replayed, 30)
        assert set(rows) == set(first), (len(rows), len(first))
        for k, a in first.items():
            assert rows[k] == (a["ts"], a["campaign"], a["kind"], a["user"], a["payload"]), \
                (k, rows[k], a)
        # nothing was published again: the stream still holds each action once
        again = W.stream_actions(cfg)
        assert len(again) == len(first), (len(again), len(first))
