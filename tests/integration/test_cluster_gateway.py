"""Cluster mode (spec 17 and 18), the gateway: a worker whose config names
`listen` addresses takes NDJSON events from clients on them and answers
each line as `mktd publish` does, once JetStream stored it:
{"id","status":"ok","partition","seq"}; a dry line is evaluated by its
partition's owner (request-reply) and answered as one daemon answers it. A TCP client authenticates with
the auth line when daemon.auth is set; a Unix socket needs none. Against a
real three-node NATS JetStream cluster on 127.0.0.1."""
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import free_port, mktd, slow  # noqa: E402
from secure import TOKENS, Certs, tokens_text  # noqa: E402


def daemon_keys(w, keys, tokens=True):
    """w's config with these daemon keys (YAML lines) and a tokens file."""
    with open(os.path.join(w.d, "tokens"), "w") as f:
        f.write(tokens_text(TOKENS))
    with open(w.cfg) as f:
        text = f.read()
    text = text.replace("daemon:\n", "daemon:\n" + "".join(f"  {k}\n" for k in keys)
                        + ("  auth: {tokens_file: tokens}\n" if tokens else ""), 1)
    with open(w.cfg, "w") as f:
        f.write(text)


def gateway_config(w, port, sock):
    """w's config with a TCP and a Unix listen address and a tokens file."""
    daemon_keys(w, [f'listen: ["tcp:127.0.0.1:{port}", "unix:{sock}"]'])


def connect_tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=slow(20))
    return s, s.makefile("rb")


