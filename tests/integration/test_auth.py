"""Safe to expose (spec 14 and 18): tokens and scopes over HTTP and TCP,
failed attempts, the tokens file at reload, `check`'s loopback rule,
daemon.metrics, socket_mode, limits.max_past."""
import json
import os
import re
import socket
import stat
import time

from harness import Daemon, free_port, lines_of, metric_lines, mktd, ok, reload_wait, slow
from secure import COUPON, TOKENS, SecureDaemon, exchange, paid, read_lines, tokens_text

SHOP = TOKENS["shop"][0]
DRY = TOKENS["tester"][0]
READ = TOKENS["grafana"][0]


def answers(text):
    return [json.loads(x) for x in text.split("\n") if x.strip()]


def test_http_needs_a_token_with_the_scope():
    d = SecureDaemon(COUPON, http=True)
    try:
        body = lines_of([paid("h1")])
        st, text = d.http_auth("POST", "/v1/events", body=body)
        assert st == 401, (st, text)
        assert json.loads(text)["error"] == "unauthorized", text
        st, text = d.http_auth("POST", "/v1/events", token="not-a-token", body=body)
        assert st == 401 and json.loads(text)["error"] == "unauthorized", (st, text)
        assert d.actions() == []  # nothing reached the engine
        # a read-only token may not send events, nor an admin-only one
        st, text = d.http_auth("POST", "/v1/events", token=READ, body=body)
        assert st == 403 and json.loads(text)["error"] == "forbidden", (st, text)
        st, text = d.http_auth("POST", "/v1/events", token=SHOP, body=body)
        assert st == 200, (st, text)
        ok(answers(text)[0], 1)
        # health and metrics need read
        for path in ("/v1/health", "/metrics"):
            assert d.http_auth("GET", path)[0] == 401
            assert d.http_auth("GET", path, token=SHOP)[0] == 403
            st, text = d.http_auth("GET", path, token=READ)
            assert st == 200, (path, st, text)
            st, text = d.http_auth("GET", path, token=TOKENS["ops"][0])  # admin,read
            assert st == 200, (path, st, text)
        # the Unix socket relies on file permissions: no token
        a = d.send([paid("u-1", user="u2")], unix=True)
        ok(a[0], 1)
        # an auth line there is answered ok and ignored (auth null: not needed)
        a = d.send([{"auth": "anything"}, paid("u-2", user="u3")], unix=True)
        assert a[0] == {"status": "ok", "auth": None}, a
        ok(a[1], 1)
    finally:
        assert d.stop() == 0


def test_dry_only_token_real_line_forbidden_dry_line_ok():
    d = SecureDaemon(COUPON, http=True)
    try:
        # over HTTP, in one body
        st, text = d.http_auth("POST", "/v1/events", token=DRY,
                               body=lines_of([paid("r1"), paid("d1", dry=True)]))
        assert st == 200, (st, text)
        a = answers(text)
        assert a[0]["status"] == "error" and a[0]["error"] == "forbidden", a
        assert a[0]["id"] == "r1"
        assert a[1]["status"] == "ok" and a[1]["dry"] is True, a
        assert [x["kind"] for x in a[1]["actions"]] == ["coupon.issued"], a
        # ?dry=1 makes every line dry: allowed
        st, text = d.http_auth("POST", "/v1/events?dry=1", token=DRY, body=lines_of([paid("r2")]))
        assert st == 200 and answers(text)[0]["status"] == "ok", text
        # over TCP, in one batch
        s = d.connect()
        a = exchange(s, lines_of([{"auth": DRY}, paid("r3"), paid("d3", dry=True)]))
        assert a[0] == {"status": "ok", "auth": "tester"}, a
        assert a[1]["status"] == "error" and a[1]["error"] == "forbidden", a
        assert a[2]["status"] == "ok" and a[2]["dry"] is True, a
        # the forbidden lines never reached the engine: not even remembered
        assert d.actions() == []
        a = d.send([paid("r1"), paid("r3")], unix=True)
        assert [x["status"] for x in a] == ["ok", "ok"], a  # not duplicates
        st, text = d.http_auth("GET", "/metrics", token=READ)
        assert metric_lines(text)['mktd_events_total{status="forbidden"}'] == 2
    finally:
        assert d.stop() == 0


