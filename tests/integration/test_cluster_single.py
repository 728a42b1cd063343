"""Cluster mode (spec 17): "for campaigns whose inputs stay within a user
(coupon without budget, reactivation, points, check-in), the actions over
all shards equal those of one daemon fed the same events in each
partition's order (timer ticks aside)".

Two workers and a real three-node NATS cluster apply a few seconds of
events of 48 users (page views, first orders, more orders, redemptions,
refunds, check-ins on three days, a quiet spell long enough for win-back
offers and returns after them); `mktd simulate` (one daemon, clock:
event) is fed the same events. The two sets of actions are compared
field by field, except times that count from "now" (the stream's clock in
the cluster, the events' ts in one daemon) and coupon codes (drawn from the
cluster's secret, or at random).

Events carry their real time as ts, so that both clocks agree to within
the publishing delay; win-back timers are due 4 s after a user's last
event, and the test keeps every gap either well under or well over that.
Not run under valgrind: there the publisher alone is slower than those
margins."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)

CAMPAIGNS = """campaigns:
  - id: first-order
    plugin: coupon
    when:
      event: order.paid
      all: [{field: user.orders, op: eq, value: 1}]
    params: {value: 500, valid_for: 7d}
  - id: winback
    plugin: reactivation
    params: {inactive_for: 4s, holdout_percent: 25, convert_within: 1h}
  - id: members
    plugin: points
    params:
      rate: 100
      expire_after: 365d
      tiers: [{name: silver, at: 100}, {name: gold, at: 300}]
  - id: streak
    plugin: checkin
    params: {streak: 3, reward: {points: 50}}
"""

USERS = [f"m{i}" for i in range(48)]
DAY = 24 * 3600 * 1000
JAN1 = 1767225600000  # 2026-01-01T00:00:00Z


def phase_a(now):
    """Everyone looks; two thirds pay a first order; a third check in on
    three days of January (their own ts: check-in counts the event's day)."""
    out = []
    for i, u in enumerate(USERS):
        out.append({"id": f"a{i}", "type": "page.view", "user": u, "ts": now})
        if i % 3:
            out.append({"id": f"o{i}", "type": "order.paid", "user": u, "ts": now,
                        "props": {"order_id": f"o{i}", "amount": 5000 + 1000 * (i % 30)}})
        if i % 3 == 0:
            for d in range(3 if i % 2 == 0 else 2):
                out.append({"id": f"c{i}-{d}", "type": "checkin", "user": u,
                            "ts": JAN1 + d * DAY + 3600 * 1000})
    return out


def phase_b(now):
    """Second orders (tiers), redemptions (some too large), a refund."""
    out = []
    for i, u in enumerate(USERS):
        if i % 4 == 1:
            out.append({"id": f"p{i}", "type": "order.paid", "user": u, "ts": now,
                        "props": {"order_id": f"p{i}", "amount": 20000 + 500 * i}})
        if i % 5 == 2:
            out.append({"id": f"r{i}", "type": "points.redeem", "user": u, "ts": now,
                        "props": {"order_id": f"r{i}", "points": 40 + 10 * (i % 7)}})
        if i % 6 == 4:  # in full: what the first order earned goes
            out.append({"id": f"f{i}", "type": "order.refunded", "user": u, "ts": now,
                        "props": {"order_id": f"o{i}"}})
    return out


def phase_c(now):
    """After the quiet spell (offers and holdouts made): some come back."""
    return [{"id": f"back{i}", "type": "order.paid", "user": u, "ts": now,
             "props": {"order_id": f"b{i}", "amount": 8000}}
            for i, u in enumerate(USERS) if i % 2 == 0]


def comparable(campaign, kind, user, event_id, payload):
    p = json.loads(payload) if isinstance(payload, str) else dict(payload)
    p.pop("code", None)
    for k in list(p):
        # times counted from now, and spans measured against them
        if k.endswith("_at") or k in ("after_ms",):
            p.pop(k)
    return (campaign, kind, user, event_id, json.dumps(p, sort_keys=True))


def ms():
    return int(time.time() * 1000)


def test_per_user_campaigns_equal_one_daemon():
    if W.harness.VALGRIND:
        print("not run under valgrind (its margins are seconds of real time)")
        return
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        W.start_fair(ws)
        evs = phase_a(ms())
        W.publish(cfg, evs)
        time.sleep(0.5)
        b = phase_b(ms())
        W.publish(cfg, b)
        evs += b
        start_quiet = ms()
        # the quiet spell: every user's win-back timer falls due (4 s after
        # their last event); the cluster fires them on ticks
        time.sleep(9)
        c = phase_c(ms())
        W.publish(cfg, c)
        evs += c
        assert ms() - start_quiet < 9000 + 3500, "the returns came too late to be apart"
        # one daemon fires a timer when an event passes it: a last event
        # after every timer armed by the returns (due 4 s after them), of a
        # user left out of the comparison; the cluster fires those on ticks
        time.sleep(6)
        last = {"id": "z", "type": "page.view", "user": "sentinel", "ts": ms()}
        W.publish(cfg, [last])
        evs.append(last)
        shards = W.wait_for("every event applied",
                            lambda: W.applied_all(cfg, ws, len(evs)), 60)
        # the returns' timers fired (their offers recorded) in the cluster too
        time.sleep(1.5)
        cluster = []
        for path in shards.values():
            cluster += [comparable(*r) for r in W.shard_rows(
                path, "SELECT campaign, kind, user, event_id, payload FROM actions "
                "WHERE user != 'sentinel'")]
        single = [comparable(a["campaign"], a["kind"], a["user"], a["event_id"], a["payload"])
                  for a in W.simulate(d, evs, CAMPAIGNS) if a["user"] != "sentinel"]
        print(f"{len(single)} actions of one daemon, {len(cluster)} of the cluster")
        kinds = {k for _, k, _, _, _ in single}
        # every mechanism had its say
        for k in ("coupon.issued", "reactivation.offer", "reactivation.holdout",
                  "reactivation.converted", "points.earned", "points.redeemed",
                  "points.rejected", "points.reversed", "tier.changed", "checkin.reward"):
            assert k in kinds, (k, sorted(kinds))
        if sorted(cluster) != sorted(single):
            a, b2 = set(cluster), set(single)
            raise AssertionError(f"{len(cluster)} against one daemon's {len(single)}; only in "
                                 f"the cluster: {sorted(a - b2)[:5]}; only in one daemon: "
                                 f"{sorted(b2 - a)[:5]}")
