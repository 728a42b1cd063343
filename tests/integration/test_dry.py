"""Dry runs and explanations (spec sections 10 and 18): `dry: true` answers
what an event would do and leaves nothing behind; `explain: true` answers
why each campaign did what it did. Over real sockets and HTTP, with the
built-in plugins and the probe test plugin (tests/plugins/probe.c)."""
import json
import sqlite3

from harness import Daemon

T = 1_700_000_000_000  # 2023-11-14T22:13:20Z

FIRST_ORDER = """
- id: first-order-coupon
  plugin: coupon
  when:
    event: order.paid
    all:
      - {field: user.orders, op: eq, value: 1}
  params: {value: 500, valid_for: 7d, min_spend: 1000}
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


def paid(id, user, ts, amount=2000, order=None, **kw):
    return ev(id, "order.paid", user, ts, order_id=order or "o-" + id, amount=amount, **kw)


def one(d, e):
    (a,) = d.send([e])
    return a


def dump(d):
    """Every table of the database, every row, in a stable order."""
    c = sqlite3.connect(d.db, timeout=10)
    try:
        names = [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for n in names:
            rows = c.execute(f'SELECT * FROM "{n}"').fetchall()
            out[n] = sorted(rows, key=repr)
        return out
    finally:
        c.close()


def entries(answer, **want):
    """The explanation entries of answer matching every key of want."""
    return [x for x in answer["explain"] if all(x.get(k) == v for k, v in want.items())]


def entry(answer, **want):
    found = entries(answer, **want)
    assert len(found) == 1, (want, answer["explain"])
    return found[0]


def test_dry_order_then_real():
    d = Daemon(FIRST_ORDER)
    before = dump(d)
    a = one(d, paid("e1", "u1", T, dry=True))
    assert a["status"] == "ok" and a["dry"] is True, a
    assert "explain" not in a, a
    (act,) = a["actions"]
    assert act == {"ts": T, "campaign": "first-order-coupon", "kind": "coupon.issued", "user": "u1",
                   "event_id": "e1",
                   "payload": {"code": None, "value": 500, "min_spend": 1000,
                               "expires_at": T + 7 * 86400_000}}, act
    assert dump(d) == before
    # asked again: the same answer (nothing of the first one stayed)
    assert one(d, paid("e1", "u1", T, dry=True)) == a
    # the same event for real: as if the dry ones never came
    assert one(d, paid("e1", "u1", T)) == {"id": "e1", "status": "ok", "actions": 1}
    (row,) = d.actions()
    code = row["payload"].pop("code")
    assert isinstance(code, str) and len(code) >= 13, code
    assert {k: row[k] for k in act if k != "payload"} == {k: act[k] for k in act if k != "payload"}
    assert row["payload"] == {k: v for k, v in act["payload"].items() if k != "code"}
    # its id was accepted once: a second send, dry or not, is a duplicate
    assert one(d, paid("e1", "u1", T)) == {"id": "e1", "status": "duplicate"}
    assert one(d, paid("e1", "u1", T, dry=True)) == {"id": "e1", "status": "duplicate"}
    # a second order earns nothing: a dry one lists nothing
    assert one(d, paid("e2", "u1", T, dry=True)) == {"id": "e2", "status": "ok", "dry": True,
                                                     "actions": []}
    assert len(d.actions()) == 1
    d.stop()


def test_dry_sees_the_real_events_before_it():
    """Pipelined in one batch: a dry event sees the real ones answered
    before it, and a real one after it sees nothing of it."""
    d = Daemon(FIRST_ORDER)
    answers = d.send([paid("e1", "u1", T), paid("e2", "u1", T, dry=True, explain=True),
                      paid("e3", "u2", T, dry=True), paid("e3", "u2", T)])
    assert answers[0] == {"id": "e1", "status": "ok", "actions": 1}, answers
    assert answers[1]["actions"] == [], answers
    assert entry(answers[1], campaign="first-order-coupon")["detail"] == "user.orders eq 1: is 2"
    assert len(answers[2]["actions"]) == 1, answers
    assert answers[3] == {"id": "e3", "status": "ok", "actions": 1}, answers
    assert [(r["user"], r["event_id"]) for r in d.actions()] == [("u1", "e1"), ("u2", "e3")]
    d.stop()


def test_dry_coupon_used():
    d = Daemon(FIRST_ORDER)
    assert one(d, paid("e1", "u1", T))["actions"] == 1
    code = d.actions()[0]["payload"]["code"]
    before = dump(d)

    def used(id, user, amount=None, dry=True):
        props = {"code": code, "order_id": "o9"}
        if amount is not None:
            props["amount"] = amount
        return one(d, dict(ev(id, "coupon.used", user, T + 1000, dry=dry), props=props))

    a = used("q1", "u1", amount=999)
    assert a["dry"] is True and [(x["kind"], x["payload"]) for x in a["actions"]] == [
        ("coupon.rejected", {"code": code, "reason": "min_spend"})], a
    a = used("q2", "u2", amount=5000)
    assert [x["payload"].get("reason") for x in a["actions"]] == ["not_owner"], a
    a = used("q3", "u1", amount=5000)
    assert [(x["kind"], x["payload"]) for x in a["actions"]] == [
        ("coupon.redeemed", {"code": code, "order_id": "o9"})], a
    assert a["actions"][0]["event_id"] == "q3" and a["actions"][0]["ts"] == T + 1000
    # asked twice: still redeemable, nothing changed
    assert used("q3", "u1", amount=5000) == a
    assert dump(d) == before
    # for real: redeemed; then a dry one says used
    assert used("q3", "u1", amount=5000, dry=False) == {"id": "q3", "status": "ok", "actions": 1}
    assert d.actions()[-1]["kind"] == "coupon.redeemed"
    a = used("q4", "u1", amount=5000)
    assert [x["payload"].get("reason") for x in a["actions"]] == ["used"], a
    d.stop()


REFERRAL_AND_WINBACK = """
- id: ref
  plugin: referral
  params: {commission: [1000, 500], reward: {amount: 1000, referrer_share: 50}}
