"""TLS (spec 14 and 18): tls:HOST:PORT for NDJSON, https:HOST:PORT for HTTP,
client certificates against client_ca naming tokens by CN, and `mktd send
--token --ca tls:...`. Certificates are made by `openssl` at test time."""
import json
import os
import socket
import ssl
import time

from harness import lines_of, mktd, ok, reload_wait, slow
from secure import COUPON, TOKENS, Certs, SecureDaemon, exchange, paid, read_lines

SHOP = TOKENS["shop"][0]
DRY = TOKENS["tester"][0]
READ = TOKENS["grafana"][0]

CERTS = []


def wait_log(d, text, count):
    """Waits until the daemon's log has text count times (a bounded wait for
    an outcome, not a timing check)."""
    deadline = time.time() + slow(15)
    while d.log().count(text) < count:
        assert time.time() < deadline, d.log()
        time.sleep(0.02)


def certs():
    if not CERTS:
        CERTS.append(Certs())
    return CERTS[0]


def tls_conf(c, client_ca=False):
    t = {"cert": c.cert, "key": c.key}
    if client_ca:
        t["client_ca"] = c.ca
    return t


def test_tls_ndjson_and_https_with_tokens():
    c = certs()
    d = SecureDaemon(COUPON, tls=tls_conf(c), tls_listen=True, https=True)
    try:
        s = c.tls_connect(d.tls_port)
        s.sendall(lines_of([{"auth": SHOP}, paid("t1"), paid("t1"), paid("t2", dry=True)]))
        a = read_lines(s, 4)
        assert a[0] == {"status": "ok", "auth": "shop"}, a
        ok(a[1], 1)
        assert a[2]["status"] == "duplicate"
        assert a[3]["status"] == "ok" and a[3]["dry"] is True
        s.close()
        # a wrong token over TLS: unauthorized, then closed
        s = c.tls_connect(d.tls_port)
        a = exchange(s, lines_of([{"auth": "nope"}, paid("t3")]))
        assert a == [{"status": "error", "error": "unauthorized"}], a
        # HTTPS: the bearer token, verified against our CA
        ctx = c.client_context()
        st, text = d.http_auth("POST", "/v1/events", token=SHOP, body=lines_of([paid("h1", user="u5")]),
                               context=ctx)
        assert st == 200, (st, text)
        ok(json.loads(text.splitlines()[0]), 1)
        assert d.http_auth("POST", "/v1/events", body=b"", context=ctx)[0] == 401
        st, text = d.http_auth("GET", "/metrics", token=READ, context=ctx)
        assert st == 200 and "mktd_auth_failures_total 2" in text, text
        # plain HTTP on the https address gets nowhere
        try:
            st, _ = d.http_auth("GET", "/v1/health", token=READ)
        except (OSError, Exception):
            st = None
        assert st != 200
        assert [x["event_id"] for x in d.actions()] == ["t1", "h1"]
    finally:
        assert d.stop() == 0


def test_client_certificates_name_tokens():
    c = certs()
    shop = c.issue("shop")
    tester = c.issue("tester")
    stranger = c.issue("stranger")
    d = SecureDaemon(COUPON, tls=tls_conf(c, client_ca=True), tls_listen=True, https=True)
    try:
        # the certificate's CN is the token name: no auth line
        s = c.tls_connect(d.tls_port, cert=shop)
        s.sendall(lines_of([paid("c1")]))
        ok(read_lines(s, 1)[0], 1)
        s.close()
        # an auth line there is answered with the certificate's token name
        s = c.tls_connect(d.tls_port, cert=shop)
        s.sendall(lines_of([{"auth": "whatever"}, paid("c1")]))
        a = read_lines(s, 2)
        assert a[0] == {"status": "ok", "auth": "shop"} and a[1]["status"] == "duplicate", a
        s.close()
        # its scopes apply: dry only
        s = c.tls_connect(d.tls_port, cert=tester)
        s.sendall(lines_of([paid("c2", user="u2"), paid("c3", user="u3", dry=True)]))
        a = read_lines(s, 2)
        assert a[0]["error"] == "forbidden" and a[1]["status"] == "ok", a
        s.close()
        # a CN that names no token: unauthorized, then closed
        s = c.tls_connect(d.tls_port, cert=stranger)
        a = exchange(s, lines_of([paid("c4", user="u4")]))
        assert a == [{"status": "error", "error": "unauthorized"}], a
        assert "client certificate CN 'stranger' names no token" in d.log()
        # no certificate: the handshake fails
        refused = False
        try:
            s = c.tls_connect(d.tls_port)
            s.sendall(lines_of([{"auth": SHOP}, paid("c5", user="u5")]))
            refused = s.recv(100) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            refused = True
        assert refused
        # a failed attempt, logged and counted (the client may see the alert
        # before the daemon writes its log line)
        wait_log(d, "(tls): tls handshake:", 1)
        # a certificate from another CA: refused too
        other = Certs()
        alien = c.issue("shop-alien", ca=other.ca, ca_key=other.ca_key)
        refused = False
        try:
            s = c.tls_connect(d.tls_port, cert=alien)
            s.sendall(lines_of([paid("c6", user="u6")]))
            refused = s.recv(100) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            refused = True
        assert refused
        # HTTPS with the certificate, no bearer token
        st, text = d.http_auth("POST", "/v1/events", body=lines_of([paid("c7", user="u7")]),
                               context=c.client_context(shop))
        assert st == 200, (st, text)
        ok(json.loads(text.splitlines()[0]), 1)
        st, _ = d.http_auth("GET", "/metrics", context=c.client_context(shop))
        assert st == 403  # shop has events, not read
        wait_log(d, "(tls): tls handshake:", 2)
        st, text = d.http_auth("GET", "/metrics", context=c.client_context(c.issue("grafana")))
        assert st == 200, (st, text)
        # stranger, no certificate, another CA's
        assert "mktd_auth_failures_total 3" in text, text
        assert [x["event_id"] for x in d.actions()] == ["c1", "c7"]
    finally:
        assert d.stop() == 0


