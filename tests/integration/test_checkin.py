"""The checkin plugin (spec sections 16 and 18) in the real daemon, over
real sockets, with the real SQLite file: weeks of check-ins in event time
at utc_offset +08:00 (a day missed by one local day although the UTC days
are consecutive, two check-ins a day, late ones), runs kept across a
restart, explanations, groups and caps, config errors, and the README's
worked example through `mktd simulate`."""
import json
import os
import re
import subprocess

from harness import PLUGINS, SRC, Daemon, command, mktd, slow

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
# 2026-01-01T00:00:00+08:00 (16:00Z on 2025-12-31): local midnight
L0 = 1_767_196_800_000

CAMPAIGNS = """
- id: beijing
  plugin: checkin
  params: {streak: 3, utc_offset: "+08:00", reward: {points: 30, tier: [gold, 2]}}
- id: utc
  plugin: checkin
  params: {streak: 2}
"""


def checkin(id, user, ts, **kw):
    e = {"id": id, "type": "checkin", "user": user, "ts": ts}
    e.update(kw)
    return e


def local(day, hh, mm=0):
    """Unix ms of local (+08:00) day `day` (0 = 2026-01-01) at hh:mm."""
    return L0 + day * DAY + hh * HOUR + mm * MIN


def rows(d, campaign=None):
    return [(a["campaign"], a["user"], a["event_id"], a["ts"], a["payload"])
            for a in d.actions(campaign)]


def reward(days, campaign="beijing"):
    if campaign == "beijing":
        return {"days": days, "reward": {"points": 30, "tier": ["gold", 2]}}
    return {"days": days, "reward": {}}


def test_days_at_utc_offset():
    # local(d, hh, mm) at +08:00 is UTC day d + 1 from 08:00 local on, and
    # UTC day d (of the month) before 08:00 local
    d = Daemon(CAMPAIGNS)
    answers = d.send([
        # alice: local 1st (UTC 1st), the 1st again late at night (15:50Z,
        # the 1st), ten past midnight on the local 2nd (16:10Z, still the
        # UTC 1st), the 2nd at 20:00 (12:00Z on the 2nd: a utc reward), the
        # 3rd at 08:00 (00:00Z on the 3rd): three local days, a reward
        checkin("a1", "alice", local(0, 9)),
        checkin("a2", "alice", local(0, 23, 50)),
        checkin("a3", "alice", local(1, 0, 10)),
        checkin("a4", "alice", local(1, 20)),
        checkin("a5", "alice", local(2, 8)),
        # bob: 23:30 local on the 1st (15:30Z on the 1st), then 00:30 local
        # on the 3rd (16:30Z on the 2nd): consecutive UTC days (a utc
        # reward), but the local 2nd is missed: his local run starts again
        checkin("b1", "bob", local(0, 23, 30)),
        checkin("b2", "bob", local(2, 0, 30)),
        checkin("b3", "bob", local(3, 0, 30)),
    ])
    assert [a["status"] for a in answers] == ["ok"] * 8, answers
    assert [a["actions"] for a in answers] == [0, 0, 0, 1, 1, 0, 1, 0], answers
    answers = d.send([
        # alice: the local 4th (UTC 4th: run 4, a utc reward), the 5th, a
        # late check-in dated the 2nd that changes nothing, the 6th at
        # 07:59 local (23:59Z on the 5th): run 6, her second local reward
        checkin("a6", "alice", local(3, 12)),
        checkin("a7", "alice", local(4, 12)),
        checkin("a8", "alice", local(1, 12)),
        checkin("a9", "alice", local(5, 7, 59)),
        # bob: the local 5th completes 3 local days (3rd, 4th, 5th), while
        # in UTC he missed the 4th (16:30Z on the 3rd, then 15:59Z on the
        # 5th)
        checkin("b4", "bob", local(4, 23, 59)),
    ])
    assert [a["actions"] for a in answers] == [1, 0, 0, 1, 1], answers
    # an action's ts is the daemon's now: the largest event ts so far
    assert rows(d) == [
        ("utc", "alice", "a4", local(1, 20), reward(2, "utc")),
        ("beijing", "alice", "a5", local(2, 8), reward(3)),
        ("utc", "bob", "b2", local(2, 8), reward(2, "utc")),
        ("utc", "alice", "a6", local(3, 12), reward(4, "utc")),
        ("beijing", "alice", "a9", local(5, 7, 59), reward(6)),
        ("beijing", "bob", "b4", local(5, 7, 59), reward(3)),
    ], rows(d)
    d.stop()


def test_run_survives_restart_and_late_events():
    d = Daemon(CAMPAIGNS)
    assert [a["actions"] for a in d.send([
        checkin("c1", "carol", local(10, 9)),
        checkin("c2", "carol", local(11, 9)),
    ])] == [0, 1]  # utc: 2 days
    assert d.stop() == 0
    d.start()
    # a late event (dated before the last counted day) changes nothing;
    # the next local day completes the run of 3
    answers = d.send([
        checkin("c3", "carol", local(9, 9), explain=True),
        checkin("c4", "carol", local(12, 9), explain=True),
    ])
    notes = {x["campaign"]: x["notes"] for x in answers[0]["explain"] if x["depth"] == 0}
    assert notes["beijing"] == ["back-dated: 2026-01-10 is before the last counted day 2026-01-12"]
    assert answers[1]["actions"] == 1, answers
    notes = {x["campaign"]: x["notes"] for x in answers[1]["explain"] if x["depth"] == 0}
    assert notes["beijing"] == ["run 3 on 2026-01-13: reward"], notes
    assert notes["utc"] == ["run 3 of 4 on 2026-01-13"], notes
    assert rows(d, "beijing") == [("beijing", "carol", "c4", local(12, 9), reward(3))]
    d.stop()