- id: winback
  plugin: reactivation
  params: {inactive_for: 1d, offer: {pct: 10}}
- id: welcome
  plugin: coupon
  when: {event: [user.signup, reactivation.offer]}
  params: {percent: 10, valid_for: 30d, budget: 5}
"""


def test_dry_leaves_every_table_as_it_was():
    d = Daemon(REFERRAL_AND_WINBACK)
    assert one(d, ev("s1", "user.signup", "a", T))["actions"] == 1
    assert one(d, ev("s2", "user.signup", "b", T + 1, referrer="a"))["status"] == "ok"
    assert one(d, paid("p1", "b", T + 1, amount=10000))["status"] == "ok"
    before = dump(d)
    n = len(d.actions())
    # no timer is due at T + 2: a signup, an order, a refund and a page view, dry
    lines = [
        ev("d1", "user.signup", "c", T + 2, referrer="b", dry=True),
        paid("d2", "b", T + 2, amount=10000, dry=True),
        ev("d3", "order.refunded", "b", T + 2, order_id="o-p1", dry=True),
        ev("d4", "page.view", "zz", T + 2, dry=True, explain=True),
    ]
    answers = d.send(lines)
    assert all(a["status"] == "ok" and a["dry"] is True for a in answers), answers
    kinds = [[x["kind"] for x in a["actions"]] for a in answers]
    assert kinds == [["referral.bound", "coupon.issued"], ["referral.commission"],
                     ["referral.clawback"], []], kinds
    assert answers[0]["actions"][1]["payload"]["code"] is None
    assert dump(d) == before
    assert len(d.actions()) == n
    d.stop()


def test_dry_with_a_timer_due():
    d = Daemon("""
- id: p
  plugin: probe
  when: {event: [probe.arm, go]}
  params: {emit_on: [go], timer_after: 10s}
- id: q
  plugin: probe
  when: {event: probe.timer}
  params: {emit_on: [probe.timer]}
