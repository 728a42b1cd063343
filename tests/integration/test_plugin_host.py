"""The plugin host, seen through the test plugins of tests/plugins: loading
and refusing plugins, the host API (actions, state, counters, timers, the
profile), the event clock, chaining, rollback of a failed event, windows,
and what survives a restart. See tests/plugins/probe.c for what the probe
plugin does with its params."""
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone

from harness import PLUGINS, SRC, TEST_PLUGINS, Daemon, command, mktd, ok, slow

T = 1_700_000_000_000  # 2023-11-14T22:13:20Z
LINE_COL = re.compile(r"mktd\.yaml:\d+:\d+: ")


def host_abi():
    """(major, minor) of the SDK header the daemon was built with."""
    with open(os.path.join(SRC, "sdk/include/mktd/plugin.h")) as f:
        text = f.read()
    return tuple(int(re.search(r"#define MKTD_ABI_%s (\d+)" % w, text).group(1)) for w in ("MAJOR", "MINOR"))


MAJOR, MINOR = host_abi()
HOST = f"{MAJOR}.{MINOR}"


def ev(id, type, user, ts=None, **props):
    e = {"id": id, "type": type, "user": user}
    if ts is not None:
        e["ts"] = ts
    if props:
        e["props"] = props
    return e


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def kinds(rows):
    return [(r["campaign"], r["kind"], r["user"]) for r in rows]


def refused(campaigns, *needles, plugin_dirs=None):
    """The config is refused by `mktd check` and by the daemon; returns
    both outputs. Every needle appears in both."""
    d = Daemon(campaigns, start=False, plugin_dirs=plugin_dirs)
    chk = mktd("check", "-c", d.config)
    assert chk.returncode == 1, (chk.returncode, chk.stdout, chk.stderr)
    run = mktd("-c", d.config, cwd=d.dir, timeout=15)
    assert run.returncode not in (0, None) and run.returncode > 0, (run.returncode, run.stderr)
    for out in (chk.stderr, run.stderr):
        assert LINE_COL.search(out), out
        for n in needles:
            assert n in out, (n, out)
    assert not os.path.exists(d.db) or d.db_rows("SELECT count(*) FROM actions")[0][0] == 0
    shutil.rmtree(d.dir, ignore_errors=True)
    return chk.stderr, run.stderr


# ---- loading ----

def test_load_and_check():
    camp = """
    - id: p
      plugin: probe
      params: {emit_on: [go], limit: 3, remember: true, timer_after: 90s, chain: false}
    """
    d = Daemon(camp)
    try:
        r = mktd("check", "-c", d.config)
        assert r.returncode == 0, r.stderr
        assert "ok, 1 campaigns" in r.stdout, r.stdout
        ok(d.send([ev("e1", "go", "u1", T)])[0], 1)
    finally:
        assert d.stop() == 0


def test_probe_params_are_checked():
    out, _ = refused("""
    - id: p
      plugin: probe
      params: {emit_on: [go], bogus: 1, limit: -1, timer_after: soon}
    """, "campaign p", "bogus", "limit", "timer_after")
    assert len(LINE_COL.findall(out)) >= 3, out


def test_abi_major_refused():
    refused("""
    - id: old
      plugin: abi_major
    """, os.path.join(TEST_PLUGINS, "abi_major.so"), "2.0", f"this mktd has ABI {HOST}")


def test_abi_minor_refused():
    refused("""
    - id: newer
      plugin: abi_minor
    """, os.path.join(TEST_PLUGINS, "abi_minor.so"), f"built for ABI {MAJOR}.{MINOR + 1}",
            f"this mktd has ABI {HOST}")


def test_abi_older_minor_loads():
    # built for ABI 1.0 (a descriptor that ends at on_load): loads and runs
    assert (MAJOR, MINOR) >= (1, 1)
    d = Daemon("""
    - id: old
      plugin: abi_old
    """)
    try:
        r = mktd("check", "-c", d.config)
        assert r.returncode == 0, r.stderr
        ok(d.send([ev("e1", "page.view", "u1", T)])[0], 2)
        rows = d.actions()
        assert kinds(rows) == [("old", "old.seen", "u1"), ("old", "old.rc", "u1")], rows
        assert rows[0]["payload"] == {"host_abi": HOST, "flags": 3}, rows
        assert rows[1]["payload"] == {"rc": 0}, rows
    finally:
        assert d.stop() == 0