def _has_table(d, name):
    return bool(d.db_rows("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))


def test_tcp_auth_line():
    d = SecureDaemon(COUPON)
    try:
        s = d.connect()
        a = exchange(s, lines_of([{"auth": SHOP}, paid("t1"), paid("t1")]))
        assert a[0] == {"status": "ok", "auth": "shop"}, a
        ok(a[1], 1)
        assert a[2]["status"] == "duplicate"
        # a wrong token: unauthorized, then closed; the events after it are dropped
        s = d.connect()
        a = exchange(s, lines_of([{"auth": "wrong"}, paid("t2")]))
        assert a == [{"status": "error", "error": "unauthorized"}], a
        # an event as the first line is not an auth line
        s = d.connect()
        a = exchange(s, lines_of([paid("t3")]))
        assert a == [{"status": "error", "error": "unauthorized"}], a
        assert [x["event_id"] for x in d.actions()] == ["t1"]
        # the connection is closed by the daemon even while the client keeps it open
        s = d.connect()
        s.sendall(lines_of([{"auth": "wrong again"}]))
        assert read_lines(s, 1) == [{"status": "error", "error": "unauthorized"}]
        assert s.recv(100) == b""
        s.close()
        # a connection that sends nothing and goes is no failed attempt
        d.connect().close()
        assert "failed attempt from 127.0.0.1" in d.log()
        assert d.log().count("auth: failed attempt") == 3, d.log()
        # a connection kept open: the auth line first, then events as they come
        s = d.connect()
        s.sendall(lines_of([{"auth": SHOP}]))
        assert read_lines(s, 1) == [{"status": "ok", "auth": "shop"}]
        s.sendall(lines_of([paid("t4", user="u9")]))
        ok(read_lines(s, 1)[0], 1)
        s.close()
    finally:
        assert d.stop() == 0


def test_auth_line_without_auth_configured():
    """Clients may carry their tokens before auth is turned on."""
    d = Daemon(COUPON)
    try:
        a = d.send([{"auth": SHOP}, paid("n1"), {"auth": SHOP}])
        assert a[0] == {"status": "ok", "auth": None}, a
        ok(a[1], 1)
        # only the first line may be one; later it is an event like any other
        assert a[2]["status"] == "error" and a[2]["error"] == "invalid_event", a
        ev = os.path.join(d.dir, "ev.ndjson")
        with open(ev, "w") as f:
            f.write(json.dumps(paid("n2", user="u2")) + "\n")
        r = mktd("send", "--token", SHOP, f"tcp:127.0.0.1:{d.port}", ev)
        assert r.returncode == 0 and "1 answered: 1 ok (1 actions)" in r.stdout, (r.stdout, r.stderr)
    finally:
        assert d.stop() == 0


def test_failed_attempts_counted_and_slowed_down():
    d = SecureDaemon(http=True, extra=f'metrics: "127.0.0.1:{free_port()}"')
    try:
        for i in range(4):
            assert exchange(d.connect(), lines_of([{"auth": f"bad{i}"}])) == \
                [{"status": "error", "error": "unauthorized"}]
        for i in range(3):
            assert d.http_auth("POST", "/v1/events", token=f"bad{i}", body=b"")[0] == 401
        st, text = d.http_auth("GET", "/metrics", token=READ)
        assert metric_lines(text)["mktd_auth_failures_total"] == 7, text
        log = d.log()
        fails = [l for l in log.splitlines() if "auth: failed attempt from 127.0.0.1" in l]
        assert len(fails) == 7, log
        # the first five per address and minute are answered at once, later ones wait
        assert [("after a delay" in l) for l in fails] == [False] * 5 + [True] * 2, fails
        assert any("(http)" in l for l in fails) and any("(tcp)" in l for l in fails), fails
        # a good token still works for the address, at once
        a = exchange(d.connect(), lines_of([{"auth": SHOP}, {"id": "g", "type": "t", "user": "u"}]))
        assert a[0]["status"] == "ok" and a[1]["status"] == "ok", a
    finally:
        assert d.stop() == 0


def test_reload_reads_the_tokens_file_again():
    d = SecureDaemon(http=True)
    try:
        held = d.connect()  # authenticated with the token about to go
        held.sendall(lines_of([{"auth": SHOP}]))
        assert read_lines(held, 1) == [{"status": "ok", "auth": "shop"}]
        assert d.http_auth("POST", "/v1/events", token=SHOP, body=b"")[0] == 200
        new = dict(TOKENS)
        new["shop"] = ("rotated-shop-token", "events")
        d.write_tokens(new)
        assert reload_wait(d) is True
        assert d.http_auth("POST", "/v1/events", token=SHOP, body=b"")[0] == 401
        assert d.http_auth("POST", "/v1/events", token="rotated-shop-token", body=b"")[0] == 200
        # the connection whose token went is closed
        assert held.recv(100) == b""
        held.close()
        assert "token shop is no longer in the tokens file" in d.log()
        # a bad tokens file: the reload fails, naming file and line; the old tokens stay
        d.write_tokens(None, text="ok events " + "a" * 64 + "\nbroken events xyz\n")
        assert reload_wait(d) is False
        assert re.search(r"tokens:2: the third field must be the token's SHA-256", d.log()), d.log()
        assert d.http_auth("POST", "/v1/events", token="rotated-shop-token", body=b"")[0] == 200
        st, text = d.http_auth("GET", "/metrics", token=READ)
        assert metric_lines(text)['mktd_reloads_total{outcome="failed"}'] == 1
        # turning auth off takes a restart
        d.write_tokens(new)
        d.extra = ""
        assert reload_wait(d, "[]") is False
        assert "reload refused: `auth` changed" in d.log(), d.log()
        assert d.http_auth("POST", "/v1/events", body=b"")[0] == 401
    finally:
        assert d.stop() == 0


def test_metrics_address_without_auth():
    mport = free_port()
    d = SecureDaemon(http=True, extra=f'metrics: "127.0.0.1:{mport}"')
    try:
        assert d.http_auth("GET", "/metrics")[0] == 401
        st, text = d.http_auth("GET", "/metrics", port=mport)
        assert st == 200, (st, text)
        assert "mktd_auth_failures_total 1" in text, text
        st, text = d.http_auth("GET", "/v1/health", port=mport)
        assert st == 200 and json.loads(text)["status"] == "ok", text
        # no ingest there
        st, _ = d.http_auth("POST", "/v1/events", port=mport, body=lines_of([paid("m1")]))
        assert st in (404, 405, 501), st
    finally:
        assert d.stop() == 0


def _check(dir, config):
    path = os.path.join(dir, "c.yaml")
    with open(path, "w") as f:
        f.write(config)
    return mktd("check", "-c", path, cwd="/")  # paths resolve against the config's folder


def test_check_refuses_non_loopback_without_auth():
    d = Daemon(start=False)
    base = "campaigns: []\n"
    r = _check(d.dir, 'daemon:\n  listen: ["tcp:0.0.0.0:7411"]\n' + base)
    assert r.returncode == 1 and "not a loopback address" in r.stderr, r.stderr
    assert "c.yaml:2:" in r.stderr, r.stderr
    r = _check(d.dir, 'daemon:\n  listen: ["unix:x.sock"]\n  http: "0.0.0.0:7412"\n' + base)
    assert r.returncode == 1 and "http: '0.0.0.0:7412' is not a loopback address" in r.stderr, r.stderr
    # loopback needs nothing; daemon.metrics is not held to the rule
    r = _check(d.dir, 'daemon:\n  listen: ["tcp:127.0.0.1:7411", "tcp:[::1]:7411"]\n'
                      '  http: "localhost:7412"\n  metrics: "0.0.0.0:9100"\n' + base)
    assert r.returncode == 0, r.stderr
    # with auth: fine, the tokens file read from beside the config
    with open(os.path.join(d.dir, "tokens"), "w") as f:
        f.write(tokens_text(TOKENS))
    r = _check(d.dir, 'daemon:\n  listen: ["tcp:0.0.0.0:7411"]\n  auth: {tokens_file: tokens}\n' + base)
    assert r.returncode == 0, r.stderr
    # a bad tokens file is named with its line
    with open(os.path.join(d.dir, "tokens"), "w") as f:
        f.write("# ok\n\nshop events,write " + "0" * 64 + "\n")
    r = _check(d.dir, 'daemon:\n  listen: ["tcp:0.0.0.0:7411"]\n  auth: {tokens_file: tokens}\n' + base)
    assert r.returncode == 1, r.stderr
    assert os.path.join(d.dir, "tokens") + ":3: unknown scope 'write'" in r.stderr, r.stderr
    r = _check(d.dir, 'daemon:\n  auth: {tokens_file: nowhere}\n' + base)
    assert r.returncode == 1 and "nowhere" in r.stderr, r.stderr
    # socket_mode is a quoted octal string
    r = _check(d.dir, 'daemon:\n  socket_mode: 0660\n' + base)
    assert r.returncode == 1 and "socket_mode: must be a quoted octal mode" in r.stderr, r.stderr
    r = _check(d.dir, 'daemon:\n  socket_mode: "0980"\n' + base)
    assert r.returncode == 1 and "socket_mode" in r.stderr, r.stderr
    r = _check(d.dir, 'daemon:\n  socket_group: no-such-group-here\n' + base)
    assert r.returncode == 1 and "no group named 'no-such-group-here'" in r.stderr, r.stderr


def test_socket_mode_applies():
    d = Daemon(daemon='socket_mode: "0600"')
    try:
        assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o600
        # a reload applies a new mode
        d.extra = 'socket_mode: "0660"'
        assert reload_wait(d, "[]") is True
        assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
    finally:
        assert d.stop() == 0


def _other_group():
    """A group this process may give its files to, other than its own when
    it can: a supplementary one, or any (root); else its own."""
    import grp
    mine = os.getegid()
    others = [g for g in os.getgroups() if g != mine]
    if not others and os.geteuid() == 0:
        others = [g.gr_gid for g in grp.getgrall() if g.gr_gid != mine]
    gid = others[0] if others else mine
    return grp.getgrgid(gid).gr_name, gid


def test_socket_group_applies():
    name, gid = _other_group()
    d = Daemon(daemon=f'socket_mode: "0660"\nsocket_group: "{name}"')
    try:
        # the socket exists from its bind; its mode and group follow at
        # once, before "listening on" is logged
        deadline = time.time() + slow(10)
        while "listening on unix:" not in d.log() and time.time() < deadline:
            time.sleep(0.05)
        st = os.stat(d.sock)
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660, (st, name, gid)
    finally:
        assert d.stop() == 0


def test_max_past_on_live_ingestion_only():
    d = Daemon(COUPON, clock="wall", daemon="limits: {max_past: 7d}")
    try:
        now = int(time.time() * 1000)
        a = d.send([paid("p1", amount=100) | {"ts": now - 8 * 86400 * 1000},
                    paid("p2", user="u2") | {"ts": now - 6 * 86400 * 1000},
                    paid("p3", user="u3")])
        assert a[0]["status"] == "error" and a[0]["error"] == "invalid_event", a
        assert "max_past" in a[0]["detail"], a
        ok(a[1], 1)
        ok(a[2], 1)
        # simulate replays history: no max_past (nor max_future) there
        ev = os.path.join(d.dir, "old.ndjson")
        with open(ev, "w") as f:
            f.write(json.dumps(paid("s1") | {"ts": now - 30 * 86400 * 1000}) + "\n")
            f.write(json.dumps(paid("s2", user="u2") | {"ts": now + 3 * 86400 * 1000}) + "\n")
        r = mktd("simulate", "-c", d.config, ev)
        assert r.returncode == 0, r.stderr
        acts = [json.loads(x) for x in r.stdout.splitlines()]
        assert [x["event_id"] for x in acts] == ["s1", "s2"], acts
    finally:
        assert d.stop() == 0
    r = mktd("check", "-c", "/dev/null")  # sanity: an empty config is fine
    assert r.returncode == 0, r.stderr


def test_bad_tokens_file_stops_the_start():
    d = SecureDaemon(start=False)
    d.write_tokens(None, text="shop events " + "0" * 64 + "\nshop read " + "1" * 64 + "\n")
    try:
        d.start()
        started = True
    except RuntimeError:
        started = False
    assert not started and d.proc.returncode == 1
    assert "tokens:2: the same name as token shop" in d.log(), d.log()
