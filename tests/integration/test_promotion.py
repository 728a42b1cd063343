"""The promotion plugin (spec sections 16 and 18) in the real daemon, over
real sockets, with the real SQLite file: days of orders and refunds in
event time, a net budget across a restart, dry quotes, explanations,
groups and caps, reversals while disabled, config errors, the budget
gauges, and the README's worked example through `mktd simulate`."""
import json
import os
import re
import subprocess

from harness import PLUGINS, SRC, Daemon, command, mktd, reload_wait, slow

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

CAMPAIGN = """
- id: new-year
  plugin: promotion
  when: {event: order.paid}
  params: {percent: 20, min_spend: 2000, max_discount: 1500, budget: 4000, per_user_limit: 2}
"""


def ev(id, type, user, ts=None, **kw):
    e = {"id": id, "type": type, "user": user}
    if ts is not None:
        e["ts"] = ts
    for k in ("dry", "explain"):
        if k in kw:
            e[k] = kw.pop(k)
    if kw:
        e["props"] = kw
    return e


def paid(id, user, ts, order, amount, **kw):
    return ev(id, "order.paid", user, ts, order_id=order, amount=amount, **kw)


def refund(id, user, ts, order, amount=None, **kw):
    if amount is not None:
        kw["amount"] = amount
    return ev(id, "order.refunded", user, ts, order_id=order, **kw)


def one(d, e):
    (a,) = d.send([e])
    assert a["status"] == "ok", a
    return a


def applied(ts, user, eid, amount, discount, order, cut=False, campaign="new-year"):
    p = {"amount": amount, "discount": discount, "order_id": order}
    if cut:
        p["budget_cut"] = True
    return {"ts": ts, "campaign": campaign, "kind": "promotion.applied", "user": user,
            "event_id": eid, "payload": p}


def reversed_(ts, user, eid, order, discount, campaign="new-year"):
    return {"ts": ts, "campaign": campaign, "kind": "promotion.reversed", "user": user,
            "event_id": eid, "payload": {"order_id": order, "discount": discount}}


