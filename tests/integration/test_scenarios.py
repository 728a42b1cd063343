"""Scenarios of the built-in plugins through the real daemon (clock: event):
weeks of event time for a handful of users, checked against the actions
table row by row (seq order, ts, campaign, kind, user, event_id, payload).

Coupon codes are random: they are checked by pattern (prefix + 13 characters
of [A-Z2-9]) and then used as the daemon issued them.
"""
import datetime
import re

from harness import Daemon, ok, reload_wait

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H


def T(s):
    """RFC 3339 text as Unix ms."""
    return int(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def ev(id, type, user, ts, **props):
    e = {"id": id, "type": type, "user": user, "ts": ts}
    if props:
        e["props"] = props
    return e


def code(prefix):
    return re.compile(re.escape(prefix) + "[A-Z2-9]{13}")


def fnv1a32(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def bucket(campaign, user):
    return fnv1a32(f"{campaign}:{user}") % 100


def _match(exp, act, where):
    if isinstance(exp, re.Pattern):
        assert isinstance(act, str) and exp.fullmatch(act), f"{where}: {act!r} !~ {exp.pattern}"
    elif isinstance(exp, dict):
        assert isinstance(act, dict), f"{where}: {act!r} is not an object"
        assert set(exp) == set(act), f"{where}: keys {sorted(act)} != {sorted(exp)}"
        for k in exp:
            _match(exp[k], act[k], f"{where}.{k}")
    else:
        assert type(exp) is type(act) and exp == act, f"{where}: {act!r} != {exp!r}"


class Tape:
    """Reads the actions table of a daemon in seq order and checks the rows
    recorded since the last check."""

    def __init__(self, d):
        self.d = d
        self.seen = 0
        self.last_seq = 0

    def expect(self, *rows):
        """rows: (ts, campaign, kind, user, event_id, payload); returns the
        new action rows (dicts)."""
        new = self.d.actions()[self.seen:]
        show = "\n".join(f"  {r}" for r in new)
        assert len(new) == len(rows), f"expected {len(rows)} new actions, got {len(new)}:\n{show}"
        for i, (r, x) in enumerate(zip(new, rows)):
            where = f"action {self.seen + i + 1} ({r})"
            assert r["seq"] > self.last_seq, where
            self.last_seq = r["seq"]
            ts, campaign, kind, user, event_id, payload = x
            assert (r["ts"], r["campaign"], r["kind"], r["user"], r["event_id"]) == \
                (ts, campaign, kind, user, event_id), f"{where}: expected {x}"
            _match(payload, r["payload"], where)
        self.seen += len(new)
        return new


def send_ok(d, events, counts):
    """Sends events; each answer must be ok with the given action count."""
    answers = d.send(events)
    assert len(answers) == len(events), answers
    for a, e, n in zip(answers, events, counts):
        assert a["id"] == e["id"], (a, e)
        ok(a, n)


# ---------------------------------------------------------------- (a) coupon

COUPONS = """
- id: invite
  plugin: referral
  params: {commission: [1000]}
- id: signup-gift
  plugin: coupon
  enabled: %(gift)s
  when: {event: user.signup}
  params: {percent: 5, valid_for: 3d, budget: 2, code_prefix: "GIFT-"}
# 满100减20: a first order of at least 100 yuan earns 20 yuan off the next one.
- id: first-order-coupon
  plugin: coupon
  enabled: %(first)s
  when:
    event: order.paid
    all:
      - {field: props.amount, op: gte, value: 10000}
      - {field: user.orders, op: eq, value: 1}
  params: {value: 2000, min_spend: 10000, valid_for: 7d, per_user_limit: 1, code_prefix: "NEW-"}
"""


def coupons(gift="true", first="true"):
    return COUPONS % {"gift": gift, "first": first}


def test_coupon_first_order_redeem_and_disable():
    d = Daemon(coupons())
    t = Tape(d)
    T0 = T("2026-11-02T02:00:00Z")  # 10:00 in Beijing
    NEW, GIFT = code("NEW-"), code("GIFT-")
    F, G = "first-order-coupon", "signup-gift"
    try:
        # The gift's budget of 2 spans users: u1 and u2 get one, u3 none.
        send_ok(d, [ev("a1", "user.signup", "u1", T0),
                    ev("a2", "user.signup", "u2", T0 + M),
                    ev("a3", "user.signup", "u3", T0 + 2 * M)], [1, 1, 0])
        g1, g2 = [r["payload"]["code"] for r in t.expect(
            (T0, G, "coupon.issued", "u1", "a1",
             {"code": GIFT, "percent": 5, "min_spend": 0, "expires_at": T0 + 3 * D}),
            (T0 + M, G, "coupon.issued", "u2", "a2",
             {"code": GIFT, "percent": 5, "min_spend": 0, "expires_at": T0 + M + 3 * D}))]
        assert g1 != g2

        # Only a first order of at least 10000 earns the coupon.
        send_ok(d, [ev("a4", "order.paid", "u1", T0 + H, order_id="o1", amount=12000),
                    ev("a5", "order.paid", "u2", T0 + 2 * H, order_id="o2", amount=9999),
                    ev("a6", "order.paid", "u2", T0 + 3 * H, order_id="o3", amount=15000),
                    ev("a7", "order.paid", "u3", T0 + 4 * H, order_id="o4", amount=10000)],
                [1, 0, 0, 1])
        c1, c3 = [r["payload"]["code"] for r in t.expect(
            (T0 + H, F, "coupon.issued", "u1", "a4",
             {"code": NEW, "value": 2000, "min_spend": 10000, "expires_at": T0 + H + 7 * D}),
            (T0 + 4 * H, F, "coupon.issued", "u3", "a7",
             {"code": NEW, "value": 2000, "min_spend": 10000, "expires_at": T0 + 4 * H + 7 * D}))]

        # Redemptions: checks in the order not_owner, expired, used, min_spend;
        # a rejection changes nothing.
        send_ok(d, [ev("a8", "coupon.used", "u2", T0 + D, code=c1, order_id="o5", amount=20000),
                    ev("a9", "coupon.used", "u1", T0 + D + H, code=c1, order_id="o6", amount=9999),
                    ev("a10", "coupon.used", "u1", T0 + 2 * D, code=c1, order_id="o7", amount=10000),
                    ev("a11", "coupon.used", "u1", T0 + 2 * D + M, code=c1),
                    ev("a12", "coupon.used", "u1", T0 + 2 * D + 2 * M, code=g1),
                    # g2 expires at T0 + 1m + 3d: a use at that very ms is late
                    ev("a13", "coupon.used", "u2", T0 + M + 3 * D, code=g2, amount=1)],
                [1] * 6)
        t.expect(
            (T0 + D, F, "coupon.rejected", "u2", "a8", {"code": c1, "reason": "not_owner"}),
            (T0 + D + H, F, "coupon.rejected", "u1", "a9", {"code": c1, "reason": "min_spend"}),
            (T0 + 2 * D, F, "coupon.redeemed", "u1", "a10", {"code": c1, "order_id": "o7"}),
            (T0 + 2 * D + M, F, "coupon.rejected", "u1", "a11", {"code": c1, "reason": "used"}),
            (T0 + 2 * D + 2 * M, G, "coupon.redeemed", "u1", "a12", {"code": g1}),
            (T0 + M + 3 * D, G, "coupon.rejected", "u2", "a13", {"code": g2, "reason": "expired"}))

        # c3 (expires T0 + 4h + 7d): after expiry another user is refused as
        # not_owner (checked first), the owner as expired. A late use whose
        # own ts is before expiry is redeemed; its action carries now.
        late = T0 + 8 * D
        send_ok(d, [ev("a14", "coupon.used", "u1", late, code=c3, amount=50000),
                    ev("a15", "coupon.used", "u3", late + M, code=c3, amount=50000),
                    ev("a16", "coupon.used", "u3", T0 + 4 * H + 7 * D - 1, code=c3,
                       order_id="o8", amount=50000),
                    ev("a17", "coupon.used", "u1", late + 2 * M, code="NOSUCH-CODE")],
                [1, 1, 1, 1])
        t.expect(
            (late, F, "coupon.rejected", "u1", "a14", {"code": c3, "reason": "not_owner"}),
            (late + M, F, "coupon.rejected", "u3", "a15", {"code": c3, "reason": "expired"}),
            (late + M, F, "coupon.redeemed", "u3", "a16", {"code": c3, "order_id": "o8"}),
            # unknown: the first coupon campaign of the config (not `invite`)
            (late + 2 * M, G, "coupon.rejected", "u1", "a17",
             {"code": "NOSUCH-CODE", "reason": "unknown"}))

        # u4 earns a code, then both coupon campaigns are disabled.
        send_ok(d, [ev("a18", "order.paid", "u4", T0 + 9 * D, order_id="o9", amount=30000)], [1])
        (c4,) = [r["payload"]["code"] for r in t.expect(
            (T0 + 9 * D, F, "coupon.issued", "u4", "a18",
             {"code": NEW, "value": 2000, "min_spend": 10000, "expires_at": T0 + 16 * D}))]
        assert reload_wait(d, coupons(gift="false", first="false"))
        send_ok(d, [ev("a19", "order.paid", "u5", T0 + 10 * D, order_id="o10", amount=30000),
                    ev("a20", "user.signup", "u6", T0 + 10 * D + M),
                    ev("a21", "coupon.used", "u4", T0 + 10 * D + 2 * M, code=c4,
                       order_id="o11", amount=10000),
                    ev("a22", "coupon.used", "u4", T0 + 10 * D + 3 * M, code="ZZZ")],
                [0, 0, 1, 1])
        t.expect(
            # disabling stops issuing, not redeeming
            (T0 + 10 * D + 2 * M, F, "coupon.redeemed", "u4", "a21", {"code": c4, "order_id": "o11"}),
            # a disabled campaign is still the first coupon campaign
            (T0 + 10 * D + 3 * M, G, "coupon.rejected", "u4", "a22", {"code": "ZZZ", "reason": "unknown"}))

        # Restart, enable both again: the budget stays spent, redemptions stay.
        assert d.stop() == 0
        d.write_config(coupons())
        d.start()
        t1 = T0 + 11 * D
        send_ok(d, [ev("a23", "user.signup", "u7", t1),
                    ev("a24", "coupon.used", "u4", t1 + M, code=c4, amount=99999),
                    ev("a25", "order.paid", "u8", t1 + 2 * M, order_id="o12", amount=20000),
                    # u5's first order came while disabled; this is their second
                    ev("a26", "order.paid", "u5", t1 + 3 * M, order_id="o13", amount=20000)],
                [0, 1, 1, 0])
        t.expect(
            (t1 + M, F, "coupon.rejected", "u4", "a24", {"code": c4, "reason": "used"}),
            (t1 + 2 * M, F, "coupon.issued", "u8", "a25",
             {"code": NEW, "value": 2000, "min_spend": 10000, "expires_at": t1 + 2 * M + 7 * D}))
    finally:
        assert d.stop() == 0


# -------------------------------------------------------------- (b) referral

REFERRAL = """
- id: invite
  plugin: referral
  params:
    commission: [1000, 300]
    reward: {amount: 1000, referrer_share: 50}
    daily_cap: 2
    utc_offset: "+08:00"
"""


def test_referral_two_levels():
    d = Daemon(REFERRAL)
    t = Tape(d)
    R = "invite"
    D1 = T("2026-11-01T10:00:00+08:00")
    try:
        send_ok(d, [
            ev("b1", "user.signup", "a", D1),
            ev("b2", "user.signup", "b", D1 + M, referrer="a"),
            ev("b3", "user.signup", "c", D1 + 2 * M, referrer="b"),
            ev("b4", "user.signup", "x", D1 + 3 * M, referrer="x"),
            # a is not new either, but c's chain b -> a contains a: cycle first
            ev("b5", "user.signup", "a", D1 + 4 * M, referrer="c"),
            # a's chain is empty (no cycle); c is bound already
            ev("b6", "user.signup", "c", D1 + 5 * M, referrer="a"),
            ev("b7", "page.view", "y", D1 + 6 * M),
            ev("b8", "user.signup", "y", D1 + 7 * M, referrer="a"),
        ], [0, 1, 1, 1, 1, 1, 0, 1])
        t.expect(
            (D1 + M, R, "referral.bound", "b", "b2", {"referrer": "a"}),
            (D1 + 2 * M, R, "referral.bound", "c", "b3", {"referrer": "b"}),
            (D1 + 3 * M, R, "referral.rejected", "x", "b4", {"referrer": "x", "reason": "self"}),
            (D1 + 4 * M, R, "referral.rejected", "a", "b5", {"referrer": "c", "reason": "cycle"}),
            (D1 + 5 * M, R, "referral.rejected", "c", "b6", {"referrer": "a", "reason": "already_bound"}),
            (D1 + 7 * M, R, "referral.rejected", "y", "b8", {"referrer": "a", "reason": "not_new"}))

        # daily_cap 2 by the day at +08:00: a has b on Nov 1 (y's refusal does
        # not count), e at 23:59:59 local is the second, f the third; g at
        # 00:00 local Nov 2 (still Nov 1 in UTC) starts a new day.
        e_ts = T("2026-11-01T15:59:59Z")
        g_ts = T("2026-11-01T16:00:00Z")
        send_ok(d, [ev("b9", "user.signup", "e", e_ts, referrer="a"),
                    ev("b10", "user.signup", "f", e_ts + 500, referrer="a"),
                    ev("b11", "user.signup", "g", g_ts, referrer="a")], [1, 1, 1])
        t.expect(
            (e_ts, R, "referral.bound", "e", "b9", {"referrer": "a"}),
            (e_ts + 500, R, "referral.rejected", "f", "b10", {"referrer": "a", "reason": "daily_cap"}),
            (g_ts, R, "referral.bound", "g", "b11", {"referrer": "a"}))

        # Orders. Chain: c -> b -> a; e -> a; b -> a.
        D2 = T("2026-11-02T10:00:00+08:00")
        send_ok(d, [
            ev("b12", "order.paid", "c", D2, order_id="o1", amount=12345),
            ev("b13", "order.paid", "c", D2 + M, order_id="o1", amount=12345),
            ev("b14", "order.paid", "c", D2 + 2 * M, order_id="o2", amount=10000),
            ev("b15", "order.paid", "b", D2 + 3 * M, order_id="o3", amount=999),
            ev("b16", "order.paid", "e", D2 + 4 * M, order_id="o4", amount=5),
            ev("b17", "order.paid", "z", D2 + 5 * M, order_id="o5", amount=50000),
        ], [4, 0, 2, 3, 2, 0])
        t.expect(
            # 12345 x 10% = 1234.5 -> 1234; x 3% = 370.35 -> 370; then the
            # reward of c's first qualifying order, 50/50, referrer first
            (D2, R, "referral.commission", "b", "b12",
             {"order_id": "o1", "buyer": "c", "level": 1, "rate_bp": 1000, "amount": 1234}),
            (D2, R, "referral.commission", "a", "b12",
             {"order_id": "o1", "buyer": "c", "level": 2, "rate_bp": 300, "amount": 370}),
            (D2, R, "referral.reward", "b", "b12", {"referee": "c", "role": "referrer", "amount": 500}),
            (D2, R, "referral.reward", "c", "b12", {"referee": "c", "role": "referee", "amount": 500}),
            # b13: the same order id again earns nothing
            # b14: c's second order: commissions, no reward
            (D2 + 2 * M, R, "referral.commission", "b", "b14",
             {"order_id": "o2", "buyer": "c", "level": 1, "rate_bp": 1000, "amount": 1000}),
            (D2 + 2 * M, R, "referral.commission", "a", "b14",
             {"order_id": "o2", "buyer": "c", "level": 2, "rate_bp": 300, "amount": 300}),
            # b15: 999 x 10% = 99.9 -> 99; a has no referrer: no level 2
            (D2 + 3 * M, R, "referral.commission", "a", "b15",
             {"order_id": "o3", "buyer": "b", "level": 1, "rate_bp": 1000, "amount": 99}),
            (D2 + 3 * M, R, "referral.reward", "a", "b15", {"referee": "b", "role": "referrer", "amount": 500}),
            (D2 + 3 * M, R, "referral.reward", "b", "b15", {"referee": "b", "role": "referee", "amount": 500}),
            # b16: 5 x 10% floors to 0: not recorded; the reward still is
            (D2 + 4 * M, R, "referral.reward", "a", "b16", {"referee": "e", "role": "referrer", "amount": 500}),
            (D2 + 4 * M, R, "referral.reward", "e", "b16", {"referee": "e", "role": "referee", "amount": 500}))
            # b17: z is not bound

        # Refunds of o1 (12345 paid; commissions 1234 and 370): 5000 first,
        # then the rest (7345), then nothing is left.
        send_ok(d, [
            ev("b18", "order.refunded", "c", D2 + H, order_id="o1", amount=5000),
            ev("b19", "order.refunded", "c", D2 + 2 * H, order_id="o1"),
            ev("b20", "order.refunded", "c", D2 + 3 * H, order_id="o1"),
            # more than the order: counts as all of it
            ev("b21", "order.refunded", "c", D2 + 4 * H, order_id="o2", amount=20000),
            # o4 earned no commission; o99 was never paid
            ev("b22", "order.refunded", "e", D2 + 5 * H, order_id="o4"),
            ev("b23", "order.refunded", "c", D2 + 6 * H, order_id="o99", amount=10),
        ], [2, 2, 0, 2, 0, 0])
        t.expect(
            # floor(1234 x 5000 / 12345) = 499; floor(370 x 5000 / 12345) = 149
            (D2 + H, R, "referral.clawback", "b", "b18", {"order_id": "o1", "level": 1, "amount": 499}),
            (D2 + H, R, "referral.clawback", "a", "b18", {"order_id": "o1", "level": 2, "amount": 149}),
            # min(floor(1234 x 7345 / 12345) = 734, 1234 - 499 = 735) = 734
            # min(floor(370 x 7345 / 12345) = 220, 370 - 149 = 221) = 220
            (D2 + 2 * H, R, "referral.clawback", "b", "b19", {"order_id": "o1", "level": 1, "amount": 734}),
            (D2 + 2 * H, R, "referral.clawback", "a", "b19", {"order_id": "o1", "level": 2, "amount": 220}),
            (D2 + 4 * H, R, "referral.clawback", "b", "b21", {"order_id": "o2", "level": 1, "amount": 1000}),
            (D2 + 4 * H, R, "referral.clawback", "a", "b21", {"order_id": "o2", "level": 2, "amount": 300}))
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------- (c) reactivation

WINBACK = """
- id: winback
  plugin: reactivation
  params:
    inactive_for: 30d
    cooldown: 7d
    max_attempts: 2
    holdout_percent: 10
    convert_within: 7d
    activity: [app.open, order.paid]
    quiet_hours: {from: "22:00", to: "08:00", utc_offset: "+08:00"}
    offer: {title: "We miss you", coupon: winback-coupon}
- id: winback-coupon
  plugin: coupon
  when: {event: reactivation.offer}
  params: {value: 1500, min_spend: 5000, valid_for: 14d, per_user_limit: 2, code_prefix: "BACK-"}
"""
OFFER = {"title": "We miss you", "coupon": "winback-coupon"}


def test_fnv_vectors():
    assert fnv1a32("winback:u1") == 1229837814 and bucket("winback", "u1") == 14
    assert fnv1a32("lapsed-30d:user-1001") == 2900235212 and bucket("lapsed-30d", "user-1001") == 12


def test_winback_offers_holdouts_quiet_hours_conversions():
    users = [f"u{i}" for i in range(1, 40)]
    offered = [u for u in users if bucket("winback", u) >= 10]
    held = [u for u in users if bucket("winback", u) < 10]
    A, B, C, E = offered[:4]
    Hu = held[0]
    assert B < C  # same due moment below: ties fire by user id
    d = Daemon(WINBACK)
    t = Tape(d)
    W, CP = "winback", "winback-coupon"
    BACK = code("BACK-")

    def coupon_row(ts, user):
        return (ts, CP, "coupon.issued", user, None,
                {"code": BACK, "value": 1500, "min_spend": 5000, "expires_at": ts + 14 * D})

    def offer(ts, user, attempt, a):
        return (ts, W, "reactivation.offer", user, None,
                {"attempt": attempt, "inactive_ms": ts - a, "offer": OFFER})

    def holdout(ts, user, attempt, a):
        return (ts, W, "reactivation.holdout", user, None, {"attempt": attempt, "inactive_ms": ts - a})

    aA = T("2026-01-01T03:00:00Z")  # 11:00 local
    aB = T("2026-01-01T15:00:00Z")  # 23:00 local
    aC = T("2026-01-01T20:00:00Z")  # 04:00 local, Jan 2
    aH = T("2026-01-02T01:00:00Z")  # 09:00 local
    aE = T("2026-01-05T04:00:00Z")  # 12:00 local
    try:
        send_ok(d, [ev("c1", "app.open", A, aA),
                    ev("c2", "order.paid", B, aB, order_id="oB", amount=4900),
                    ev("c3", "app.open", C, aC),
                    ev("c4", "app.open", Hu, aH),
                    ev("c5", "app.open", E, aE),
                    # not an activity type: moves the clock only
                    ev("c6", "page.view", "ticker", T("2026-01-31T02:59:59.999Z"))], [0] * 6)
        t.expect()

        # Attempt 1s, made when a later event moves the clock past them.
        # A: due 01-31 03:00Z (11:00 local). B: due 23:00 local, quiet: 08:00
        # local = 02-01 00:00Z. C: due 04:00 local, quiet: also 02-01 00:00Z
        # (B before C by user id). H: due 09:00 local, held out: no coupon.
        # Each offer's chained coupon follows it with the same ts.
        q = T("2026-02-01T00:00:00Z")
        send_ok(d, [ev("c7", "page.view", "ticker", T("2026-02-02T00:00:00Z"))], [0])
        t.expect(offer(aA + 30 * D, A, 1, aA), coupon_row(aA + 30 * D, A),
                 offer(q, B, 1, aB), coupon_row(q, B),
                 offer(q, C, 1, aC), coupon_row(q, C),
                 holdout(aH + 30 * D, Hu, 1, aH))
        assert q - aB == 30 * D + 9 * H

        # B comes back 2.5 days after the offer: converted, spell over.
        tB = T("2026-02-03T12:00:00Z")
        send_ok(d, [ev("c8", "app.open", B, tB)], [1])
        t.expect((tB, W, "reactivation.converted", B, "c8", {"group": "offer", "after_ms": tB - q}))
        assert tB - q == 216000000

        # Attempt 2s, a cooldown (7d) later. E's attempt 1 (02-04 04:00Z) comes
        # first. C's attempt 2 is due 04:00 local on 02-08: made at 08:00.
        qC2 = T("2026-02-08T00:00:00Z")
        send_ok(d, [ev("c9", "page.view", "ticker", T("2026-02-08T12:00:00Z"))], [0])
        t.expect(offer(aE + 30 * D, E, 1, aE), coupon_row(aE + 30 * D, E),
                 offer(aA + 37 * D, A, 2, aA), coupon_row(aA + 37 * D, A),
                 offer(qC2, C, 2, aC), coupon_row(qC2, C),
                 holdout(aH + 37 * D, Hu, 2, aH))

        # H returns a day after its second holdout: converted, group holdout.
        # A returns just over 7 days after its last offer: no conversion.
        # C returns exactly 7 days after its last offer: converted.
        tH = aH + 38 * D
        tA = aA + 44 * D + 1
        tC = qC2 + 7 * D
        # E's attempt 2 (02-11 04:00Z) fires before c11.
        send_ok(d, [ev("c10", "app.open", Hu, tH),
                    ev("c11", "order.paid", A, tA, order_id="oA", amount=8000),
                    ev("c12", "app.open", C, tC)], [1, 0, 1])
        t.expect((tH, W, "reactivation.converted", Hu, "c10", {"group": "holdout", "after_ms": D}),
                 offer(aE + 37 * D, E, 2, aE), coupon_row(aE + 37 * D, E),
                 (tC, W, "reactivation.converted", C, "c12", {"group": "offer", "after_ms": 7 * D}))

        # New spells. E made both attempts and stays quiet: no third one.
        # B (active 02-03 12:00Z = 20:00 local): 03-05 12:00Z and 03-12 12:00Z;
        # its second coupon comes with the first offer, the limit (2) stops
        # the next. A and C had two coupons already. C's new spell falls due
        # at 08:00 local exactly: [22:00, 08:00) does not hold 08:00.
        send_ok(d, [ev("c13", "page.view", "ticker", T("2026-03-20T00:00:00Z"))], [0])
        t.expect(offer(tB + 30 * D, B, 1, tB), coupon_row(tB + 30 * D, B),
                 holdout(tH + 30 * D, Hu, 1, tH),
                 offer(tB + 37 * D, B, 2, tB),
                 offer(tA + 30 * D, A, 1, tA),
                 offer(tC + 30 * D, C, 1, tC),
                 holdout(tH + 37 * D, Hu, 2, tH))
        assert tC + 30 * D == T("2026-03-17T08:00:00+08:00")
    finally:
        assert d.stop() == 0


def test_winback_backfill_on_first_load():
    d = Daemon("[]")
    t = Tape(d)
    p1 = T("2026-03-02T02:00:00Z")
    p2 = T("2026-03-10T02:00:00Z")
    p3 = T("2026-04-05T02:00:00Z")
    try:
        send_ok(d, [ev("p1a", "page.view", "p1", T("2026-03-01T02:00:00Z")),
                    ev("p1b", "page.view", "p1", p1),
                    ev("p2", "order.paid", "p2", p2, order_id="o1", amount=100),
                    ev("p3", "app.open", "p3", p3)], [0] * 4)
        assert d.stop() == 0
        d.write_config("""
            - id: lapsed
              plugin: reactivation
              params: {inactive_for: 30d, backfill: true, offer: {n: 1}}
            - id: lapsed-nobf
              plugin: reactivation
              params: {inactive_for: 30d}
        """)
        d.start()
        # p1 was last seen 03-02: due 04-01, already past at the next event;
        # p2 falls due 04-09; lapsed-nobf watches nobody until they return.
        send_ok(d, [ev("k1", "page.view", "ticker", T("2026-04-06T00:00:00Z"))], [0])
        t.expect((p1 + 30 * D, "lapsed", "reactivation.offer", "p1", None,
                  {"attempt": 1, "inactive_ms": 30 * D, "offer": {"n": 1}}))
        send_ok(d, [ev("k2", "page.view", "ticker", T("2026-04-20T00:00:00Z"))], [0])
        t.expect((p2 + 30 * D, "lapsed", "reactivation.offer", "p2", None,
                  {"attempt": 1, "inactive_ms": 30 * D, "offer": {"n": 1}}))
        # A later restart does not backfill again.
        assert d.stop() == 0
        d.start()
        send_ok(d, [ev("k3", "page.view", "ticker2", T("2026-05-06T00:00:00Z"))], [0])
        t.expect((p3 + 30 * D, "lapsed", "reactivation.offer", "p3", None,
                  {"attempt": 1, "inactive_ms": 30 * D, "offer": {"n": 1}}))
    finally:
        assert d.stop() == 0


# --------------------------------------------------- (d) restarts and reloads

def stateful(valid="3d", budget=1, inactive="10d", keep=("invite", "signup-gift", "winback"),
             invite_plugin="referral"):
    invite = ("- id: invite\n  plugin: referral\n  params: {commission: [1000]}\n"
              if invite_plugin == "referral" else
              f"- id: invite\n  plugin: {invite_plugin}\n  when: {{event: order.paid}}\n"
              "  params: {value: 1, valid_for: 1d}\n")
    blocks = {
        "invite": invite,
        "signup-gift": "- id: signup-gift\n  plugin: coupon\n  when: {event: user.signup}\n"
                       f"  params: {{value: 100, valid_for: {valid}, budget: {budget}, code_prefix: \"G-\"}}\n",
        "winback": "- id: winback\n  plugin: reactivation\n"
                   f"  params: {{inactive_for: {inactive}, activity: [app.open]}}\n",
    }
    return "".join(blocks[k] for k in ("invite", "signup-gift", "winback") if k in keep)


def test_state_survives_restart_and_reload():
    d = Daemon(stateful())
    t = Tape(d)
    t0 = T("2026-06-01T00:00:00Z")
    try:
        send_ok(d, [ev("d1", "user.signup", "a", t0),
                    ev("d2", "user.signup", "b", t0 + M, referrer="a"),
                    ev("d3", "app.open", "a", t0 + H),
                    ev("d4", "app.open", "b", t0 + 2 * H)], [1, 1, 0, 0])
        t.expect((t0, "signup-gift", "coupon.issued", "a", "d1",
                  {"code": code("G-"), "value": 100, "min_spend": 0, "expires_at": t0 + 3 * D}),
                 (t0 + M, "invite", "referral.bound", "b", "d2", {"referrer": "a"}))

        # Restart: the binding, the spent budget and a's and b's timers stay.
        assert d.stop() == 0
        d.start()
        send_ok(d, [ev("d5", "order.paid", "b", t0 + D, order_id="o1", amount=10000),
                    ev("d6", "user.signup", "c", t0 + D + M)], [1, 0])
        t.expect((t0 + D, "invite", "referral.commission", "a", "d5",
                  {"order_id": "o1", "buyer": "b", "level": 1, "rate_bp": 1000, "amount": 1000}))

        # Reload with new params (valid_for, inactive_for): the budget is
        # still spent; the pending attempts keep their due times.
        assert reload_wait(d, stateful(valid="5d", inactive="20d"))
        send_ok(d, [ev("d7", "user.signup", "c2", t0 + 2 * D)], [0])
        t.expect()

        # Remove all but the gift, then add them back (before anything falls
        # due): bindings and timers come back with the campaign ids.
        assert reload_wait(d, stateful(valid="5d", inactive="20d", keep=("signup-gift",)))
        send_ok(d, [ev("d8", "order.paid", "b", t0 + 3 * D, order_id="o2", amount=500)], [0])
        t.expect()
        assert reload_wait(d, stateful(valid="5d", inactive="20d"))
        send_ok(d, [ev("d9", "order.paid", "b", t0 + 4 * D, order_id="o3", amount=2000)], [1])
        t.expect((t0 + 4 * D, "invite", "referral.commission", "a", "d9",
                  {"order_id": "o3", "buyer": "b", "level": 1, "rate_bp": 1000, "amount": 200}))

        # A reload that changes invite's plugin is refused as a whole (the
        # raised budget does not apply either); the old config keeps running.
        assert not reload_wait(d, stateful(budget=5, invite_plugin="coupon"))
        assert "changed its plugin" in d.log()
        send_ok(d, [ev("d10", "order.paid", "b", t0 + 5 * D, order_id="o4", amount=3000),
                    ev("d11", "user.signup", "c3", t0 + 5 * D + M)], [1, 0])
        t.expect((t0 + 5 * D, "invite", "referral.commission", "a", "d10",
                  {"order_id": "o4", "buyer": "b", "level": 1, "rate_bp": 1000, "amount": 300}))

        # a's and b's attempts were set under inactive_for 10d and keep those
        # due times through the restart and the reloads.
        send_ok(d, [ev("d12", "page.view", "ticker", t0 + 15 * D)], [0])
        t.expect((t0 + H + 10 * D, "winback", "reactivation.offer", "a", None,
                  {"attempt": 1, "inactive_ms": 10 * D, "offer": {}}),
                 (t0 + 2 * H + 10 * D, "winback", "reactivation.offer", "b", None,
                  {"attempt": 1, "inactive_ms": 10 * D, "offer": {}}))

        # a returns 6 days less an hour after the offer (convert_within
        # defaults to 7d): converted; the new spell runs under the new
        # params (20d).
        send_ok(d, [ev("d13", "app.open", "a", t0 + 16 * D),
                    ev("d14", "page.view", "ticker", t0 + 40 * D)], [1, 0])
        t.expect((t0 + 16 * D, "winback", "reactivation.converted", "a", "d13",
                  {"group": "offer", "after_ms": 6 * D - H}),
                 (t0 + 36 * D, "winback", "reactivation.offer", "a", None,
                  {"attempt": 1, "inactive_ms": 20 * D, "offer": {}}))
    finally:
        assert d.stop() == 0


WB_TOGGLE = """
- id: wb
  plugin: reactivation
  enabled: %s
  params: {inactive_for: 10d, max_attempts: 3, cooldown: 1d, activity: [app.open],
           quiet_hours: {from: "22:00", to: "08:00", utc_offset: "+08:00"}}
- id: wb-hourly
  plugin: reactivation
  params: {inactive_for: 10d, max_attempts: 3, cooldown: 1h, activity: [app.wake],
           quiet_hours: {from: "22:00", to: "08:00", utc_offset: "+08:00"}}
"""


def test_winback_disabled_skips_late_activity_and_quiet_collapse():
    d = Daemon(WB_TOGGLE % "true")
    t = Tape(d)
    a = T("2026-01-01T12:00:00+08:00")
    try:
        send_ok(d, [ev("1", "app.open", "u", a)], [0])
        # Attempt 1 (a + 10d) falls due while disabled: skipped for good;
        # attempt 2 keeps its number.
        assert reload_wait(d, WB_TOGGLE % "false")
        send_ok(d, [ev("2", "tick", "z", a + 10 * D + H)], [0])
        assert reload_wait(d, WB_TOGGLE % "true")
        send_ok(d, [ev("3", "tick", "z", a + 11 * D)], [0])
        t.expect((a + 11 * D, "wb", "reactivation.offer", "u", None,
                  {"attempt": 2, "inactive_ms": 11 * D, "offer": {}}))
        # A late activity, its ts before the latest offer (but after a): the
        # spell ends without a conversion; the new spell counts from it.
        late = a + 10 * D
        send_ok(d, [ev("4", "app.open", "u", late)], [0])
        send_ok(d, [ev("5", "tick", "z", a + 30 * D)], [0])
        t.expect((late + 10 * D, "wb", "reactivation.offer", "u", None,
                  {"attempt": 1, "inactive_ms": 10 * D, "offer": {}}),
                 (late + 11 * D, "wb", "reactivation.offer", "u", None,
                  {"attempt": 2, "inactive_ms": 11 * D, "offer": {}}),
                 (late + 12 * D, "wb", "reactivation.offer", "u", None,
                  {"attempt": 3, "inactive_ms": 12 * D, "offer": {}}))
        # Last activity at 23:30 local. wb (cooldown 1d): each attempt falls
        # at 23:30 local and moves to 08:00 the next morning. wb-hourly
        # (cooldown 1h): attempts due at 23:30, 00:30, 01:30 local all move
        # to the same 08:00; only attempt 1 is made.
        b = T("2026-03-01T23:30:00+08:00")
        send_ok(d, [ev("6", "app.open", "v", b), ev("7", "app.wake", "v", b),
                    ev("8", "tick", "z", b + 20 * D)], [0, 0, 0])
        q = T("2026-03-12T08:00:00+08:00")
        t.expect((q, "wb", "reactivation.offer", "v", None,
                  {"attempt": 1, "inactive_ms": q - b, "offer": {}}),
                 (q, "wb-hourly", "reactivation.offer", "v", None,
                  {"attempt": 1, "inactive_ms": q - b, "offer": {}}),
                 (q + D, "wb", "reactivation.offer", "v", None,
                  {"attempt": 2, "inactive_ms": q + D - b, "offer": {}}),
                 (q + 2 * D, "wb", "reactivation.offer", "v", None,
                  {"attempt": 3, "inactive_ms": q + 2 * D - b, "offer": {}}))
    finally:
        assert d.stop() == 0


CHAIN = """
- id: invite
  plugin: referral
  params: {commission: [1000]}
- id: bound-gift
  plugin: coupon
  when: {event: referral.bound}
  params: {value: 300, valid_for: 1d, code_prefix: "B-"}
- id: again
  plugin: coupon
  when: {event: coupon.used}
  params: {value: 100, valid_for: 1d, per_user_limit: 5, code_prefix: "A-"}
"""


def test_chain_and_redeem_before_issue():
    d = Daemon(CHAIN)
    t = Tape(d)
    t0 = T("2026-05-01T00:00:00Z")
    try:
        # referral.bound -> the bound user gets a coupon, in the same event
        send_ok(d, [ev("1", "user.signup", "v", t0, referrer="w")], [2])
        (c1,) = [r["payload"]["code"] for r in t.expect(
            (t0, "invite", "referral.bound", "v", "1", {"referrer": "w"}),
            (t0, "bound-gift", "coupon.issued", "v", "1",
             {"code": code("B-"), "value": 300, "min_spend": 0, "expires_at": t0 + D}))[1:]]
        # `again` names coupon.used: its own code is redeemed before it issues
        # a new one on the same event; another campaign's code goes to that
        # campaign, and `again` still issues on the event.
        send_ok(d, [ev("2", "coupon.used", "v", t0 + M, code=c1)], [2])
        (c2,) = [r["payload"]["code"] for r in t.expect(
            (t0 + M, "bound-gift", "coupon.redeemed", "v", "2", {"code": c1}),
            (t0 + M, "again", "coupon.issued", "v", "2",
             {"code": code("A-"), "value": 100, "min_spend": 0, "expires_at": t0 + M + D}))[1:]]
        send_ok(d, [ev("3", "coupon.used", "v", t0 + 2 * M, code=c2)], [2])
        t.expect((t0 + 2 * M, "again", "coupon.redeemed", "v", "3", {"code": c2}),
                 (t0 + 2 * M, "again", "coupon.issued", "v", "3",
                  {"code": code("A-"), "value": 100, "min_spend": 0, "expires_at": t0 + 2 * M + D}))
    finally:
        assert d.stop() == 0


def test_coupon_codes_are_uniform():
    """2,000 codes: all distinct, every character of the alphabet in every
    position's mix, none far from its share (a broken random source shows)."""
    d = Daemon(coupons(gift="false"))
    t0 = T("2026-06-01T00:00:00Z")
    n = 2000
    try:
        send_ok(d, [ev(f"o{i}", "order.paid", f"u{i}", t0 + i, order_id=f"o{i}", amount=10000)
                    for i in range(n)], [1] * n)
        codes = [r["payload"]["code"][len("NEW-"):]
                 for r in d.actions("first-order-coupon")]
        assert len(codes) == n and len(set(codes)) == n
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789"
        chars = "".join(codes)
        share = len(chars) / len(alphabet)  # ~765 each
        for c in alphabet:
            assert 0.8 * share < chars.count(c) < 1.2 * share, (c, chars.count(c), share)
    finally:
        assert d.stop() == 0