""")
    assert one(d, ev("a1", "probe.arm", "u1", T))["status"] == "ok"
    before = dump(d)
    timers = d.db_rows("SELECT * FROM timers")
    assert len(timers) == 1, timers
    # the timer falls due at T + 10s: the dry event fires it inside the undo
    a = one(d, ev("g1", "go", "u1", T + 20_000, dry=True, explain=True))
    assert a["dry"] is True, a
    # its actions (and their chain) are not listed; the event's own are
    assert [x["kind"] for x in a["actions"]] == ["probe.hit"], a
    assert a["actions"][0]["payload"]["now"] == T + 20_000
    t = entry(a, timer="t")
    assert t == {"depth": 0, "timer": "t", "user": "u1", "campaign": "p", "outcome": "ran",
                 "actions": 1, "notes": ["timer t fell due (dry 1)"]}, a["explain"]
    # the timer's chain is explained too, before the event
    chained = entry(a, event="probe.timer", campaign="q")
    assert chained["depth"] == 1 and chained["outcome"] == "ran", chained
    assert a["explain"].index(t) < a["explain"].index(chained) < a["explain"].index(
        entry(a, event="go", campaign="p"))
    # the timer is back, the clock did not move
    assert dump(d) == before
    # a real event fires it for real
    assert one(d, ev("g1", "go", "u1", T + 20_000)) == {"id": "g1", "status": "ok", "actions": 1}
    assert [r["kind"] for r in d.actions()] == ["probe.timer", "probe.hit", "probe.hit"]
    assert d.db_rows("SELECT * FROM timers") == []
    d.stop()


def test_dry_timer_failing_is_not_set_aside():
    d = Daemon("""
- id: p
  plugin: probe
  when: {event: [probe.arm, go]}
  params: {emit_on: [go], timer_after: 1s, fail_timers: [bad]}
""")
    assert one(d, ev("a1", "probe.arm", "u1", T, name="bad"))["status"] == "ok"
    before = dump(d)
    a = one(d, ev("g1", "go", "u1", T + 5000, dry=True, explain=True))
    assert a["status"] == "ok" and [x["kind"] for x in a["actions"]] == ["probe.hit"], a
    f = entry(a, timer="bad")
    assert f["outcome"] == "failed" and "failed on timer bad" in f["detail"], f
    assert dump(d) == before
    assert d.db_rows("SELECT count(*) FROM failed_timers") == [(0,)]
    # for real: set aside, and the event goes on
    assert one(d, ev("g1", "go", "u1", T + 5000))["actions"] == 1
    assert d.db_rows("SELECT name FROM failed_timers") == [("bad",)]
    d.stop()


OUTCOMES = """
- id: off
  plugin: coupon
  enabled: false
  when: {event: order.paid}
  params: {value: 1, valid_for: 1d}
- id: later
  plugin: coupon
  starts: 2030-01-01T00:00:00Z
  when: {event: order.paid}
  params: {value: 1, valid_for: 1d}
- id: over
  plugin: coupon
  ends: 2020-01-01T00:00:00Z
  when: {event: order.paid}
  params: {value: 1, valid_for: 1d}
- id: signups
  plugin: coupon
  when: {event: user.signup}
  params: {value: 1, valid_for: 1d}
- id: big
  plugin: coupon
  when:
    event: order.paid
    all: [{field: props.amount, op: gte, value: 10000}]
  params: {value: 1, valid_for: 1d}
- id: web
  plugin: coupon
  when:
    event: order.paid
    all: [{field: props.channel, op: eq, value: web}]
  params: {value: 1, valid_for: 1d}
- id: once
  plugin: coupon
  when: {event: order.paid}
  params: {value: 1, valid_for: 1d, budget: 2}
- id: ref
  plugin: referral
  params: {commission: [1000], min_order: 500}
