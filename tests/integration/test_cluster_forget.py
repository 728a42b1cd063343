"""Cluster mode (spec 14 and 18), forget: `mktd forget -c FILE USER`
publishes a forget message to every partition; each owner forgets the
user in its shard where the message stands (one pseudonym in all of
them, so that the graph partition's referral naming the user is
rewritten too), the owner of the user's partition erases the user's events from
the stream, and snapshots are taken at once. Export: `mktd export -c FILE
USER` and the HTTP gateway's /v1/export ask the owners of the user's
partition and of the graph. Against a real three-node
NATS JetStream cluster on 127.0.0.1."""
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_gateway as G  # noqa: E402  (http, tokens)
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import command, free_port, mktd, slow  # noqa: E402
from secure import TOKENS  # noqa: E402

GONE = "zed-7"  # partition 4 of 16; others below are in other partitions
TWINS = 8  # users of one partition forgotten at once

CAMPAIGNS = """campaigns:
  - id: welcome
    plugin: coupon
    when: {event: order.paid}
    params: {value: 500, valid_for: 7d}
  - id: invite
    plugin: referral
    params: {commission: [1000]}
"""


def users_events():
    """The user's signup, page view and order, and u3 (another partition)
    invited by the user."""
    return [
        {"id": "g1", "type": "user.signup", "user": GONE, "ts": W.T0},
        {"id": "g2", "type": "page.view", "user": GONE, "ts": W.T0 + 1000},
        {"id": "g3", "type": "order.paid", "user": GONE, "ts": W.T0 + 2000,
         "props": {"order_id": "go1", "amount": 3000}},
        {"id": "r1", "type": "user.signup", "user": "u3", "ts": W.T0 - 1000,
         "props": {"referrer": GONE}},
    ]


