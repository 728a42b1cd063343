"""Bad input (spec section 8): the daemon answers or closes, never crashes,
never corrupts the database and never stalls a well-behaved client."""
import json
import os
import random
import resource
import shutil
import socket
import struct
import threading
import time

from harness import VALGRIND, Daemon, lines_of, ok, slow

COUPON = """
- id: welcome
  plugin: coupon
  when: {event: order.paid}
  params: {value: 500, valid_for: 7d}
"""


class Prober:
    """A well-behaved client on its own connection: one event, one answer."""

    def __init__(self, d, unix=False):
        self.d = d
        self.s = d.connect(unix=unix)
        self.n = 0
        self.buf = b""

    def check(self, bound=10.0):
        self.n += 1
        id = f"probe-{id_tag()}-{self.n}"
        bound = slow(bound)
        t0 = time.time()
        self.s.settimeout(bound)
        self.s.sendall(json.dumps({"id": id, "type": "probe", "user": "prober"}).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(4096)
            assert chunk, "daemon closed the prober's connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        a = json.loads(line)
        assert a == {"id": id, "status": "ok", "actions": 0}, a
        assert time.time() - t0 < bound
        return a

    def close(self):
        self.s.close()


_tag = [0]


def id_tag():
    _tag[0] += 1
    return f"{os.getpid()}-{_tag[0]}"


def recv_lines(s, n, timeout=30):
    s.settimeout(slow(timeout))
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return [json.loads(x) for x in buf.split(b"\n") if x]


def finish(d, prober):
    """After the abuse: still answering, database intact, clean stop."""
    prober.check()
    prober.close()
    a = d.send([{"id": "final-" + id_tag(), "type": "t", "user": "u"}])
    ok(a[0], 0)
    assert d.db_rows("PRAGMA integrity_check") == [("ok",)]
    assert d.proc.poll() is None, d.log()
    assert d.stop() == 0


def test_garbage_lines_get_errors():
    d = Daemon(COUPON)
    p = Prober(d)
    try:
        p.check()
        nest = 10000
        cases = [
            (b"{\"id\":\"g1\",\"type\":\"t\",\"user\":\"u\"", "invalid_json"),
            (b"\xff\xfe\xfd\x80\x81", "invalid_json"),
            (b'{"id":"g2","type":"t","user":"\xe2\x82"}', "invalid_json"),     # truncated sequence
            (b'{"id":"g3","type":"t","user":"\xf8\x88\x80\x80\x80"}', "invalid_json"),
            (b'{"id":"g4","type":"t","user":"a\x00b"}', "invalid_json"),       # raw NUL in a string
            (b'\x00\x00\x00\x00', "invalid_json"),
            (b'{"id":"g5"\x00,"type":"t","user":"u"}', "invalid_json"),
            (b"[" * nest + b"]" * nest, "invalid_json"),
            (b'{"id":"g6","type":"t","user":"u","props":' + b'{"a":' * nest + b"1" + b"}" * nest + b"}",
             "invalid_json"),
            (b'{"id":"g7","type":"t","user":"u","props":' + b"[" * nest, "invalid_json"),  # unclosed
            (b'{"id":"g8","type":"t","user":"u","props":{"x":1e400}}', "invalid_json"),
            (b'{"id":"g9","type":"t","user":"u","props":{"x":-1e400}}', "invalid_json"),
            (b'{"id":"g10","type":"t","user":"u","ts":1e400}', "invalid_json"),
            (b'{"id":"g11","type":"order.paid","user":"u","props":{"order_id":"o","amount":99999999999999999999}}',
             "invalid_event"),
            (b'{"id":"g12","type":"t","user":"u","ts":99999999999999999999}', "invalid_event"),
            (b'{"id":"g13","type":"order.paid","user":"u","props":{"order_id":"o","amount":-99999999999999999999}}',
             "invalid_event"),
            (b'{"id":"g14","type":"order.paid","user":"u","props":{"order_id":"o","amount":9223372036854775808}}',
             "invalid_event"),
            (b'{"id":"g15","type":"t","user":"u","props":{"s":"' + b"\\u0000" * 100 + b'"}}', None),  # NUL escapes in props: fine
            (b'\x1b[31m\x07\x08 hello', "invalid_json"),
            (b'{"id":"g16","type":"t","user":"u","props":{"x":"' + b"\\" * 3 + b'"}}', "invalid_json"),
        ]
        s = d.connect()
        for i in range(0, len(cases), 4):  # a few at a time, the prober in between
            chunk = cases[i:i + 4]
            s.sendall(b"".join(c + b"\n" for c, _ in chunk))
            a = recv_lines(s, len(chunk))
            assert len(a) == len(chunk), a
            for (line, want), x in zip(chunk, a):
                if want is None:
                    ok(x, 0)
                else:
                    assert x["status"] == "error" and x["error"] == want, (line[:80], x)
            p.check()
        # random binary garbage, newlines included: every non-blank line is an error
        rnd = random.Random(7)
        blob = bytes(rnd.getrandbits(8) for _ in range(200000))
        s.sendall(blob + b"\n")
        expect = sum(1 for l in blob.split(b"\n")
                     if l.rstrip(b"\r").strip(b" \t\r"))
        a = recv_lines(s, expect)
        assert len(a) == expect, (len(a), expect)
        assert all(x["status"] == "error" for x in a)
        p.check()
        s.close()
        assert d.actions() == []
        assert d.db_rows("SELECT count(*) FROM events WHERE id NOT LIKE 'probe-%'")[0][0] == 1  # g15
    finally:
        p.close()
    finish(d, Prober(d))


def test_huge_line_without_newline_then_usable():
    d = Daemon()
    p = Prober(d, unix=True)
    try:
        s = d.connect()
        chunk = b"x" * 65536
        for _ in range(80):  # 5 MB
            s.sendall(chunk)
        p.check()
        # the too_large answer may come before the line ends
        s.sendall(b'"tail of the huge line"\n' + lines_of([{"id": "after", "type": "t", "user": "u"}]))
        a = recv_lines(s, 2)
        assert a[0]["status"] == "error" and a[0]["error"] == "too_large", a
        ok(a[1], 0)
        assert a[1]["id"] == "after"
        # a 5 MB line of valid-looking JSON, then more on the same connection
        big = json.dumps({"id": "big", "type": "t", "user": "u", "props": {"s": "y" * (5 << 20)}}).encode()
        s.sendall(big + b"\n" + lines_of([{"id": "after2", "type": "t", "user": "u"}]))
        a = recv_lines(s, 2)
        assert [x.get("error") for x in a] == ["too_large", None], a
        ok(a[1], 0)
        s.close()
        # 5 MB and the client vanishes mid-line
        s = d.connect()
        for _ in range(80):
            s.sendall(chunk)
        s.close()
        p.check()
        assert d.db_rows("SELECT count(*) FROM events WHERE id='big'")[0][0] == 0
    finally:
        p.close()
    finish(d, Prober(d))


def test_half_lines_and_vanishing_clients():
    d = Daemon(COUPON)
    p = Prober(d)
    try:
        for i in range(50):
            s = d.connect(unix=bool(i % 2))
            s.sendall(b'{"id":"half' + str(i).encode() + b'","type":"order.pa')
            if i % 3 == 0:
                # abortive close: RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        p.check()
        # complete events, client gone before reading answers
        for i in range(50):
            s = d.connect()
            s.sendall(lines_of([{"id": f"gone{i}", "type": "order.paid", "user": f"g{i}",
                                 "props": {"order_id": f"o{i}", "amount": 100}}]))
            if i % 2 == 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        p.check()
        # none of the halves was taken in
        assert d.db_rows("SELECT count(*) FROM events WHERE id LIKE 'half%'")[0][0] == 0
        # events read from vanished clients are kept or not, but never doubled and consistent
        # (one statement, one snapshot: the daemon may still be committing)
        n_ev, n_act = d.db_rows("SELECT (SELECT count(*) FROM events WHERE id LIKE 'gone%'),"
                                " (SELECT count(*) FROM actions)")[0]
        assert n_ev == n_act, (n_ev, n_act)
        # sending them again: the ones kept are duplicates, the rest ok, no action doubled
        a = d.send([{"id": f"gone{i}", "type": "order.paid", "user": f"g{i}",
                     "props": {"order_id": f"o{i}", "amount": 100}} for i in range(50)])
        assert sum(1 for x in a if x["status"] == "duplicate") >= n_ev
        assert all(x["status"] in ("ok", "duplicate") for x in a), a
        acts = d.actions()
        assert sorted(x["user"] for x in acts) == sorted(f"g{i}" for i in range(50)), acts
        assert d.db_rows("SELECT count(*) FROM events WHERE id LIKE 'gone%'")[0][0] == 50
    finally:
        p.close()
    finish(d, Prober(d))


def test_client_that_never_reads():
    d = Daemon()
    p = Prober(d)
    try:
        rss0 = d.rss_kb()
        n = 80000 if VALGRIND else 200000  # fewer under valgrind: still past the pause (~58,000)
        # long ids make long answers, padding makes the input outgrow any kernel buffering
        tail = b"-" + b"i" * 80
        pad = b"p" * 400
        data = b"".join(b'{"id":"nr%d%s","type":"t","user":"u%d","props":{"pad":"%s"}}\n'
                        % (i, tail, i % 100, pad) for i in range(n))
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", d.port))
        hog.setblocking(False)
        sent = 0
        last_progress = time.time()
        deadline = time.time() + slow(30)
        rounds = 0
        while sent < len(data) and time.time() < deadline:
            try:
                sent += hog.send(data[sent:sent + (1 << 16)])
                last_progress = time.time()
            except BlockingIOError:
                if time.time() - last_progress > 1.5:
                    break  # the daemon stopped reading us
                time.sleep(0.01)
            rounds += 1
            if rounds % 16 == 0:
                p.check()
        # the daemon stopped reading it rather than buffering its input and answers
        assert sent < len(data), "a client that never reads was never paused"
        # others are not stalled, memory is bounded
        for _ in range(5):
            p.check()
        rss = d.rss_kb()
        assert rss < 500 * 1024, (rss0, rss)
        # a second hog on the Unix socket at the same time
        hog2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        hog2.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog2.connect(d.sock)
        hog2.setblocking(False)
        data2 = b"".join(b'{"id":"nx%d","type":"t","user":"v"}\n' % i for i in range(50000))
        sent2 = 0
        t_end = time.time() + 3
        while sent2 < len(data2) and time.time() < t_end:
            try:
                sent2 += hog2.send(data2[sent2:sent2 + (1 << 16)])
            except BlockingIOError:
                time.sleep(0.01)
        p.check()
        rss2 = d.rss_kb()
        assert rss2 < 500 * 1024, (rss0, rss, rss2)
        hog2.close()  # vanishes with unread answers
        # now the first hog reads: every line it sent is answered, in order
        hog.settimeout(slow(30))
        rest = threading.Thread(target=hog.sendall, args=(data[sent:],))
        rest.start()
        parts, count = [], 0
        while count < n:
            r = hog.recv(1 << 20)
            if not r:
                break
            parts.append(r)
            count += r.count(b"\n")
        rest.join(slow(30))
        buf = b"".join(parts)
        hog.close()
        lines = buf.split(b"\n")[:-1]
        assert len(lines) == n, (len(lines), n)
        t = tail.decode()
        assert json.loads(lines[0]) == {"id": "nr0" + t, "status": "ok", "actions": 0}
        assert json.loads(lines[-1]) == {"id": f"nr{n - 1}{t}", "status": "ok", "actions": 0}
        for i in range(0, n, 997):
            assert json.loads(lines[i]) == {"id": f"nr{i}{t}", "status": "ok", "actions": 0}
        assert d.db_rows("SELECT count(*) FROM events WHERE id LIKE 'nr%'")[0][0] == n
        assert d.rss_kb() < 500 * 1024
    finally:
        p.close()
    finish(d, Prober(d))
    shutil.rmtree(d.dir, ignore_errors=True)  # a large database


def test_out_of_file_descriptors():
    """More clients than the daemon has descriptors for (a low LimitNOFILE):
    it keeps serving the ones it has, does not spin or flood its log, and
    takes new clients again once some leave."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(128, hard), hard))
    try:
        d = Daemon(http=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    p = Prober(d)
    socks = []
    try:
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=1))
            except OSError:
                break  # the backlog is full: the daemon is out of descriptors
        assert len(socks) > 100, len(socks)  # past what the daemon can accept
        for _ in range(100):  # and on the HTTP port
            try:
                socks.append(socket.create_connection(("127.0.0.1", d.http_port), timeout=1))
            except OSError:
                break
        for _ in range(10):
            p.check()
            time.sleep(0.1)
        lines = d.log().count("\n")
        assert lines < 200, f"{lines} log lines:\n" + d.log()[-2000:]
        # answers still flow for connections accepted before
        for s in socks[:50]:
            s.sendall(lines_of([{"id": "fd-" + id_tag(), "type": "t", "user": "u"}]))
        for s in socks[:50]:
            a = recv_lines(s, 1, timeout=10)
            if a:  # accepted ones answer; ones still in the backlog may not yet
                ok(a[0], 0)
        for s in socks:
            s.close()
        socks = []
        # descriptors are free again: new clients get in
        deadline = time.time() + 10
        while True:
            try:
                a = d.send([{"id": "fd-after-" + id_tag(), "type": "t", "user": "u"}])
                ok(a[0], 0)
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.1)
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
        assert d.log().count("\n") < 200
    finally:
        for s in socks:
            s.close()
        p.close()
    finish(d, Prober(d))


def test_many_connections_opened_and_closed():
    d = Daemon(http=True)
    p = Prober(d)
    try:
        opened = 0
        for round in range(10):
            socks = []
            for i in range(200):
                socks.append(d.connect(unix=bool(i % 2)))
                opened += 1
            if round % 3 == 0:
                for s in socks[::10]:
                    s.sendall(b'{"id":"c' + str(round).encode() + b'-')  # half a line, then gone
            for i, s in enumerate(socks):
                if i % 4 == 0:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            p.check()
        assert opened == 2000
        # garbage and half requests on the HTTP port
        junk = [b"\x00\xff garbage\r\n\r\n", b"POST /v1/events HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{\"id\":",
                b"GET /v1/health HTTP/1.1\r\nHost: x\r\n", b"POST /v1/events HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                b"POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
        for j in junk * 20:
            s = socket.create_connection(("127.0.0.1", d.http_port))
            s.sendall(j)
            s.close()
        p.check()
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
        assert d.db_rows("SELECT count(*) FROM events WHERE id NOT LIKE 'probe-%'")[0][0] == 0
        # the connections are released: only the prober is left
        deadline = time.time() + 10
        while True:
            st, text = d.http("GET", "/v1/health")
            assert st == 200
            conns = json.loads(text)["connections"]
            if conns == 1 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert conns == 1, text
        # more than max_connections (default 1024) at once: the extra ones wait, none are lost
        socks = [d.connect() for _ in range(1100)]
        for s in socks[:1050]:
            s.close()
        a = None
        for s in socks[1050:]:
            s.sendall(lines_of([{"id": "late-" + id_tag(), "type": "t", "user": "u"}]))
            s.shutdown(socket.SHUT_WR)
            a = recv_lines(s, 1, timeout=15)
            assert len(a) == 1 and a[0]["status"] == "ok", a
            s.close()
        p.check()
    finally:
        p.close()
    finish(d, Prober(d))