def test_abi_old_sees_nothing_of_groups_and_caps():
    # ABI 1.1's MKTD_F_EXCLUDED and MKTD_CAPPED are not shown to a 1.0
    # plugin: excluded by its group it sees MATCH clear and no 0x4; capped,
    # its emit returns 0
    d = Daemon("""
    - id: first
      plugin: probe
      group: g
      params: {emit_on: [page.view]}
    - id: old
      plugin: abi_old
      group: g
    """, top="caps:\n  - {id: none, kinds: [old.seen], max: 0, per: 1d}")
    try:
        ok(d.send([ev("e1", "page.view", "u1", T)])[0], 2)
        rows = d.actions()
        assert kinds(rows) == [("first", "probe.hit", "u1"), ("old", "old.unmatched", "u1")], rows
        assert rows[1]["payload"] == {"flags": 1}, rows  # ACTIVE only
        d.reload("""
    - id: old
      plugin: abi_old
      group: g
    """)
        ok(d.send([ev("e2", "page.view", "u2", T + 1)])[0], 1)
        rows = [r for r in d.actions() if r["user"] == "u2"]
        assert kinds(rows) == [("old", "old.rc", "u2")], rows  # old.seen capped
        assert rows[0]["payload"] == {"rc": 0}, rows
    finally:
        assert d.stop() == 0


def test_notes_at_debug_only():
    # note (ABI 1.1): a debug line naming the campaign; nothing at info
    camp = """
    - id: p
      plugin: probe
      params: {emit_on: [go]}
    """
    for level, shown in (("debug", True), ("info", False)):
        d = Daemon(camp, daemon="log: {level: %s}" % level)
        try:
            ok(d.send([ev("e1", "go", "u1", T)])[0], 1)
        finally:
            assert d.stop() == 0
        lines = [l for l in d.log().splitlines() if "matched go of u1 (dry 0)" in l]
        if shown:
            assert len(lines) == 1 and "debug campaign=p: " in lines[0], d.log()
        else:
            assert lines == [], d.log()


def test_no_entry_refused():
    refused("""
    - id: ne
      plugin: no_entry
    """, "no_entry", "mktd_plugin_entry")


def test_init_fails_refused():
    out, _ = refused("""
    - id: probe-ok
      plugin: probe
    - id: if1
      plugin: init_fails
    - id: if2
      plugin: init_fails
      params: {x: 1}
    """, "campaign if1", "campaign if2", "refuses every campaign")
    assert len(LINE_COL.findall(out)) == 2, out
    assert "probe-ok" not in out


def test_bad_name_refused():
    refused("""
    - id: bn
      plugin: bad_name
    """, "bad_name")


def test_only_plugin_dirs():
    elsewhere = tempfile.mkdtemp(prefix="mktd-elsewhere-")
    try:
        shutil.copy(os.path.join(TEST_PLUGINS, "probe.so"), os.path.join(elsewhere, "probe.so"))
        camp = """
        - id: p
          plugin: probe
        """
        # not in plugin_dirs: not found, not from the cwd, not from the library path
        d = Daemon(camp, start=False, plugin_dirs=[PLUGINS])
        env = dict(os.environ, LD_LIBRARY_PATH=elsewhere)
        r = subprocess.run(command("check", "-c", d.config), cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=slow(30))
        assert r.returncode == 1, r
        assert "probe.so" in r.stderr and "plugin_dirs" in r.stderr, r.stderr
        assert LINE_COL.search(r.stderr), r.stderr
        r = subprocess.run(command("-c", d.config), cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=slow(15))
        assert r.returncode > 0 and "probe.so" in r.stderr, r
        # an unknown name
        refused("""
        - id: p
          plugin: no_such_plugin
        """, "no_such_plugin", "plugin_dirs")
        # the same file, once its dir is named, loads
        d2 = Daemon(camp, start=False, plugin_dirs=[elsewhere])
        r = mktd("check", "-c", d2.config)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


# ---- the host API ----