def dump(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return "\n".join(c.iterdump())
    finally:
        c.close()


def graph_naming(cfg, ws, users):
    """The lines of the graph's shard (its owner's now: the graph may have
    moved) that name one of users."""
    owner = W.status(cfg)["graph"]["owner"]
    graph = next(os.path.join(w.d, w.name, "mktd.db.graph") for w in ws if w.name == owner)
    return [x for x in dump(graph).splitlines() if any(u in x for u in users)]


def test_forget_reaches_every_partition_and_the_stream():
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    home = 4  # FNV-1a 32 of GONE mod 16
    with W.workers_running(ws):
        W.start_fair(ws)
        evs = W.events(1600 // W.SCALE)
        mine = users_events()
        W.publish(cfg, mine + evs)
        W.wait_for("every event applied",
                   lambda: W.applied_all(cfg, ws, len(mine) + len(evs)), 40)
        W.wait_for("status to count every event",
                   lambda: W.status(cfg)["events"] == len(mine) + len(evs), 20)
        before = W.status(cfg)["partitions"][home]["events"]

        r = mktd("forget", "-c", cfg, GONE, timeout=60)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        ans = json.loads(r.stdout)
        assert ans["status"] == "ok" and ans["partition"] == home, ans
        assert ans["partitions"] == W.PARTITIONS and ans["waiting"] == 0, ans
        ps = ans["pseudonym"]
        assert ps.startswith("forgotten:") and len(ps) == len("forgotten:") + 32, ps

        # the shards: the user named nowhere, the pseudonym where it was
        shards = W.current_shards(cfg, ws)
        for p, path in shards.items():
            assert GONE not in dump(path), f"partition {p} still names the user"
        rows = W.shard_rows(shards[home], "SELECT kind FROM actions WHERE user = ?1".replace(
            "?1", "'" + ps + "'"))
        assert ("coupon.issued",) in rows, rows
        # referral runs in the graph partition, which forgets the user too
        W.wait_for("the graph to forget the user", lambda: not graph_naming(cfg, ws, [GONE]), 20)
        owner = W.status(cfg)["graph"]["owner"]
        graph = next(os.path.join(w.d, w.name, "mktd.db.graph") for w in ws if w.name == owner)
        # u3's binding, delivered by the graph to u3's partition (before
        # or after the forget reached it), names the pseudonym there
        def bindings():
            return [(u, json.loads(pl)["referrer"]) for p in shards for u, pl in W.shard_rows(
                shards[p], "SELECT user, payload FROM actions WHERE kind = 'referral.bound'")]
        W.wait_for("u3's binding in its partition", lambda: bindings(), 20)
        assert bindings() == [("u3", ps)], bindings()
        bound = W.shard_rows(graph, "SELECT payload FROM actions WHERE user = 'u3' "
                             "AND kind = 'referral.bound'")
        assert json.loads(bound[0][0])["referrer"] == ps, bound

        # the stream: the user's three events erased from the partition;
        # the forget messages are no events
        W.wait_for("the partition's events less the user's",
                   lambda: W.status(cfg)["partitions"][home]["events"] == before - 3, 20)
        # snapshots taken at once (the interval is a minute): none older
        # than the forget is left for the user's partition
        def snapped():
            p = W.status(cfg)["partitions"][home]
            return p.get("snapshot", {}).get("applied_seq", 0) >= p["applied_seq"] > 0
        W.wait_for("a snapshot past the forget", snapped, 20)
        logs = ""
        for w in ws:
            with open(w.log, errors="replace") as f:
                logs += f.read()
        assert GONE not in logs, "a worker logged the user id"
        assert f"{ps} forgotten at stream sequence" in logs
        assert "their events erased from the stream" in logs

        # the owner of the user's partition stops; the other takes it over
        # from the snapshot and the stream, and the user stays forgotten
        owner = next(w for w in ws if w.name == W.owners(cfg)[home])
        other = next(w for w in ws if w is not owner)
        owner.stop()
        W.wait_for("one owner left", lambda: W.owners(cfg) == [other.name] * W.PARTITIONS, 30)
        # (restored from the snapshot, the shard keeps the ids of the
        # user's events, as a forget does; the stream has them no more)
        shards = W.wait_for("every event applied by the other",
                            lambda: W.applied_all(cfg, [other], len(mine) + len(evs)), 40)
        with open(other.log, errors="replace") as f:
            assert f"partition {home}: restored from snapshot" in f.read(), other.tail()
        assert GONE not in dump(shards[home])
        assert W.shard_rows(shards[home], "SELECT count(*) FROM actions WHERE user = '"
                            + ps + "'")[0][0] >= 1


def one_partition(n):
    """(p, n user ids of partition p): none is a part of another."""
    by = {}
    for i in range(10000):
        u = f"twin-{i}-x"
        got = by.setdefault(W.partition_of(u), [])
        got.append(u)
        if len(got) == n:
            return W.partition_of(u), got
    raise AssertionError("no partition with enough users")


def test_forgets_sent_at_once_are_each_applied():
    """Users of one partition, forgotten at once by as many clients: each
    forget is a message of its own on every partition (their ids carry a
    nonce of the call; by the millisecond alone, two forgets published in
    one were taken for one by the stream's de-duplication, and the second
    was answered ok and never applied)."""
    nc, d, ws = W.setup(2, CAMPAIGNS)
    sock = os.path.join(d, "w1.sock")
    G.daemon_keys(ws[0], [f'listen: ["unix:{sock}"]'])
    cfg = ws[0].cfg
    home, users = one_partition(TWINS)
    with W.workers_running(ws):
        W.start_fair(ws)
        mine = []
        for k, u in enumerate(users):
            mine += [{"id": f"t{k}a", "type": "user.signup", "user": u, "ts": W.T0 + k},
                     {"id": f"t{k}b", "type": "order.paid", "user": u, "ts": W.T0 + 1000 + k,
                      "props": {"order_id": f"to{k}", "amount": 2000}}]
        W.publish(cfg, mine)
        shards = W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, len(mine)), 40)
        for u in users:
            rows = W.shard_rows(shards[home], f"SELECT kind FROM actions WHERE user = '{u}'")
            assert ("coupon.issued",) in rows, (u, rows)
        W.wait_for("status to count every event",
                   lambda: W.status(cfg)["events"] == len(mine), 20)
        before = W.status(cfg)["partitions"][home]["events"]

        # a Unix connection per user, past its first line (an auth line,
        # answered ok), then the forgets written one right after another:
        # the gateway runs each connection's lines on a thread of its own
        conns = []
        for u in users:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(60)
            s.connect(sock)
            r = s.makefile("rb")
            assert G.ask(s, r, {"auth": TOKENS["ops"][0]})["status"] == "ok"
            conns.append((s, r))
        for (s, r), u in zip(conns, users):
            s.sendall(json.dumps({"forget": u}).encode() + b"\n")
        answers = []
        for s, r in conns:
            got = r.readline()
            assert got, "the connection closed"
            answers.append(json.loads(got))
            s.close()
        for u, a in zip(users, answers):
            assert a["forget"] == u and a["status"] == "ok" and a["waiting"] == 0, a
            assert a["partition"] == home, a
        # each forget its own message: a duplicate is acknowledged with the
        # sequence of the message it repeats
        assert len({a["seq"] for a in answers}) == len(users), answers
        pss = [a["pseudonym"] for a in answers]
        assert len(set(pss)) == len(users), pss

        # every user forgotten in every shard and the graph
        shards = W.current_shards(cfg, ws)
        for p, path in shards.items():
            text = dump(path)
            left = [u for u in users if u in text]
            assert not left, f"partition {p} still names {left}"
        rows = W.shard_rows(shards[home], "SELECT DISTINCT user FROM actions "
                            "WHERE kind = 'coupon.issued'")
        assert sorted(u for (u,) in rows) == sorted(pss), rows
        try:
            W.wait_for("the graph to forget the users", lambda: not graph_naming(cfg, ws, users),
                       20)
        except AssertionError:
            raise AssertionError(f"the graph still names them: {graph_naming(cfg, ws, users)[:5]}")
        # the events of all of them gone from the stream (erased, or
        # trimmed behind the snapshots taken at once after the forgets,
        # which status still counts), and the exports empty
        def naming():
            return [d for _, d in nc.stream_messages("MKTD_EVENTS", f"mktd.events.{home}")
                    if any(u.encode() in d for u in users) and d.decode() not in users]
        W.wait_for("no message of the partition naming them but their forgets",
                   lambda: not naming(), 20)
        assert W.status(cfg)["partitions"][home]["events"] <= before, before
        for u in users:
            r = mktd("export", "-c", cfg, u, timeout=60)
            assert r.returncode == 0, r.stderr
            x = json.loads(r.stdout)
            assert x["profile"] is None and x["actions"] == [], x
        logs = ""
        for w in ws:
            with open(w.log, errors="replace") as f:
                logs += f.read()
        for ps in pss:
            assert f"{ps} forgotten at stream sequence" in logs, ps


