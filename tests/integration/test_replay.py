"""The event log, mktd replay and mktd simulate --from-db (spec 13 and 18):
a real daemon with daemon.event_log on, over real sockets, then the
command line on its database, which is only ever read."""
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time

from harness import VALGRIND, Daemon, command, lines_of, mktd, ok, reload_wait, slow

import subprocess

DAY = 86400000
D1 = 1767225600000  # 2026-01-01T00:00:00Z

LOG = "event_log: {keep: 30d}"

SHOP = """
- id: first
  plugin: coupon
  when:
    event: order.paid
    all: [{field: props.amount, op: gte, value: 1000}]
  params: {value: 500, valid_for: 7d}
- id: refer
  plugin: referral
  params: {commission: [1000], reward: {amount: 300, referrer_share: 50}}
"""


def ev(id, type, user, ts=None, **props):
    e = {"id": id, "type": type, "user": user}
    if ts is not None:
        e["ts"] = ts
    if props:
        e["props"] = props
    return e


def send_ok(d, events):
    answers = d.send(events)
    assert len(answers) == len(events), answers
    for a in answers:
        ok(a)
    return answers


def norm(a):
    """An action as two runs can agree on it: no seq, every code "*"."""
    p = dict(a["payload"])
    if isinstance(p.get("code"), str):
        p["code"] = "*"
    return (a["ts"], a["campaign"], a["kind"], a["user"], a["event_id"], json.dumps(p, sort_keys=True))


