"""Cluster mode (spec 17 and 18), the gateway: a worker whose config names
`listen` addresses takes NDJSON events from clients on them and answers
each line as `mktd publish` does, once JetStream stored it:
{"id","status":"ok","partition","seq"}. A TCP client authenticates with
the auth line when daemon.auth is set; a Unix socket needs none. Against a
real three-node NATS JetStream cluster on 127.0.0.1."""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)
from harness import free_port, mktd, slow  # noqa: E402
from secure import TOKENS, tokens_text  # noqa: E402


def gateway_config(w, port, sock):
    """w's config with a TCP and a Unix listen address and a tokens file."""
    with open(os.path.join(w.d, "tokens"), "w") as f:
        f.write(tokens_text(TOKENS))
    with open(w.cfg) as f:
        text = f.read()
    text = text.replace("daemon:\n", "daemon:\n"
                        f'  listen: ["tcp:127.0.0.1:{port}", "unix:{sock}"]\n'
                        "  auth: {tokens_file: tokens}\n", 1)
    with open(w.cfg, "w") as f:
        f.write(text)


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
        a = ask(s, r, ev(99, dry=True))
        assert (a["status"], a["error"]) == ("error", "unsupported"), a
        s.close()

        # a wrong token: unauthorized, and the connection closed
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": "nope"}) == {"status": "error", "error": "unauthorized"}
        assert r.readline() == b""
        s.close()
        # a token without scope events is refused too
        s, r = connect_tcp(port)
        assert ask(s, r, {"auth": TOKENS["grafana"][0]})["error"] == "unauthorized"
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

        # every event stored once was applied once
        shards = W.wait_for("every event applied", lambda: W.applied_all(cfg, ws, 1005), 40)
        ids = []
        for path in shards.values():
            ids += [x[0] for x in W.shard_rows(path, "SELECT id FROM events")]
        assert sorted(ids) == sorted([f"gw{i}" for i in range(5)] + [e["id"] for e in many])

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


def test_check_refuses_what_a_worker_does_not_serve():
    nc, d, ws = W.setup(1)
    with open(ws[0].cfg) as f:
        text = f.read()
    bad = os.path.join(d, "bad.yaml")
    with open(bad, "w") as f:
        f.write(text.replace("daemon:\n", 'daemon:\n  http: "127.0.0.1:1"\n'
                             '  listen: ["tls:127.0.0.1:2"]\n', 1))
    r = mktd("check", "-c", bad)
    assert r.returncode != 0
    assert "bad.yaml:2:9: http: not served in cluster mode yet" in r.stderr, r.stderr
    assert "bad.yaml:3:12: listen: tls:127.0.0.1:2: tls: addresses are not served in cluster " \
        "mode yet" in r.stderr, r.stderr