def test_a_graph_action_for_a_user_forgotten_in_the_same_fetch_goes_home():
    """The graph applies an order that pays the user a commission and the
    user's forget in one fetch (the worker starts again once both are in
    the stream): the commission goes to the user's own partition, published
    before the forget put the pseudonym in its user (by which it would go
    to another partition), and names the pseudonym there."""
    nc, d, ws = W.setup(1, CAMPAIGNS)
    cfg = ws[0].cfg
    home = W.partition_of(GONE)
    near = next(u for u in (f"n{i}" for i in range(1000)) if W.partition_of(u) == home)
    with W.workers_running(ws):
        ws[0].start()
        # the user's binding (to u7) is delivered to the user's partition
        # before the forget, which erases it from the stream with the
        # user's events; near's page view, in the same partition, stays
        W.publish(cfg, [{"id": "f0", "type": "page.view", "user": near, "ts": W.T0 - 3000},
                        {"id": "f1", "type": "user.signup", "user": GONE, "ts": W.T0 - 2000,
                         "props": {"referrer": "u7"}},
                        {"id": "f2", "type": "user.signup", "user": "u9", "ts": W.T0 - 1000,
                         "props": {"referrer": GONE}}])
        W.wait_for("the signups applied", lambda: W.applied_all(cfg, ws, 3), 40)
        W.wait_for("the binding delivered", lambda: W.shard_rows(
            W.current_shards(cfg, ws)[home], "SELECT count(*) FROM actions WHERE kind = "
            "'referral.bound'")[0][0] == 1, 20)
        ws[0].stop()
        W.publish(cfg, [{"id": "f3", "type": "order.paid", "user": "u9", "ts": W.T0,
                         "props": {"order_id": "fo1", "amount": 5000}}])
        # the forget is published at once, then waits for the worker
        fg = subprocess.Popen(command("forget", "-c", cfg, GONE), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        ws[0].start()
        out, err = fg.communicate(timeout=slow(90))
        assert fg.returncode == 0, (out, err)
        ps = json.loads(out)["pseudonym"]
        # (by the pseudonym it would go to partition_of(ps): another one
        # but one time in 16, when this run proves less)
        shards = W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, 4), 40)

        def paid():
            return {p: W.shard_rows(path, "SELECT user FROM actions WHERE kind = "
                                    "'referral.commission'") for p, path in shards.items()}
        W.wait_for("the commission delivered", lambda: any(paid().values()), 20)
        time.sleep(1)  # (a second copy, had one gone elsewhere, would be in by now)
        got = paid()
        assert got[home] == [(ps,)], got
        assert not any(rows for p, rows in got.items() if p != home), got
        assert GONE not in dump(shards[home])
        # status: the partition's events are near's page view alone (the
        # delivery erased with the user's signup was no event)
        W.wait_for("status to count the partition's events",
                   lambda: W.status(cfg)["partitions"][home]["events"] == 1, 20)


