"""`mktd simulate` over the bundled example: config/mktd.yaml with
config/sample-events.ndjson must print config/sample-actions.ndjson, every
field exactly, coupon codes aside (random: checked as prefix + 13 of
[A-Z2-9], and unique).

The expected file was checked line by line against the contract. Times
below are Beijing time (+08:00); "now" is the largest event ts so far.
Numbers in brackets are the expected actions' seq.

first-order-coupon (满100减20: order.paid, amount >= 10000, user.orders == 1;
value 2000, min_spend 10000, 7d, "NEW-"; group checkout):
  e02 zhang 12800 first order -> issued (1); e05 li 9900 is too small;
  e06 wang 25999 -> issued (7, before invite's rows: config order); e07 is
  the shop re-sending o-1003 (user.orders 2: nothing); e21 yang 10000 ->
  issued (29, gte); e41 sun 29900 -> issued (34); e32 zhou 12000, first
  order after a month -> issued (45). e12: NEW-TYP0 was issued by nobody ->
  rejected `unknown` by the first coupon campaign of the config (15).
  Every expires_at = ts + 7d.
double11 (满200减30: promotion, 3000 off orders >= 20000, from 11-10 00:00;
group checkout, after first-order-coupon in config order):
  e06/e07 (11-02) are before it starts. e18 zhang 39900 on 11-11, a second
  order -> applied 3000 (26). e41 sun 29900 is a first order: the coupon
  (34) takes the group, so double11 is excluded and records nothing. e35 li
  30000 -> applied 3000 (65, after invite's row: config order); e36 refunds
  10000 of it: not a full refund, no reversal.
invite (10% / 3%, reward 1000 split 50/50, cap 20 per Beijing day):
  bound: li->zhang (2), wang->li (3), zhou->zhang (16), liu->li (17),
  huang->zhang (30). Refused: e09 zhao viewed a page first: not_new (12);
  e10 chen invited himself: self (13); e11 li by wang: wang's chain is
  li -> zhang, so cycle (14; checked before already_bound).
  e05 li 9900: zhang L1 990 (zhang has no referrer: no L2), reward (4-6).
  e06 wang 25999: li L1 floor(2599.9) = 2599, zhang L2 floor(779.97) = 779,
  reward li/wang 500/500 (8-11). e07: same order id, nothing.
  e15 liu 4500: li 450, zhang 135, reward (18-21).
  e16 refund 6000 of o-1003: li floor(2599*6000/25999) = 599, zhang
  floor(779*6000/25999) = 179 (22-23). e17 refunds the rest (19999): li
  min(floor(2599*19999/25999) = 1999, 2599-599 = 2000) = 1999, zhang
  min(floor(779*19999/25999) = 599, 779-179 = 600) = 599 (24-25): each
  refund floors on its own, so li keeps 1.
  e18 zhang is not bound: nothing. e19 liu 16800: li 1680, zhang 504, no
  second reward (27-28). e23 huang 8800: zhang 880 + reward (31-33).
  e27 li o-1009 6999 arrives late (ts 20:00 after e26 at 20:05): zhang 699,
  stamped with now, 12-01 20:05 (35). e28 yang and e41 sun are not bound.
  e32 zhou 12000: zhang 1200, reward (46-48); e43 refunds o-1012 in full:
  zhang's 1200 clawed back (51). e35 li 30000: zhang 3000 (64); e36 refund
  10000: zhang floor(3000*10000/30000) = 1000 (68).
winback (30d, cooldown 7d, 2 attempts, 10% holdout, activity = every type,
quiet 22:00-08:00 +08:00) and winback-coupon (on reactivation.offer, 1500
off 5000, 14d, 2 per user, "BACK-"). Buckets (FNV-1a of "winback:<user>"
% 100): zhou 6 (held out); zhao 30, chen 72, liu 70 get offers.
  zhao last active e09 11-03 10:05 -> offer 12-03 10:05, 30d (38) and its
  coupon, same ts, no event_id (39); chen e10 11-03 11:00 -> 12-03 11:00
  (40-41). These fire when e29 (12-05 12:00) moves the clock, as does zhou's
  (e13 11-04 23:30) attempt due 12-04 23:30, quiet, made 12-05 08:00:
  holdout, inactive 30d 8h30m = 2622600000, no coupon (42).
  e30 zhao returns 2d 22h 55m after the offer: converted 255300000 (43);
  e31 zhou 2d 13h after the holdout: converted, group holdout 219600000
  (44). Their attempts 2 are never made.
  chen stays away: attempt 2 at 12-10 11:00, 37d, second coupon (54-55).
  liu last active e19 11-11 00:20: attempt 1 due 12-11 00:20, quiet, made
  08:00 (30d 7h40m = 2619600000, 57-58); attempt 2 due 12-18 00:20, made
  08:00 (3224400000, 72-73, liu's second coupon). e38 liu returns 25h later:
  converted 90000000 (74). The repeated e38 is a duplicate: no effect.
  sun (e40-e42) was last active 11-25 (e42): not dormant before 12-20.
  Everyone else was active in the last 30 days before --until 12-20 00:00.
team-buy (拼团: size 3, window 24h, reward 500):
  e44 zhang opens g-1001 (tea-set) 12-10 18:30: its window is [12-10 18:30,
  12-11 18:30). e45 li joins (member 2); e46 li again: already_member
  (56). e48 wang joins at 12-11 18:29:59.999, the last millisecond: success
  for zhang, li, wang in joining order, members 3, reward 500 (59-61).
  e52 huang opens g-1002 (hot-pot) 12-13 10:00, e53 yang joins; nobody
  else: its expiry timer (due 12-14 10:00) fires when e55 (12-15 08:00)
  moves the clock: expired for huang and yang, ts the due time, no event_id
  (62-63).
members (积分: rate 100 = floor(amount / 100) points, from 12-01 00:00;
silver at 100, gold at 300 points earned in 90d):
  e27 li 6999 -> 69, balance 69, stamped with now 20:05 (36); e28 yang 5600
  -> 56 (37). e32 zhou 12000 -> 120 (49): silver (50). e43 refunds o-1012
  in full: 120 reversed, balance 0 (52), and silver -> none (53). e35 li
  30000 -> 300, balance 369 (66): 369 earned in 90 days, none -> gold
  directly (67). e36 is a partial refund: nothing. e56 li redeems 200:
  balance 169 (69); spending does not move the tier (it counts points
  earned). e57 yang asks for 100 of 56: rejected insufficient (70).
  Orders before 12-01 (sun's, zhang's, ...) earn nothing.
daily-checkin (7 Beijing days in a row, reward {points 50, label}):
  wang checks in on 12-11, 12-12 (twice: counts once), 12-13 09:00, 12-14
  00:05 (the same UTC day as 12-13 09:00, the next Beijing day), 12-15,
  12-16 and 12-17: the seventh day in a row -> reward, days 7 (71).
"""
import json
import os
import re
import subprocess

