"""points through the real daemon (clock: event): four months of event time
for a few members, earning, redeeming, refunds (full, partial, beyond the
balance), expiry and tier changes up and down (a drop by the clock alone),
with a restart in between, checked against the actions table row by row."""

from harness import Daemon, check_refuses_at, mktd
from plugtest import D, H, M, S, T, Tape, check_readme_example, ev, send_ok


CAMPAIGNS = """
- id: members
  plugin: points
  params:
    rate: 100            # 1 point per yuan
    expire_after: 30d
    tiers: [{name: silver, at: 1000}, {name: gold, at: 5000}]
    tier_window: 90d
"""

P = "members"


def earned(o, p, b):
    return {"order_id": o, "points": p, "balance": b}


def tier(a, b):
    return {"from": a, "to": b}


def test_points_months():
    d = Daemon(CAMPAIGNS)
    t = Tape(d)
    T0 = T("2026-01-01T00:00:00Z")
    try:
        # Day 0 and 10: u1 earns 1200 (silver), then 4000 (gold).
        send_ok(d, [ev("p1", "order.paid", "u1", T0, order_id="o1", amount=120000),
                    ev("p2", "order.paid", "u1", T0 + 10 * D, order_id="o2", amount=400050),
                    ev("p2b", "order.paid", "u1", T0 + 10 * D, order_id="o2", amount=400050)],
                [2, 2, 0])
        t.expect((T0, P, "points.earned", "u1", "p1", earned("o1", 1200, 1200)),
                 (T0, P, "tier.changed", "u1", "p1", tier(None, "silver")),
                 (T0 + 10 * D, P, "points.earned", "u1", "p2", earned("o2", 4000, 5200)),
                 (T0 + 10 * D, P, "tier.changed", "u1", "p2", tier("silver", "gold")))

        # Day 15 and 20: 1500 redeemed (o1's 1200 first, then 300 of o2);
        # 5000 more is refused.
        send_ok(d, [ev("r1", "points.redeem", "u1", T0 + 15 * D, order_id="x1", points=1500),
                    ev("r2", "points.redeem", "u1", T0 + 20 * D, order_id="x2", points=5000)],
                [1, 1])
        t.expect((T0 + 15 * D, P, "points.redeemed", "u1", "r1", earned("x1", 1500, 3700)),
                 (T0 + 20 * D, P, "points.rejected", "u1", "r2",
                  {"order_id": "x2", "points": 5000, "reason": "insufficient"}))

        # A restart: lots, counters and timers are in the database.
        assert d.stop() == 0
        d.start()

        # Day 25: o1 is refunded in full. Its lot is spent: the 1200 come
        # from the balance (o2's lot); the tier falls back to silver.
        send_ok(d, [ev("f1", "order.refunded", "u1", T0 + 25 * D, order_id="o1")], [2])
        t.expect((T0 + 25 * D, P, "points.reversed", "u1", "f1", earned("o1", 1200, 2500)),
                 (T0 + 25 * D, P, "tier.changed", "u1", "f1", tier("gold", "silver")))

        # u2, day 30 to 32: a partial refund keeps the points; the rest of
        # the order is the full refund.
        send_ok(d, [ev("q1", "order.paid", "u2", T0 + 30 * D, order_id="o3", amount=50000),
                    ev("q2", "order.refunded", "u2", T0 + 31 * D, order_id="o3", amount=20000),
                    ev("q3", "order.refunded", "u2", T0 + 32 * D, order_id="o3", amount=30000)],
                [1, 0, 1])
        t.expect((T0 + 30 * D, P, "points.earned", "u2", "q1", earned("o3", 500, 500)),
                 (T0 + 32 * D, P, "points.reversed", "u2", "q3", earned("o3", 500, 0)))

        # Day 41: o2's lot expired at day 40 (what was left of it: 2500);
        # the timer's action has no event and its own ts.
        send_ok(d, [ev("q4", "order.paid", "u3", T0 + 41 * D, order_id="o4", amount=100)], [1])
        t.expect((T0 + 40 * D, P, "points.expired", "u1", None, {"points": 2500, "balance": 0}),
                 (T0 + 41 * D, P, "points.earned", "u3", "q4", earned("o4", 1, 1)))

        # o2 is refunded after its lot expired: of its 4000, 2500 expired
        # and the rest was spent; nothing is reversed twice and the balance
        # is empty. Its 4000 leave the tier window's count: silver is lost.
        send_ok(d, [ev("f2", "order.refunded", "u1", T0 + 45 * D, order_id="o2")], [1])
        t.expect((T0 + 45 * D, P, "tier.changed", "u1", "f2", tier("silver", None)))

        # Day 50: 1500 more, silver again.
        send_ok(d, [ev("p5", "order.paid", "u1", T0 + 50 * D, order_id="o5", amount=150000)],
                [2])
        t.expect((T0 + 50 * D, P, "points.earned", "u1", "p5", earned("o5", 1500, 1500)),
                 (T0 + 50 * D, P, "tier.changed", "u1", "p5", tier(None, "silver")))

        # Day 81: the expiries of day 71 (u3's point) and day 80 (o5) have
        # fired, in order of due time, before someone else's event.
        send_ok(d, [ev("z1", "page.view", "u9", T0 + 81 * D)], [0])
        t.expect((T0 + 71 * D, P, "points.expired", "u3", None, {"points": 1, "balance": 0}),
                 (T0 + 80 * D, P, "points.expired", "u1", None, {"points": 1500, "balance": 0}))

        # Day 140: o5 leaves the 90-day window and u1 drops from silver with
        # no event of theirs (expired points still count: they were earned).
        send_ok(d, [ev("z2", "page.view", "u9", T0 + 139 * D)], [0])
        t.expect()
        send_ok(d, [ev("z3", "page.view", "u9", T0 + 141 * D)], [0])
        t.expect((T0 + 140 * D, P, "tier.changed", "u1", None, tier("silver", None)))
        assert d.db_rows("SELECT count(*) FROM timers WHERE campaign = ?", (P,)) == [(0,)]
    finally:
        d.stop()