def test_emit_row():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go]}
    """)
    try:
        a = d.send([ev("e1", "go", "u1", T, x=1), ev("e2", "other", "u1", T + 5),
                    ev("e3", "go", "u1", T + 10, to="w")])
        ok(a[0], 1)
        ok(a[1], 0)
        ok(a[2], 1)
        rows = d.actions()
        assert rows[0] == dict(seq=rows[0]["seq"], ts=T, campaign="p", kind="probe.hit", user="u1",
                               event_id="e1",
                               payload={"n": 1, "total": 1, "seen": "go", "depth": 0, "ts": T,
                                        "now": T, "events": 1})
        assert rows[1]["user"] == "w" and rows[1]["event_id"] == "e3" and rows[1]["ts"] == T + 10
        assert rows[1]["payload"]["n"] == 2 and rows[1]["payload"]["events"] == 3
        assert rows[1]["seq"] > rows[0]["seq"]
        assert len(rows) == 2
        # the raw column is compact JSON
        raw = d.db_rows("SELECT payload FROM actions ORDER BY seq")[0][0]
        assert ": " not in raw and ", " not in raw, raw
        # `mktd actions` prints the same rows
        r = mktd("actions", "--db", d.db)
        assert r.returncode == 0 and r.stdout.count("probe.hit") == 2, r
    finally:
        assert d.stop() == 0


def test_state_remember():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go], remember: true}
    - id: q
      plugin: probe
      params: {emit_on: [go], remember: true}
    """)
    try:
        ok(d.send([ev("e1", "go", "u1", T, value="a")])[0], 2)
        ok(d.send([ev("e2", "go", "u1", T + 1, value={"k": [1, 2]})])[0], 2)
        ok(d.send([ev("e3", "go", "u2", T + 2, value=7)])[0], 2)
        ok(d.send([ev("e4", "go", "u1", T + 3)])[0], 2)
        ok(d.send([ev("e5", "go", "u1", T + 4, value=None)])[0], 2)
        prev = [(r["user"], r["payload"]["prev"]) for r in d.actions("p")]
        assert prev == [("u1", None), ("u1", "a"), ("u2", None), ("u1", {"k": [1, 2]}),
                        ("u1", {"k": [1, 2]})], prev
        # each campaign keeps its own state
        assert [r["payload"]["prev"] for r in d.actions("q")] == [r[1] for r in prev]
    finally:
        assert d.stop() == 0


def test_counter_limit():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go], limit: 2}
    - id: q
      plugin: probe
      params: {emit_on: [go]}
    """)
    try:
        evs = [ev(f"e{i}", "go", "u1" if i % 2 == 0 else "u2", T + i) for i in range(7)]
        for a in d.send(evs):
            ok(a, 2)
        p = [(r["kind"], r["user"], r["payload"]["n"], r["payload"]["total"]) for r in d.actions("p")]
        assert p == [("probe.hit", "u1", 1, 1), ("probe.hit", "u2", 1, 2), ("probe.hit", "u1", 2, 3),
                     ("probe.hit", "u2", 2, 4), ("probe.limited", "u1", 2, 4),
                     ("probe.limited", "u2", 2, 4), ("probe.limited", "u1", 2, 4)], p
        q = [r["payload"]["n"] for r in d.actions("q")]
        assert q == [1, 1, 2, 2, 3, 3, 4], q
    finally:
        assert d.stop() == 0


def test_profile_seen_by_plugins():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go, order.paid]}
    """)
    try:
        a = d.send([ev("e1", "go", "u1", T), ev("e2", "order.paid", "u1", T + 1, order_id="o", amount=5),
                    ev("e3", "go", "u1", T + 2, to="nobody")])
        for x in a:
            ok(x, 1)
        assert [r["payload"]["events"] for r in d.actions()] == [1, 2, 3]
    finally:
        assert d.stop() == 0


# ---- timers and the event clock ----

TWO_TIMER_CAMPAIGNS = """
- id: t1
  plugin: probe
  params: {emit_on: [tick], timer_after: 10s}
- id: t2
  plugin: probe
  params: {emit_on: [tick], timer_after: 10s}
"""