def test_the_users_events_stay_in_the_stream_until_the_graph_read_them():
    """The graph behind the user's partition when that partition applies
    the forget (the graph's lease held by another, which never applies
    it): the user's events stay in the stream, since the graph has not
    read them; once the graph runs, it reads them (the referrer's
    commission on the user's order is paid), applies the forget and
    erases them. Erased at the forget, they were lost to the graph: no
    commission."""
    nc, d, ws = W.setup(1, CAMPAIGNS)
    cfg = ws[0].cfg
    home = W.partition_of(GONE)
    ref = next(u for u in (f"r{i}" for i in range(1000)) if W.partition_of(u) != home)
    stop = threading.Event()

    def ghost():  # the graph's lease, renewed by no worker of this cluster
        while not stop.is_set():
            nc.publish(f"$KV.MKTD_EVENTS_leases.p{W.PARTITIONS}", "ghost")
            stop.wait(0.1)
    holder = threading.Thread(target=ghost, daemon=True)
    holder.start()
    fg = None
    try:
        W.wait_for("the ghost's lease", lambda: W.status(cfg)["graph"]["owner"] == "ghost", 10)
        with W.workers_running(ws):
            ws[0].start()
            W.wait_for("w1 owns every partition",
                       lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 20)
            W.publish(cfg, [{"id": "s1", "type": "user.signup", "user": GONE, "ts": W.T0,
                             "props": {"referrer": ref}},
                            {"id": "s2", "type": "order.paid", "user": GONE, "ts": W.T0 + 1000,
                             "props": {"order_id": "so1", "amount": 5000}}])
            W.wait_for("the user's events applied", lambda: W.applied_all(cfg, ws, 2), 40)
            W.wait_for("status to count them",
                       lambda: W.status(cfg)["partitions"][home]["events"] == 2, 20)
            fg = subprocess.Popen(command("forget", "-c", cfg, GONE), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            # the partition logs the forget once it has erased what it may
            W.wait_for("the user's partition to apply the forget", lambda: re.search(
                rf"partition {home}: forgotten:\S+ forgotten at stream sequence",
                open(ws[0].log, errors="replace").read()), 30)
            # (a moment after the forget, status may count it as an event)
            W.wait_for("the user's two events, still in the stream",
                       lambda: W.status(cfg)["partitions"][home]["events"] == 2, 10)
            assert W.status(cfg)["graph"]["owner"] == "ghost"

            stop.set()
            W.wait_for("w1 to take the graph", lambda: W.status(cfg)["graph"]["owner"] == "w1",
                       20)
            out, err = fg.communicate(timeout=slow(60))
            fg = None
            ps = json.loads(out)["pseudonym"]
            shards = W.current_shards(cfg, ws)

            def commission():
                return W.shard_rows(shards[W.partition_of(ref)], "SELECT user, payload FROM "
                                    "actions WHERE kind = 'referral.commission'")
            got = W.wait_for("the referrer's commission", commission, 30)
            assert [(u, json.loads(pl)["buyer"]) for u, pl in got] == [(ref, ps)], got
            W.wait_for("the graph to erase the user's events",
                       lambda: W.status(cfg)["partitions"][home]["events"] == 0, 20)
            assert not graph_naming(cfg, ws, [GONE])
            assert GONE not in open(ws[0].log, errors="replace").read()
            # nothing in the user's subject names them but the forget
            # message itself: not their events, nor the binding the graph
            # decided for them after their partition's forget (delivered
            # there, recorded by the pseudonym, then erased)
            msgs = nc.stream_messages("MKTD_EVENTS", f"mktd.events.{home}")
            assert [d for _, d in msgs if GONE.encode() in d] == [GONE.encode()], msgs
            assert f"partition {home}: 1 of 1 deliveries naming a forgotten user erased" in open(
                ws[0].log, errors="replace").read()
            bound = W.shard_rows(shards[home], "SELECT user FROM actions WHERE kind = "
                                 "'referral.bound'")
            assert bound == [(ps,)], bound
    finally:
        stop.set()
        if fg:
            fg.kill()
            fg.communicate()


def test_export_asks_the_owners_and_http_serves_export_and_forget():
    nc, d, ws = W.setup(2, CAMPAIGNS)
    port, tport = free_port(), free_port()
    sock = os.path.join(d, "w1.sock")
    G.daemon_keys(ws[0], [f'http: "127.0.0.1:{port}"',
                          f'listen: ["tcp:127.0.0.1:{tport}", "unix:{sock}"]'])
    cfg = ws[0].cfg
    home = 4
    ops, shop = TOKENS["ops"][0], TOKENS["shop"][0]
    with W.workers_running(ws):
        W.start_fair(ws)
        mine = users_events()
        W.publish(cfg, mine)
        W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, len(mine)), 40)

        # the command line: the user's partition's data as one daemon's
        # export, and the graph's beside it
        r = mktd("export", "-c", cfg, GONE, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)
        x = json.loads(r.stdout)
        assert x["user"] == GONE and x["partition"] == home, x
        assert x["profile"]["events"] == 3 and x["profile"]["orders"] == 1, x["profile"]
        kinds = [(a["kind"], a["user"]) for a in x["actions"]]
        assert ("coupon.issued", GONE) in kinds, kinds
        assert all(a["kind"] != "referral.bound" for a in x["actions"]), x["actions"]
        bound = [a for a in x["graph"]["actions"] if a["kind"] == "referral.bound"]
        assert len(bound) == 1 and bound[0]["user"] == "u3", x["graph"]
        assert bound[0]["payload"]["referrer"] == GONE, bound
        assert "user" not in x["graph"], x["graph"]
        # a user nobody has seen: nothing kept, as one daemon says it
        r = mktd("export", "-c", cfg, "nobody-at-all", timeout=60)
        assert r.returncode == 0, r.stderr
        n = json.loads(r.stdout)
        assert n["profile"] is None and n["actions"] == [] and n["graph"]["actions"] == [], n

        # HTTP: scope admin alone; the same export
        q = f"/v1/export?user={GONE}"
        assert G.http(port, q)[0] == 401
        assert G.http(port, q, token=shop)[0] == 403
        code, got = G.http(port, q, token=ops)
        assert code == 200 and got[0]["status"] == "ok", (code, got)
        assert got[0]["export"]["actions"] == x["actions"], got
        assert got[0]["export"]["graph"]["actions"] == x["graph"]["actions"], got
        code, got = G.http(port, "/v1/export", body=b"{}", token=ops)
        assert code == 400 and got[0]["error"] == "invalid", (code, got)
        # control lines on the gateway's sockets, answered in their place:
        # a Unix client is an admin by the socket's permissions; on TCP the
        # token needs scope admin
        import socket
        u = socket.socket(socket.AF_UNIX)
        u.settimeout(60)
        u.connect(sock)
        ur = u.makefile("rb")
        got = G.ask(u, ur, {"export": GONE})
        assert got["status"] == "ok" and got["export"]["actions"] == x["actions"], got
        assert G.ask(u, ur, {"export": ""})["error"] == "invalid"
        u.close()
        for token, want in ((shop, "forbidden"), (ops, "ok")):
            t, tr = G.connect_tcp(tport)
            a = G.ask(t, tr, {"auth": token})
            assert a["status"] == "ok", a
            got = G.ask(t, tr, {"export": GONE})
            assert got["status"] == want if want == "ok" else got["error"] == want, got
            if token == ops:  # admin alone: no events
                got = G.ask(t, tr, {"id": "x1", "type": "page.view", "user": "u1"})
                assert got["error"] == "forbidden", got
            t.close()

        # the shard's oplog says who asked (by the pseudonym, never the id)
        shards = W.current_shards(cfg, ws)
        who = [w for (w,) in W.shard_rows(shards[home],
                                          "SELECT who FROM oplog WHERE op = 'export'")]
        assert "ops" in who and any(w.startswith("cli:uid:") for w in who), who
        assert any(w.startswith("uid:") for w in who), who  # the Unix client
        details = W.shard_rows(shards[home], "SELECT detail FROM oplog WHERE op = 'export'")
        assert details and all(GONE not in dt and "forgotten:" in dt for (dt,) in details), details

        # HTTP forget: through the stream to every partition, answered once
        # applied; the export then finds nothing of the user
        code, got = G.http(port, "/v1/forget", body=json.dumps({"user": GONE}).encode(),
                           token=ops)
        assert code == 200, (code, got)
        assert got[0]["status"] == "ok" and got[0]["waiting"] == 0, got
        ps = got[0]["pseudonym"]
        assert G.http(port, "/v1/forget?user=x", token=ops)[0] == 405  # GET
        code, got = G.http(port, q, token=ops)
        assert code == 200, (code, got)
        after = got[0]["export"]
        assert after["profile"] is None and after["actions"] == [], after
        assert after["graph"]["actions"] == [], after["graph"]
        # (by its pseudonym, the graph still shows the binding it names;
        # the pseudonym's own partition is another one than the user's)
        r = mktd("export", "-c", cfg, ps, timeout=60)
        assert r.returncode == 0, r.stderr
        g = json.loads(r.stdout)["graph"]["actions"]
        assert [(a["kind"], a["payload"]["referrer"]) for a in g] == [("referral.bound", ps)], g


