"""Cluster mode (spec 17), the graph partition: referral decides across
users (a binding checks the referrer's chain and daily cap; an order pays
the buyer's ancestors), so its campaigns run in one partition, the graph,
which reads every partition's events in stream order; the user partitions
leave them out. Test (e) of the cluster issue: a cycle whose users are in
three partitions is refused `cycle`, a referrer's daily cap is reached by
referees of other partitions, and `not_new` sees an event of another
partition; the graph's actions are delivered to their users' own
partitions, where a cap on commissions applies; the actions of the whole
cluster equal those of one daemon fed the same events; the graph's owner
killed mid-stream, the other worker takes it over and no action is
recorded or published twice. A group-buy runs in the
graph too: members of three partitions fill a group. Against a real
three-node NATS JetStream cluster on 127.0.0.1."""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_gateway as G  # noqa: E402  (http, metrics)
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import free_port, mktd  # noqa: E402

# invite: referral (the graph); reward-coupon: chained on its rewards (the
# graph too); trio: a group-buy (the graph: its members are users of any
# partition; a window longer than the stream's clock runs ahead of the
# events' ts here, so that it expires in neither); welcome: a first-order
# coupon (the user partitions)
CAMPAIGNS = """campaigns:
  - id: welcome
    plugin: coupon
    when:
      event: order.paid
      all: [{field: user.orders, op: eq, value: 1}]
    params: {value: 500, valid_for: 7d}
  - id: invite
    plugin: referral
    params: {commission: [1000, 300], reward: {amount: 1000, referrer_share: 50}, daily_cap: 2}
  - id: reward-coupon
    plugin: coupon
    when: {event: referral.reward}
    params: {value: 300, valid_for: 7d}
  - id: trio
    plugin: groupbuy
    params: {size: 3, window: 1000d, reward: 200}
caps:
  - {id: commissions, kinds: [referral.commission], max: 1, per: 1d}
"""

DAY = 24 * 3600 * 1000



def cross_partition_events():
    """ann, bob and cat in three partitions: bob invited by ann, cat by
    bob, then ann's own signup names cat (a cycle); dan (partition 8)
    invites x2, x3 and x4 (partitions 15, 12, 9) on one day (cap 2) and x1
    the next; ref had a page view (partition 2) before its signup."""
    assert len({W.partition_of(u) for u in ("ann", "bob", "cat")}) == 3
    assert len({W.partition_of(u) for u in ("dan", "x2", "x3", "x4")}) == 4
    t = W.T0 - 10 * 1000
    ev = [
        ("bob", "user.signup", {"referrer": "ann"}),
        ("cat", "user.signup", {"referrer": "bob"}),
        ("ann", "user.signup", {"referrer": "cat"}),
        ("x2", "user.signup", {"referrer": "dan"}),
        ("x3", "user.signup", {"referrer": "dan"}),
        ("x4", "user.signup", {"referrer": "dan"}),
        ("ref", "page.view", {}),
        ("ref", "user.signup", {"referrer": "ann"}),
        ("cat", "order.paid", {"order_id": "c1", "amount": 20000}),
        ("cat", "order.refunded", {"order_id": "c1", "amount": 5000}),
        # a group-buy whose members are in three partitions: full at cat's
        # join; x2's join comes too late, x3's names a group nobody opened
        ("ann", "group.open", {"group_id": "G1", "product": {"sku": "tea"}}),
        ("bob", "group.join", {"group_id": "G1"}),
        ("cat", "group.join", {"group_id": "G1"}),
        ("x2", "group.join", {"group_id": "G1"}),
        ("x3", "group.join", {"group_id": "G9"}),
        # cat's second order of the day: bob's and ann's second commissions
        # of the day, which their cap (one a day) keeps out; its refund
        # claws back nothing (the graph decides that cap: referral knows
        # they were not paid)
        ("cat", "order.paid", {"order_id": "c2", "amount": 10000}),
        ("cat", "order.refunded", {"order_id": "c2", "amount": 10000}),
    ]
    out = [{"id": f"g{i}", "type": ty, "user": u, "ts": t + i, "props": props}
           for i, (u, ty, props) in enumerate(ev)]
    out.append({"id": "g-next-day", "type": "user.signup", "user": "x1", "ts": t + DAY,
                "props": {"referrer": "dan"}})
    return out