def test_timers_fire_in_order_before_the_event():
    d = Daemon(TWO_TIMER_CAMPAIGNS)
    try:
        users = ["b", "a", "\u00e9", "Z", "ab"]
        arms = [ev(f"arm-{i}", "probe.arm", u, T, due=T + 5000) for i, u in enumerate(users)]
        arms.append(ev("arm-early", "probe.arm", "b", T, due=T + 3000, name="early"))
        for a in d.send(arms):
            ok(a, 0)
        assert d.actions() == []
        # a duplicate neither fires timers nor moves the clock
        assert d.send([ev("arm-0", "probe.arm", "b", T + 60000)])[0]["status"] == "duplicate"
        assert d.actions() == []
        ok(d.send([ev("k1", "tick", "x", T + 2999)])[0], 2)
        assert d.actions()[0]["ts"] == T + 2999
        assert [r["kind"] for r in d.actions()] == ["probe.hit", "probe.hit"]
        # a timer due at T fires before the first event with ts >= T
        ok(d.send([ev("k2", "tick", "x", T + 3000)])[0], 2)
        rows = d.actions()[2:]
        assert kinds(rows) == [("t1", "probe.timer", "b"), ("t2", "probe.timer", "b"),
                               ("t1", "probe.hit", "x"), ("t2", "probe.hit", "x")], rows
        for r in rows[:2]:
            assert r["ts"] == T + 3000 and r["event_id"] is None
            assert r["payload"] == {"due": T + 3000, "name": "early", "now": T + 3000}
        assert rows[2]["event_id"] == "k2" and rows[2]["ts"] == T + 3000
        # far later: the rest fire by due, then config order, then user id bytes
        ok(d.send([ev("k3", "tick", "x", T + 60000)])[0], 2)
        rows = d.actions()[6:]
        order = sorted(users, key=lambda u: u.encode())
        assert order == ["Z", "a", "ab", "b", "\u00e9"]
        want = [("t1", "probe.timer", u) for u in order] + [("t2", "probe.timer", u) for u in order]
        assert kinds(rows) == want + [("t1", "probe.hit", "x"), ("t2", "probe.hit", "x")], kinds(rows)
        for r in rows[:10]:
            assert r["ts"] == T + 5000 and r["event_id"] is None and r["payload"]["due"] == T + 5000
        assert rows[10]["ts"] == T + 60000
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_timer_order_by_due_across_campaigns():
    d = Daemon(TWO_TIMER_CAMPAIGNS)
    try:
        for a in d.send([ev("a1", "probe.arm", "u", T, due=T + 200, name="x"),
                         ev("a2", "probe.arm", "w", T, due=T + 100, name="y"),
                         ev("a3", "probe.arm", "v", T, due=T + 100, name="y"),
                         ev("a4", "probe.arm", "q", T, due=T + 50, name="x")]):
            ok(a, 0)
        # a cancelled timer never fires
        ok(d.send([ev("d1", "probe.disarm", "q", T + 2, name="x")])[0], 2)
        ok(d.send([ev("d2", "probe.disarm", "q", T + 2, name="x")])[0], 2)
        rows = d.actions()
        assert [(r["campaign"], r["kind"], r["payload"]["had"]) for r in rows] == [
            ("t1", "probe.disarmed", T + 50), ("t2", "probe.disarmed", T + 50),
            ("t1", "probe.disarmed", -1), ("t2", "probe.disarmed", -1)], rows
        ok(d.send([ev("k", "tick", "z", T + 1000)])[0], 2)
        rows = [r for r in d.actions() if r["kind"] == "probe.timer"]
        assert [(r["campaign"], r["user"], r["ts"]) for r in rows] == [
            ("t1", "v", T + 100), ("t1", "w", T + 100), ("t2", "v", T + 100), ("t2", "w", T + 100),
            ("t1", "u", T + 200), ("t2", "u", T + 200)], rows
        # a timer made with a due time already past fires before the next
        # event, stamped with its due time
        ok(d.send([ev("late", "probe.arm", "w", T + 1000, due=T + 10)])[0], 0)
        ok(d.send([ev("k2", "tick", "z", T + 1000)])[0], 2)
        rows = [r for r in d.actions() if r["kind"] == "probe.timer"][6:]
        assert [(r["campaign"], r["ts"], r["event_id"]) for r in rows] == [("t1", T + 10, None),
                                                                          ("t2", T + 10, None)]
    finally:
        assert d.stop() == 0


