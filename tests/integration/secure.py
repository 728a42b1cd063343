"""Helpers for the tests of section 14 (tokens, TLS): a tokens file, a
daemon with extra listen addresses, and certificates made at test time by
the `openssl` command in a temp dir (nothing is downloaded or kept)."""
import hashlib
import json
import os
import socket
import ssl
import subprocess
import tempfile

from harness import Daemon, _TEMP_DIRS, free_port, slow

COUPON = """
- id: welcome
  plugin: coupon
  when: {event: order.paid}
  params: {value: 500, valid_for: 7d}
"""

# name -> (token, scopes)
TOKENS = {
    "shop": ("s3cret-shop-token", "events"),
    "tester": ("dry-only-token", "dry"),
    "grafana": ("read-only-token", "read"),
    "ops": ("admin-token", "admin,read"),
}


def tokens_text(tokens):
    lines = ["# name scopes sha256(token)", ""]
    for name, (tok, scopes) in tokens.items():
        lines.append(f"{name} {scopes} {hashlib.sha256(tok.encode()).hexdigest()}")
    return "\n".join(lines) + "\n"


def paid(id, user="u1", amount=1000, dry=None):
    e = {"id": id, "type": "order.paid", "user": user,
         "props": {"order_id": "o-" + id, "amount": amount}}
    if dry is not None:
        e["dry"] = dry
    return e


class SecureDaemon(Daemon):
    """A Daemon with `daemon.auth` (a tokens file named `tokens` beside its
    config, written relative), and optional tls:/https: addresses."""

    def __init__(self, campaigns="[]", tokens=TOKENS, tls=None, tls_listen=False, https=False,
                 extra="", **kw):
        self.tls_port = free_port() if tls_listen else None
        self.https = https
        self.tokens = tokens
        lines = []
        if tokens is not None:
            lines.append("auth: {tokens_file: tokens}")
        if tls:
            lines.append("tls: " + json.dumps(tls))
        if extra:
            lines.append(extra)
        start = kw.pop("start", True)
        super().__init__(campaigns, daemon="\n".join(lines), start=False,
                         http=kw.pop("http", https), **kw)
        if tokens is not None:
            self.write_tokens(tokens)
        if start:
            self.start()

    def write_tokens(self, tokens, text=None):
        with open(os.path.join(self.dir, "tokens"), "w") as f:
            f.write(text if text is not None else tokens_text(tokens))

    def config_text(self, campaigns):
        t = super().config_text(campaigns)
        if self.tls_port:
            t = t.replace("listen: [", f'listen: ["tls:127.0.0.1:{self.tls_port}", ', 1)
        if self.https:
            t = t.replace(f'http: "127.0.0.1:{self.http_port}"',
                          f'http: "https:127.0.0.1:{self.http_port}"', 1)
        return t

    def http_auth(self, method, path, token=None, body=None, context=None, port=None):
        """(status, body text) of a request, with a bearer token when given."""
        import http.client
        port = port or self.http_port
        if context is not None:
            c = http.client.HTTPSConnection("127.0.0.1", port, timeout=slow(30), context=context)
        else:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=slow(30))
        headers = {"Authorization": "Bearer " + token} if token else {}
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            c.close()


def exchange(sock, data):
    """Sends data, half-closes (a plain socket; TLS cannot from python),
    then reads until the daemon closes; returns the answer lines as dicts."""
    sock.sendall(data)
    if not isinstance(sock, ssl.SSLSocket):
        sock.shutdown(socket.SHUT_WR)
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
    sock.close()
    return [json.loads(x) for x in buf.split(b"\n") if x.strip()]


def read_lines(sock, n):
    """Reads exactly n answer lines (the connection stays open)."""
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(x) for x in buf.split(b"\n") if x.strip()]


class Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, and client
    certificates by CN, all made by `openssl` in a temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mktd-certs-")
        _TEMP_DIRS.append(self.dir)
        self.ca, self.ca_key = self.path("ca.pem"), self.path("ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                  "-subj", "/CN=mktd test CA")
        self.cert, self.key = self.issue("localhost", san="IP:127.0.0.1,DNS:localhost")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, *args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def issue(self, cn, san=None, ca=None, ca_key=None):
        """A certificate with this CN signed by the CA: (cert, key) paths."""
        base = self.path(cn.replace(" ", "_"))
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + cn)
        args = ["x509", "-req", "-in", base + ".csr", "-CA", ca or self.ca,
                "-CAkey", ca_key or self.ca_key, "-CAcreateserial", "-out", base + ".pem",
                "-days", "2"]
        if san:
            ext = base + ".ext"
            with open(ext, "w") as f:
                f.write(f"subjectAltName={san}\n")
            args += ["-extfile", ext]
        self._run(*args)
        return base + ".pem", base + ".key"

    def client_context(self, cert=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            ctx.load_cert_chain(*cert)
        return ctx

    def tls_connect(self, port, cert=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=slow(30))
        return self.client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1")
