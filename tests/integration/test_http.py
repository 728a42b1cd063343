"""The HTTP side (spec section 1): POST /v1/events, /v1/health, /metrics."""
import json
import re
import select
import socket

from harness import Daemon, lines_of, ok, slow

COUPON = """
- id: welcome
  plugin: coupon
  when: {event: order.paid}
  params: {value: 500, valid_for: 7d}
"""


def answers(body):
    assert body.endswith("\n") or body == "", repr(body[-50:])
    return [json.loads(x) for x in body.split("\n") if x.strip()]


def metric(text, name, labels=""):
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
    assert m, (name, labels, text)
    return float(m.group(1))


def paid(id, user="u1", amount=1000, order=None):
    return {"id": id, "type": "order.paid", "user": user,
            "props": {"order_id": order or "o-" + id, "amount": amount}}


def test_post_events_ndjson_same_semantics():
    d = Daemon(COUPON, http=True)
    try:
        body = lines_of([
            paid("h1"),
            {"id": "h2", "type": "page.view", "user": "u1"},
            paid("h1"),
            '{"id":"h3","type":"BAD","user":"u1"}',
            "{not json",
            "   ",
            "",
        ]) + b"\r\n" + json.dumps({"id": "h4", "type": "page.view", "user": "u2"}).encode()  # no final newline
        st, text = d.http("POST", "/v1/events", body)
        assert st == 200, (st, text)
        a = answers(text)
        assert [x["status"] for x in a] == ["ok", "ok", "duplicate", "error", "error", "ok"], a
        assert [x["id"] for x in a] == ["h1", "h2", "h1", "h3", None, "h4"], a
        ok(a[0], 1)
        ok(a[1], 0)
        assert a[3]["error"] == "invalid_event"
        assert a[4]["error"] == "invalid_json"
        # the same answer text as the socket gives
        assert text.split("\n")[0] == '{"id":"h1","status":"ok","actions":1}'
        # committed: visible in the database once answered
        acts = d.actions()
        assert [(x["kind"], x["user"], x["event_id"]) for x in acts] == [("coupon.issued", "u1", "h1")]
        # duplicates span HTTP and the socket both ways
        s = d.send([paid("h1"), paid("h5")])
        assert [x["status"] for x in s] == ["duplicate", "ok"], s
        st, text = d.http("POST", "/v1/events", lines_of([paid("h5"), paid("h2")]))
        assert st == 200
        assert [x["status"] for x in answers(text)] == ["duplicate", "duplicate"]
        # an empty body: no answers
        st, text = d.http("POST", "/v1/events", b"")
        assert st == 200 and text.strip() == "", (st, text)
        st, text = d.http("POST", "/v1/events", b"\n \n\r\n")
        assert st == 200 and text.strip() == "", (st, text)
    finally:
        assert d.stop() == 0


def test_post_many_lines_in_order():
    d = Daemon(http=True)
    try:
        evs = [{"id": f"m{i}", "type": "page.view", "user": f"u{i % 5}"} for i in range(3000)]
        st, text = d.http("POST", "/v1/events", lines_of(evs))
        assert st == 200
        a = answers(text)
        assert [x["id"] for x in a] == [e["id"] for e in evs]
        assert all(x["status"] == "ok" for x in a)
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 3000
    finally:
        assert d.stop() == 0


def test_too_large_line_inside_body():
    d = Daemon(http=True, daemon="limits: {max_event_bytes: 200}")
    try:
        big = json.dumps({"id": "big", "type": "t", "user": "u", "props": {"x": "y" * 300}})
        st, text = d.http("POST", "/v1/events",
                          lines_of([{"id": "b1", "type": "t", "user": "u"}, big,
                                    {"id": "b2", "type": "t", "user": "u"}]))
        assert st == 200
        a = answers(text)
        assert [x["status"] for x in a] == ["ok", "error", "ok"], a
        assert a[1] == {"id": None, "status": "error", "error": "too_large", "detail": a[1]["detail"]}
    finally:
        assert d.stop() == 0