def ndjson(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def replay(*args):
    r = mktd("replay", *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


def amounts(n):
    """Order amounts of user i: deterministic, some below each threshold."""
    return [(n * 700) % 4500 + 200, (n * 1300) % 5000 + 100]


def shop_events(users=24):
    """Signups (every odd user referred by the one before), two orders each."""
    evs = []
    for i in range(users):
        u = f"u{i:02d}"
        s = ev(f"s{i}", "user.signup", u)
        if i % 2:
            s["props"] = {"referrer": f"u{i - 1:02d}"}
        evs.append(s)
    for k in range(2):
        for i in range(users):
            evs.append(ev(f"o{k}-{i}", "order.paid", f"u{i:02d}", order_id=f"x{k}-{i}",
                          amount=amounts(i)[k]))
    return evs


def used_events(d, users=24):
    """coupon.used for every even user's coupon, with the code the daemon issued."""
    evs = []
    for a in d.actions("first"):
        i = int(a["user"][1:])
        if a["kind"] == "coupon.issued" and i % 2 == 0:
            evs.append(ev(f"c{i}", "coupon.used", a["user"], code=a["payload"]["code"]))
    return evs


def test_event_log_keeps_accepted_events_only():
    d = Daemon(SHOP, clock="wall", daemon=LOG)
    t0 = time.time() * 1000
    raw = [
        b'{"type":"user.signup", "id":"a1","user":"u1"}',
        b'{"id":"a2","type":"order.paid","user":"u1","ts":1767225600000,'
        b'"props":{"order_id":"x1","amount":1500}}\r',
        b'{"id":"a2","type":"order.paid","user":"u1","props":{"order_id":"x1","amount":1500}}',
        b'{"id":"bad","type":"order.paid","user":"u1"}',
        b'{"id":"j","type":',
        b'{"id":"dry","type":"order.paid","user":"u2","dry":true,"props":{"order_id":"x2","amount":9}}',
        b'{"id":"a3","type":"app.open","user":"u2","explain":true}',
    ]
    answers = d.send_raw(b"\n".join(raw) + b"\n")
    statuses = [a["status"] for a in answers]
    assert statuses == ["ok", "ok", "duplicate", "error", "error", "ok", "ok"], answers
    t1 = time.time() * 1000
    d.stop()
    rows = d.db_rows("SELECT seq, received_at, id, type, user, ts, body FROM event_log ORDER BY seq")
    assert [r[2] for r in rows] == ["a1", "a2", "a3"], rows
    assert [(r[3], r[4]) for r in rows] == [("user.signup", "u1"), ("order.paid", "u1"),
                                            ("app.open", "u2")]
    # the line as received (the \r of CRLF dropped), received on the wall clock
    assert rows[0][6] == raw[0].decode()
    assert rows[1][6] == raw[1][:-1].decode()
    assert rows[2][6] == raw[6].decode()
    for r in rows:
        assert t0 - 1 <= r[1] <= t1 + 1, (r, t0, t1)
    # ts: the event's own, else (clock: wall) its time of receipt
    assert rows[1][5] == 1767225600000
    assert rows[0][5] == rows[0][1] and rows[2][5] == rows[2][1]


def test_event_log_off_by_default_and_config_errors():
    d = Daemon(SHOP, clock="wall")
    send_ok(d, [ev("a1", "app.open", "u1")])
    d.stop()
    assert d.db_rows("SELECT count(*) FROM event_log") == [(0,)]
    for bad, msg in [("event_log: {keep: soon}", "event_log.keep: must be a duration"),
                     ("event_log: {}", "event_log: keep is required"),
                     ("event_log: {keep: 30d, size: 1}", "size"),
                     ("event_log: 30d", "event_log: must be a map"),
                     ("event_log: {keep: 500ms}", "event_log.keep: must be at least 1s")]:
        c = Daemon(SHOP, daemon=bad, start=False)
        r = mktd("check", "-c", c.config)
        assert r.returncode == 1, (bad, r.stdout, r.stderr)
        # FILE:LINE:COL: message, at the daemon.event_log lines
        line = [x for x in r.stderr.splitlines() if msg in x]
        assert line and line[0].startswith(c.config + ":"), (bad, r.stderr)
        assert int(line[0].split(":")[1]) == 6, (bad, r.stderr)


def test_replay_reproduces_the_daemon_under_each_live_config():
    d = Daemon(SHOP, clock="wall", daemon=LOG)
    send_ok(d, shop_events())
    send_ok(d, used_events(d))
    # a reload in the middle: later events run under another coupon value
    assert reload_wait(d, SHOP.replace("value: 500", "value: 800"))
    ahead = int(time.time() * 1000) + 3600000
    send_ok(d, [ev("late1", "order.paid", "v1", order_id="y1", amount=5000),
                ev("late2", "order.paid", "u01", order_id="y2", amount=5000),
                # an hour ahead (within max_future): now stays the receipt time
                ev("late3", "order.paid", "v2", ahead, order_id="y3", amount=5000)])
    live = d.actions()
    assert live[-1]["user"] == "v2" and live[-1]["ts"] < ahead - 1800000
    assert any(a["payload"].get("value") == 800 for a in live)
    # while the daemon runs (its -wal is there) and once it is stopped
    running = ndjson(replay("--db", d.db).stdout)
    d.stop()
    out = ndjson(replay("--db", d.db).stdout)
    assert [norm(a) for a in out] == [norm(a) for a in live]
    assert [norm(a) for a in running] == [norm(a) for a in live]
    # the redemptions were played with the codes the replay issued
    codes = {a["payload"]["code"] for a in out if a["kind"] == "coupon.issued"}
    red = [a for a in out if a["kind"] == "coupon.redeemed"]
    assert red and all(a["payload"]["code"] in codes for a in red)
    # -c names the config every event goes through: the first one's value
    first = os.path.join(d.dir, "first.yaml")
    with open(first, "w") as f:
        f.write(d.config_text(SHOP))
    out = ndjson(replay("-c", first, "--db", d.db).stdout)
    assert {a["payload"]["value"] for a in out if a["kind"] == "coupon.issued"} == {500}
    assert len(out) == len(live)
    # --to: the events received up to then (the coupon.used came later)
    cut = max(r[0] for r in d.db_rows("SELECT received_at FROM event_log WHERE type = 'order.paid' "
                                      "AND id LIKE 'o%'"))
    out = ndjson(replay("--db", d.db, "--to", str(cut)).stdout)
    assert out and not [a for a in out if a["kind"] == "coupon.redeemed"]
    assert [norm(a) for a in out] == [norm(a) for a in live if a["ts"] <= cut]
    # --from: from then on, against an empty database
    late = d.db_rows("SELECT received_at FROM event_log WHERE id = 'late1'")[0][0]
    out = ndjson(replay("--db", d.db, "--from", str(late)).stdout)
    assert [(a["user"], a["kind"]) for a in out] == [("v1", "coupon.issued"),
                                                    ("u01", "coupon.issued"),
                                                    ("v2", "coupon.issued")]


def expected_diff(d, thr_new):
    """Per kind of the coupon campaign: (live n, live money, new n, new money),
    and the users whose actions differ, computed from the events sent."""
    orders = {}
    for k in range(2):
        for i in range(24):
            orders.setdefault(f"u{i:02d}", []).append((f"o{k}-{i}", amounts(i)[k]))
    used = {f"u{i:02d}" for i in range(0, 24, 2)}

    def issuer(u, thr):
        return next((e for e, amt in orders[u] if amt >= thr), None)

    live_iss = {u: issuer(u, 1000) for u in orders if issuer(u, 1000)}
    new_iss = {u: issuer(u, thr_new) for u in orders if issuer(u, thr_new)}
    red_live = [u for u in live_iss if u in used]
    red_new = [u for u in red_live if new_iss.get(u) == live_iss[u]]
    rej_new = [u for u in red_live if new_iss.get(u) != live_iss[u]]
    rows = {
        "coupon.issued": (len(live_iss), 500 * len(live_iss), len(new_iss), 500 * len(new_iss)),
        "coupon.redeemed": (len(red_live), 500 * len(red_live), len(red_new), 500 * len(red_new)),
    }
    if rej_new:
        rows["coupon.rejected"] = (0, None, len(rej_new), None)
    differ = sorted(u for u in orders if live_iss.get(u) != new_iss.get(u))
    return rows, differ


def test_diff_reports_the_difference_of_one_parameter():
    d = Daemon(SHOP, clock="wall", daemon=LOG)
    send_ok(d, shop_events())
    send_ok(d, used_events(d))
    d.stop()
    new = os.path.join(d.dir, "new.yaml")
    with open(new, "w") as f:
        f.write(d.config_text(SHOP.replace("value: 1000", "value: 3000")))
    r = replay("-c", new, "--db", d.db, "--diff", "--format", "json")
    got = json.loads(r.stdout)
    rows, differ = expected_diff(d, 3000)
    assert 0 < len(differ) <= 20, differ
    assert got["events"] == 24 * 3 + len(used_events(d))
    assert got["differs"] is True
    by = {(k["campaign"], k["kind"]): k for k in got["kinds"]}
    for kind, (ln, lm, nn, nm) in rows.items():
        k = by[("first", kind)]
        assert (k["live"]["n"], k["live"]["money"] if lm is not None else None) == (ln, lm), k
        assert (k["new"]["n"], k["new"]["money"] if nm is not None else None) == (nn, nm), k
        assert k["differs"] == ((ln, lm) != (nn, nm))
    rej = [a for a in d.actions() if a["kind"] == "coupon.rejected"]
    assert not rej
    # referral is the same under both, money included
    comm = [a["payload"]["amount"] for a in d.actions("refer") if a["kind"] == "referral.commission"]
    assert len(comm) == 24  # 12 referred users, two orders each
    assert by[("refer", "referral.commission")]["live"] == {"n": 24, "money": sum(comm)}
    assert by[("refer", "referral.commission")]["new"] == by[("refer", "referral.commission")]["live"]
    assert not by[("refer", "referral.reward")]["differs"]
    assert {k for k, v in by.items() if v["differs"]} == {("first", k) for k in rows}
    assert got["users_differ"] == len(differ)
    assert [u["user"] for u in got["users"]] == differ
    # each shown user's actions are those of the daemon under live
    live = [norm(a) for a in d.actions()]
    for u in got["users"]:
        mine = [x for x in live if x[3] == u["user"]]
        shown = [(a["ts"], a["campaign"], a["kind"], u["user"], a["event_id"],
                  json.dumps(a["payload"], sort_keys=True)) for a in u["live"]]
        assert sorted(shown) == sorted(mine)
    # the text form says the same
    t = replay("-c", new, "--db", d.db, "--diff").stdout
    assert f"users whose actions differ: {len(differ)}" in t
    line = [x for x in t.splitlines() if x.split()[:2] == ["first", "coupon.issued"]][0]
    ln, lm, nn, nm = rows["coupon.issued"]
    assert line.split() == ["first", "coupon.issued", str(ln), str(nn), str(lm), str(nm), "*"]


def test_diff_of_the_live_config_against_itself():
    d = Daemon(SHOP, clock="wall", daemon=LOG)
    send_ok(d, shop_events())
    send_ok(d, used_events(d))
    d.stop()
    got = json.loads(replay("-c", d.config, "--db", d.db, "--diff", "--format", "json").stdout)
    assert got["differs"] is False and got["users_differ"] == 0 and got["users"] == []
    assert all(k["live"] == k["new"] for k in got["kinds"])
    assert {k["kind"] for k in got["kinds"]} >= {"coupon.issued", "coupon.redeemed",
                                                 "referral.commission"}
    t = replay("-c", d.config, "--db", d.db, "--diff").stdout
    assert "no difference" in t and "*" not in t


FROM_DB = """
- id: winback
  plugin: reactivation
  params: {inactive_for: 1d, activity: [app.open]}
- id: first
  plugin: coupon
  when: {event: order.paid, all: [{field: user.orders, op: eq, value: 1}]}
  params: {value: 500, valid_for: 7d}
- id: second
  plugin: coupon
  when: {event: order.paid, all: [{field: user.orders, op: eq, value: 2}]}
  params: {value: 900, valid_for: 7d}
"""
CAPS = """
caps:
  - {id: one, kinds: [coupon.issued], max: 1, per: 30d}
"""


def from_db_live():
    """A stopped daemon (clock: event) whose users u1 and u2 are dormant in
    its database: their win-back timers are due a day after events of ten
    minutes ago, not fired. Returns it and that time."""
    base = int(time.time() * 1000) - 600000
    d = Daemon(FROM_DB, daemon=LOG, top=CAPS)
    send_ok(d, [
        ev("old5", "order.paid", "u5", base - 60 * DAY, order_id="z5", amount=100),
        ev("a1", "app.open", "u1", base),
        ev("a2", "app.open", "u2", base + 1000),
        ev("o3", "order.paid", "u3", base + 2000, order_id="z3", amount=100),
        ev("q", "ping", "u9", base + 5000),
    ])
    d.stop()
    timers = d.db_rows("SELECT user, due FROM timers ORDER BY user")
    assert timers == [("u1", base + DAY), ("u2", base + 1000 + DAY)], timers
    return d, base


def test_simulate_from_db_starts_from_the_live_state():
    d, base = from_db_live()
    live_db = open(d.db, "rb").read()
    # the clock starts at the largest of the stored clock, the latest
    # received_at and the latest action ts
    clock = max(d.db_rows("SELECT value FROM meta WHERE key = 'clock_now'")[0][0],
                d.db_rows("SELECT max(received_at) FROM event_log")[0][0],
                d.db_rows("SELECT max(ts) FROM actions")[0][0])
    assert clock > base + 5000
    sim = os.path.join(d.dir, "sim.ndjson")
    with open(sim, "wb") as f:
        f.write(lines_of([
            ev("o3", "order.paid", "u3", order_id="w3", amount=100),  # a live id, no ts
            ev("n5", "order.paid", "u5", base + 2 * DAY, order_id="w5", amount=100),
        ]))
    r = mktd("simulate", "-c", d.config, "--from-db", d.db, sim)
    assert r.returncode == 0, r.stderr
    out = ndjson(r.stdout)
    got = [(a["ts"], a["campaign"], a["kind"], a["user"], a["event_id"]) for a in out]
    assert got == [
        # u3's second order (its profile counts the live one) at the clock;
        # the cap counts u3's live coupon, within 30 days: nothing.
        # u5's second order, two days on: first the timers of the users
        # already dormant in the live database fire, at their due times
        (base + DAY, "winback", "reactivation.offer", "u1", None),
        (base + 1000 + DAY, "winback", "reactivation.offer", "u2", None),
        # u5's live coupon is 60 days old: outside the cap's window
        (base + 2 * DAY, "second", "coupon.issued", "u5", "n5"),
    ], got
    assert out[0]["payload"]["inactive_ms"] == DAY
    # the cap held u3 back: without caps, u3 gets the second coupon, at the
    # clock (and a live event id is no duplicate)
    nocap = os.path.join(d.dir, "nocap.yaml")
    d.top = ""
    with open(nocap, "w") as f:
        f.write(d.config_text(FROM_DB))
    out = ndjson(mktd("simulate", "-c", nocap, "--from-db", d.db, sim).stdout)
    assert (clock, "second", "coupon.issued", "u3", "o3") in [
        (a["ts"], a["campaign"], a["kind"], a["user"], a["event_id"]) for a in out]
    # from an empty database: none of it
    out = ndjson(mktd("simulate", "-c", d.config, sim).stdout)
    assert [(a["campaign"], a["user"]) for a in out] == [("first", "u3"), ("first", "u5")]
    assert open(d.db, "rb").read() == live_db


def snapshot(dirpath):
    """Every file of a folder: name -> sha256."""
    return {n: hashlib.sha256(open(os.path.join(dirpath, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(dirpath))}


def as_nobody(args, **kw):
    """Runs mktd under uid/gid 65534 when root (root ignores file modes: the
    read-only files must stop a real writer); as it is otherwise. Under
    valgrind (whose logs go to root's temp dir) as it is: the bytes compared
    still show that nothing was written."""
    argv = command(*args)
    if os.geteuid() == 0 and not VALGRIND and shutil.which("setpriv"):
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=slow(60), **kw)


def test_both_commands_only_read_a_read_only_database():
    d, t = from_db_live()
    base = tempfile.mkdtemp(prefix="mktd-ro-")
    try:
        os.chmod(base, 0o755)
        ro = os.path.join(base, "ro")
        os.mkdir(ro)
        db = os.path.join(ro, "live.db")
        shutil.copyfile(d.db, db)
        assert not os.path.exists(d.db + "-wal")  # the daemon stopped cleanly
        cfg = os.path.join(base, "mktd.yaml")
        shutil.copyfile(d.config, cfg)
        sim = os.path.join(base, "sim.ndjson")
        with open(sim, "wb") as f:
            f.write(lines_of([ev("n1", "ping", "u7", t + 3 * DAY)]))
        for p in (cfg, sim):
            os.chmod(p, 0o644)
        os.chmod(db, 0o444)
        os.chmod(ro, 0o555)
        before = snapshot(ro)
        # a writer is refused there (as the same uid the commands run under)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            w = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "/bin/sh", "-c", f"echo x >> {db} || echo x > {ro}/new"],
                               capture_output=True, text=True)
            assert w.returncode != 0, w
        r = as_nobody(["replay", "-c", cfg, "--db", db])
        assert r.returncode == 0, r.stderr
        out = ndjson(r.stdout)
        assert [a["event_id"] for a in out if a["kind"] == "coupon.issued"] == ["old5", "o3"]
        r = as_nobody(["replay", "-c", cfg, "--db", db, "--diff", "--format", "json"])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["differs"] is False
        r = as_nobody(["simulate", "-c", cfg, "--from-db", db, sim])
        assert r.returncode == 0, r.stderr
        assert [(a["kind"], a["user"]) for a in ndjson(r.stdout)] == [
            ("reactivation.offer", "u1"), ("reactivation.offer", "u2")]
        assert snapshot(ro) == before  # no byte changed, no -wal or -shm made
    finally:
        os.chmod(os.path.join(base, "ro"), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_replay_refuses_what_it_cannot_do():
    d = Daemon(SHOP, clock="wall", daemon=LOG)
    send_ok(d, [ev("a1", "app.open", "u1")])
    d.stop()
    r = mktd("replay", "--db", d.db, "--diff")
    assert r.returncode == 2 and "-c" in r.stderr
    r = mktd("replay", "--db", os.path.join(d.dir, "missing.db"))
    assert r.returncode == 2 and "missing.db" in r.stderr
    assert not os.path.exists(os.path.join(d.dir, "missing.db"))
    r = mktd("replay", "--db", d.db, "--from", "yesterday")
    assert r.returncode == 2 and "yesterday" in r.stderr
    r = mktd("replay", "--db", d.db, "--diff", "-c", d.config, "--format", "xml")
    assert r.returncode == 2 and "xml" in r.stderr


def test_event_log_is_pruned_past_keep():
    d = Daemon(SHOP, clock="wall", daemon="event_log: {keep: 1s}", http=True)
    send_ok(d, [ev(f"p{i}", "app.open", f"u{i}") for i in range(50)])
    deadline = time.time() + slow(20)
    while d.db_rows("SELECT count(*) FROM event_log")[0][0] and time.time() < deadline:
        time.sleep(0.1)
    assert d.db_rows("SELECT count(*) FROM event_log") == [(0,)]
    assert "logged events older than 1 s pruned" in d.log()
    assert d.metrics()["mktd_event_log_pruned_total"] == 50
    # the events themselves are still remembered
    assert [a["status"] for a in d.send([ev("p0", "app.open", "u0")])] == ["duplicate"]
    d.stop()


WINBACK = """
- id: winback
  plugin: reactivation
  params: {inactive_for: 1s, activity: [app.open]}
- id: gift
  plugin: coupon
  when: {event: reactivation.offer}
  params: {value: 300, valid_for: 7d}
"""


def test_replay_matches_the_code_of_a_timers_coupon():
    """A coupon chained to a timer's offer has no event id: its code is
    matched by campaign, user and due time."""
    d = Daemon(WINBACK, clock="wall", daemon=LOG)
    send_ok(d, [ev("a1", "app.open", "u1"), ev("a2", "app.open", "u2")])
    deadline = time.time() + slow(20)
    while len(d.actions("gift")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    gifts = d.actions("gift")
    assert [a["event_id"] for a in gifts] == [None, None], gifts
    send_ok(d, [ev("c1", "coupon.used", "u1", code=gifts[0]["payload"]["code"])])
    d.stop()
    live = d.actions()
    assert [a["kind"] for a in live if a["user"] == "u1"] == [
        "reactivation.offer", "coupon.issued", "coupon.redeemed"]
    # the offers fire in the replay before the coupon.used received after them
    out = ndjson(replay("--db", d.db).stdout)
    assert [norm(a) for a in out] == [norm(a) for a in live]