def test_explained_notes():
    d = Daemon(CAMPAIGNS)
    cases = [
        (checkin("n1", "dan", local(0, 12), explain=True), "run 1 of 3 on 2026-01-01"),
        (checkin("n2", "dan", local(0, 23, 59), explain=True),
         "already checked in on 2026-01-01"),
        (checkin("n3", "dan", local(1, 0), explain=True), "run 2 of 3 on 2026-01-02"),
        (checkin("n4", "dan", local(3, 0), explain=True),
         "missed a day after 2026-01-02: the run starts again"),
    ]
    for e, want in cases:
        (a,) = d.send([e])
        assert a["status"] == "ok", a
        x = [x for x in a["explain"] if x["campaign"] == "beijing"][0]
        assert x["outcome"] == "ran" and want in x["notes"], (e, x)
    # a dry check-in quotes the reward and keeps nothing
    (a,) = d.send([checkin("n5", "dan", local(4, 9), dry=True)])
    assert [x for x in a["actions"] if x["campaign"] == "beijing"] == [], a  # run 2
    (a,) = d.send([checkin("n6", "dan", local(4, 9))])
    (a,) = d.send([checkin("n7", "dan", local(5, 9), dry=True)])
    assert [(x["campaign"], x["payload"]) for x in a["actions"]] == [
        ("beijing", reward(3)), ("utc", reward(2, "utc"))], a
    assert rows(d, "beijing") == []
    # other event types are not check-ins
    (a,) = d.send([{"id": "n8", "type": "page.view", "user": "dan", "ts": local(5, 9),
                    "explain": True}])
    assert [x.get("notes") for x in a["explain"] if x["campaign"] == "beijing"] == [[]], a
    d.stop()


def test_group():
    camps = """
- id: three-days
  plugin: checkin
  group: daily
  params: {streak: 3, reward: {coupon: big}}
- id: every-day
  plugin: checkin
  group: daily
  params: {streak: 1, reward: {points: 5}}
"""
    d = Daemon(camps)
    T = 1_767_225_600_000  # 2026-01-01T00:00Z
    answers = d.send([checkin(f"g{i}", "erin", T + i * DAY + HOUR, explain=True)
                      for i in range(6)])
    assert [a["actions"] for a in answers] == [1] * 6, answers
    # days 3 and 6: three-days takes the group; every-day counts the day
    # and records nothing
    x = [x for x in answers[2]["explain"] if x["campaign"] == "every-day"][0]
    assert (x["outcome"], x["notes"]) == ("ran", ["run 3 on 2026-01-03: group taken, no reward"]), x
    got = [(c, e, p["days"]) for c, u, e, _, p in rows(d)]
    assert got == [("every-day", "g0", 1), ("every-day", "g1", 2), ("three-days", "g2", 3),
                   ("every-day", "g3", 4), ("every-day", "g4", 5), ("three-days", "g5", 6)], got
    d.stop()


def test_caps():
    d = Daemon("""
- id: every-day
  plugin: checkin
  params: {streak: 1}
""", start=False)
    with open(d.config, "a") as f:
        f.write("caps:\n  - {id: two-a-week, kinds: [checkin.reward], max: 2, per: 7d}\n")
    d.start()
    T = 1_767_225_600_000  # 2026-01-01T00:00Z
    answers = d.send([checkin(f"g{i}", "erin", T + i * DAY, explain=True) for i in (0, 1, 2, 3, 9)])
    assert [a["actions"] for a in answers] == [1, 1, 0, 0, 1], answers
    # capped: the day is counted all the same (run 4 on the 4th)
    x = [x for x in answers[3]["explain"] if x["campaign"] == "every-day"][0]
    assert x["notes"] == ["capped by two-a-week", "run 4 on 2026-01-04: checkin.reward capped"], x
    got = [(e, p["days"]) for c, u, e, _, p in rows(d)]
    assert got == [("g0", 1), ("g1", 2), ("g9", 1)], got
    d.stop()


def test_check_refuses_bad_params():
    d = Daemon(start=False)
    cases = [
        ("params: {utc_offset: \"+08:00\"}", r":\d+:\d+: .*streak"),
        ("params: {streak: 0}", r":\d+:\d+: "),
        ("params: {streak: 7, utc_offset: \"+8\"}", r":\d+:\d+: .*utc_offset"),
        ("params: {streak: 7, utc_offset: \"+24:00\"}", r":\d+:\d+: .*utc_offset"),
        ("params: {streak: 7, reward: 50}", r":\d+:\d+: .*reward"),
        ("params: {streak: 7, bonus: 1}", r":\d+:\d+: .*bonus"),
        ("when: {event: checkin}\n  params: {streak: 7}", r":\d+:\d+: .*when"),
    ]
    for params, want in cases:
        d.write_config(f"""
- id: c
  plugin: checkin
  {params}
""")
        r = mktd("check", "-c", d.config)
        assert r.returncode == 1, (params, r.stdout, r.stderr)
        assert re.search(re.escape(d.config) + want, r.stdout + r.stderr), (params, r.stderr)
    d.write_config(CAMPAIGNS)
    r = mktd("check", "-c", d.config)
    assert r.returncode == 0, r.stderr


def test_readme_example():
    with open(os.path.join(SRC, "plugins", "checkin", "README.md")) as f:
        text = f.read()
    text = text[text.index("## Worked example"):]
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    yaml = next(b for lang, b in blocks if lang == "yaml")
    events, actions = [b for lang, b in blocks if lang == "json"][:2]
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
    want = [json.loads(x) for x in actions.splitlines() if x.strip()]
    assert len(want) == 2
    assert got == want, r.stdout