def filler(n):
    """Signups binding u100..u199 to u0..u99 and those to u200..u299, then
    page views and orders of u0..u399 (W.events)."""
    out = []
    for i in range(100):
        out.append({"id": f"sa{i}", "type": "user.signup", "user": f"u{i}", "ts": W.T0 - 5000,
                    "props": {"referrer": f"u{i + 200}"}})
        out.append({"id": f"sb{i}", "type": "user.signup", "user": f"u{i + 100}",
                    "ts": W.T0 - 4000, "props": {"referrer": f"u{i}"}})
    return out + W.events(n)


def graph_shard(cfg, ws):
    owner = W.status(cfg)["graph"].get("owner")
    w = next((w for w in ws if w.name == owner), None)
    return os.path.join(w.d, w.name, "mktd.db.graph") if w else None


def comparable(campaign, kind, user, event_id, payload):
    p = json.loads(payload) if isinstance(payload, str) else dict(payload)
    p.pop("code", None)  # drawn from the cluster's secret, or at random by one daemon
    # a chained coupon's expiry counts from now: the stream's clock in a
    # cluster (spec 17), the events' ts in one daemon with clock: event
    p.pop("expires_at", None)
    return (campaign, kind, user, event_id, json.dumps(p, sort_keys=True))


def test_referral_across_partitions_and_graph_takeover():
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    mports = {}
    for w in ws:  # each worker's figures on a metrics address
        mports[w.name] = free_port()
        G.daemon_keys(w, [f'metrics: "127.0.0.1:{mports[w.name]}"'], tokens=False)
    mine = cross_partition_events()
    evs = mine + filler(4000 // W.SCALE)
    half = len(mine) + 200 + (len(evs) - len(mine) - 200) // 2
    with W.workers_running(ws):
        for w in ws:
            w.start()
        W.wait_for("8 partitions each and a graph owner",
                   lambda: W.fair_shares(cfg, ws)
                   and W.status(cfg)["graph"].get("owner"), 30)
        W.publish(cfg, evs[:half])
        W.wait_for("the graph to apply the first half",
                   lambda: W.shard_count(graph_shard(cfg, ws) or "") == half, 40)
        graph = graph_shard(cfg, ws)

        # the cap on commissions (kinds only the graph emits) is the
        # graph's, counted by its worker: bob's and ann's second
        # commissions at least
        def capped_counted():
            n = 0
            for w in ws:
                code, text = G.http(mports[w.name], "/metrics")
                assert code == 200, (code, text)
                n += G.metrics_of(text).get(
                    'mktd_actions_capped_total{cap="commissions",campaign="invite"}', 0)
            return n >= 2
        W.wait_for("the workers to count capped commissions", capped_counted, 30)

        # the rules across partitions, decided in the graph
        rows = W.shard_rows(graph, "SELECT kind, user, payload FROM actions "
                            "WHERE campaign = 'invite' AND kind IN "
                            "('referral.bound', 'referral.rejected') AND user NOT LIKE 'u%' "
                            "ORDER BY seq")
        got = [(k, u, json.loads(p).get("reason")) for k, u, p in rows]
        assert got == [("referral.bound", "bob", None), ("referral.bound", "cat", None),
                       ("referral.rejected", "ann", "cycle"), ("referral.bound", "x2", None),
                       ("referral.bound", "x3", None), ("referral.rejected", "x4", "daily_cap"),
                       ("referral.rejected", "ref", "not_new"), ("referral.bound", "x1", None)], got
        # cat's order pays bob (level 1) and ann (level 2); the refund claws back
        pay = W.shard_rows(graph, "SELECT kind, user, payload FROM actions "
                           "WHERE event_id IN ('g8', 'g9') ORDER BY seq")
        assert [(k, u) for k, u, _ in pay] == [
            ("referral.commission", "bob"), ("referral.commission", "ann"),
            ("referral.reward", "bob"), ("referral.reward", "cat"),
            ("coupon.issued", "bob"), ("coupon.issued", "cat"),
            ("referral.clawback", "bob"), ("referral.clawback", "ann")], pay
        assert [json.loads(p)["amount"] for k, _, p in pay if k != "coupon.issued"] == \
            [2000, 600, 500, 500, 500, 150]
        # the group-buy across partitions, decided in the graph
        rows = W.shard_rows(graph, "SELECT kind, user, payload FROM actions "
                            "WHERE campaign = 'trio' ORDER BY seq")
        got = [(k, u, json.loads(p).get("reason") or json.loads(p).get("members"))
               for k, u, p in rows]
        assert got == [("groupbuy.success", "ann", 3), ("groupbuy.success", "bob", 3),
                       ("groupbuy.success", "cat", 3), ("groupbuy.rejected", "x2", "full"),
                       ("groupbuy.rejected", "x3", "unknown_group")], got

        # a dry run asks the graph's owner too: a new user's signup quotes
        # its binding (the partition's owner has nothing to say), and
        # nothing of it is kept
        r = W.publish(cfg, [{"id": "dq1", "type": "user.signup", "user": "newbie",
                             "ts": W.T0, "props": {"referrer": "cat"}, "dry": True}])
        a = json.loads(r.stdout.splitlines()[0])
        assert a["status"] == "ok" and a["dry"] is True, a
        assert [(x["campaign"], x["kind"], x["user"]) for x in a["actions"]] == [
            ("invite", "referral.bound", "newbie")], a

        # the graph's owner dies mid-stream; the other takes it over
        owner = next(w for w in ws if w.name == W.status(cfg)["graph"]["owner"])
        other = next(w for w in ws if w is not owner)
        W.publish(cfg, evs[half:half + 300])
        owner.kill9()
        W.publish(cfg, evs[half + 300:])
        W.wait_for("the other to own every partition and the graph",
                   lambda: W.owners(cfg) == [other.name] * W.PARTITIONS
                   and W.status(cfg)["graph"].get("owner") == other.name, 30)
        shards = W.wait_for("every event applied once",
                            lambda: W.applied_all(cfg, [other], len(evs)), 60)
        graph = W.wait_for("the graph to apply every event",
                           lambda: (lambda g: g if W.shard_count(g) == len(evs) else None)(
                               graph_shard(cfg, [other])), 60)

        # every event once in the user partitions, and once in the graph
        ids = []
        for path in shards.values():
            ids += W.shard_event_ids(path)
        assert sorted(ids) == sorted(e["id"] for e in evs)
        gids = W.shard_event_ids(graph)
        assert sorted(gids) == sorted(ids)

        # the whole cluster's actions are one daemon's, caps included
        # (stream order is publish order here: one publisher); the graph's
        # are delivered to their users' partitions after the graph applied
        # their events
        single = sorted(comparable(a["campaign"], a["kind"], a["user"], a["event_id"],
                                   a["payload"]) for a in W.simulate(d, evs, CAMPAIGNS))

        def cluster_actions():
            out = []
            for path in shards.values():
                out += [comparable(*r) for r in W.shard_rows(
                    path, "SELECT campaign, kind, user, event_id, payload FROM actions")]
            return sorted(out)
        deadline = time.time() + 40
        while (cluster := cluster_actions()) != single and time.time() < deadline:
            time.sleep(0.5)
        if cluster != single:
            a, b = set(cluster), set(single)
            raise AssertionError(f"{len(cluster)} against one daemon's {len(single)}; only in "
                                 f"the cluster: {sorted(a - b)[:5]}; only in one daemon: "
                                 f"{sorted(b - a)[:5]}")

        # the graph runs only its campaigns; each of their actions went to
        # its user's own partition and was recorded there (the cap on
        # commissions kept the capped ones out in the graph, spec 18)
        assert W.shard_rows(graph, "SELECT count(*) FROM actions WHERE campaign = "
                            "'welcome'")[0][0] == 0
        sent = sorted(comparable(*r) for r in W.shard_rows(
            graph, "SELECT campaign, kind, user, event_id, payload FROM actions"))
        got = []
        for p, path in shards.items():
            rows = W.shard_rows(path, "SELECT campaign, kind, user, event_id, payload FROM "
                                "actions WHERE campaign IN ('invite', 'reward-coupon', 'trio')")
            assert all(W.partition_of(r[2]) == p for r in rows), p
            got += [comparable(*r) for r in rows]
        assert sorted(got) == sent
        assert not [a for a in sent if a[3] in ("g15", "g16")], sent

        # each partition's actions on the actions stream once, the
        # delivered ones with their users' partitions; none from the graph
        want = {(p, r[0]): (r[1], r[2]) for p, path in shards.items()
                for r in W.shard_rows(path, "SELECT seq, kind, user FROM actions")}

        def published():
            got = W.stream_actions(cfg)
            assert not any(a["partition"] == "graph" for a in got)
            keys = [(a["partition"], a["seq"]) for a in got]
            assert len(keys) == len(set(keys)), "an action published twice"
            return got if set(keys) == set(want) else None
        got = W.wait_for("the partitions' actions on the stream", published, 30)
        for a in got:
            assert (a["kind"], a["user"]) == want[(a["partition"], a["seq"])]
        with open(other.log, errors="replace") as f:
            assert "(the graph, reading every partition)" in f.read()


def test_a_cap_with_kinds_of_both_sides_decides_where_delivered():
    """A cap on coupon.issued counts coupons of the user partitions
    (welcome) and of the graph (the reward's chained coupon): it decides in
    the user's partition when the graph's coupon is delivered. bob's first
    order gives him the welcome coupon, then his reward coupon, which the
    cap keeps out in his partition; ann's reward coupon is recorded. As one
    daemon does."""
    campaigns = CAMPAIGNS + "  - {id: coupons, kinds: [coupon.issued], max: 1, per: 1d}\n"
    nc, d, ws = W.setup(1, campaigns)
    cfg = ws[0].cfg
    assert W.partition_of("ann") != W.partition_of("bob")
    evs = [{"id": "m1", "type": "user.signup", "user": "bob", "ts": W.T0,
            "props": {"referrer": "ann"}},
           {"id": "m2", "type": "order.paid", "user": "bob", "ts": W.T0 + 1000,
            "props": {"order_id": "b1", "amount": 20000}}]
    with W.workers_running(ws):
        ws[0].start()
        W.wait_for("w1 owns every partition", lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 20)
        W.publish(cfg, evs)
        shards = W.wait_for("the events applied", lambda: W.applied_all(cfg, ws, 2), 30)
        graph = W.wait_for("the graph", lambda: graph_shard(cfg, ws), 10)

        def coupons(path):
            try:
                return sorted(W.shard_rows(path, "SELECT campaign, user FROM actions "
                                           "WHERE kind = 'coupon.issued'"))
            except sqlite3.OperationalError:  # the shard being made
                return []
        W.wait_for("the graph's coupons", lambda: len(coupons(graph)) == 2, 30)
        assert coupons(graph) == [("reward-coupon", "ann"), ("reward-coupon", "bob")]
        W.wait_for("ann's reward coupon delivered",
                   lambda: coupons(shards[W.partition_of("ann")]), 30)
        assert coupons(shards[W.partition_of("ann")]) == [("reward-coupon", "ann")]
        # bob's reward coupon was delivered (its key is kept) and capped
        W.wait_for("bob's deliveries", lambda: W.shard_rows(
            shards[W.partition_of("bob")], "SELECT count(*) FROM uniques "
            "WHERE ns = 'mktd:delivered'")[0][0] == 3, 30)  # bound, reward, coupon
        assert coupons(shards[W.partition_of("bob")]) == [("welcome", "bob")]
        single = sorted((a["campaign"], a["kind"], a["user"]) for a in W.simulate(d, evs, campaigns))
        cluster = sorted(r for path in shards.values() for r in W.shard_rows(
            path, "SELECT campaign, kind, user FROM actions"))
        assert cluster == single, (cluster, single)


def test_a_real_event_is_explained_by_its_partition_and_the_graph():
    """A real signup with explain (mktd publish): stored, applied, and
    answered with the explanation of its partition's campaigns and then of
    the graph's, as its dry twin just before was; the binding it explained
    is the graph's."""
    nc, d, ws = W.setup(2, CAMPAIGNS)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        W.start_fair(ws)
        W.publish(cfg, [{"id": "h1", "type": "user.signup", "user": "host", "ts": W.T0}])
        W.wait_for("host's signup applied", lambda: W.applied_all(cfg, ws, 1), 30)
        W.wait_for("the graph to apply it too", lambda: W.shard_count(
            graph_shard(cfg, ws) or "") == 1, 30)
        signup = {"id": "h2", "type": "user.signup", "user": "guest", "ts": W.T0 + 1000,
                  "props": {"referrer": "host"}, "explain": True}
        twin, real = [json.loads(x) for x in W.publish(
            cfg, [dict(signup, dry=True), signup]).stdout.splitlines()]
        assert twin["status"] == "ok" and twin["dry"] is True, twin
        assert real["status"] == "ok" and real["seq"] > 0, real
        assert real["partition"] == W.partition_of("guest"), real
        assert real["explain"] == twin["explain"], (real, twin)
        # the partition's campaigns first (welcome waits for an order),
        # then the graph's (invite binds guest to host)
        got = [(x["campaign"], x["outcome"]) for x in real["explain"] if x["depth"] == 0]
        assert got[0] == ("welcome", "not_matched") and ("invite", "ran") in got[1:], real
        graph = W.wait_for("the graph's binding", lambda: (lambda g: g if g and W.shard_rows(
            g, "SELECT count(*) FROM actions WHERE kind = 'referral.bound' AND user = 'guest'")[
            0][0] == 1 else None)(graph_shard(cfg, ws)), 30)
        assert graph


def test_graph_follows_config_messages_until_a_referral_campaign_comes():
    """Without a referral campaign the graph reads only partition 0's
    subject; `mktd cluster reload` with one makes it read every partition
    from the config message on, and a signup after it is bound."""
    plain = W.CAMPAIGNS
    nc, d, ws = W.setup(1, plain)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        ws[0].start()
        W.wait_for("a graph owner", lambda: W.status(cfg)["graph"].get("owner") == "w1", 30)
        before = [{"id": f"b{i}", "type": "page.view", "user": f"p{i}", "ts": W.T0 + i}
                  for i in range(64)]
        W.publish(cfg, before)
        W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, len(before)), 30)
        graph = os.path.join(d, "w1", "mktd.db.graph")
        # (the graph's lease is taken a moment before its shard is opened)
        W.wait_for("the graph opened", lambda: "no campaign of its own: following config "
                   "messages" in open(ws[0].log, errors="replace").read(), 20)
        assert W.shard_count(graph) == 0  # following config messages only

        new = os.path.join(d, "new.yaml")
        with open(new, "w") as f:
            f.write(open(cfg).read().replace(plain, CAMPAIGNS))
        r = mktd("cluster", "reload", "-c", new, timeout=60)
        assert r.returncode == 0, r.stderr
        after = [{"id": "a1", "type": "user.signup", "user": "bob", "ts": W.T0 + 100,
                  "props": {"referrer": "ann"}},
                 {"id": "a2", "type": "user.signup", "user": "p3", "ts": W.T0 + 101,
                  "props": {"referrer": "ann"}}]
        W.publish(cfg, after)
        W.wait_for("the graph to apply the signups", lambda: W.shard_count(graph) == 2, 30)
        rows = W.shard_rows(graph, "SELECT kind, user FROM actions ORDER BY seq")
        # p3's page view came before the graph had a campaign: the graph
        # did not see it (docs/cluster.md says so), so p3 counts as new
        assert rows == [("referral.bound", "bob"), ("referral.bound", "p3")], rows
        with open(ws[0].log, errors="replace") as f:
            assert "(the graph): reading every partition from stream sequence" in f.read()