def test_an_export_larger_than_a_nats_message_is_answered_internal():
    """Servers whose max_payload is 64 KB, event logs on: the export of a
    user whose logged events come to more than that cannot travel as the
    owner's one answer message. It is answered internal, naming both sizes
    (on the command line and over HTTP; not left without an answer until
    the wait runs out), and the owner goes on to answer a small user's
    export. Snapshots are cut in chunks the servers take."""
    limit = 64 * 1024
    nc, d, ws = W.setup(2, CAMPAIGNS, max_payload=limit, extra="snapshot: 1s")
    port = free_port()
    G.daemon_keys(ws[0], [f'http: "127.0.0.1:{port}"', "event_log: {keep: 30d}"])
    G.daemon_keys(ws[1], ["event_log: {keep: 30d}"], tokens=False)
    cfg = ws[0].cfg
    ops = TOKENS["ops"][0]
    big, home = "big-1", W.partition_of("big-1")
    small = next(u for u in (f"small-{i}" for i in range(100)) if W.partition_of(u) == home)
    note = "n" * 3000
    heavy = [{"id": f"b{i}", "type": "page.view", "user": big, "ts": W.T0 + i * 1000,
              "props": {"note": note}} for i in range(40)]  # ~120 KB logged
    light = users_events()[:3]
    for e in light:
        e["user"] = small
    with W.workers_running(ws):
        W.start_fair(ws)
        W.publish(cfg, heavy + light)
        shards = W.wait_for("every event applied",
                            lambda: W.applied_all(cfg, ws, len(heavy) + len(light)), 40)
        logged = W.shard_rows(shards[home], f"SELECT count(*), sum(length(body)) FROM "
                              f"event_log WHERE user = '{big}'")
        assert logged[0][0] == len(heavy) and logged[0][1] > limit, logged
        owner = next(w for w in ws if w.name == W.owners(cfg)[home])

        r = mktd("export", "-c", cfg, big, timeout=60)
        assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
        assert f"partition {home}'s owner answered internal: the answer is " in r.stderr, r.stderr
        assert f"more than a NATS message holds (max_payload {limit})" in r.stderr, r.stderr
        assert "mktd export --db" in r.stderr, r.stderr
        code, got = G.http(port, f"/v1/export?user={big}", token=ops)
        assert code == 503 and got[0]["error"] == "internal", (code, got)
        detail = got[0]["detail"]
        assert f"(max_payload {limit})" in detail, detail
        size = int(detail.split("the answer is ", 1)[1].split(" bytes", 1)[0])
        assert size > limit, detail
        with open(owner.log, errors="replace") as f:
            assert f"partition {home}: the answer is {size} bytes" in f.read(), owner.tail()

        # the workers go on: a small user's export from the same owner
        assert all(w.proc.poll() is None for w in ws), [w.tail() for w in ws]
        r = mktd("export", "-c", cfg, small, timeout=60)
        assert r.returncode == 0, r.stderr
        x = json.loads(r.stdout)
        assert x["user"] == small and x["partition"] == home, x
        assert x["profile"]["events"] == 3 and len(x["events"]) == 3, x
        assert ("coupon.issued", small) in [(a["kind"], a["user"]) for a in x["actions"]], x
        code, got = G.http(port, f"/v1/export?user={small}", token=ops)
        assert code == 200 and got[0]["export"]["actions"] == x["actions"], (code, got)

        # the shard is larger than a message: its snapshot in smaller chunks
        applied = W.shard_rows(shards[home], "SELECT value FROM meta "
                               "WHERE key = 'cluster_applied'")[0][0]

        def snapshot():
            s = W.status(cfg)["partitions"][home].get("snapshot")
            return s if s and s["applied_seq"] >= applied else None
        snap = W.wait_for("the shard's snapshot", snapshot, 30)
        assert snap["bytes"] > limit and snap["chunks"] >= snap["bytes"] // limit + 1, snap
        logs = "".join(open(w.log, errors="replace").read() for w in ws)
        assert "snapshot chunk" not in logs, logs[-3000:]