def test_send_with_token_and_ca():
    c = certs()
    d = SecureDaemon(COUPON, tls=tls_conf(c), tls_listen=True)
    try:
        ev = os.path.join(d.dir, "ev.ndjson")
        with open(ev, "w") as f:
            f.write(json.dumps(paid("s1")) + "\n" + json.dumps(paid("s2", user="u2")) + "\n")
        addr = f"tls:127.0.0.1:{d.tls_port}"
        r = mktd("send", "--token", SHOP, "--ca", c.ca, addr, ev)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "2 answered: 2 ok (2 actions), 0 duplicate, 0 error" in r.stdout, r.stdout
        # again: duplicates; the auth answer is not counted
        r = mktd("send", "--token", SHOP, "--ca", c.ca, addr, ev)
        assert "2 answered: 0 ok (0 actions), 2 duplicate, 0 error" in r.stdout, r.stdout
        # a wrong token
        r = mktd("send", "--token", "wrong", "--ca", c.ca, addr, ev)
        assert r.returncode == 2 and "token was refused" in r.stderr, (r.stdout, r.stderr)
        # the server's certificate is not trusted without our CA
        r = mktd("send", "--token", SHOP, addr, ev)
        assert r.returncode == 2 and "certificate" in r.stderr, r.stderr
        # plain TCP with a token; the dry-only token's real events are forbidden
        r = mktd("send", "--token", DRY, f"tcp:127.0.0.1:{d.port}", ev)
        assert r.returncode == 1 and "forbidden" in r.stderr, (r.stdout, r.stderr)
        # the Unix socket needs none, and takes one
        r = mktd("send", f"unix:{d.sock}", ev)
        assert "2 duplicate" in r.stdout, r.stdout
        r = mktd("send", "--token", SHOP, f"unix:{d.sock}", ev)
        assert r.returncode == 0 and "2 answered: 0 ok (0 actions), 2 duplicate" in r.stdout, \
            (r.stdout, r.stderr)
        assert len(d.actions()) == 2
    finally:
        assert d.stop() == 0


def test_tls_errors_at_check_and_reload():
    c = certs()
    d = SecureDaemon(COUPON, tls=tls_conf(c), tls_listen=True, start=False)
    # check loads the certificate and key
    assert mktd("check", "-c", d.config).returncode == 0
    bad = dict(tls_conf(c), key=c.ca_key)  # a key that does not match
    d2 = SecureDaemon(COUPON, tls=bad, tls_listen=True, start=False)
    r = mktd("check", "-c", d2.config)
    assert r.returncode == 1 and "tls.key" in r.stderr and "mismatch" in r.stderr, r.stderr
    d3 = SecureDaemon(COUPON, tls=dict(tls_conf(c), cert="missing.pem"), tls_listen=True,
                      start=False)
    r = mktd("check", "-c", d3.config)
    assert r.returncode == 1 and os.path.join(d3.dir, "missing.pem") in r.stderr, r.stderr
    # tls: without daemon.tls
    d4 = SecureDaemon(COUPON, tls_listen=True, start=False)
    r = mktd("check", "-c", d4.config)
    assert r.returncode == 1 and "needs daemon.tls" in r.stderr, r.stderr
    # a running daemon takes a new certificate at reload; a bad one is refused
    d.start()
    try:
        c2 = c.issue("127.0.0.1", san="IP:127.0.0.1")
        d.extra = d.extra.replace(c.cert, c2[0]).replace(c.key, c2[1])
        assert reload_wait(d, COUPON) is True
        s = c.tls_connect(d.tls_port)
        assert s.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
        s.close()
        d.extra = d.extra.replace(c2[1], c.ca_key)
        assert reload_wait(d, COUPON) is False
        assert "mismatch" in d.log() and "reload failed" in d.log()
        s = c.tls_connect(d.tls_port)  # the old one stays
        assert s.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
        s.close()
    finally:
        assert d.stop() == 0
