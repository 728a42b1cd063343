"""Cluster mode (spec 17), budgets across partitions: a coupon budget and a
promotion's money budget are shared by every partition through claims in
the budgets bucket, so that four workers never issue more than the
budget, a worker killed mid-stream changes nothing, and the whole budget
is used when the demand is there. Against a real three-node NATS
JetStream cluster on 127.0.0.1."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import mktd  # noqa: E402

# fewer events under valgrind (MKTD_VALGRIND=1), where every process is ~10x slower
USERS = 3000 // W.SCALE
COUPONS = 1000 // W.SCALE
MONEY = 100000 // W.SCALE
DISCOUNT = 700

CAMPAIGNS = f"""campaigns:
  - id: welcome
    plugin: coupon
    when: {{event: order.paid}}
    params: {{value: 500, valid_for: 7d, budget: {COUPONS}}}
  - id: fullcut
    plugin: promotion
    when: {{event: order.paid}}
    params: {{value: {DISCOUNT}, budget: {MONEY}}}
"""


def orders():
    """One paid order per user: every one qualifies for both campaigns,
    three times the coupons' budget and twenty times the money's."""
    return [{"id": f"o{i}", "type": "order.paid", "user": f"u{i}", "ts": W.T0 + i * 1000,
             "props": {"order_id": f"o{i}", "amount": 5000}} for i in range(USERS)]


def test_budgets_are_never_exceeded_across_four_workers():
    nc, d, ws = W.setup(4, CAMPAIGNS)
    cfg = ws[0].cfg
    evs = orders()
    with W.workers_running(ws):
        for w in ws:
            w.start()
        W.wait_for("4 partitions each",
                   lambda: sorted(W.owners(cfg).count(w.name) for w in ws) == [4] * 4, 30)
        half = len(evs) // 2
        # the first half in tenths, each applied everywhere before the
        # next: the pools are shared out among the partitions as orders
        # come (not taken by whichever partitions a worker's first round
        # reaches), and claimed by the end of it (1,500 orders for 1,000
        # coupons), w4's claims among them, while every partition still
        # has orders for the room it holds (a partition that ran through
        # all its orders while the pool had room would keep its last
        # claim's rest unused, as it may)
        step = max(half // 10, 1)
        for k in range(step, half + step, step):
            W.publish(cfg, evs[k - step:min(k, half)])
            W.wait_for("a tenth applied",
                       lambda k=k: W.applied_all(cfg, ws, min(k, half)), 40)
        # w4 dies mid-stream
        W.publish(cfg, evs[half:half + 300])
        ws[3].kill9()
        W.publish(cfg, evs[half + 300:])
        W.wait_for("w4's partitions taken over",
                   lambda: "w4" not in W.owners(cfg) and None not in W.owners(cfg), 30)
        shards = W.wait_for("every event applied",
                            lambda: W.applied_all(cfg, ws[:3], len(evs)), 60)
        W.check_exactly_once(cfg, shards, evs)

        got = W.stream_actions(cfg)
        issued = [a for a in got if a["kind"] == "coupon.issued"]
        applied = [a for a in got if a["kind"] == "promotion.applied"]
        # never more than the budget, and all of it used: every partition
        # still had orders when the pool ran out, so none holds room unused
        assert len(issued) == COUPONS, len(issued)
        assert len({a["user"] for a in issued}) == COUPONS
        assert sum(a["payload"]["discount"] for a in applied) == MONEY
        assert all(0 < a["payload"]["discount"] <= DISCOUNT for a in applied)
        # a discount cut to what was left says so
        assert all(a["payload"].get("budget_cut") is True
                   for a in applied if a["payload"]["discount"] < DISCOUNT)
        assert len(applied) >= MONEY // DISCOUNT
        # partitions shared the pools: issued in many of them
        assert len({a["partition"] for a in issued}) >= 12

        # the pools as status shows them: claimed to the limit, claims made
        # by many partitions, none overlapping (claimed is their sum)
        pools = {p["pool"]: p for p in W.status(cfg)["budgets"]}
        assert set(pools) == {"welcome.budget", "fullcut.spent"}, pools
        assert pools["welcome.budget"]["claimed"] == COUPONS
        assert pools["welcome.budget"]["limit"] == COUPONS
        assert pools["fullcut.spent"]["claimed"] == MONEY
        assert pools["welcome.budget"]["claims"] >= 16
        r = mktd("cluster", "status", "-c", cfg)
        assert r.returncode == 0, r.stderr
        assert f"budget welcome.budget: {COUPONS} of {COUPONS} claimed" in r.stdout, r.stdout