def test_clock_never_moves_back():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go, probe.arm], timer_after: 10s}
    """)
    try:
        ok(d.send([ev("e1", "go", "u", T + 5000)])[0], 1)
        ok(d.send([ev("e2", "go", "u", T + 100)])[0], 1)
        ok(d.send([ev("e3", "go", "u")])[0], 1)  # no ts: now
        ok(d.send([ev("e4", "probe.arm", "u", T + 1)])[0], 1)  # due now + 10s
        rows = d.actions()
        assert [(r["ts"], r["payload"]["ts"], r["payload"]["now"]) for r in rows] == [
            (T + 5000, T + 5000, T + 5000), (T + 5000, T + 100, T + 5000),
            (T + 5000, T + 5000, T + 5000), (T + 5000, T + 1, T + 5000)]
        # the timer is due at now + 10s, not at the late event's ts + 10s
        assert d.db_rows("SELECT due FROM timers")[0][0] == T + 15000
        ok(d.send([ev("e5", "go", "u", T + 14999)])[0], 1)
        assert [r["kind"] for r in d.actions()].count("probe.timer") == 0
        ok(d.send([ev("e6", "go", "u", T + 15000)])[0], 1)
        rows = d.actions()
        assert rows[-2]["kind"] == "probe.timer" and rows[-2]["ts"] == T + 15000
        # an event far in the past neither fires nor stamps anything back
        ok(d.send([ev("e7", "go", "u", 5)])[0], 1)
        assert d.actions()[-1]["ts"] == T + 15000
    finally:
        assert d.stop() == 0


# ---- chaining ----

def test_chain_sees_actions_as_events():
    d = Daemon("""
    - id: a
      plugin: probe
      params: {emit_on: [go]}
    - id: b
      plugin: probe
      when:
        event: probe.hit
        all:
          - {field: props.n, op: eq, value: 1}
      params: {emit_on: [probe.hit], chain: true}
    """)
    try:
        ok(d.send([ev("e1", "go", "u1", T, to="w")])[0], 3)
        ok(d.send([ev("e2", "go", "u1", T + 7, to="w")])[0], 1)  # n = 2: b's condition fails
        rows = d.actions()
        assert kinds(rows) == [("a", "probe.hit", "w"), ("b", "probe.hit", "w"),
                               ("b", "probe.chain", "w"), ("a", "probe.hit", "w")], kinds(rows)
        hit, bhit, chain = rows[0], rows[1], rows[2]
        for r in (bhit, chain):
            assert r["event_id"] == "e1" and r["ts"] == T
        assert chain["payload"] == {"depth": 1, "kind": "probe.hit", "from": "a"}
        # the internal event's props are the payload; its user the action's;
        # it does not touch the profile (w was never seen)
        assert bhit["payload"]["depth"] == 1 and bhit["payload"]["from"] == "a"
        assert bhit["payload"]["ts"] == T and bhit["payload"]["events"] == -1
        assert d.db_rows("SELECT count(*) FROM users WHERE id='w'")[0][0] == 0
        assert d.db_rows("SELECT count(*) FROM events WHERE id LIKE 'probe%'")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_chain_breadth_first():
    d = Daemon("""
    - id: a
      plugin: probe
      params: {emit_on: [go]}
    - id: c
      plugin: probe
      when: {event: probe.hit}
      params: {chain: true}
    - id: b
      plugin: probe
      params: {emit_on: [go]}
    - id: d
      plugin: probe
      when: {event: probe.chain}
      params: {chain: true}
    """)
    try:
        ok(d.send([ev("e1", "go", "u", T)])[0], 6)
        rows = d.actions()
        got = [(r["campaign"], r["kind"], r["payload"].get("from"), r["payload"]["depth"]) for r in rows]
        assert got == [("a", "probe.hit", None, 0), ("b", "probe.hit", None, 0),
                       ("c", "probe.chain", "a", 1), ("c", "probe.chain", "b", 1),
                       ("d", "probe.chain", "c", 2), ("d", "probe.chain", "c", 2)], got
        assert all(r["event_id"] == "e1" for r in rows)
    finally:
        assert d.stop() == 0


def test_chain_depth_limit():
    d = Daemon("""
    - id: a
      plugin: probe
      when: {event: [go, probe.chain]}
      params: {emit_on: [go], chain: true}
    - id: b
      plugin: probe
      when: {event: [probe.hit, probe.chain]}
      params: {chain: true}
    """)
    try:
        ok(d.send([ev("e1", "go", "u", T)])[0], 5)
        rows = d.actions()
        got = [(r["campaign"], r["kind"], r["payload"]["depth"]) for r in rows]
        assert got == [("a", "probe.hit", 0), ("b", "probe.chain", 1), ("a", "probe.chain", 2),
                       ("b", "probe.chain", 3), ("a", "probe.chain", 4)], got
    finally:
        assert d.stop() == 0


def test_blind_to_own_actions():
    d = Daemon("""
    - id: a
      plugin: probe
      when: {event: [go, probe.hit, probe.chain]}
      params: {emit_on: [go, probe.hit], chain: true}
    """)
    try:
        ok(d.send([ev("e1", "go", "u", T)])[0], 1)
        assert kinds(d.actions()) == [("a", "probe.hit", "u")]
    finally:
        assert d.stop() == 0


def test_many_timers_fire_in_order():
    """Timers are read from the store a few hundred at a time: order holds
    across reads, a group of one due time larger than a read fires whole and
    in order, and a timer set while firing (probe's rearm_after: "t" at D
    sets "r" at D + 5 ms, before the next group at D + 10 ms) fires in its
    place, not after the timers read before it was set."""
    d = Daemon("""
    - id: p
      plugin: probe
      params: {timer_after: 1s, rearm_after: 5ms}
    """)
    try:
        arms, due = [], {}
        for i in range(700):  # 350 dues, two users each
            u = f"u{i:03d}"
            due[u] = T + 1000 + (i % 350) * 10
            arms.append(ev(f"a{i}", "probe.arm", u, T, due=due[u]))
        for i in range(300):  # one group of 300 at one due
            u = f"w{i:03d}"
            due[u] = T + 900000
            arms.append(ev(f"b{i}", "probe.arm", u, T, due=due[u]))
        for a in d.send(arms):
            ok(a, 0)
        ok(d.send([ev("k", "tick", "x", T + 1000000)])[0], 0)
        got = [(r["payload"]["due"], r["payload"]["name"], r["user"]) for r in d.actions()
               if r["kind"] == "probe.timer"]
        want = sorted([(t, "t", u) for u, t in due.items()] + [(t + 5, "r", u) for u, t in due.items()],
                      key=lambda x: (x[0], x[2].encode()))
        assert len(got) == 2000
        assert got == want, next((i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w)
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_timer_chain():
    d = Daemon("""
    - id: t
      plugin: probe
      params: {timer_after: 1s}
    - id: c
      plugin: probe
      when: {event: [probe.timer, go]}
      params: {chain: true, emit_on: [go]}
    """)
    try:
        ok(d.send([ev("e1", "probe.arm", "u", T)])[0], 0)
        ok(d.send([ev("e2", "go", "v", T + 5000)])[0], 1)
        rows = d.actions()
        assert [(r["campaign"], r["kind"], r["ts"], r["event_id"]) for r in rows] == [
            ("t", "probe.timer", T + 1000, None), ("c", "probe.chain", T + 1000, None),
            ("c", "probe.hit", T + 5000, "e2")], rows
        assert rows[1]["payload"] == {"depth": 1, "kind": "probe.timer", "from": "t"}
    finally:
        assert d.stop() == 0


# ---- a failing plugin ----

ROLLBACK = """
- id: p
  plugin: probe
  params: {emit_on: [go], remember: true, timer_after: 10s}