from harness import PLUGINS, SRC, Daemon, command, slow

UNTIL = "2025-12-20T00:00:00+08:00"
CODE = re.compile(r"[A-Z2-9]{13}")
PREFIX = {"first-order-coupon": "NEW-", "winback-coupon": "BACK-"}


def bundled_campaigns():
    """The `campaigns:` list of config/mktd.yaml, as written there."""
    with open(os.path.join(SRC, "config/mktd.yaml")) as f:
        text = f.read()
    head, sep, rest = text.partition("\ncampaigns:\n")
    assert sep, "config/mktd.yaml has no campaigns: list"
    return rest  # campaigns: is the file's last top-level key


def run_simulate():
    args = ["simulate", "-c", "config/mktd.yaml", "--until", UNTIL]
    if os.path.realpath(PLUGINS) != os.path.realpath(os.path.join(SRC, "build/plugins")):
        args += ["--plugin-dir", PLUGINS]
    args.append("config/sample-events.ndjson")
    return subprocess.run(command(*args), cwd=SRC, capture_output=True, text=True, timeout=slow(60))


def check_code(campaign, value, where):
    prefix = PREFIX[campaign]
    assert isinstance(value, str) and value.startswith(prefix), f"{where}: {value!r}"
    assert CODE.fullmatch(value[len(prefix):]), f"{where}: {value!r}"