def test_body_over_max_http_body_is_413_and_no_effect():
    d = Daemon(COUPON, http=True, daemon="limits: {max_http_body: 1000}")
    try:
        evs = [paid(f"x{i}", user=f"xu{i}") for i in range(30)]
        body = lines_of(evs)
        assert len(body) > 1000
        st, _ = d.http("POST", "/v1/events", body)
        assert st == 413, st
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 0
        assert d.actions() == []
        # a body just under the limit works; the rejected ids are not remembered
        small = lines_of(evs[:5])
        assert len(small) <= 1000
        st, text = d.http("POST", "/v1/events", small)
        assert st == 200, (st, text)
        assert [x["status"] for x in answers(text)] == ["ok"] * 5
        assert len(d.actions()) == 5
        # exactly max_http_body bytes is accepted, one more is not
        one = json.dumps({"id": "pad", "type": "t", "user": "u", "props": {"p": ""}})
        exact = one.replace('"p": ""', '"p": "' + "z" * (999 - len(one)) + '"') + "\n"
        assert len(exact) == 1000
        st, _ = d.http("POST", "/v1/events", (exact[:-1] + " \n").encode())
        assert st == 413, st
        st, text = d.http("POST", "/v1/events", exact.encode())
        assert st == 200, (st, text)
        assert answers(text)[0]["status"] == "ok"
        # the daemon is fine afterwards
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
    finally:
        assert d.stop() == 0


def post_chunked(port, chunks, wait_for_answer_after=None):
    """POSTs chunks as a chunked body over a raw socket, as a client should
    (RFC 9112 9.6): it keeps the answer the server sent while the body was
    still going out, though sending the rest then fails (the server answers
    413 as soon as the body passes the limit and closes the connection, so
    the rest of the body meets a closed socket: a broken pipe or a reset).
    wait_for_answer_after=N waits, after N chunks, until the answer has
    arrived, so that the rest is sent to a connection already closed: the
    order in which http.client, sending chunk by chunk, failed now and then.
    Returns (status, whether sending the body failed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=slow(30))
    failed = False
    try:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i, ch in enumerate(chunks + [b""]):
            if i == wait_for_answer_after:
                select.select([s], [], [], slow(30))
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(ch), ch))
            except (BrokenPipeError, ConnectionResetError):
                failed = True
                break
        data = b""
        while b"\r\n" not in data:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    assert m, data
    return int(m.group(1)), failed


def test_body_over_limit_chunked_is_413():
    d = Daemon(http=True, daemon="limits: {max_http_body: 1000}")
    try:
        chunks = [lines_of([{"id": f"c{i}{j}", "type": "t", "user": "u"} for j in range(10)])
                  for i in range(5)]
        assert sum(map(len, chunks[:2])) <= 1000 < sum(map(len, chunks[:3]))
        # the whole body at once; then the rest sent after the answer came
        st, _ = post_chunked(d.http_port, chunks)
        assert st == 413, st
        # (whether sending the rest fails depends on when the daemon's close
        # reaches the client: the answer must be read either way)
        st, _ = post_chunked(d.http_port, chunks, wait_for_answer_after=3)
        assert st == 413, st
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 0
        # the daemon is fine afterwards
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
    finally:
        assert d.stop() == 0


def test_health_and_wrong_methods():
    d = Daemon(COUPON, http=True)
    try:
        st, text = d.http("GET", "/v1/health")
        assert st == 200, (st, text)
        h = json.loads(text)
        assert h["status"] == "ok", h
        st, _ = d.http("GET", "/v1/events")
        assert 400 <= st < 500, st
        st, _ = d.http("PUT", "/v1/events", b"{}")
        assert 400 <= st < 600 and st != 200, st
        st, _ = d.http("GET", "/nope")
        assert st == 404, st
        # nothing was taken in by the refused requests
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_metrics_prometheus_counts_by_status():
    d = Daemon(http=True, daemon="limits: {max_event_bytes: 100}")
    try:
        st, text = d.http("GET", "/metrics")
        assert st == 200
        assert "# TYPE mktd_events_total counter" in text
        assert metric(text, "mktd_events_total", '{status="ok"}') == 0
        d.send([{"id": "a", "type": "t", "user": "u"}, {"id": "b", "type": "t", "user": "u"},
                {"id": "a", "type": "t", "user": "u"}, "{bad", '{"id":"c"}', "x" * 500, "", "  "])
        d.http("POST", "/v1/events", lines_of([{"id": "c", "type": "t", "user": "u"}, "[]"]))
        st, text = d.http("GET", "/metrics")
        assert st == 200
        assert metric(text, "mktd_events_total", '{status="ok"}') == 3
        assert metric(text, "mktd_events_total", '{status="duplicate"}') == 1
        assert metric(text, "mktd_events_total", '{status="invalid_json"}') == 1
        assert metric(text, "mktd_events_total", '{status="invalid_event"}') == 2
        assert metric(text, "mktd_events_total", '{status="too_large"}') == 1
        # every sample line is well-formed exposition text
        for line in text.splitlines():
            if not line or line.startswith("#"):
                assert line == "" or re.match(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
                continue
            assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                            r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? ([-+0-9.eE]+|[-+]Inf|NaN)$', line), line
    finally:
        assert d.stop() == 0