"""


def test_explain_outcomes():
    d = Daemon(OUTCOMES, daemon="log: {level: debug}")
    a = one(d, paid("e1", "u1", T, amount=100, explain=True))
    assert a["status"] == "ok" and a["actions"] == 1, a
    first = [(x["depth"], x["event"], x["campaign"]) for x in a["explain"][:8]]
    assert first == [(0, "order.paid", c) for c in
                     ("off", "later", "over", "signups", "big", "web", "once", "ref")], a["explain"]
    assert entry(a, campaign="off", depth=0) == {
        "depth": 0, "event": "order.paid", "campaign": "off", "outcome": "inactive",
        "detail": "disabled"}
    assert entry(a, campaign="later", depth=0)["detail"] == "before starts"
    assert entry(a, campaign="over", depth=0)["detail"] == "after ends"
    x = entry(a, campaign="signups", depth=0)
    assert (x["outcome"], x["detail"]) == ("not_matched", "event order.paid not in when.event"), x
    x = entry(a, campaign="big", depth=0)
    assert (x["outcome"], x["detail"]) == ("not_matched", "props.amount gte 10000: is 100"), x
    x = entry(a, campaign="web", depth=0)
    assert (x["outcome"], x["detail"]) == ("not_matched", 'props.channel eq "web": missing'), x
    assert entry(a, campaign="once", depth=0) == {
        "depth": 0, "event": "order.paid", "campaign": "once", "outcome": "ran", "actions": 1,
        "notes": []}
    x = entry(a, campaign="ref", depth=0)
    assert x["outcome"] == "ran" and x["actions"] == 0, x
    assert x["notes"] == ["not a qualifying order: buyer not bound"], x
    # the chained coupon.issued: its own campaign skips it
    assert entry(a, campaign="once", depth=1) == {
        "depth": 1, "event": "coupon.issued", "campaign": "once", "outcome": "skipped",
        "detail": "own action"}
    assert entry(a, campaign="signups", depth=1)["detail"] == \
        "event coupon.issued not in when.event"
    # the same decisions in the log, at level debug
    log = d.log()
    assert "campaign=big: event order.paid of user u1 (depth 0): not_matched: " \
           "props.amount gte 10000: is 100" in log, log
    assert "campaign=once: event coupon.issued of user u1 (depth 1): skipped: own action" in log

    # notes of a refusal: per_user_limit, then budget
    a = one(d, paid("e2", "u1", T, amount=100, explain=True, dry=True))
    x = entry(a, campaign="once", depth=0)
    assert (x["outcome"], x["actions"], x["notes"]) == ("ran", 0, ["per_user_limit reached"]), x
    assert one(d, paid("e3", "u2", T, amount=100))["actions"] == 1
    a = one(d, paid("e4", "u3", T, amount=100, explain=True))
    assert entry(a, campaign="once", depth=0)["notes"] == ["budget spent"], a
    # referral: a refused binding, an order below min_order
    a = one(d, ev("e5", "user.signup", "u4", T, referrer="u4", explain=True))
    assert entry(a, campaign="ref", depth=0)["notes"] == ["binding refused: self"], a
    a = one(d, ev("e6", "user.signup", "u5", T, referrer="u1"))
    assert a["status"] == "ok" and a["actions"] >= 1, a
    a = one(d, paid("e7", "u5", T, amount=100, explain=True))
    assert entry(a, campaign="ref", depth=0)["notes"] == ["not a qualifying order: min_order"], a
    d.stop()


def test_explain_redemption_runs_unmatched_and_disabled():
    camp = """
- id: c1
  plugin: coupon
  enabled: {enabled}
  when: {{event: order.paid}}
  params: {{value: 500, valid_for: 7d}}
- id: c2
  plugin: coupon
  when: {{event: user.signup}}
  params: {{value: 1, valid_for: 7d}}