- id: c
  plugin: probe
  when: {event: [probe.hit, probe.timer]}
  params: {chain: true}
"""


def snapshot(d):
    return {t: sorted(d.db_rows(f"SELECT * FROM {t}"), key=repr)
            for t in ("actions", "events", "users", "state", "counters", "timers", "meta")}


def test_failure_rolls_back_whole():
    d = Daemon(ROLLBACK)
    try:
        ok(d.send([ev("arm", "probe.arm", "u", T)])[0], 0)  # p's timer at T + 10s
        ok(d.send([ev("e1", "go", "u", T + 500, value="a")])[0], 2)
        before = snapshot(d)
        # the timer is due before e2: it fires, then p fails on e2
        a = d.send([ev("e2", "go", "u", T + 20000, value="b", fail=True)])[0]
        assert (a["id"], a["status"], a["error"]) == ("e2", "error", "internal"), a
        assert snapshot(d) == before
        # the next event (earlier than the failed one's ts) sees the clock
        # where it was, and the timer fires again, once, before it
        ok(d.send([ev("e3", "go", "v", T + 15000)])[0], 2)
        rows = d.actions()[2:]
        assert [(r["campaign"], r["kind"], r["ts"], r["event_id"]) for r in rows] == [
            ("p", "probe.timer", T + 10000, None), ("c", "probe.chain", T + 10000, None),
            ("p", "probe.hit", T + 15000, "e3"), ("c", "probe.chain", T + 15000, "e3")], rows
        # e2's id was not remembered: sent again, fixed, it works, and its
        # state, counters and profile start from where e1 left them
        ok(d.send([ev("e2", "go", "u", T + 20000, value="b")])[0], 2)
        last = d.actions()[-2]
        assert last["event_id"] == "e2" and last["ts"] == T + 20000
        assert last["payload"]["prev"] == "a" and last["payload"]["n"] == 2
        assert last["payload"]["events"] == 3  # arm, e1, e2
        assert d.db_rows("SELECT count(*) FROM actions WHERE kind='probe.doomed'")[0][0] == 0
        assert d.db_rows("SELECT count(*) FROM state WHERE key='doomed'")[0][0] == 0
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
        assert d.send([ev("e2", "go", "u", T + 20000)])[0]["status"] == "duplicate"
    finally:
        assert d.stop() == 0


def test_failure_in_a_pipelined_batch():
    d = Daemon(ROLLBACK)
    try:
        ok(d.send([ev("arm", "probe.arm", "u", T)])[0], 0)
        a = d.send([ev("b1", "go", "u", T + 100, value="x"),
                    ev("b2", "go", "u", T + 30000, fail=True, value="y"),
                    ev("b3", "go", "v", T + 200),
                    ev("b2", "go", "u", T + 300, value="z"),
                    ev("b4", "go", "u", T + 12000),
                    ev("b5", "go", "w", T + 12000, fail=True),
                    ev("b6", "other", "w", T + 13000)])
        assert [x["id"] for x in a] == ["b1", "b2", "b3", "b2", "b4", "b5", "b6"]
        ok(a[0], 2)
        assert a[1]["status"] == "error" and a[1]["error"] == "internal", a[1]
        ok(a[2], 2)
        ok(a[3], 2)  # the failed id is free again
        ok(a[4], 2)  # the timer fired before it: not counted
        assert a[5]["status"] == "error" and a[5]["error"] == "internal", a[5]
        ok(a[6], 0)
        rows = d.actions()
        got = [(r["campaign"], r["kind"], r["user"], r["ts"], r["event_id"]) for r in rows]
        assert got == [
            ("p", "probe.hit", "u", T + 100, "b1"), ("c", "probe.chain", "u", T + 100, "b1"),
            ("p", "probe.hit", "v", T + 200, "b3"), ("c", "probe.chain", "v", T + 200, "b3"),
            ("p", "probe.hit", "u", T + 300, "b2"), ("c", "probe.chain", "u", T + 300, "b2"),
            ("p", "probe.timer", "u", T + 10000, None), ("c", "probe.chain", "u", T + 10000, None),
            ("p", "probe.hit", "u", T + 12000, "b4"), ("c", "probe.chain", "u", T + 12000, "b4"),
        ], got
        assert rows[4]["payload"]["prev"] == "x"
        assert d.db_rows("SELECT id FROM users ORDER BY id") == [("u",), ("v",), ("w",)]
        assert d.db_rows("SELECT events FROM users WHERE id='w'")[0][0] == 1
        assert d.db_rows("SELECT count(*) FROM events WHERE id='b5'")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_failure_on_an_internal_event_rolls_back_the_input():
    d = Daemon("""
    - id: a
      plugin: probe
      params: {emit_on: [go], remember: true}
    - id: b
      plugin: probe
      when:
        event: probe.hit
        all:
          - {field: props.n, op: gte, value: 2}
      params: {fail_on: [probe.hit]}
    """)
    try:
        a = d.send([ev("e1", "go", "u", T, value=1), ev("e2", "go", "u", T + 10, value=2),
                    ev("e3", "go", "v", T + 5)])
        ok(a[0], 1)
        assert (a[1]["id"], a[1]["status"], a[1]["error"]) == ("e2", "error", "internal"), a[1]
        ok(a[2], 1)
        rows = d.actions()
        assert [(r["user"], r["event_id"], r["ts"]) for r in rows] == [("u", "e1", T), ("v", "e3", T + 5)]
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
        assert d.db_rows("SELECT events FROM users WHERE id='u'")[0][0] == 1
        # the state a's hit wrote before b failed is gone too
        d.reload("""
        - id: a
          plugin: probe
          params: {emit_on: [go], remember: true}
        """)
        ok(d.send([ev("e4", "go", "u", T + 20)])[0], 1)
        last = d.actions()[-1]["payload"]
        assert (last["prev"], last["n"], last["total"]) == (1, 2, 3), last
    finally:
        assert d.stop() == 0


# ---- enabled, starts, ends ----

def test_disabled_campaign_does_nothing():
    camp = """
    - id: p
      plugin: probe
      enabled: {en}
      params: {{emit_on: [go], timer_after: 10s}}
    - id: q
      plugin: probe
      params: {{emit_on: [go]}}
    """
    d = Daemon(camp.format(en="false"))
    try:
        ok(d.send([ev("e1", "go", "u", T), ev("e2", "probe.arm", "u", T)])[0], 1)
        assert kinds(d.actions()) == [("q", "probe.hit", "u")]
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
        # armed while enabled, due while disabled: skipped for good
        d.reload(camp.format(en="true"))
        ok(d.send([ev("e3", "probe.arm", "u", T + 1)])[0], 0)
        d.reload(camp.format(en="false"))
        ok(d.send([ev("e4", "go", "u", T + 20000)])[0], 1)
        d.reload(camp.format(en="true"))
        ok(d.send([ev("e5", "go", "u", T + 40000)])[0], 2)
        assert [r["kind"] for r in d.actions("p")] == ["probe.hit"]
    finally:
        assert d.stop() == 0


def test_window():
    S, E = T + 1000, T + 2000
    d = Daemon(f"""
    - id: p
      plugin: probe
      starts: {rfc3339(S)}
      ends: {rfc3339(E)}
      params: {{emit_on: [go], timer_after: 10s}}
    - id: c
      plugin: probe
      starts: {rfc3339(S)}
      ends: {rfc3339(E)}
      when: {{event: probe.hit}}
      params: {{chain: true}}
    """)
    try:
        a = d.send([ev("a1", "probe.arm", "u", S, due=E, name="in"),
                    ev("a2", "probe.arm", "u", S, due=E + 1, name="out"),
                    ev("a3", "probe.arm", "u", S - 1, due=S, name="never")])
        for x in a:
            ok(x, 0)
        assert d.db_rows("SELECT name FROM timers ORDER BY name") == [("in",), ("out",)]
        a = d.send([ev("g1", "go", "u", S - 1), ev("g2", "go", "u", S), ev("g3", "go", "u", E),
                    ev("g4", "go", "u", E + 1), ev("g5", "go", "u", E + 5000)])
        assert [x["actions"] for x in a] == [0, 2, 2, 0, 0], a
        rows = d.actions()
        got = [(r["campaign"], r["kind"], r["ts"], r["event_id"]) for r in rows]
        assert got == [("p", "probe.hit", S, "g2"), ("c", "probe.chain", S, "g2"),
                       ("p", "probe.timer", E, None), ("p", "probe.hit", E, "g3"),
                       ("c", "probe.chain", E, "g3")], got
        # a late event inside the window matches by its own ts, stamped with
        # now; its action's internal event has that ts, outside c's window
        ok(d.send([ev("g6", "go", "u", S + 1)])[0], 1)
        assert d.actions()[-1]["ts"] == E + 5000
        assert d.db_rows("SELECT count(*) FROM timers")[0][0] == 0
    finally:
        assert d.stop() == 0


# ---- restart ----

def test_restart_keeps_timers_state_and_clock():
    d = Daemon("""
    - id: p
      plugin: probe
      params: {emit_on: [go], limit: 2, remember: true, timer_after: 10s}
    """)
    try:
        ok(d.send([ev("e1", "go", "u", T + 5000, value="kept"), ev("e2", "probe.arm", "u", T)])[0], 1)
        assert d.db_rows("SELECT due FROM timers")[0][0] == T + 15000
        assert d.stop() == 0
        d.start()
        ok(d.send([ev("e3", "go", "u", T + 1)])[0], 1)  # clock stays at T + 5000
        assert d.send([ev("e1", "go", "u", T + 1)])[0]["status"] == "duplicate"
        d.kill9()
        d.start()
        ok(d.send([ev("e4", "go", "u", T + 16000)])[0], 1)
        rows = d.actions()
        got = [(r["kind"], r["ts"], r["payload"].get("prev", "-"), r["payload"].get("n")) for r in rows]
        assert got == [("probe.hit", T + 5000, None, 1), ("probe.hit", T + 5000, "kept", 2),
                       ("probe.timer", T + 15000, "-", None), ("probe.limited", T + 16000, "kept", 2)], got
    finally:
        assert d.stop() == 0