def test_simulate_sample_matches_expected():
    r = run_simulate()
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    with open(os.path.join(SRC, "config/sample-actions.ndjson")) as f:
        want = [json.loads(x) for x in f if x.strip()]
    assert len(got) == len(want), f"{len(got)} actions, expected {len(want)}:\n{r.stdout}"
    codes = set()
    for i, (g, w) in enumerate(zip(got, want)):
        where = f"line {i + 1}: {g}"
        assert set(g) == {"seq", "ts", "campaign", "kind", "user", "event_id", "payload"}, where
        assert set(g) == set(w), where
        for k in ("seq", "ts", "campaign", "kind", "user", "event_id"):
            assert g[k] == w[k] and type(g[k]) is type(w[k]), f"{where}: {k} != {w[k]!r}"
        gp, wp = dict(g["payload"]), dict(w["payload"])
        if "code" in wp:
            if wp["code"] == "NEW-TYP0":  # the unknown code is echoed as sent
                assert gp["code"] == "NEW-TYP0", where
            else:
                check_code(g["campaign"], gp["code"], where)
                if g["kind"] == "coupon.issued":
                    assert gp["code"] not in codes, f"{where}: code issued twice"
                    codes.add(gp["code"])
            gp.pop("code")
            wp.pop("code")
        assert gp == wp, f"{where}: payload != {w['payload']}"
        assert json.dumps(gp, sort_keys=True) == json.dumps(wp, sort_keys=True), where
        if g["kind"] == "coupon.issued":
            days = 7 if g["campaign"] == "first-order-coupon" else 14
            assert gp["expires_at"] == g["ts"] + days * 86400000, where
    assert len(codes) == 10  # NEW- x5, BACK- x5


def test_simulate_sample_is_repeatable_and_touches_nothing():
    before = sorted(os.listdir(os.path.join(SRC, "config")))
    a, b = run_simulate(), run_simulate()
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    strip = lambda out: re.sub(r'"code":"[A-Z]+-[A-Z2-9]{13}"', '"code":"X"', out)
    assert strip(a.stdout) == strip(b.stdout)
    assert a.stdout != b.stdout  # fresh random codes each run
    assert sorted(os.listdir(os.path.join(SRC, "config"))) == before


def test_bundled_config_quotes_the_promotion_and_keeps_it_apart_from_the_coupon():
    """A dry `order.paid` on the bundled campaigns quotes 满200减30 for a
    returning customer; a first order of the same size gets the first-order
    coupon instead (group `checkout`), and the explanation says why."""
    d = Daemon(bundled_campaigns(), clock="event")
    try:
        (a,) = d.send([{"id": "p1", "type": "order.paid", "user": "wu", "ts": "2025-12-20T10:00:00+08:00",
                        "props": {"order_id": "o-1", "amount": 12800}}])
        assert a["status"] == "ok" and a["actions"] >= 1, a
        (q,) = d.send([{"id": "q1", "type": "order.paid", "user": "wu", "dry": True, "ts": "2025-12-20T10:05:00+08:00",
                        "explain": True, "props": {"order_id": "o-2", "amount": 25900}}])
        assert q["status"] == "ok" and q["dry"] is True, q
        promo = [x for x in q["actions"] if x["kind"] == "promotion.applied"]
        assert [(x["campaign"], x["payload"]) for x in promo] == [
            ("double11", {"amount": 25900, "discount": 3000, "order_id": "o-2"})], q
        assert not [x for x in q["actions"] if x["kind"] == "coupon.issued"], q

        (n,) = d.send([{"id": "q2", "type": "order.paid", "user": "newbie", "dry": True, "ts": "2025-12-20T10:06:00+08:00",
                        "explain": True, "props": {"order_id": "o-3", "amount": 25900}}])
        kinds = [(x["campaign"], x["kind"]) for x in n["actions"]]
        assert ("first-order-coupon", "coupon.issued") in kinds, n
        assert not [k for k in kinds if k[1] == "promotion.applied"], n
        why = [e for e in n["explain"] if e.get("campaign") == "double11"]
        assert why and why[0]["outcome"] == "skipped", n
        assert "group checkout taken by first-order-coupon" in json.dumps(why[0]), n

        # nothing of the dry runs was kept
        rows = d.db_rows("SELECT event_id, kind FROM actions ORDER BY seq")
        assert {r[0] for r in rows} == {"p1"}, rows
    finally:
        d.stop()
