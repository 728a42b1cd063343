"""groupbuy through the real daemon (clock: event): days of event time for
two group-buy campaigns that share the group.open and group.join events,
with a restart and a reload in between, checked against the actions table
row by row (seq order, ts, campaign, kind, user, event_id, payload)."""

from harness import Daemon, check_refuses_at, mktd, ok, reload_wait
from plugtest import D, H, M, S, T, Tape, check_readme_example, ev, send_ok


CAMPAIGNS = """
# tea groups of 3 within a day; the first groupbuy campaign of the config
- id: tea-trio
  plugin: groupbuy
  when:
    event: group.open
    all:
      - {field: props.product.sku, op: eq, value: tea}
  params: {size: 3, window: 24h, reward: 500}
# every other opening: pairs within 2 hours
- id: pairs
  plugin: groupbuy
  enabled: %s
  params: {size: 2, window: 2h, reward: 100}
"""

TEA = {"sku": "tea", "price": 3900}
CAKE = {"sku": "cake", "price": 8800}
TT, P = "tea-trio", "pairs"


def succ(group, product, n, reward):
    return {"group_id": group, "product": product, "members": n, "reward": reward}


def test_groupbuy_days():
    d = Daemon(CAMPAIGNS % "true")
    t = Tape(d)
    T0 = T("2026-11-11T00:00:00Z")
    try:
        # Day 1. A tea group fills at the last millisecond of its day; a
        # cake pair fills at once; a cake opening nobody joins.
        send_ok(d, [ev("o1", "group.open", "alice", T0, group_id="g1", product=TEA),
                    ev("j1", "group.join", "bob", T0 + H, group_id="g1"),
                    ev("o2", "group.open", "dave", T0 + 2 * H, group_id="g2", product=CAKE),
                    ev("j2", "group.join", "erin", T0 + 3 * H, group_id="g2"),
                    ev("o3", "group.open", "frank", T0 + 4 * H, group_id="g3", product=CAKE),
                    ev("j3", "group.join", "carol", T0 + D - 1, group_id="g1")],
                [0, 0, 0, 2, 0, 3])
        t.expect(
            (T0 + 3 * H, P, "groupbuy.success", "dave", "j2", succ("g2", CAKE, 2, 100)),
            (T0 + 3 * H, P, "groupbuy.success", "erin", "j2", succ("g2", CAKE, 2, 100)),
            # g3's window ended at T0 + 6h: its expiry fired before j3
            (T0 + 6 * H, P, "groupbuy.expired", "frank", None,
             {"group_id": "g3", "product": CAKE, "members": 1}),
            (T0 + D - 1, TT, "groupbuy.success", "alice", "j3", succ("g1", TEA, 3, 500)),
            (T0 + D - 1, TT, "groupbuy.success", "bob", "j3", succ("g1", TEA, 3, 500)),
            (T0 + D - 1, TT, "groupbuy.success", "carol", "j3", succ("g1", TEA, 3, 500)))

        # Refusals, each from the campaign that owns the group; an unknown
        # group once, from the first campaign.
        send_ok(d, [ev("r1", "group.join", "zoe", T0 + D, group_id="g1"),
                    ev("r2", "group.join", "zoe", T0 + D, group_id="nope"),
                    ev("r3", "group.open", "zoe", T0 + D, group_id="g2", product=CAKE),
                    ev("r4", "group.open", "zoe", T0 + D, group_id="g3", product=TEA),
                    ev("o4", "group.open", "gina", T0 + D, group_id="g4", product=TEA),
                    ev("r5", "group.join", "gina", T0 + D + 1, group_id="g4")],
                [1, 1, 1, 1, 0, 1])
        rej = lambda g, r: {"group_id": g, "reason": r}  # noqa: E731
        t.expect((T0 + D, TT, "groupbuy.rejected", "zoe", "r1", rej("g1", "expired")),
                 (T0 + D, TT, "groupbuy.rejected", "zoe", "r2", rej("nope", "unknown_group")),
                 (T0 + D, P, "groupbuy.rejected", "zoe", "r3", rej("g2", "already_open")),
                 (T0 + D, P, "groupbuy.rejected", "zoe", "r4", rej("g3", "already_open")),
                 (T0 + D + 1, TT, "groupbuy.rejected", "gina", "r5", rej("g4", "already_member")))

        # A restart: the open group, its members and its expiry survive.
        assert d.stop() == 0
        d.start()
        send_ok(d, [ev("j4", "group.join", "hank", T0 + D + H, group_id="g4")], [0])
        t.expect()

        # Day 2 to 3: the pairs campaign is disabled with a group open; its
        # expiry falls due while disabled and records nothing.
        send_ok(d, [ev("o5", "group.open", "ivan", T0 + D + 2 * H, group_id="g5", product=CAKE)],
                [0])
        assert reload_wait(d, CAMPAIGNS % "false")
        send_ok(d, [ev("x1", "page.view", "ivan", T0 + 2 * D)], [0])
        # g4's day ended at T0 + 2D: it expired (hank is a member)
        t.expect(
            (T0 + 2 * D, TT, "groupbuy.expired", "gina", None,
             {"group_id": "g4", "product": TEA, "members": 2}),
            (T0 + 2 * D, TT, "groupbuy.expired", "hank", None,
             {"group_id": "g4", "product": TEA, "members": 2}))
        assert reload_wait(d, CAMPAIGNS % "true")
        send_ok(d, [ev("r6", "group.join", "jack", T0 + 3 * D, group_id="g5"),
                    ev("r7", "group.open", "jack", T0 + 3 * D, group_id="g5", product=CAKE)],
                [1, 1])
        t.expect((T0 + 3 * D, P, "groupbuy.rejected", "jack", "r6", rej("g5", "expired")),
                 (T0 + 3 * D, P, "groupbuy.rejected", "jack", "r7", rej("g5", "already_open")))
        assert d.db_rows("SELECT count(*) FROM timers WHERE campaign IN (?, ?)", (TT, P)) == [(0,)]
    finally:
        d.stop()


