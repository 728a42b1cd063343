"""Failures stay local (spec section 12): a timer whose callback fails is
undone alone and set aside with its error (`mktd timers --failed`), never
retried, and every other user's events go on being answered ok."""
import json

from harness import Daemon, mktd, ok

T = 1_700_000_000_000

CAMPAIGNS = """
- id: p
  plugin: probe
  params: {emit_on: [go], timer_after: 1s, fail_timers: [bad]}
"""


def ev(id, type, user, ts, **props):
    e = {"id": id, "type": type, "user": user, "ts": ts}
    if props:
        e["props"] = props
    return e


def kinds(d):
    return [(a["kind"], a["user"]) for a in d.actions()]


def test_failing_timer_is_set_aside_and_others_go_on():
    d = Daemon(CAMPAIGNS, http=True)
    ans = d.send([ev("a1", "probe.arm", "u1", T, name="bad"),
                  ev("a2", "probe.arm", "u2", T, name="t"),
                  ev("a3", "probe.arm", "u3", T + 5000, name="bad")])
    for a in ans:
        ok(a)
    # Both timers of u1 and u2 fall due before this event: u2's fires, u1's
    # fails and is set aside; the event itself is unaffected.
    ans = d.send([ev("g1", "go", "u4", T + 2000)])
    ok(ans[0], 1)
    assert kinds(d) == [("probe.timer", "u2"), ("probe.hit", "u4")], kinds(d)
    # Nothing the failing callback did is kept: no action, state, timer or
    # counter of its own.
    assert d.db_rows("SELECT count(*) FROM state WHERE user = 'u1'")[0][0] == 0
    assert d.db_rows("SELECT count(*) FROM counters WHERE user = 'u1'")[0][0] == 0
    assert d.db_rows("SELECT name FROM timers WHERE user = 'u1'") == []
    failed = d.db_rows("SELECT campaign, user, name, due, error FROM failed_timers")
    assert len(failed) == 1 and failed[0][:4] == ("p", "u1", "bad", T + 1000), failed
    assert "plugin probe failed on timer bad" in failed[0][4], failed
    # Logged with campaign, user and timer name.
    assert "timer bad of user u1 set aside" in d.log(), d.log()
    # Never retried: later events of every user are ok, the timer of u3
    # (also `bad`) is set aside in its turn, and u1's does not come back.
    ans = d.send([ev(f"g{i}", "go", f"v{i}", T + 2000 + i * 1000) for i in range(2, 10)])
    for a in ans:
        ok(a, 1)
    rows = d.db_rows("SELECT user, name FROM failed_timers ORDER BY user")
    assert rows == [("u1", "bad"), ("u3", "bad")], rows
    assert [k for k in kinds(d) if k[0] != "probe.hit"] == [("probe.timer", "u2")]
    # `mktd timers --failed` shows them with their errors; `mktd timers`
    # shows what is still pending (nothing).
    out = mktd("timers", "--failed", "--db", d.db)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [(x["campaign"], x["user"], x["name"], x["due"]) for x in lines] == [
        ("p", "u1", "bad", T + 1000), ("p", "u3", "bad", T + 6000)], lines
    assert all("failed on timer bad" in x["error"] and x["failed_at"] > 0 for x in lines)
    out = mktd("timers", "-c", d.config)
    assert out.returncode == 0 and out.stdout == "", (out.stdout, out.stderr)
    m = d.metrics()
    assert m["mktd_timers_failed_total"] == 2, m
    assert m["mktd_plugin_errors_total"] == 2, m
    d.stop()


def test_set_aside_survives_the_undo_of_the_event():
    """The event evaluated when the timer fails is itself undone (its plugin
    fails too): the timer stays set aside and does not fire again."""
    d = Daemon(CAMPAIGNS)
    ok(d.send([ev("a1", "probe.arm", "u1", T, name="bad")])[0])
    ans = d.send([ev("f1", "go", "u2", T + 2000, fail=True)])
    assert ans[0]["status"] == "error" and ans[0]["error"] == "internal", ans
    # The failed event left nothing, but the set-aside stands.
    assert d.actions() == []
    assert d.db_rows("SELECT user, name FROM failed_timers") == [("u1", "bad")]
    assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
    # The same event sent again (not remembered: it failed) now passes.
    ok(d.send([ev("f2", "go", "u2", T + 3000)])[0], 1)
    assert d.db_rows("SELECT count(*) FROM failed_timers")[0][0] == 1
    d.stop()


def test_pending_timers_listed():
    d = Daemon(CAMPAIGNS)
    ok(d.send([ev("a1", "probe.arm", "u1", T, name="t"),
               ev("a2", "probe.arm", "u2", T + 10, name="x")])[0])
    d.stop()
    out = mktd("timers", "--db", d.db)
    assert out.returncode == 0, out.stderr
    got = [json.loads(x) for x in out.stdout.splitlines()]
    assert got == [{"campaign": "p", "user": "u1", "name": "t", "due": T + 1000},
                   {"campaign": "p", "user": "u2", "name": "x", "due": T + 1010}], got


def test_working_set_budget_config():
    """limits.working_set takes a size; a bad one is refused at line:col;
    the daemon runs within a small budget and /metrics shows it."""
    d = Daemon(CAMPAIGNS, http=True, daemon="limits: {working_set: 1MB}")
    ans = d.send([ev(f"g{i}", "go", f"user-{i}", T + i) for i in range(8000)])
    assert all(a["status"] == "ok" for a in ans)
    m = d.metrics()
    assert m["mktd_working_set_budget_bytes"] == 1 << 20, m
    assert m["mktd_working_set_bytes"] <= 1 << 20, m
    assert m["mktd_working_set_evictions_total"] > 0, m
    # evicted rows are read again: each user's hit counter goes on from 1
    ans = d.send([ev(f"h{i}", "go", f"user-{i}", T + 5000 + i) for i in range(0, 8000, 800)])
    assert all(a["status"] == "ok" for a in ans)
    hits = [a["payload"]["n"] for a in d.actions() if a["event_id"].startswith("h")]
    assert hits == [2] * 10, hits
    d.stop()
    bad = Daemon(CAMPAIGNS, start=False, daemon="limits: {working_set: 12XB}")
    out = mktd("check", "-c", bad.config)
    assert out.returncode == 1 and "limits.working_set: must be a size" in out.stderr, out.stderr
    assert ":7:" in out.stderr or "mktd.yaml:" in out.stderr, out.stderr