def rows(d, campaign=None):
    out = d.actions(campaign)
    seqs = [a.pop("seq") for a in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    return out


def notes_of(answer, campaign):
    found = [x for x in answer["explain"] if x["campaign"] == campaign and x["depth"] == 0]
    assert len(found) == 1, answer["explain"]
    return found[0].get("notes")


def test_days_of_orders_and_refunds():
    d = Daemon(CAMPAIGN)
    day1, day2, day3, day4, day5 = (T0 + i * DAY for i in range(5))
    answers = d.send([
        # day 1: 20% of 10000 is 2000, at most 1500; 1999 is below min_spend;
        # 2000 is enough (400)
        paid("a1", "u1", day1 + 9 * HOUR, "o1", 10000),
        paid("a2", "u2", day1 + 10 * HOUR, "o2", 1999),
        paid("a3", "u2", day1 + 11 * HOUR, "o3", 2000),
        # day 2: o1 sent again earns nothing; 1000; 1500 cut to the 1100 left
        paid("b1", "u1", day2 + 9 * HOUR, "o1", 10000),
        paid("b2", "u3", day2 + 10 * HOUR, "o4", 5000),
        paid("b3", "u4", day2 + 11 * HOUR, "o5", 9000),
    ])
    assert [a["actions"] for a in answers] == [1, 0, 1, 0, 1, 1], answers
    answers = d.send([
        # day 3: the budget is spent; a partial refund of o1 keeps its
        # discount; the rest of it reverses it (1500 back)
        paid("c1", "u5", day3 + 9 * HOUR, "o6", 5000),
        refund("c2", "u1", day3 + 10 * HOUR, "o1", 3000),
        refund("c3", "u1", day3 + 11 * HOUR, "o1", 7000),
        # day 4: 1000 for u5; u1's second discount takes the last 500; u1's
        # third order is refused (per_user_limit), as is a refund of an
        # order it never applied to
        paid("d1", "u5", day4 + 9 * HOUR, "o7", 5000),
        paid("d2", "u1", day4 + 10 * HOUR, "o8", 10000),
        paid("d3", "u1", day4 + 11 * HOUR, "o9", 10000),
        refund("d4", "u2", day4 + 12 * HOUR, "o2"),
    ])
    assert [a["actions"] for a in answers] == [0, 0, 1, 1, 1, 0, 0], answers
    assert d.stop() == 0

    # day 5, after a restart: what was spent and which orders were applied
    # are kept
    d.start()
    answers = d.send([
        refund("e1", "u3", day5 + 9 * HOUR, "o4"),
        paid("e2", "u2", day5 + 10 * HOUR, "o10", 5000),
        paid("e3", "u4", day5 + 11 * HOUR, "o5", 9000),
        refund("e4", "u4", day5 + 12 * HOUR, "o5", 20000),
        refund("e5", "u4", day5 + 13 * HOUR, "o5"),
        # net, 2900 of 4000 are spent: 1100 are left
        paid("e6", "u6", day5 + 14 * HOUR, "o11", 10000),
    ])
    assert [a["actions"] for a in answers] == [1, 1, 0, 1, 0, 1], answers
    want = [
        applied(day1 + 9 * HOUR, "u1", "a1", 10000, 1500, "o1"),
        applied(day1 + 11 * HOUR, "u2", "a3", 2000, 400, "o3"),
        applied(day2 + 10 * HOUR, "u3", "b2", 5000, 1000, "o4"),
        applied(day2 + 11 * HOUR, "u4", "b3", 9000, 1100, "o5", cut=True),
        reversed_(day3 + 11 * HOUR, "u1", "c3", "o1", 1500),
        applied(day4 + 9 * HOUR, "u5", "d1", 5000, 1000, "o7"),
        applied(day4 + 10 * HOUR, "u1", "d2", 10000, 500, "o8", cut=True),
        reversed_(day5 + 9 * HOUR, "u3", "e1", "o4", 1000),
        applied(day5 + 10 * HOUR, "u2", "e2", 5000, 1000, "o10"),
        reversed_(day5 + 12 * HOUR, "u4", "e4", "o5", 1100),
        applied(day5 + 14 * HOUR, "u6", "e6", 10000, 1100, "o11", cut=True),
    ]
    assert rows(d) == want, rows(d)
    d.stop()


def test_dry_quote_then_real():
    d = Daemon(CAMPAIGN)
    one(d, paid("a1", "u1", T0, "o1", 10000))  # 1500 of 4000 spent
    one(d, paid("a2", "u2", T0 + 1, "o2", 10000))  # 3000
    before = rows(d)
    q = one(d, paid("q1", "u3", T0 + HOUR, "o3", 9000, dry=True))
    assert q["dry"] is True, q
    assert q["actions"] == [{"ts": T0 + HOUR, "campaign": "new-year", "kind": "promotion.applied",
                             "user": "u3", "event_id": "q1",
                             "payload": {"amount": 9000, "discount": 1000, "order_id": "o3",
                                         "budget_cut": True}}], q
    # asked again: the same quote (nothing was kept)
    again = one(d, paid("q2", "u3", T0 + HOUR, "o3", 9000, dry=True))["actions"]
    assert [dict(a, event_id="q1") for a in again] == q["actions"], again
    assert rows(d) == before
    # the real order gets what was quoted
    one(d, paid("q1", "u3", T0 + HOUR, "o3", 9000))
    assert rows(d)[-1] == q["actions"][0], rows(d)
    # a dry refund quotes the reversal and leaves the budget spent
    r = one(d, refund("r1", "u3", T0 + 2 * HOUR, "o3", dry=True))
    assert [a["kind"] for a in r["actions"]] == ["promotion.reversed"], r
    assert r["actions"][0]["payload"] == {"order_id": "o3", "discount": 1000}, r
    a = one(d, paid("q3", "u4", T0 + 3 * HOUR, "o4", 9000, dry=True, explain=True))
    assert a["actions"] == [], a
    assert notes_of(a, "new-year") == ["budget spent"], a
    d.stop()


def test_explained_reasons():
    d = Daemon(CAMPAIGN)
    cases = [
        (paid("x1", "u1", T0, "o1", 1500, explain=True), ["below min_spend: 1500 < 2000"]),
        (paid("x2", "u1", T0, "o2", 3000, explain=True), ["discount 600 on amount 3000"]),
        (paid("x3", "u1", T0, "o2", 3000, explain=True), ["order o2 already applied"]),
        (paid("x4", "u1", T0, "o3", 3000, explain=True), ["discount 600 on amount 3000"]),
        (paid("x5", "u1", T0, "o4", 3000, explain=True), ["per_user_limit reached"]),
        (refund("x6", "u1", T0, "o2", 1000, explain=True),
         ["partial refund of order o2: 1000 of 3000 left, discount kept"]),
        (refund("x7", "u1", T0, "o2", explain=True),
         ["full refund of order o2: discount 600 reversed"]),
        (refund("x8", "u1", T0, "o2", explain=True), ["refund of order o2: already reversed"]),
        (refund("x9", "u1", T0, "o1", explain=True),
         ["refund of order o1: not an order it applied to"]),
    ]
    for e, want in cases:
        a = one(d, e)
        assert notes_of(a, "new-year") == want, (e, a["explain"])
        assert [x["outcome"] for x in a["explain"] if x["campaign"] == "new-year"][0] == "ran"
    d.stop()


def test_reversal_while_disabled_and_after_ends():
    camp = """
- id: promo
  plugin: promotion
  enabled: {enabled}
  ends: {ends}
  when: {{event: order.paid}}
  params: {{value: 500, budget: 1000}}
"""
    d = Daemon(camp.format(enabled="true", ends=T0 + DAY))
    one(d, paid("a1", "u1", T0, "o1", 3000))
    one(d, paid("a2", "u2", T0, "o2", 3000))
    assert reload_wait(d, camp.format(enabled="false", ends=T0 + DAY))
    # disabled: no discount, but the refund reverses
    assert one(d, paid("b1", "u3", T0 + HOUR, "o3", 3000))["actions"] == 0
    assert one(d, refund("b2", "u1", T0 + HOUR, "o1"))["actions"] == 1
    assert reload_wait(d, camp.format(enabled="true", ends=T0 + DAY))
    # after ends: no discount, but the refund reverses
    assert one(d, paid("c1", "u3", T0 + 2 * DAY, "o4", 3000))["actions"] == 0
    assert one(d, refund("c2", "u2", T0 + 2 * DAY, "o2"))["actions"] == 1
    assert [(a["kind"], a["user"], a["event_id"]) for a in rows(d)] == [
        ("promotion.applied", "u1", "a1"), ("promotion.applied", "u2", "a2"),
        ("promotion.reversed", "u1", "b2"), ("promotion.reversed", "u2", "c2")]
    d.stop()


def test_group_stacking_control_and_caps():
    camps = """
- id: big-spender
  plugin: promotion
  group: checkout
  when: {event: order.paid, all: [{field: props.amount, op: gte, value: 20000}]}
  params: {value: 5000, budget: 5000}
- id: everyone
  plugin: promotion
  group: checkout
  when: {event: order.paid}
  params: {percent: 5}
- id: extra
  plugin: promotion
  when: {event: order.paid}
  params: {value: 100}
"""
    d = Daemon(camps, start=False)
    with open(d.config, "a") as f:
        f.write("caps:\n  - {id: three-a-day, kinds: [promotion.applied], max: 3, per: 1d}\n")
    d.start()
    answers = d.send([
        # a big order: big-spender takes the group, everyone is skipped;
        # extra is in no group
        paid("a1", "u1", T0, "o1", 30000, explain=True),
        # a small one: everyone applies (u1's third within the day); extra's
        # would be the fourth: capped
        paid("a2", "u1", T0 + HOUR, "o2", 10000, explain=True),
        # big, but big-spender's budget is spent: it records nothing, and
        # the group falls to everyone
        paid("a3", "u2", T0 + HOUR, "o3", 30000, explain=True),
        # the refund of o1 reverses big-spender's and extra's discounts;
        # everyone applied nothing to o1
        refund("a4", "u1", T0 + 2 * HOUR, "o1", explain=True),
        # two days on, the cap's window holds none of u1's discounts
        paid("a5", "u1", T0 + 2 * DAY, "o4", 10000),
    ])
    assert [a["status"] for a in answers] == ["ok"] * 5, answers
    x = [e for e in answers[0]["explain"] if e["campaign"] == "everyone"][0]
    assert (x["outcome"], x["detail"]) == ("skipped", "group checkout taken by big-spender"), x
    x = [e for e in answers[1]["explain"] if e["campaign"] == "extra"][0]
    assert (x["outcome"], x["actions"]) == ("ran", 0), x
    assert x["notes"] == ["capped by three-a-day", "promotion.applied capped: nothing counted"], x
    x = [e for e in answers[2]["explain"] if e["campaign"] == "big-spender"][0]
    assert (x["actions"], x["notes"]) == (0, ["budget spent"]), x
    x = [e for e in answers[3]["explain"] if e["campaign"] == "everyone"][0]
    assert x["notes"] == ["refund of order o1: not an order it applied to"], x
    got = [(a["campaign"], a["kind"], a["user"], a["event_id"], a["payload"]["discount"])
           for a in rows(d)]
    assert got == [
        ("big-spender", "promotion.applied", "u1", "a1", 5000),
        ("extra", "promotion.applied", "u1", "a1", 100),
        ("everyone", "promotion.applied", "u1", "a2", 500),
        ("everyone", "promotion.applied", "u2", "a3", 1500),
        ("extra", "promotion.applied", "u2", "a3", 100),
        ("big-spender", "promotion.reversed", "u1", "a4", 5000),
        ("extra", "promotion.reversed", "u1", "a4", 100),
        ("everyone", "promotion.applied", "u1", "a5", 500),
        ("extra", "promotion.applied", "u1", "a5", 100),
    ], got
    # extra did not remember the capped o2: paid again later, it earns
    # there (everyone applied to o2 before: nothing)
    assert one(d, paid("a6", "u1", T0 + 4 * DAY, "o2", 10000))["actions"] == 1
    assert rows(d)[-1]["campaign"] == "extra", rows(d)
    d.stop()


def test_budget_gauges():
    d = Daemon(CAMPAIGN, http=True)
    key = 'mktd_plugin_gauge{campaign="new-year",plugin="promotion",name="%s"}'
    m = d.metrics()
    assert m[key % "budget"] == 4000 and m[key % "budget_left"] == 4000, m
    one(d, paid("a1", "u1", T0, "o1", 10000))
    assert d.metrics()[key % "budget_left"] == 2500
    one(d, refund("a2", "u1", T0, "o1"))
    assert d.metrics()[key % "budget_left"] == 4000
    d.stop()


def test_check_refuses_bad_params():
    d = Daemon(start=False)
    cases = [
        ("params: {value: 5, percent: 10}", r":\d+:\d+: .*exclude each other"),
        ("params: {percent: 101}", r":\d+:\d+: "),
        ("params: {value: 5, max_discount: 0}", r":\d+:\d+: "),
        ("params: {value: 5, budget: -1}", r":\d+:\d+: "),
        ("params: {value: 5, per_user_limit: 0}", r":\d+:\d+: "),
        ("params: {value: 5, code_prefix: X}", r":\d+:\d+: .*code_prefix"),
        ("params: {min_spend: 100}", r":\d+:\d+: .*'value' or 'percent'"),
    ]
    for params, want in cases:
        d.write_config(f"""
- id: p
  plugin: promotion
  when: {{event: order.paid}}
  {params}
""")
        r = mktd("check", "-c", d.config)
        assert r.returncode == 1, (params, r.stdout, r.stderr)
        assert re.search(re.escape(d.config) + want, r.stdout + r.stderr), (params, r.stderr)
    # `when` is required
    d.write_config("""
- id: p
  plugin: promotion
  params: {value: 5}
""")
    r = mktd("check", "-c", d.config)
    assert r.returncode == 1 and "when" in r.stdout + r.stderr, r.stderr
    d.write_config(CAMPAIGN)
    r = mktd("check", "-c", d.config)
    assert r.returncode == 0, r.stderr


def readme_blocks(path):
    """The worked example of a plugin README: its YAML campaigns, events and
    actions."""
    with open(path) as f:
        text = f.read()
    text = text[text.index("## Worked example"):]
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    yaml = next(b for lang, b in blocks if lang == "yaml")
    js = [b for lang, b in blocks if lang == "json"]
    events = js[0]
    actions = [json.loads(x) for x in js[1].splitlines() if x.strip()]
    return yaml, events, actions


def simulate_readme(plugin):
    yaml, events, want = readme_blocks(os.path.join(SRC, "plugins", plugin, "README.md"))
    d = Daemon(start=False)
    cfg = os.path.join(d.dir, "example.yaml")
    with open(cfg, "w") as f:
        f.write(f"daemon:\n  listen: [\"unix:{d.sock}\"]\n  database: {d.db}\n"
                f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n  clock: event\n{yaml}")
    evfile = os.path.join(d.dir, "events.ndjson")
    with open(evfile, "w") as f:
        f.write(events)
    r = subprocess.run(command("simulate", "-c", cfg, evfile), capture_output=True, text=True,
                       timeout=slow(60))
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return got, want


def test_readme_example():
    got, want = simulate_readme("promotion")
    assert len(want) == 10
    assert got == want, "\n".join(json.dumps(g) for g in got)
