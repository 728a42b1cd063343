"""Personal data (spec 14 "Privacy", 18 "Security and privacy"): `mktd
forget` over the Unix socket, POST /v1/forget with an admin token, and on
the database itself when no daemon runs; `mktd export`; `mktd oplog`. After
a forget no text column of any table holds the user's id (event ids aside),
the database is intact, and the user comes back as a new one."""
import json
import os
import re
import sqlite3
import tempfile

import harness
from harness import Daemon, lines_of, mktd, ok
from secure import TOKENS, SecureDaemon

S = 1000
D = 86400 * S
T0 = 1_790_000_000_000

CAMPAIGNS = """
- id: first-order
  plugin: coupon
  when:
    event: order.paid
    all:
      - {field: user.orders, op: eq, value: 1}
  params: {value: 500, valid_for: 7d}
- id: ref
  plugin: referral
  params: {commission: [1000, 500], reward: {amount: 1000, referrer_share: 50}}
- id: gb
  plugin: groupbuy
  params: {size: 3, window: 1d, reward: 100}
- id: pts
  plugin: points
  when: {event: order.paid}
  params: {rate: 100, expire_after: 30d}
- id: winback
  plugin: reactivation
  params: {inactive_for: 7d}
"""

USER = "alice-7Q"  # no event id, campaign, key or config text contains it
PSEUDO = re.compile(r"forgotten:[0-9a-f]{32}")


def ev(id, type, user, ts, **props):
    e = {"id": id, "type": type, "user": user, "ts": ts}
    if props:
        e["props"] = props
    return e


def history(user, n=""):
    """boss refers the user, the user refers carol; orders by both; a
    group the user opened that dan joined. Event ids name nobody."""
    return [
        ev(f"e1{n}", "user.signup", f"boss{n}", T0),
        ev(f"e2{n}", "user.signup", user, T0 + 1, referrer=f"boss{n}"),
        ev(f"e3{n}", "user.signup", f"carol{n}", T0 + 2, referrer=user),
        ev(f"e4{n}", "order.paid", user, T0 + 3, order_id=f"o1{n}", amount=20000),
        ev(f"e5{n}", "order.paid", f"carol{n}", T0 + 4, order_id=f"o2{n}", amount=30000),
        ev(f"e6{n}", "group.open", user, T0 + 5, group_id=f"g1{n}", product="tea"),
        ev(f"e7{n}", "group.join", f"dan{n}", T0 + 6, group_id=f"g1{n}"),
    ]


def send_all(d, events, unix=False):
    answers = d.send(events, unix=unix)
    assert len(answers) == len(events), answers
    for a in answers:
        ok(a)
    return answers