"""
    d = Daemon(camp.format(enabled="true"))
    assert one(d, paid("e1", "u1", T))["actions"] == 1
    code = d.actions()[0]["payload"]["code"]
    used = ev("u1", "coupon.used", "u1", T + 1, code=code, explain=True, dry=True)
    a = one(d, used)
    x = entry(a, campaign="c1", depth=0)
    assert (x["outcome"], x["actions"]) == ("ran", 1), a  # its when names order.paid only
    assert entry(a, campaign="c2", depth=0)["outcome"] == "not_matched"
    # disabled: it still redeems, and the entry says ran
    d.reload(camp.format(enabled="false"))
    a = one(d, used)
    x = entry(a, campaign="c1", depth=0)
    assert (x["outcome"], x["actions"]) == ("ran", 1), a
    assert [y["kind"] for y in a["actions"]] == ["coupon.redeemed"], a
    # an order for it now: inactive
    a = one(d, paid("e2", "u2", T + 2, explain=True))
    assert entry(a, campaign="c1", depth=0)["detail"] == "disabled", a
    # a rejected code is noted
    a = one(d, ev("u2", "coupon.used", "u9", T + 3, code=code, explain=True))
    assert entry(a, campaign="c1", depth=0)["notes"] == ["code %s rejected: not_owner" % code], a
    d.stop()


def test_explain_real_event_and_timer_entry():
    d = Daemon("""
- id: p
  plugin: probe
  when: {event: [probe.arm, go]}
  params: {emit_on: [go], timer_after: 10s}
""")
    assert one(d, ev("a1", "probe.arm", "u1", T))["status"] == "ok"
    a = one(d, ev("g1", "go", "u1", T + 20_000, explain=True))
    assert a["status"] == "ok" and a["actions"] == 1 and "dry" not in a, a
    assert a["explain"][0] == {"depth": 0, "timer": "t", "user": "u1", "campaign": "p",
                               "outcome": "ran", "actions": 1,
                               "notes": ["timer t fell due (dry 0)"]}, a
    assert entry(a, event="go") == {"depth": 0, "event": "go", "campaign": "p", "outcome": "ran",
                                    "actions": 1, "notes": ["matched go of u1 (dry 0)"]}
    assert [r["kind"] for r in d.actions()] == ["probe.timer", "probe.hit"]
    d.stop()


def test_http_dry_and_explain():
    d = Daemon(FIRST_ORDER, http=True)
    before = dump(d)
    body = "\n".join(json.dumps(e) for e in [
        paid("h1", "u1", T, dry=False),
        paid("h2", "u2", T),
    ]).encode() + b"\n"
    st, text = d.http("POST", "/v1/events?dry=1&explain=1", body)
    assert st == 200, (st, text)
    answers = [json.loads(x) for x in text.splitlines()]
    assert [a["dry"] for a in answers] == [True, True], answers
    assert [len(a["actions"]) for a in answers] == [1, 1]
    assert all(a["explain"][0]["campaign"] == "first-order-coupon" for a in answers)
    assert dump(d) == before
    st, text = d.http("POST", "/v1/events?explain=1", body)
    answers = [json.loads(x) for x in text.splitlines()]
    assert [(a["status"], a["actions"]) for a in answers] == [("ok", 1), ("ok", 1)], answers
    assert "explain" in answers[0] and "dry" not in answers[0]
    st, text = d.http("POST", "/v1/events", body)
    assert [json.loads(x)["status"] for x in text.splitlines()] == ["duplicate", "duplicate"]
    st, _ = d.http("POST", "/v1/events?dry=yes", body)
    assert st == 400
    d.stop()


def test_flags_must_be_booleans():
    d = Daemon(FIRST_ORDER)
    bad = [dict(paid("b1", "u1", T), dry=1), dict(paid("b2", "u1", T), explain="yes"),
           dict(paid("b3", "u1", T), dry="true")]
    answers = d.send(bad)
    assert [(a["id"], a["status"], a["error"]) for a in answers] == [
        ("b1", "error", "invalid_event"), ("b2", "error", "invalid_event"),
        ("b3", "error", "invalid_event")], answers
    assert "dry" in answers[0]["detail"] and "explain" in answers[1]["detail"]
    # null is absent
    a = one(d, dict(paid("b1", "u1", T), dry=None, explain=None))
    assert a == {"id": "b1", "status": "ok", "actions": 1}, a
    d.stop()
