"""Cluster mode (spec 17), the code registry: a coupon code claimed in one
partition is registered in the bucket of codes, so that a `coupon.used`
of it in another partition (another user's) is rejected `not_owner`, not
`unknown`; its owner still redeems it, and a code nobody issued is
`unknown`. Against a real three-node NATS JetStream cluster on
127.0.0.1."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)

CAMPAIGNS = """campaigns:
  - id: welcome
    plugin: coupon
    when: {event: order.paid}
    params: {value: 500, valid_for: 7d}
"""
# partitions of 16: alice 7, bob 4, carol 2
T = W.T0


def action_of(cfg, kind, user):
    return [a for a in W.stream_actions(cfg) if a["kind"] == kind and a["user"] == user]


def test_a_code_issued_in_another_partition_is_not_owned():
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        W.start_fair(ws)
        W.publish(cfg, [{"id": "o1", "type": "order.paid", "user": "alice", "ts": T,
                         "props": {"order_id": "o1", "amount": 3000}}])
        issued = W.wait_for("alice's coupon", lambda: action_of(cfg, "coupon.issued", "alice"),
                            30)
        code = issued[0]["payload"]["code"]
        assert issued[0]["partition"] == 7
        time.sleep(0.5)  # (registered in the same round as the action's publish)
        W.publish(cfg, [
            {"id": "u1", "type": "coupon.used", "user": "bob", "ts": T + 1000,
             "props": {"code": code}},
            {"id": "u2", "type": "coupon.used", "user": "carol", "ts": T + 1000,
             "props": {"code": "NOSUCHCODE"}},
            {"id": "u3", "type": "coupon.used", "user": "alice", "ts": T + 2000,
             "props": {"code": code}},
        ])
        rejected = W.wait_for(
            "two rejections",
            lambda: (lambda r: r if len(r) == 2 else None)(
                [a for a in W.stream_actions(cfg) if a["kind"] == "coupon.rejected"]), 30)
        by = {a["user"]: a for a in rejected}
        assert by["bob"]["payload"] == {"code": code, "reason": "not_owner"}, by["bob"]
        assert by["bob"]["partition"] == 4
        assert by["carol"]["payload"] == {"code": "NOSUCHCODE", "reason": "unknown"}
        redeemed = W.wait_for("alice's redemption",
                              lambda: action_of(cfg, "coupon.redeemed", "alice"), 30)
        assert redeemed[0]["payload"]["code"] == code