def test_http_serves_events_while_forgets_wait():
    """A forget over HTTP waits for every partition's owner; with one
    worker stopped (SIGSTOP) it waits until the other takes its partitions
    over. Two such forgets are served at once (each on a thread of its
    own), more are answered 503 at once (busy, Retry-After), and the
    gateway goes on serving events and health meanwhile. A client that
    goes while its forget waits frees its place."""
    nc, d, ws = W.setup(2, CAMPAIGNS)
    port = free_port()
    G.daemon_keys(ws[0], [f'http: "127.0.0.1:{port}"'])
    ops = TOKENS["ops"][0]
    body = "".join(json.dumps(e) + "\n" for e in users_events()[:2]).encode()
    with W.workers_running(ws):
        W.start_fair(ws)
        got = {}

        def forget(i):
            got[i] = G.http(port, "/v1/forget", body=json.dumps({"user": f"gone-{i}"}).encode(),
                            token=ops)

        os.kill(ws[1].proc.pid, signal.SIGSTOP)
        try:
            # one client that will not wait for its answer ...
            raw = socket.create_connection(("127.0.0.1", port))
            req = json.dumps({"user": "gone-raw"}).encode()
            raw.sendall(b"POST /v1/forget HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + ops.encode() + b"\r\nContent-Length: " + str(len(req)).encode()
                        + b"\r\n\r\n" + req)
            W.wait_for("the first forget to wait",
                       lambda: "forgotten at stream sequence" in open(ws[0].log).read(), 20)
            # ... and three more: one served, two busy
            ts = [threading.Thread(target=forget, args=(i,)) for i in range(3)]
            for t in ts:
                t.start()
            busy = W.wait_for("two forgets answered busy",
                              lambda: [i for i in got if got[i][0] == 503] if len(got) >= 2
                              else None, 20)
            assert len(busy) == 2, got
            for i in busy:
                a = got[i][1][0]
                assert a["error"] == "internal" and a["detail"].startswith("busy"), got[i]
            (served,) = [i for i in range(3) if i not in busy]
            raw.close()
            code, answers = G.http(port, "/v1/events", body=body, token=TOKENS["shop"][0])
            assert code == 200 and [a["status"] for a in answers] == ["ok", "ok"], answers
            assert G.http(port, "/v1/health", token=ops)[0] == 200
            assert ts[served].is_alive(), got
        finally:
            os.kill(ws[1].proc.pid, signal.SIGCONT)
        for t in ts:
            t.join(60)
        a = got[served][1][0]
        assert got[served][0] == 200 and a["status"] == "ok" and a["waiting"] == 0, got[served]
        # both places free again (the gone client's too, once its forget
        # ended): two forgets at once are each served
        def both_served():
            got.clear()
            ts = [threading.Thread(target=forget, args=(i,)) for i in (10, 11)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            return sorted(got) == [10, 11] and all(got[i][0] == 200 for i in got)
        W.wait_for("two forgets served at once", both_served, 20)

        # a forget still waiting when its worker is told to stop is answered
        # (queued: the stopped worker's partitions have not applied it)
        # before the worker exits
        got.clear()
        os.kill(ws[1].proc.pid, signal.SIGSTOP)
        try:
            marks = open(ws[0].log).read().count("forgotten at stream sequence")
            t = threading.Thread(target=forget, args=(20,))
            t.start()
            W.wait_for("the forget applied where w1 owns",
                       lambda: open(ws[0].log).read().count("forgotten at stream sequence")
                       > marks, 20)
            ws[0].proc.send_signal(signal.SIGTERM)
            t.join(60)
            a = got[20][1][0]
            assert got[20][0] == 202 and a["status"] == "queued" and a["waiting"] > 0, got
            assert ws[0].proc.wait(timeout=60) == 0
        finally:
            os.kill(ws[1].proc.pid, signal.SIGCONT)
