"""`mktd simulate` over the bundled example: config/mktd.yaml with
config/sample-events.ndjson must print config/sample-actions.ndjson, every
field exactly, coupon codes aside (random: checked as prefix + 13 of
[A-Z2-9], and unique).

The expected file was checked line by line against the contract. Times
below are Beijing time (+08:00); "now" is the largest event ts so far.

first-order-coupon (满100减20: order.paid, amount >= 10000, user.orders == 1;
value 2000, min_spend 10000, 7d, "NEW-"):
  e02 zhang 12800 first order -> issued (seq 1); e05 li 9900 is too small;
  e06 wang 25999 -> issued (7, before invite's rows: config order); e07 is
  the shop re-sending o-1003 (user.orders 2: nothing); e21 yang 10000 ->
  issued (28, gte); e32 zhou 12000, first order after a month -> issued (41).
  e12: NEW-TYP0 was issued by nobody -> rejected `unknown` by the first
  coupon campaign of the config (15). Every expires_at = ts + 7d.
invite (10% / 3%, reward 1000 split 50/50, cap 20 per Beijing day):
  bound: li->zhang (2), wang->li (3), zhou->zhang (16), liu->li (17),
  huang->zhang (29). Refused: e09 zhao viewed a page first: not_new (12);
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
  second reward (26-27). e23 huang 8800: zhang 880 + reward (30-32).
  e27 li o-1009 6999 arrives late (ts 20:00 after e26 at 20:05): zhang 699,
  stamped with now, 12-01 20:05 (33). e28 yang is not bound.
  e32 zhou 12000: zhang 1200, reward (42-44). e35 li 30000: zhang 3000 (49);
  e36 refund 10000: zhang floor(3000*10000/30000) = 1000 (50).
winback (30d, cooldown 7d, 2 attempts, 10% holdout, activity = every type,
quiet 22:00-08:00 +08:00) and winback-coupon (on reactivation.offer, 1500
off 5000, 14d, 2 per user, "BACK-"). Buckets (FNV-1a of "winback:<user>"
% 100): zhou 6 (held out); zhao 30, chen 72, liu 70 get offers.
  zhao last active e09 11-03 10:05 -> offer 12-03 10:05, 30d (34) and its
  coupon, same ts, no event_id (35); chen e10 11-03 11:00 -> 12-03 11:00
  (36-37). These fire when e29 (12-05 12:00) moves the clock, as does zhou's
  (e13 11-04 23:30) attempt due 12-04 23:30, quiet, made 12-05 08:00:
  holdout, inactive 30d 8h30m = 2622600000, no coupon (38).
  e30 zhao returns 2d 22h 55m after the offer: converted 255300000 (39);
  e31 zhou 2d 13h after the holdout: converted, group holdout 219600000
  (40). Their attempts 2 are never made.
  chen stays away: attempt 2 at 12-10 11:00, 37d, second coupon (45-46).
  liu last active e19 11-11 00:20: attempt 1 due 12-11 00:20, quiet, made
  08:00 (30d 7h40m = 2619600000, 47-48); attempt 2 due 12-18 00:20, made
  08:00 (3224400000, 51-52, liu's second coupon). e38 liu returns 25h later:
  converted 90000000 (53). The repeated e38 is a duplicate: no effect.
  Everyone else was active in the last 30 days before --until 12-20 00:00.
"""
import json
import os
import re
import subprocess

from harness import PLUGINS, SRC, command, slow

UNTIL = "2025-12-20T00:00:00+08:00"
CODE = re.compile(r"[A-Z2-9]{13}")
PREFIX = {"first-order-coupon": "NEW-", "winback-coupon": "BACK-"}


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
    assert len(codes) == 9  # NEW- x4, BACK- x5


def test_simulate_sample_is_repeatable_and_touches_nothing():
    before = sorted(os.listdir(os.path.join(SRC, "config")))
    a, b = run_simulate(), run_simulate()
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    strip = lambda out: re.sub(r'"code":"[A-Z]+-[A-Z2-9]{13}"', '"code":"X"', out)
    assert strip(a.stdout) == strip(b.stdout)
    assert a.stdout != b.stdout  # fresh random codes each run
    assert sorted(os.listdir(os.path.join(SRC, "config"))) == before