def ask(s, r, line):
    """One line sent, its answer read before anything else is sent."""
    s.sendall((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n")
    got = r.readline()
    assert got, "the connection closed"
    return json.loads(got)



def ev(i, user=None, **kw):
    e = {"id": f"gw{i}", "type": "order.paid", "user": user or f"u{i % 50}", "ts": W.T0 + i,
         "props": {"order_id": f"o{i}", "amount": 1000}}
    e.update(kw)
    return e


def test_a_worker_takes_events_on_its_listen_addresses():
    nc, d, ws = W.setup(1)
    w = ws[0]
    port, sock = free_port(), os.path.join(d, "w1.sock")
    gateway_config(w, port, sock)
    cfg = w.cfg
    with W.workers_running(ws):
        w.start()
        W.wait_for("the gateway", lambda: os.path.exists(sock) and "gateway: listening on tcp"
                   in open(w.log, errors="replace").read(), 30)

        # TCP: the auth line first, then each line answered before the next
        # is sent (answers come as JetStream stores the events)
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": TOKENS["shop"][0]}) == {"status": "ok", "auth": "shop"}
        seqs = []
        for i in range(5):
            a = ask(s, r, ev(i))
            assert a["status"] == "ok" and a["id"] == f"gw{i}", a
            assert a["partition"] == W.partition_of(f"u{i % 50}"), a
            seqs.append(a["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs
        assert ask(s, r, ev(0))["status"] == "duplicate"
        a = ask(s, r, "{not json")
        assert (a["status"], a["error"]) == ("error", "invalid_json"), a
        # a real event explained: stored, then answered once its owner
        # applied it, with the decisions (u49's first order: the coupon)
        a = ask(s, r, ev(99, explain=True))
        assert a["status"] == "ok" and a["id"] == "gw99" and a["seq"] > seqs[-1], a
        assert a["partition"] == W.partition_of("u49"), a
        ran = {(x["campaign"], x["outcome"], x.get("actions")) for x in a["explain"]}
        assert ("welcome", "ran", 1) in ran, a
        assert ask(s, r, ev(99, explain=True))["status"] == "duplicate"
        s.close()

        # a wrong token: unauthorized, and the connection closed
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": "nope"}) == {"status": "error", "error": "unauthorized"}
        assert r.readline() == b""
        s.close()
        # a token without scope events or dry is refused too
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": TOKENS["grafana"][0]})["error"] == "unauthorized"
        s.close()
        # a token with scope dry alone: its real lines are forbidden, line
        # by line, and nothing of them stored
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": TOKENS["tester"][0]}) == {"status": "ok", "auth": "tester"}
        a = ask(s, r, ev(98))
        assert (a["status"], a["error"], a["id"]) == ("error", "forbidden", "gw98"), a
        s.close()
        # no auth line: refused before any event is published
        s, r = connect_tcp(port)
        assert ask(s, r, ev(100))["error"] == "unauthorized"
        s.close()

        # the Unix socket needs no token: a thousand lines at once, the
        # answers in input order
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(slow(30))
        u.connect(sock)
        many = [ev(i) for i in range(1000, 2000)]
        u.sendall("".join(json.dumps(e) + "\n" for e in many).encode())
        u.shutdown(socket.SHUT_WR)
        answers = [json.loads(x) for x in u.makefile("rb")]
        u.close()
        assert [a["id"] for a in answers] == [e["id"] for e in many]
        assert all(a["status"] == "ok" for a in answers), answers[:3]

        # a first line longer than the few KiB read to look for an auth
        # line is published whole
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(slow(30))
        u.connect(sock)
        long = dict(ev(5000), props={"order_id": "o-long", "amount": 1000, "note": "x" * 9000})
        assert ask(u, u.makefile("rb"), long)["status"] == "ok"
        u.close()

        # every event stored once was applied once
        shards = W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, 1007), 40)
        ids = []
        for path in shards.values():
            ids += W.shard_event_ids(path)
        assert sorted(ids) == sorted([f"gw{i}" for i in range(5)] + [e["id"] for e in many]
                                     + ["gw99", "gw5000"])

        # a client still sending when the worker stops gets its answers
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": TOKENS["shop"][0]})["status"] == "ok"
        s.sendall("".join(json.dumps(ev(i)) + "\n" for i in range(3000, 3100)).encode())
        w.stop()
        answers = [json.loads(x) for x in r]
        assert [a["id"] for a in answers] == [f"gw{i}" for i in range(3000, 3100)], answers[-3:]
        assert all(a["status"] == "ok" for a in answers)
        s.close()
        assert not os.path.exists(sock), "the Unix socket left behind"
        log = open(w.log, errors="replace").read()
        assert log.count("gateway: connection from 127.0.0.1 refused") == 3, log[-3000:]


def http(port, path, body=None, token=None, context=None):
    """(status, parsed answers: a list for NDJSON, an object for JSON);
    context: an SSL context for https."""
    scheme = "https" if context else "http"
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=body,
                                 method="POST" if body is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=slow(30), context=context) as resp:
            code, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read().decode()
    if text.startswith("{") and text.count("\n") <= 1 and path.startswith("/v1/health"):
        return code, json.loads(text)
    try:
        return code, [json.loads(x) for x in text.splitlines() if x.strip()]
    except ValueError:
        return code, text


def test_a_worker_takes_events_over_http():
    """POST /v1/events on a worker's `http` address: each line answered as
    mktd publish answers it, ?dry=1 and ?explain=1 for every line, tokens'
    scopes as a single daemon checks them; GET /v1/health and /metrics."""
    nc, d, ws = W.setup(1)
    w = ws[0]
    port, mport = free_port(), free_port()
    daemon_keys(w, [f'http: "127.0.0.1:{port}"', f'metrics: "127.0.0.1:{mport}"'])
    cfg = w.cfg
    shop, dry_only, grafana = TOKENS["shop"][0], TOKENS["tester"][0], TOKENS["grafana"][0]
    body = lambda evs: "".join(json.dumps(e) + "\n" for e in evs).encode()  # noqa: E731
    with W.workers_running(ws):
        w.start()
        W.wait_for("the gateway's http", lambda: "gateway: http on" in
                   open(w.log, errors="replace").read(), 30)
        W.wait_for("every partition owned", lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS, 30)

        code, h = http(port, "/v1/health", token=grafana)
        assert code == 200 and h == {"status": "ok", "worker": "w1", "nats": "connected"}, h
        assert http(port, "/v1/health")[0] == 401
        assert http(port, "/v1/events", body([ev(1)]))[0] == 401
        assert http(port, "/v1/events", body([ev(1)]), token="nope")[0] == 401
        assert http(port, "/v1/events", body([ev(1)]), token=grafana)[0] == 403

        # a body of events: answered in input order once stored
        evs = [ev(i) for i in range(1, 6)] + [ev(7, user="vip")]
        code, got = http(port, "/v1/events", body(evs) + b"{not json\n", token=shop)
        assert code == 200, got
        assert [a["status"] for a in got] == ["ok"] * 6 + ["error"], got
        assert got[-1]["error"] == "invalid_json", got
        assert [a["id"] for a in got[:6]] == [e["id"] for e in evs]
        assert all(a["partition"] == W.partition_of(e["user"]) for a, e in zip(got, evs))
        code, again = http(port, "/v1/events", body(evs[:2]), token=shop)
        assert [a["status"] for a in again] == ["duplicate"] * 2, again

        # ?dry=1: every line evaluated dry by its owner, nothing stored; a
        # first order of a new user quotes the welcome coupon
        code, q = http(port, "/v1/events?dry=1&explain=1", body([ev(20, user="newbie")]),
                       token=shop)
        assert code == 200 and q[0]["dry"] is True, q
        assert [x["kind"] for x in q[0]["actions"]] == ["coupon.issued"], q
        assert any(x["campaign"] == "welcome" for x in q[0]["explain"]), q
        assert http(port, "/v1/events?dry=maybe", body([ev(21)]), token=shop)[0] == 400

        # a token with scope dry alone: real lines forbidden, dry ones served
        code, t = http(port, "/v1/events",
                       body([ev(30), dict(ev(31, user="newbie"), dry=True)]), token=dry_only)
        assert code == 200 and [a["status"] for a in t] == ["error", "ok"], t
        assert t[0]["error"] == "forbidden" and t[1]["dry"] is True, t

        # only the six real events were stored and applied
        shards = W.wait_for("the events applied", lambda: W.applied_all(cfg, ws, 6), 30)
        ids = sorted(i for path in shards.values() for i in W.shard_event_ids(path))
        assert ids == sorted(e["id"] for e in evs), ids

        # the worker's figures: GET /metrics with scope read on `http`, and
        # without auth on `metrics`
        assert http(port, "/metrics")[0] == 401
        code, text = http(port, "/metrics", token=grafana)
        assert code == 200 and isinstance(text, str), text
        figures = metrics_of(text)
        assert figures["mktd_cluster_partitions_owned"] == 16, figures
        assert figures["mktd_cluster_graph_owned"] == 1, figures
        assert figures["mktd_cluster_nats_connected"] == 1, figures
        # two dry lines, each asked of its partition's owner and the graph's
        assert figures["mktd_cluster_dry_runs_total"] == 4, figures
        # every partition's config message and the six events
        assert figures["mktd_cluster_messages_applied_total"] >= 16 + 6, figures
        seqs = {k: v for k, v in figures.items() if k.startswith("mktd_cluster_applied_seq{")}
        assert len(seqs) == 17 and 'mktd_cluster_applied_seq{partition="graph"}' in seqs, seqs
        code, open_text = http(mport, "/metrics")
        assert code == 200 and "mktd_cluster_partitions_owned 16" in open_text, open_text
        assert http(mport, "/v1/health")[0] == 200
        assert http(mport, "/v1/events", body([ev(40)]))[0] >= 400  # events: not here


def metrics_of(text):
    """name{labels} -> value of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_a_worker_serves_https():
    """https: with daemon.tls, verified against the test's CA; plain HTTP
    on that address gets nowhere."""
    c = Certs()
    nc, d, ws = W.setup(1)
    w = ws[0]
    port = free_port()
    daemon_keys(w, [f'http: "https:127.0.0.1:{port}"', f"tls: {{cert: {c.cert}, key: {c.key}}}"])
    with W.workers_running(ws):
        w.start()
        W.wait_for("the gateway's https", lambda: "gateway: http on" in
                   open(w.log, errors="replace").read(), 30)
        line = (json.dumps(ev(1)) + "\n").encode()
        code, got = http(port, "/v1/events", line, token=TOKENS["shop"][0],
                         context=c.client_context())
        assert code == 200 and got[0]["status"] == "ok" and got[0]["id"] == "gw1", got
        try:
            plain = http(port, "/v1/health", token=TOKENS["grafana"][0])[0]
        except OSError:
            plain = None
        assert plain != 200
        W.wait_for("the event applied", lambda: W.applied_all(w.cfg, ws, 1), 30)


def test_a_worker_serves_tls_ndjson():
    """tls: listen addresses (spec 14): NDJSON over TLS, answered as on
    tcp:; a client certificate verified against client_ca whose CN names a
    token needs no auth line; another CN sends the auth line; no
    certificate, or plain TCP, gets nothing."""
    from secure import read_lines
    c = Certs()
    shop, stranger = c.issue("shop"), c.issue("stranger")
    nc, d, ws = W.setup(1)
    w = ws[0]
    port = free_port()
    daemon_keys(w, [f'listen: ["tls:127.0.0.1:{port}"]',
                    f"tls: {{cert: {c.cert}, key: {c.key}, client_ca: {c.ca}}}"])
    lines = lambda evs: "".join(json.dumps(e) + "\n" for e in evs).encode()  # noqa: E731
    with W.workers_running(ws):
        w.start()
        W.wait_for("the gateway", lambda: f"gateway: listening on tls:127.0.0.1:{port}" in
                   open(w.log, errors="replace").read(), 30)
        # the certificate names the token: no auth line; a thousand lines
        # streamed come back in order
        s = c.tls_connect(port, cert=shop)
        s.settimeout(slow(60))
        evs = [ev(i) for i in range(1000)]
        s.sendall(lines(evs))
        got = read_lines(s, len(evs))
        assert [a["id"] for a in got] == [e["id"] for e in evs], got[:3]
        assert all(a["status"] == "ok" and "seq" in a for a in got), got[:3]
        s.sendall(lines([ev(0)]))
        assert read_lines(s, 1)[0]["status"] == "duplicate"
        s.close()
        # a CN that names no token: the auth line then
        s = c.tls_connect(port, cert=stranger)
        s.settimeout(slow(60))
        s.sendall(lines([{"auth": TOKENS["shop"][0]}, ev(1000)]))
        got = read_lines(s, 2)
        assert got[0] == {"status": "ok", "auth": "shop"} and got[1]["status"] == "ok", got
        s.close()
        # no certificate: the handshake fails; plain TCP gets no answer
        refused = False
        try:
            s = c.tls_connect(port)
            s.settimeout(slow(20))
            s.sendall(lines([ev(1001)]))
            refused = s.recv(100) == b""
        except (OSError, ssl.SSLError):
            refused = True
        assert refused
        p = socket.create_connection(("127.0.0.1", port), timeout=slow(20))
        p.sendall(lines([ev(1002)]))
        try:
            got = p.recv(100)
        except OSError:
            got = b""
        assert b"status" not in got, got
        p.close()
        W.wait_for("every event applied", lambda: W.applied_all(w.cfg, ws, 1001), 60)
        W.wait_for("the refused handshakes logged", lambda: open(
            w.log, errors="replace").read().count("gateway: TLS connection from 127.0.0.1") >= 2,
            20)
        # a client that sends and never reads: its answers pile up (the
        # pipe stops reading them past 1 MB), and a stop does not wait
        # for it beyond the flush's time
        hog = c.tls_connect(port, cert=shop)
        junk = b"".join(b'{"id":"h%07d%s","type":"no such"}\n' % (i, b"x" * 100)
                        for i in range(60000))

        def send_quietly():
            try:
                hog.sendall(junk)
            except (OSError, ssl.SSLError):
                pass
        threading.Thread(target=send_quietly, daemon=True).start()
        time.sleep(3)
        # a stop with a TLS client's lines in flight: they are answered
        # before the worker goes
        s = c.tls_connect(port, cert=shop)
        s.settimeout(slow(60))
        last = [ev(i) for i in range(2000, 2050)]
        s.sendall(lines(last))
        first = read_lines(s, 1)  # the gateway has the lines
        w.terminate()
        got = first + read_lines(s, len(last) - 1)
        assert [a["id"] for a in got] == [e["id"] for e in last], got[-3:]
        assert all(a["status"] == "ok" for a in got), got
        assert w.proc.wait(timeout=slow(30)) == 0, w.tail()


def test_check_refuses_what_a_worker_does_not_serve():
    nc, d, ws = W.setup(1)
    with open(ws[0].cfg) as f:
        text = f.read()
    bad = os.path.join(d, "bad.yaml")
    with open(bad, "w") as f:
        f.write(text.replace("daemon:\n", 'daemon:\n  http: "https:127.0.0.1:1"\n'
                             '  listen: ["tls:127.0.0.1:2"]\n', 1))
    r = mktd("check", "-c", bad)
    assert r.returncode != 0
    # https is served, with daemon.tls (whose absence is the only error here)
    assert "bad.yaml:2:9: http: 'https:127.0.0.1:1' needs daemon.tls" in r.stderr, r.stderr
    assert r.stderr.count("bad.yaml:2:") == 1, r.stderr
    # tls: is served too, with daemon.tls
    assert "tls: addresses are not served" not in r.stderr, r.stderr
    assert "tls:127.0.0.1:2" in r.stderr and "daemon.tls" in r.stderr, r.stderr


CHECKOUT = """campaigns:
  - id: welcome
    plugin: coupon
    group: checkout
    when:
      event: order.paid
      all: [{field: user.orders, op: eq, value: 1}]
    params: {value: 2000, min_spend: 10000, valid_for: 7d}
  - id: fullcut
    plugin: promotion
    group: checkout
    when: {event: order.paid}
    params: {value: 3000, min_spend: 20000}
"""


def test_without_tokens_tcp_clients_may_not_forget_or_export():
    """No tokens file: TCP clients of the gateway send events, not control
    lines (forget, export), as for one daemon; a Unix client may."""
    nc, d, ws = W.setup(1)
    port, sock = free_port(), os.path.join(d, "w1.sock")
    daemon_keys(ws[0], [f'listen: ["tcp:127.0.0.1:{port}", "unix:{sock}"]'], tokens=False)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        ws[0].start()
        W.wait_for("the gateway", lambda: W.owners(cfg) == ["w1"] * W.PARTITIONS
                   and os.path.exists(sock), 30)
        s, r = connect_tcp(port)
        assert ask(s, r, ev(1))["status"] == "ok"
        for line in ({"export": "u1"}, {"forget": "u1"}):
            a = ask(s, r, line)
            assert a["status"] == "error" and a["error"] == "forbidden", a
        s.close()
        W.wait_for("the event applied", lambda: W.applied_all(cfg, ws, 1), 30)
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(slow(60))
        u.connect(sock)
        a = ask(u, u.makefile("rb"), {"export": "u1"})
        assert a["status"] == "ok" and a["export"]["profile"]["events"] == 1, a
        u.close()


def test_dry_runs_are_answered_by_the_owner():
    """A dry order.paid quotes the checkout (the first-order coupon, or the
    满200减30 for a returning user: one group) through the gateway and
    through `mktd publish`, and keeps nothing; dry and explained, it says
    why. The gateway is on w1 and the users' partitions are w2's, so that
    every quote crosses workers."""
    nc, d, ws = W.setup(2, CHECKOUT)
    sock = os.path.join(d, "w1.sock")
    gateway_config(ws[0], free_port(), sock)
    cfg = ws[0].cfg
    with W.workers_running(ws):
        for w in ws:
            w.start()
        W.wait_for("8 partitions each and the gateway",
                   lambda: W.fair_shares(cfg, ws)
                   and os.path.exists(sock), 30)
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(slow(30))
        u.connect(sock)
        r = u.makefile("rb")
        # two users of w2's partitions, so that the gateway on w1 asks w2:
        # ann has paid once (real, through the stream); bob never has
        owners = W.owners(cfg)
        ann, bob = [u for u in (f"user{i}" for i in range(200))
                    if owners[W.partition_of(u)] == "w2"][:2]
        assert ask(u, r, ev(1, user=ann, props={"order_id": "a1", "amount": 25000}))[
            "status"] == "ok"
        W.wait_for("ann's order applied", lambda: W.applied_all(cfg, ws, 1), 30)

        def quote(user, i, **kw):
            a = ask(u, r, ev(i, user=user, dry=True, props={"order_id": f"q{i}", "amount": 25000},
                             **kw))
            assert a["status"] == "ok" and a["dry"] is True and a["id"] == f"gw{i}", a
            return a
        a = quote(bob, 10)  # a first order: the coupon takes the group
        assert [(x["campaign"], x["kind"]) for x in a["actions"]] == [("welcome",
                                                                     "coupon.issued")], a
        assert a["actions"][0]["payload"]["code"] is None
        a = quote(ann, 11)  # a second order: 满200减30
        assert [(x["kind"], x["payload"]["discount"]) for x in a["actions"]] == [
            ("promotion.applied", 3000)], a
        a = quote(ann, 12, explain=True)
        outcomes = {(x["campaign"], x["outcome"]) for x in a["explain"]}
        assert ("fullcut", "ran") in outcomes and ("welcome", "not_matched") in outcomes, a
        # a real order explained (stored, applied by w2, answered through
        # w1): the explanation its dry twin gave just before
        order = {"order_id": "a2", "amount": 25000}
        twin = ask(u, r, ev(13, user=ann, dry=True, explain=True, props=order))
        real = ask(u, r, ev(13, user=ann, explain=True, props=order))
        assert real["status"] == "ok" and real["partition"] == W.partition_of(ann), real
        assert real["seq"] > 0 and "dry" not in real and "actions" not in real, real
        assert real["explain"] == twin["explain"] and twin["explain"], (real, twin)
        u.close()

        # mktd publish serves dry lines the same way, in input order
        lines = [ev(20, user=bob, dry=True, props={"order_id": "q20", "amount": 25000}),
                 ev(21, user="cat", props={"order_id": "c1", "amount": 5000})]
        out = W.publish(cfg, lines).stdout.splitlines()
        got = [json.loads(x) for x in out]
        assert [x["id"] for x in got] == ["gw20", "gw21"], got
        assert got[0]["dry"] is True and got[0]["actions"][0]["kind"] == "coupon.issued"
        assert "seq" in got[1] and "dry" not in got[1]

        # nothing of a dry run was kept: only the two real orders applied,
        # and the only actions are theirs
        shards = W.wait_for("the real orders applied", lambda: W.applied_all(cfg, ws, 3), 30)
        ids = []
        for path in shards.values():
            ids += W.shard_event_ids(path)
        assert sorted(ids) == ["gw1", "gw13", "gw21"], ids
        acts = W.wait_for("the actions", lambda: (lambda a: a if len(a) == 3 else None)(
            W.stream_actions(cfg)), 20)
        assert sorted((a["user"], a["kind"]) for a in acts) == sorted(
            [(ann, "coupon.issued"), (ann, "promotion.applied"), ("cat", "coupon.issued")]), acts
