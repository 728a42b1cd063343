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
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_gateway as G  # noqa: E402  (http, tokens)
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import free_port, mktd  # noqa: E402
from secure import TOKENS  # noqa: E402

GONE = "zed-7"  # partition 4 of 16; others below are in other partitions

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
        owner = W.status(cfg)["graph"]["owner"]
        graph = next(os.path.join(w.d, w.name, "mktd.db.graph") for w in ws if w.name == owner)
        W.wait_for("the graph to forget the user", lambda: GONE not in dump(graph), 20)
        assert not any(W.shard_rows(shards[p], "SELECT count(*) FROM actions WHERE "
                                    "kind = 'referral.bound'")[0][0] for p in shards)
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