def test_groupbuy_dry_run_undoes_the_claim():
    """A dry opening shows what it would do and leaves the id free."""
    d = Daemon(CAMPAIGNS % "true")
    T0 = T("2026-11-11T00:00:00Z")
    try:
        a = d.send([dict(ev("q1", "group.open", "amy", T0, group_id="g1", product=CAKE),
                         dry=True),
                    dict(ev("q2", "group.join", "amy", T0, group_id="g1"), dry=True)])
        assert [x["status"] for x in a] == ["ok", "ok"], a
        assert a[0]["actions"] == [], a
        assert [(x["kind"], x["payload"]["reason"]) for x in a[1]["actions"]] == \
            [("groupbuy.rejected", "unknown_group")], a
        send_ok(d, [ev("o1", "group.open", "amy", T0, group_id="g1", product=CAKE),
                    ev("j1", "group.join", "ben", T0 + 1, group_id="g1")], [0, 2])
        assert [r["kind"] for r in d.actions()] == ["groupbuy.success"] * 2
    finally:
        d.stop()


def kept(d):
    """What the campaigns keep: state, counters, timers and unique keys."""
    return [d.db_rows(f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in
            ("state", "counters", "timers", "uniques")]


def test_join_to_full_group_is_refused_full():
    """A join to a group that has filled is answered `full` (before
    `already_member`, for a member too), explained so, and changes nothing
    but the rejection it records."""
    d = Daemon(CAMPAIGNS % "true")
    t = Tape(d)
    T0 = T("2026-11-11T00:00:00Z")
    try:
        send_ok(d, [ev("o1", "group.open", "amy", T0, group_id="g1", product=CAKE),
                    ev("j1", "group.join", "ben", T0 + M, group_id="g1")], [0, 2])
        t.expect((T0 + M, P, "groupbuy.success", "amy", "j1", succ("g1", CAKE, 2, 100)),
                 (T0 + M, P, "groupbuy.success", "ben", "j1", succ("g1", CAKE, 2, 100)))
        before = kept(d)
        a = d.send([dict(ev("j2", "group.join", "cat", T0 + 2 * M, group_id="g1"), explain=True),
                    ev("j3", "group.join", "amy", T0 + 3 * M, group_id="g1")])
        assert [x["id"] for x in a] == ["j2", "j3"], a
        ok(a[0], 1)
        ok(a[1], 1)
        notes = [x.get("notes") for x in a[0]["explain"] if x["campaign"] == P and x["depth"] == 0]
        assert notes == [["group g1: group.join rejected: full"]], a[0]["explain"]
        rej = {"group_id": "g1", "reason": "full"}
        t.expect((T0 + 2 * M, P, "groupbuy.rejected", "cat", "j2", rej),
                 (T0 + 3 * M, P, "groupbuy.rejected", "amy", "j3", rej))
        # nothing else: no member added, no success again, the record as it was
        assert kept(d) == before, (before, kept(d))
        assert d.db_rows("SELECT value FROM state WHERE campaign = ? AND key = 'g:g1'", (P,)) == \
            [(b's %d %d 2 {"sku":"cake","price":8800}' % (T0, T0 + 2 * H),)]
    finally:
        d.stop()


def test_check_refuses_bad_params():
    d = Daemon(start=False)
    cases = [
        ("params: {size: @1, window: 1h}", r"size: .*from 2 to 100 \(got '1'\)"),
        ("params:\n    size: @101\n    window: 1h", r"size: .*from 2 to 100 \(got '101'\)"),
        ("params:\n    size: 3\n    window: @soon", r"window: .*duration.*\(got 'soon'\)"),
        ("params: {size: 3, window: @0}", r"window: .*duration.*\(got '0'\)"),
        ("params:\n    size: 3\n    window: 1h\n    reward: @-1",
         r"reward: .*>= 0 \(got '-1'\)"),
        ("params: {size: 3, window: 1h, @price: 5}",
         r"unknown key 'price' \(allowed: size, window, reward\)"),
        ("params: @{window: 1h}", r"missing required key 'size'"),
    ]
    for params, want in cases:
        check_refuses_at(d, "gb", f"""
- id: gb
  plugin: groupbuy
  {params}
""", want)
    d.write_config(CAMPAIGNS % "true")
    r = mktd("check", "-c", d.config)
    assert r.returncode == 0, r.stderr


def test_readme_example():
    """plugins/groupbuy/README.md's worked example is what simulate prints."""
    check_readme_example("groupbuy")