GROUPED = """
# a first order earns a coupon instead of points: one of the two per order
- id: first-order
  plugin: coupon
  group: checkout
  when:
    event: order.paid
    all: [{field: user.orders, op: eq, value: 1}]
  params: {value: 1000, valid_for: 30d}
- id: members
  plugin: points
  group: checkout
  params: {rate: 100}
"""


def test_points_excluded_by_group():
    d = Daemon(GROUPED)
    T0 = T("2026-01-01T00:00:00Z")
    try:
        send_ok(d, [ev("a", "order.paid", "u1", T0, order_id="o1", amount=10000),
                    ev("b", "order.paid", "u1", T0 + D, order_id="o2", amount=20000),
                    ev("c", "order.refunded", "u1", T0 + 2 * D, order_id="o1"),
                    ev("d", "points.redeem", "u1", T0 + 3 * D, order_id="x", points=200)],
                [1, 1, 0, 1])
        got = [(r["campaign"], r["kind"], r["event_id"]) for r in d.actions()]
        assert got == [("first-order", "coupon.issued", "a"),
                       (P, "points.earned", "b"),
                       (P, "points.redeemed", "d")], got
        assert d.actions()[2]["payload"] == {"order_id": "x", "points": 200, "balance": 0}
    finally:
        d.stop()


def test_check_refuses_bad_params():
    d = Daemon(start=False)
    cases = [
        ("params: {rate: @0}", r"rate: .*from 1 to 1000000000 \(got '0'\)"),
        ("params:\n    rate: @1.5", r"rate: .*\(got '1.5'\)"),
        ("params:\n    rate: 100\n    expire_after: @never",
         r"expire_after: .*duration.*\(got 'never'\)"),
        ("params: {rate: 100, tier_window: @30d}", r"tier_window: needs tiers"),
        ("params: {rate: 100, tiers: @[]}", r"tiers: the list is empty"),
        ("params:\n    rate: 100\n    tiers:\n      - {name: silver, at: 500}\n"
         "      - {name: gold, at: @500}",
         r"at: tiers go up: 500 is not above 500 \(tier 'silver'\)"),
        ("params:\n    rate: 100\n    tiers:\n      - {name: gold, at: 5}\n"
         "      - {name: @gold, at: 9}", r"name: tier 'gold' is given twice"),
        ("params:\n    rate: 100\n    @per_yuan: 1",
         r"unknown key 'per_yuan' \(allowed: rate, expire_after, tiers, tier_window\)"),
        ("params: @{expire_after: 30d}", r"missing required key 'rate'"),
    ]
    for params, want in cases:
        check_refuses_at(d, "pts", f"""
- id: pts
  plugin: points
  {params}
""", want)
    d.write_config(CAMPAIGNS)
    r = mktd("check", "-c", d.config)
    assert r.returncode == 0, r.stderr


def test_readme_example():
    """plugins/points/README.md's worked example is what simulate prints."""
    check_readme_example("points")