def holders(db, needle):
    """(table, column, row) of every text value in every table holding
    needle; the events table holds event ids, not user ids."""
    c = sqlite3.connect(db)
    found = []
    try:
        tables = [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            if t == "events":
                continue
            cols = [r[1] for r in c.execute(f'PRAGMA table_info("{t}")')]
            for row in c.execute(f'SELECT * FROM "{t}"'):
                for col, v in zip(cols, row):
                    if isinstance(v, bytes):
                        v = v.decode("utf-8", "replace")
                    if isinstance(v, str) and needle in v:
                        found.append((t, col, row))
    finally:
        c.close()
    return found


def integrity(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("PRAGMA integrity_check").fetchall()
    finally:
        c.close()


def oplog(d):
    r = mktd("oplog", "-c", d.config, "--format", "json")
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def check_forgotten(d, user, pseudonym):
    assert holders(d.db, user) == [], holders(d.db, user)
    assert integrity(d.db) == [("ok",)]
    # the user's own rows went; others' rows name the pseudonym
    acts = d.actions()
    assert any(a["user"] == pseudonym and a["kind"] == "coupon.issued" for a in acts), acts
    bound = [a for a in acts if a["kind"] == "referral.bound"]
    assert {a["user"] for a in bound} == {pseudonym, bound[-1]["user"]}
    assert any(a["payload"]["referrer"] == pseudonym for a in bound), bound
    comm = [a for a in acts if a["kind"] == "referral.commission"]
    assert any(a["payload"]["buyer"] == pseudonym for a in comm), comm
    assert any(a["user"] == pseudonym for a in comm), comm
    rewards = [a for a in acts if a["kind"] == "referral.reward"]
    assert any(a["user"] == pseudonym for a in rewards), rewards
    # event ids stay remembered
    assert d.db_rows("SELECT count(*) FROM events WHERE id = 'e4'")[0][0] == 1


def check_comes_back_new(d, user, pseudonym, n=""):
    """The user sends again: a new user (first-order coupon again, a new
    binding); the pseudonym keeps the old one's place in others' records."""
    before = len(d.actions())
    send_all(d, [ev(f"b1{n}", "user.signup", user, T0 + 10, referrer=f"erin{n}"),
                 ev(f"b2{n}", "order.paid", user, T0 + 11, order_id=f"o9{n}", amount=20000)])
    new = d.actions()[before:]
    kinds = [(a["kind"], a["user"]) for a in new]
    assert ("referral.bound", user) in kinds, kinds  # not already_bound, not not_new
    assert ("coupon.issued", user) in kinds, kinds  # user.orders is 1 again
    # carol's upline is the pseudonym now: her next order pays it commission
    before = len(d.actions())
    send_all(d, [ev(f"b3{n}", "order.paid", f"carol{n}", T0 + 12, order_id=f"o8{n}",
                    amount=10000)])
    comm = [a for a in d.actions()[before:] if a["kind"] == "referral.commission"]
    assert [(a["user"], a["payload"]["level"]) for a in comm] == [(pseudonym, 1)], comm
    # the group the user opened completes: the pseudonym holds its place
    before = len(d.actions())
    send_all(d, [ev(f"b4{n}", "group.join", f"fay{n}", T0 + 13, group_id=f"g1{n}")])
    succ = [a["user"] for a in d.actions()[before:] if a["kind"] == "groupbuy.success"]
    assert succ == [pseudonym, f"dan{n}", f"fay{n}"], succ


def test_forget_over_the_unix_socket_export_and_oplog():
    d = Daemon(CAMPAIGNS)
    try:
        send_all(d, history(USER))
        # export: everything kept about the user
        r = mktd("export", "-c", d.config, USER)
        assert r.returncode == 0, r.stderr
        x = json.loads(r.stdout)
        assert x["user"] == USER
        assert x["profile"]["events"] == 3 and x["profile"]["orders"] == 1, x["profile"]
        assert x["counts"] == {} or isinstance(x["counts"], dict)
        keys = {(s["campaign"], s["key"]) for s in x["state"]}
        assert ("ref", "ref") in keys and ("ref", f"kid:carol") in keys, keys
        counters = {(c["campaign"], c["key"]): c["value"] for c in x["counters"]}
        assert counters[("first-order", "issued")] == 1, counters
        assert counters[("pts", "balance")] == 200, counters
        assert [t["campaign"] for t in x["timers"]].count("winback") == 1, x["timers"]
        kinds = sorted(a["kind"] for a in x["actions"])
        # its own actions, and carol's binding and commissions naming it
        assert "coupon.issued" in kinds and "points.earned" in kinds, kinds
        assert kinds.count("referral.bound") == 2, kinds
        assert any(a["user"] == "carol" and a["payload"]["referrer"] == USER
                   for a in x["actions"]), x["actions"]
        assert x["events"] == []  # no event log configured

        # forget through the running daemon's Unix socket
        r = mktd("forget", "-c", d.config, USER)
        assert r.returncode == 0, r.stderr + d.log()
        ans = json.loads(r.stdout)
        assert ans["status"] == "ok" and ans["forget"] == USER, ans
        pseudonym = ans["pseudonym"]
        assert PSEUDO.fullmatch(pseudonym), pseudonym
        check_forgotten(d, USER, pseudonym)
        # the same user forgotten twice has the same pseudonym (a keyed hash)
        a = d.send([{"forget": USER}], unix=True)
        assert a == [{"status": "ok", "forget": USER, "pseudonym": pseudonym}], a
        # the others go on: nothing stale comes back from the daemon's memory
        send_all(d, [ev("q1", "order.paid", "carol", T0 + 8, order_id="oq1", amount=100),
                     ev("q2", "order.refunded", "carol", T0 + 8, order_id="o2"),
                     ev("q3", "group.join", "boss", T0 + 8, group_id="g-other"),
                     ev("q4", "order.paid", "boss", T0 + 8, order_id="oq2", amount=100)])
        assert holders(d.db, USER) == [], holders(d.db, USER)
        # nothing about the user is left to export
        r = mktd("export", "-c", d.config, USER)
        x = json.loads(r.stdout)
        assert x["profile"] is None and x["actions"] == [] and x["state"] == [], x

        # a control line in a pipeline is answered in its place
        a = d.send([ev("p1", "order.paid", "zed", T0 + 9, order_id="oz", amount=100),
                    {"forget": "zed"}, {"forget": 7},
                    ev("p2", "order.paid", "zed", T0 + 9, order_id="oz2", amount=100)],
                   unix=True)
        assert [x.get("status") for x in a] == ["ok", "ok", "error", "ok"], a
        assert a[2]["error"] == "invalid", a
        # an event carrying a "forget" key is an event (unknown keys are ignored)
        a = d.send([dict(ev("p3", "visit", "zed", T0 + 9), forget="boss")], unix=True)
        assert a == [{"id": "p3", "status": "ok", "actions": 0}], a
        # over TCP without a token: not an admin
        a = d.send([{"forget": "zed"}])
        assert a[0]["status"] == "error" and a[0]["error"] == "forbidden", a

        check_comes_back_new(d, USER, pseudonym)

        # a reload that fails and one that works, in oplog
        with open(d.config) as f:
            good = f.read()
        with open(d.config, "w") as f:
            f.write(good.replace("campaigns:", "campaigns:\n  - {id: broken, plugin: nope}", 1))
        d.reload(wait=0.5)
        with open(d.config, "w") as f:
            f.write(good)
        d.reload(wait=0.5)
        rows = oplog(d)
        uid = f"uid:{os.getuid()}"
        cfg = [r for r in rows if r["op"] == "config"]
        assert [r["detail"]["result"] for r in cfg] == ["ok", "error", "ok"], cfg
        assert cfg[0]["who"] == "daemon" and cfg[1]["who"] == "SIGHUP", cfg
        assert cfg[0]["detail"]["hash"] == cfg[2]["detail"]["hash"] != cfg[1]["detail"]["hash"]
        assert re.fullmatch(r"[0-9a-f]{16}", cfg[0]["detail"]["hash"]), cfg
        live = d.db_rows("SELECT hash FROM configs ORDER BY seq DESC LIMIT 1")[0][0]
        assert cfg[2]["detail"]["hash"] == live
        assert "nope" in cfg[1]["detail"]["message"], cfg[1]
        forgets = [r for r in rows if r["op"] == "forget"]
        assert [(r["who"], r["detail"]["pseudonym"]) for r in forgets][:2] == \
            [(uid, pseudonym), (uid, pseudonym)], forgets
        exports = [r for r in rows if r["op"] == "export"]
        assert [(r["who"], r["detail"]["user"]) for r in exports] == \
            [(uid, pseudonym), (uid, pseudonym)], exports
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
        text = mktd("oplog", "--db", d.db)
        assert text.returncode == 0 and "forget" in text.stdout and pseudonym in text.stdout
        assert USER not in text.stdout
    finally:
        assert d.stop() == 0
    assert integrity(d.db) == [("ok",)]


def test_forget_with_the_daemon_stopped():
    d = Daemon(CAMPAIGNS)
    send_all(d, history(USER))
    assert d.stop() == 0
    # no daemon: the command opens the database itself
    r = mktd("export", "-c", d.config, USER)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["profile"]["events"] == 3
    r = mktd("forget", "--db", d.db, USER)
    assert r.returncode == 2 and "-c FILE" in r.stderr, r.stderr  # the plugins are needed
    r = mktd("export", "--db", d.db + ".nope", USER)
    assert r.returncode == 2 and "no such database" in r.stderr, r.stderr
    assert not os.path.exists(d.db + ".nope")
    r = mktd("forget", "-c", d.config, USER)
    assert r.returncode == 0, r.stderr
    pseudonym = json.loads(r.stdout)["pseudonym"]
    assert PSEUDO.fullmatch(pseudonym)
    check_forgotten(d, USER, pseudonym)
    who = f"cli:uid:{os.getuid()}"
    rows = oplog(d)
    assert [(r["op"], r["who"]) for r in rows if r["op"] != "config"] == \
        [("export", who), ("forget", who)], rows
    d.start()
    try:
        check_comes_back_new(d, USER, pseudonym)
        # while the daemon runs, the database is its own: forget needs it
        r = mktd("forget", "--db", d.db, "carol")
        assert r.returncode == 2 and "in use by another mktd" in r.stderr, r.stderr
        # ... and goes through it
        r = mktd("forget", "--db", d.db, "unix:" + d.sock, "carol")
        assert r.returncode == 0, r.stderr
        assert holders(d.db, "carol") == []
    finally:
        assert d.stop() == 0
    assert integrity(d.db) == [("ok",)]


def test_forget_over_http_needs_an_admin_token():
    d = SecureDaemon(CAMPAIGNS, http=True)
    admin, shop = TOKENS["ops"][0], TOKENS["shop"][0]
    try:
        a = d.send(history(USER), unix=True)
        assert all(x["status"] == "ok" for x in a), a
        body = json.dumps({"user": USER}).encode()
        st, text = d.http_auth("POST", "/v1/forget", body=body)
        assert st == 401, (st, text)
        st, text = d.http_auth("POST", "/v1/forget", token=shop, body=body)
        assert st == 403 and json.loads(text)["error"] == "forbidden", (st, text)
        st, text = d.http_auth("GET", "/v1/export?user=" + USER, token=TOKENS["grafana"][0])
        assert st == 403, (st, text)
        assert d.db_rows("SELECT count(*) FROM per_user WHERE user = ?", (USER,))[0][0] > 0
        st, text = d.http_auth("GET", "/v1/export?user=" + USER, token=admin)
        assert st == 200, (st, text)
        assert json.loads(text)["export"]["profile"]["events"] == 3, text
        st, text = d.http_auth("POST", "/v1/forget", token=admin, body=b"{}")
        assert st == 400, (st, text)
        st, text = d.http_auth("POST", "/v1/forget", token=admin, body=body)
        assert st == 200, (st, text)
        pseudonym = json.loads(text)["pseudonym"]
        check_forgotten(d, USER, pseudonym)
        # a TCP connection authenticated with an admin token may too
        s = d.connect()
        s.sendall(lines_of([{"auth": shop}, {"forget": "carol"}]))
        s.shutdown(1)
        got = s.makefile().read().splitlines()
        s.close()
        assert json.loads(got[1])["error"] == "forbidden", got
        # ... one with scope admin may
        s = d.connect()
        s.sendall(lines_of([{"auth": admin}, {"forget": "dan"}]))
        s.shutdown(1)
        got = s.makefile().read().splitlines()
        s.close()
        assert json.loads(got[1])["status"] == "ok", got
        assert holders(d.db, "dan") == []
        rows = oplog(d)
        assert [(r["op"], r["who"]) for r in rows if r["op"] != "config"] == \
            [("export", "ops"), ("forget", "ops"), ("forget", "ops")], rows
    finally:
        assert d.stop() == 0


def test_referees_indexed_for_bindings_older_than_the_index():
    """A database whose referral bindings were made before the referrer's
    "kid:" keys existed: the first load indexes them, so a forget finds the
    referees."""
    d = Daemon(CAMPAIGNS)
    send_all(d, history(USER))
    assert d.stop() == 0
    c = sqlite3.connect(d.db)
    c.execute("DELETE FROM per_user WHERE campaign = 'ref' AND (key LIKE 'kid:%' OR key = 'kids')")
    c.commit()
    c.close()
    d.start()
    try:
        assert "indexing the referees" in d.log()
        assert d.db_rows("SELECT user FROM per_user WHERE campaign = 'ref' AND key = ?",
                         (f"kid:carol",)) == [(USER,)]
        a = d.send([{"forget": USER}], unix=True)
        assert a[0]["status"] == "ok", a
        assert holders(d.db, USER) == []
        ref = d.db_rows("SELECT v FROM per_user WHERE user = 'carol' AND key = 'ref'")[0][0]
        assert ref.decode().endswith(" " + a[0]["pseudonym"]), ref
    finally:
        assert d.stop() == 0


def test_outputs_deliver_nothing_again():
    """Forget rewrites actions in place: a webhook output delivers what it
    had not yet, and nothing it had."""
    from test_outputs import Receiver
    rec = Receiver()
    d = Daemon(CAMPAIGNS, start=False,
               top=f'outputs:\n  - {{id: crm, url: "{rec.url()}", secret_file: secret}}')
    with open(os.path.join(d.dir, "secret"), "w") as f:
        f.write("s3cret\n")
    d.start()
    try:
        send_all(d, history(USER))
        n = len(d.actions())
        rec.wait(lambda reqs: len(rec.delivered()) >= n)
        a = d.send([{"forget": USER}], unix=True)
        assert a[0]["status"] == "ok", a
        send_all(d, [ev("z1", "order.paid", "zed", T0 + 9, order_id="oz", amount=20000)])
        m = len(d.actions())
        assert m > n
        rec.wait(lambda reqs: len(rec.delivered()) >= m)
        seqs = [r["seq"] for r in rec.delivered()]
        assert seqs == list(range(1, m + 1)), seqs  # each once, in order
        assert all(USER not in json.dumps(r) for r in rec.delivered()[n:])
        assert holders(d.db, USER) == []
    finally:
        assert d.stop() == 0
        rec.close()


def test_logged_events_forgotten():
    """With daemon.event_log, the user's logged events go, and others' name
    the pseudonym where they named the user."""
    d = Daemon(CAMPAIGNS, daemon="event_log: {keep: 30d}")
    try:
        send_all(d, history(USER))
        r = mktd("export", "-c", d.config, USER)
        assert r.returncode == 0, r.stderr
        assert len(json.loads(r.stdout)["events"]) == 3, r.stdout
        a = d.send([{"forget": USER}], unix=True)
        assert a[0]["status"] == "ok", a
        assert holders(d.db, USER) == []
        assert d.db_rows("SELECT count(*) FROM event_log WHERE user = ?", (USER,)) == [(0,)]
        body = d.db_rows("SELECT body FROM event_log WHERE id = 'e3'")[0][0]
        assert json.loads(body)["props"]["referrer"] == a[0]["pseudonym"], body
    finally:
        assert d.stop() == 0


def test_export_and_forget_with_a_cluster_config_and_no_nats():
    """With a cluster config, export and forget go through NATS
    (test_cluster_forget.py): with no server answering they say so and
    exit 2. Neither creates a database."""
    d = tempfile.mkdtemp(prefix="mktd-fgc-")
    harness._TEMP_DIRS.append(d)
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("s\n")
    cfg = os.path.join(d, "c.yaml")
    with open(cfg, "w") as f:
        f.write(f"daemon:\n  database: {d}/mktd.db\n"
                "  cluster: {nats: [\"nats://127.0.0.1:9\"], partitions: 4, worker: w1,"
                " secret_file: cluster.secret}\ncampaigns: []\n")
    r = mktd("export", "-c", cfg, "u1", timeout=60)
    assert r.returncode == 2 and "mktd export: " in r.stderr and r.stdout == "", \
        (r.returncode, r.stdout, r.stderr)
    r = mktd("forget", "-c", cfg, "u1", timeout=60)
    assert r.returncode == 2 and "mktd forget: " in r.stderr and r.stdout == "", \
        (r.returncode, r.stdout, r.stderr)
    assert sorted(os.listdir(d)) == ["c.yaml", "cluster.secret"]
