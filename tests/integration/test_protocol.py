"""The line protocol over TCP and the Unix socket (spec sections 1 and 9)."""
import json
import socket
import time

from harness import Daemon, lines_of, ok

EV = {"type": "page.view", "user": "u1"}


def ev(i, **kw):
    e = {"id": i, "type": "page.view", "user": "u1"}
    e.update(kw)
    return e


def err(answer, code, id=None):
    assert answer["status"] == "error", answer
    assert answer["error"] == code, answer
    assert answer["id"] == id, answer
    assert isinstance(answer["detail"], str), answer
    assert set(answer) == {"id", "status", "error", "detail"}, answer


def read_answers(s, n, timeout=30):
    """Reads exactly n answer lines from a socket."""
    s.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    lines = [x for x in buf.split(b"\n") if x]
    assert len(lines) == n, (len(lines), n, buf[-300:])
    return [json.loads(x) for x in lines]


def test_pipelining_thousands_in_one_write_tcp_and_unix():
    d = Daemon()
    try:
        for unix in (False, True):
            tag = "x" if unix else "t"
            evs = [{"id": f"{tag}{i}", "type": "page.view", "user": f"u{i % 7}"} for i in range(5000)]
            s = d.connect(unix=unix)
            s.sendall(lines_of(evs))  # one write, no reading meanwhile
            a = read_answers(s, 5000)
            s.close()
            assert [x["id"] for x in a] == [e["id"] for e in evs]
            for x in a:
                ok(x, 0)
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 10000
    finally:
        assert d.stop() == 0


def test_answer_formats_exact():
    d = Daemon()
    try:
        s = d.connect()
        s.sendall(lines_of([ev("f1"), ev("f1"), '{"id":"f2","type":"page.view"}', "{nope"]))
        s.shutdown(socket.SHUT_WR)
        raw = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            raw += c
        s.close()
        lines = raw.split(b"\n")
        assert lines[-1] == b""
        lines = lines[:-1]
        assert len(lines) == 4, raw
        assert lines[0] == b'{"id":"f1","status":"ok","actions":0}', lines[0]
        assert lines[1] == b'{"id":"f1","status":"duplicate"}', lines[1]
        a2 = json.loads(lines[2])
        err(a2, "invalid_event", "f2")
        assert "user" in a2["detail"], a2
        assert list(a2) == ["id", "status", "error", "detail"]
        a3 = json.loads(lines[3])
        err(a3, "invalid_json")
    finally:
        assert d.stop() == 0


def test_blank_lines_crlf_and_last_line_without_newline():
    d = Daemon()
    try:
        data = (b"\n" + b"   \n" + b"\t \r\n" + b"\r\n" +
                json.dumps(ev("c1")).encode() + b"\r\n" +
                b" \t \n" +
                json.dumps(ev("c2")).encode() + b"\n\n\n" +
                json.dumps(ev("c3")).encode())  # no newline at EOF
        for unix in (False, True):
            a = d.send_raw(data.replace(b'"c', b'"u' if unix else b'"c'), unix=unix)
            want = ["u1", "u2", "u3"] if unix else ["c1", "c2", "c3"]
            assert [x["id"] for x in a] == want, a
            for x in a:
                ok(x, 0)
        # the CRLF-terminated event really is stored without the \r in its fields
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 6
        # a line that is just "\r" or whitespace at EOF gets no answer either
        assert d.send_raw(b"  \r") == []
        assert d.send_raw(b"") == []
    finally:
        assert d.stop() == 0


def test_duplicates_same_batch_and_across_connections():
    d = Daemon()
    try:
        a = d.send([ev("d1"), ev("d2"), ev("d1"), ev("d1")])
        assert [x["status"] for x in a] == ["ok", "ok", "duplicate", "duplicate"], a
        assert [x["id"] for x in a] == ["d1", "d2", "d1", "d1"]
        b = d.send([ev("d2"), ev("d3")], unix=True)
        assert [x["status"] for x in b] == ["duplicate", "ok"], b
        # two open connections interleaving the same id
        s1, s2 = d.connect(), d.connect(unix=True)
        s1.sendall(lines_of([ev("d9")]))
        assert read_answers(s1, 1)[0]["status"] == "ok"
        s2.sendall(lines_of([ev("d9", user="other")]))
        assert read_answers(s2, 1)[0] == {"id": "d9", "status": "duplicate"}
        s1.close()
        s2.close()
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 4
        # remembered across a restart too
        assert d.stop() == 0
        d.start()
        c = d.send([ev("d1"), ev("d4")])
        assert [x["status"] for x in c] == ["duplicate", "ok"], c
    finally:
        assert d.stop() == 0


def test_same_ids_racing_on_two_connections():
    d = Daemon()
    try:
        n = 4000
        evs = [{"id": f"race{i}", "type": "page.view", "user": f"u{i % 11}"} for i in range(n)]
        s1, s2 = d.connect(), d.connect(unix=True)
        s1.sendall(lines_of(evs))
        s2.sendall(lines_of(reversed(evs)))
        a1, a2 = read_answers(s1, n), read_answers(s2, n)
        s1.close()
        s2.close()
        assert [x["id"] for x in a1] == [e["id"] for e in evs]
        assert [x["id"] for x in a2] == [e["id"] for e in reversed(evs)]
        st1 = {x["id"]: x["status"] for x in a1}
        st2 = {x["id"]: x["status"] for x in a2}
        for e in evs:
            assert sorted([st1[e["id"]], st2[e["id"]]]) == ["duplicate", "ok"], e["id"]
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == n
        assert d.db_rows("SELECT sum(events) FROM users")[0][0] == n
    finally:
        assert d.stop() == 0


def test_answer_means_committed():
    d = Daemon("""
- id: welcome
  plugin: coupon
  when: {event: order.paid}
  params: {value: 500, valid_for: 7d}
""")
    try:
        s = d.connect()
        for i in range(20):
            s.sendall(lines_of([{"id": f"c{i}", "type": "order.paid", "user": f"cu{i}",
                                 "props": {"order_id": f"o{i}", "amount": 100}}]))
            ok(read_answers(s, 1)[0], 1)
            # visible to another reader of the database as soon as answered
            assert d.db_rows("SELECT count(*) FROM actions WHERE event_id=?", (f"c{i}",))[0][0] == 1
        s.close()
        d.kill9()
        d.start()
        assert len(d.actions()) == 20
    finally:
        assert d.stop() == 0


def test_invalid_json_cases():
    d = Daemon()
    try:
        # top-level object = level 1, props = level 2, then 62 or 63 arrays
        deep_ok = '{"id":"deep64","type":"t","user":"u","props":{"a":' + "[" * 62 + "]" * 62 + "}}"
        deep_bad = '{"id":"deep65","type":"t","user":"u","props":{"a":' + "[" * 63 + "]" * 63 + "}}"
        cases = [
            b"{",
            b"not json",
            b'{"id":"j1","type":"t","user":"u",}',
            b'{"id":"j2","type":"t","user":"u"} trailing',
            b'{"id":"j3","type":"t","user":"\xff\xfe"}',               # invalid UTF-8
            b'{"id":"j4","type":"t","user":"\xc0\xaf"}',               # overlong encoding
            b'{"id":"j5","type":"t","user":"\xed\xa0\x80"}',           # encoded surrogate
            b'{"id":"j6","type":"t","user":"a\\ud800"}',              # lone surrogate escape
            b'{"id":"j7","type":"t","user":"u","props":{"x":"\\udc00z"}}',
            b'{"id":"j8","type":"t","user":"u","props":{"x":1e400}}',  # beyond double
            b"{'id':'j9'}",
            deep_bad.encode(),
        ]
        data = b"".join(c + b"\n" for c in cases) + deep_ok.encode() + b"\n"
        a = d.send_raw(data)
        assert len(a) == len(cases) + 1, a
        for x in a[:-1]:
            err(x, "invalid_json")  # invalid_json never echoes an id
        ok(a[-1], 0)
        assert a[-1]["id"] == "deep64"
        # nesting is counted across objects and arrays alike
        deep_obj65 = '{"id":"o65","type":"t","user":"u","props":' + '{"a":' * 64 + "1" + "}" * 64 + "}"
        deep_obj64 = '{"id":"o64","type":"t","user":"u","props":' + '{"a":' * 63 + "1" + "}" * 63 + "}"
        b = d.send([deep_obj65, deep_obj64])
        err(b[0], "invalid_json")
        ok(b[1], 0)
        # none of the failed ones are stored or remembered
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 2
        c = d.send([ev("j3"), ev("j6"), ev("deep65")])
        assert [x["status"] for x in c] == ["ok"] * 3, c
    finally:
        assert d.stop() == 0


def test_invalid_event_cases():
    d = Daemon()
    try:
        long129 = "a" * 129
        cases = [
            ("[1,2]", None),
            ('"str"', None),
            ("42", None),
            ("null", None),
            ('{"type":"t","user":"u"}', None),                       # missing id
            ('{"id":"","type":"t","user":"u"}', None),               # empty id
            (json.dumps({"id": long129, "type": "t", "user": "u"}), None),
            ('{"id":5,"type":"t","user":"u"}', None),                # id not a string
            ('{"id":"a\\u0000b","type":"t","user":"u"}', None),      # NUL in id
            ('{"id":"e1","user":"u"}', "e1"),                       # missing type
            ('{"id":"e2","type":"","user":"u"}', "e2"),
            (json.dumps({"id": "e3", "type": "a" * 65, "user": "u"}), "e3"),
            ('{"id":"e4","type":"Page.View","user":"u"}', "e4"),     # upper case
            ('{"id":"e5","type":"page view","user":"u"}', "e5"),
            ('{"id":"e6","type":"page/view","user":"u"}', "e6"),
            ('{"id":"e7","type":"t"}', "e7"),                        # missing user
            ('{"id":"e8","type":"t","user":""}', "e8"),
            (json.dumps({"id": "e9", "type": "t", "user": long129}), "e9"),
            ('{"id":"e10","type":"t","user":7}', "e10"),
            ('{"id":"e11","type":"t","user":"u","ts":-1}', "e11"),
            ('{"id":"e12","type":"t","user":"u","ts":1.5}', "e12"),
            ('{"id":"e13","type":"t","user":"u","ts":1000.0}', "e13"),
            ('{"id":"e14","type":"t","user":"u","ts":"yesterday"}', "e14"),
            ('{"id":"e15","type":"t","user":"u","ts":"2021-01-01 00:00:00"}', "e15"),
            ('{"id":"e16","type":"t","user":"u","ts":"2021-13-01T00:00:00Z"}', "e16"),
            ('{"id":"e17","type":"t","user":"u","ts":"2016-12-31T23:59:60Z"}', "e17"),
            ('{"id":"e18","type":"t","user":"u","ts":"2021-01-01T00:00:00"}', "e18"),  # no offset
            ('{"id":"e19","type":"t","user":"u","ts":true}', "e19"),
            (json.dumps({"id": "e20", "type": "t", "user": "u",
                         "ts": int(time.time() * 1000) + 2 * 86400 * 1000}), "e20"),  # > max_future 1d
            ('{"id":"e21","type":"t","user":"u","props":[1]}', "e21"),
            ('{"id":"e22","type":"t","user":"u","props":"x"}', "e22"),
            ('{"id":"e23","type":"t","user":"u","type":"t"}', "e23"),  # repeated top-level key
            ('{"id":"e24","type":"order.paid","user":"u","props":{"order_id":"o1"}}', "e24"),
            ('{"id":"e25","type":"order.paid","user":"u","props":{"order_id":"o1","amount":100.0}}', "e25"),
            ('{"id":"e26","type":"order.paid","user":"u","props":{"order_id":"o1","amount":-1}}', "e26"),
            ('{"id":"e27","type":"order.paid","user":"u","props":{"amount":100}}', "e27"),
            ('{"id":"e28","type":"order.paid","user":"u","props":{"order_id":5,"amount":100}}', "e28"),
            ('{"id":"e29","type":"order.paid","user":"u","props":{"order_id":"o1","amount":"100"}}', "e29"),
            ('{"id":"e30","type":"order.paid","user":"u"}', "e30"),
            ('{"id":"e31","type":"order.refunded","user":"u","props":{"order_id":"o1","amount":0}}', "e31"),
            ('{"id":"e32","type":"order.refunded","user":"u","props":{"amount":5}}', "e32"),
            ('{"id":"e33","type":"coupon.used","user":"u","props":{}}', "e33"),
            ('{"id":"e34","type":"coupon.used","user":"u","props":{"code":""}}', "e34"),
            ('{"id":"e35","type":"coupon.used","user":"u","props":{"code":"C","amount":-5}}', "e35"),
            ('{"id":"e36","type":"user.signup","user":"u","props":{"referrer":3}}', "e36"),
            (json.dumps({"id": "e37", "type": "user.signup", "user": "u", "props": {"referrer": long129}}), "e37"),
            ('{"id":"e38","type":"order.paid","user":"u","props":{"order_id":"o1","amount":99999999999999999999}}', "e38"),
            ('{"id":"e39","type":"order.paid","user":"u","props":{"order_id":"o1","amount":1e2}}', "e39"),
        ]
        a = d.send([c for c, _ in cases])
        assert len(a) == len(cases), a
        for (line, want_id), x in zip(cases, a):
            assert x["status"] == "error" and x["error"] == "invalid_event", (line, x)
            assert x["id"] == want_id, (line, x)
            assert x["detail"], (line, x)
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 0
        assert d.db_rows("SELECT count(*) FROM users")[0][0] == 0
    finally:
        assert d.stop() == 0


def test_valid_edge_events():
    d = Daemon()
    try:
        now = int(time.time() * 1000)
        good = [
            {"id": "a" * 128, "type": "b" * 64, "user": "c" * 128},
            {"id": "k1", "type": "a-z_0.9", "user": "u", "ts": 0},
            {"id": "k2", "type": "t", "user": "u", "ts": None, "props": None, "extra": [1, {"x": 2}]},
            {"id": "k3", "type": "t", "user": "u", "ts": now + 3600 * 1000},  # within max_future
            {"id": "k4", "type": "order.paid", "user": "u", "props": {"order_id": "o1", "amount": 0}},
            {"id": "k5", "type": "order.refunded", "user": "u", "props": {"order_id": "o1"}},
            {"id": "k6", "type": "order.refunded", "user": "u", "props": {"order_id": "o1", "amount": None}},
            {"id": "k7", "type": "coupon.used", "user": "u", "props": {"code": "ABC", "amount": None}},
            {"id": "k8", "type": "user.signup", "user": "u9", "props": {"referrer": None}},
            {"id": "k9", "type": "t", "user": "u", "props": {"big": 1e300, "neg": -0.5, "huge": 99999999999999999999}},
            {"id": "k10", "type": "t", "user": "é用户", "props": {"s": "\ud83d\ude00 ok"}},
        ]
        a = d.send(good)
        for x, e in zip(a, good):
            ok(x)
            assert x["id"] == e["id"]
        # a repeated key inside props: the last one wins, no error
        b = d.send(['{"id":"k11","type":"order.paid","user":"u","props":{"order_id":"o2","amount":"x","amount":5}}'])
        ok(b[0])
        assert d.db_rows("SELECT spent FROM users WHERE id='u'")[0][0] == 5
    finally:
        assert d.stop() == 0


def test_echo_id_rules():
    d = Daemon()
    try:
        a = d.send([
            '{"id":"r1","id":"r1","type":"t","user":"u"}',   # repeated id key: null
            '{"id":"r2","id":"r3","type":"t","user":"u"}',
            '{"id":5,"type":"T","user":"u"}',
            '{"id":"","type":"T","user":"u"}',
            '{"id":"ok1","type":"T","user":"u"}',            # bad type, good id: echoed
            '{"id":"ok2","type":"t","user":"u"',             # invalid_json: null
            '{"id":"ok3\\u0000","type":"T","user":"u"}',
            json.dumps({"id": "z" * 129, "type": "T", "user": "u"}),
            json.dumps({"id": "z" * 128, "type": "T", "user": "u"}),
        ])
        assert [x["id"] for x in a] == [None, None, None, None, "ok1", None, None, None, "z" * 128], a
        for x in a:
            assert x["status"] == "error", x
        assert [x["error"] for x in a] == ["invalid_event"] * 5 + ["invalid_json"] + ["invalid_event"] * 3
        # repeats below the top level are not repeats of `id`; an escaped spelling is
        b = d.send([
            '{"id":"q1","type":"t","user":"u","props":{"id":1,"id":2}}',
            '{"x":{"id":"a","id":"b"},"id":"q2","type":"t","user":"u"}',
            '{"id":"q3","type":"t","user":"u","x":"\\"id\\":\\"zz\\""}',
            '{"id":"q4","ID":"x","type":"t","user":"u"}',
            '{"id":"q5","i\\u0064":"x","type":"t","user":"u"}',
            '{"id":"q6","type":"t","user":"u","props":{"a":1},"props":{"a":2}}',
        ])
        assert [(x["id"], x["status"]) for x in b] == [
            ("q1", "ok"), ("q2", "ok"), ("q3", "ok"), ("q4", "ok"), (None, "error"), ("q6", "error")], b
    finally:
        assert d.stop() == 0


def test_errors_have_no_effect():
    d = Daemon()
    try:
        a = d.send([
            '{"id":"n1","type":"order.paid","user":"u","props":{"order_id":"o","amount":1.5}}',
            '{"id":"n2","type":"BAD","user":"u"}',
            '{"id":"n3","type":"t","user":"u","ts":-5}',
        ])
        assert all(x["status"] == "error" for x in a), a
        assert d.db_rows("SELECT count(*) FROM users")[0][0] == 0
        b = d.send([
            '{"id":"n1","type":"order.paid","user":"u","props":{"order_id":"o","amount":150}}',
            '{"id":"n2","type":"good","user":"u"}',
            '{"id":"n3","type":"t","user":"u","ts":5}',
        ])
        assert [x["status"] for x in b] == ["ok"] * 3, b
        assert d.db_rows("SELECT events, orders, spent FROM users WHERE id='u'")[0] == (3, 1, 150)
    finally:
        assert d.stop() == 0


def test_validity_before_duplicate_and_no_clock_move():
    d = Daemon()
    try:
        a = d.send([
            {"id": "v1", "type": "t", "user": "u", "ts": 1000},
            {"id": "v1", "type": "BAD", "user": "u", "ts": 1000},        # invalid, not duplicate
            {"id": "v1", "type": "t", "user": "u", "ts": 50000000},      # duplicate: clock stays
            {"id": "v2", "type": "BAD", "user": "u", "ts": 60000000},    # error: clock stays
            {"id": "v3", "type": "t", "user": "nots"},                   # takes now = 1000
        ])
        assert [x["status"] for x in a] == ["ok", "error", "duplicate", "error", "ok"], a
        assert a[1]["error"] == "invalid_event" and a[1]["id"] == "v1"
        assert d.db_rows("SELECT first_seen FROM users WHERE id='nots'") == [(1000,)]
        assert d.db_rows("SELECT events, last_seen FROM users WHERE id='u'") == [(1, 1000)]
    finally:
        assert d.stop() == 0


def test_too_large_line_and_connection_stays_usable():
    d = Daemon(daemon="limits: {max_event_bytes: 1024}")
    try:
        base = '{"id":"%s","type":"t","user":"u","props":{"p":"%s"}}'

        def line_of(id, size):
            pad = size - len(base % (id, ""))
            s = base % (id, "x" * pad)
            assert len(s) == size
            return s

        for unix in (False, True):
            p = "u" if unix else "t"
            exact = line_of(p + "ex", 1024)
            over = line_of(p + "ov", 1025)
            huge = line_of(p + "hg", 200000)
            data = lines_of([exact, over, ev(p + "a1"), huge, ev(p + "a2")])
            # CRLF: the \r does not count towards the limit
            data += exact.replace(p + "ex", p + "cr").encode() + b"\r\n"
            data += over.replace(p + "ov", p + "o2").encode() + b"\r\n"
            data += json.dumps(ev(p + "a3")).encode() + b"\n"
            s = d.connect(unix=unix)
            s.sendall(data)
            a = read_answers(s, 8)
            assert [x["status"] for x in a] == ["ok", "error", "ok", "error", "ok", "ok", "error", "ok"], a
            for i in (1, 3, 6):
                err(a[i], "too_large")
            assert [a[i]["id"] for i in (0, 2, 4, 5, 7)] == [p + "ex", p + "a1", p + "a2", p + "cr", p + "a3"]
            # the same connection goes on
            s.sendall(lines_of([ev(p + "a4")]))
            ok(read_answers(s, 1)[0], 0)
            s.close()
            # too_large is not remembered: the id is free
            b = d.send([ev(p + "ov")], unix=unix)
            ok(b[0], 0)
        # a too-large last line without newline at EOF
        c = d.send_raw(lines_of([ev("l1")]) + b"x" * 5000)
        assert c[0]["status"] == "ok"
        err(c[1], "too_large")
        assert len(c) == 2
    finally:
        assert d.stop() == 0


def test_ts_rfc3339_forms():
    d = Daemon()
    try:
        cases = [
            ("2021-03-01T12:00:00Z", 1614600000000),
            ("2021-03-01t12:00:00z", 1614600000000),
            ("2021-03-01T20:00:00+08:00", 1614600000000),
            ("2021-03-01T07:30:00-04:30", 1614600000000),
            ("2021-03-01T12:00:00-00:00", 1614600000000),
            ("2021-03-01T12:00:00.123Z", 1614600000123),
            ("2021-03-01T12:00:00.123999Z", 1614600000123),
            ("2021-03-01T12:00:00.5Z", 1614600000500),
            ("2020-02-29T00:00:00Z", 1582934400000),
            ("1970-01-01T00:00:00Z", 0),
            (1614600000001, 1614600000001),
        ]
        evs = [{"id": f"ts{i}", "type": "t", "user": f"tu{i}", "ts": ts} for i, (ts, _) in enumerate(cases)]
        a = d.send(evs)
        for x in a:
            ok(x, 0)
        for i, (_, ms) in enumerate(cases):
            row = d.db_rows("SELECT first_seen, last_seen FROM users WHERE id=?", (f"tu{i}",))
            assert row == [(ms, ms)], (cases[i], row)
        bad = ["2021-02-29T00:00:00Z", "2021-04-31T00:00:00Z", "2021-01-01T24:00:00Z",
               "2021-01-01T00:60:00Z", "2021-01-01T00:00Z", " 2021-01-01T00:00:00Z",
               "2021-01-01T00:00:00Z ", "2021-01-01T00:00:00.Z", "1969-12-31T23:59:59Z", 1e3, ""]
        b = d.send([{"id": f"bad{i}", "type": "t", "user": "bu", "ts": ts} for i, ts in enumerate(bad)])
        for ts, x in zip(bad, b):
            assert x["status"] == "error" and x["error"] == "invalid_event", (ts, x)
    finally:
        assert d.stop() == 0


def test_profile_table_updated():
    d = Daemon()
    try:
        a = d.send([
            {"id": "p1", "type": "page.view", "user": "pu", "ts": 5000},
            {"id": "p2", "type": "order.paid", "user": "pu", "ts": 3000, "props": {"order_id": "o1", "amount": 700}},
            {"id": "p3", "type": "order.paid", "user": "pu", "ts": 9000, "props": {"order_id": "o1", "amount": 300}},
            {"id": "p4", "type": "order.refunded", "user": "pu", "ts": 9500, "props": {"order_id": "o1"}},
            {"id": "p2", "type": "order.paid", "user": "pu", "ts": 1, "props": {"order_id": "o9", "amount": 5}},
            {"id": "p5", "type": "page.view", "user": "other", "ts": 4000},
        ])
        assert [x["status"] for x in a] == ["ok"] * 4 + ["duplicate", "ok"], a
        row = d.db_rows("SELECT events, orders, spent, first_seen, last_seen FROM users WHERE id='pu'")
        assert row == [(4, 2, 1000, 3000, 9500)], row
        row = d.db_rows("SELECT events, orders, spent, first_seen, last_seen FROM users WHERE id='other'")
        assert row == [(1, 0, 0, 4000, 4000)], row
        # without ts under clock: event, an event takes the largest ts so far
        d.send([{"id": "p6", "type": "t", "user": "late"}])
        assert d.db_rows("SELECT first_seen FROM users WHERE id='late'") == [(9500,)]
        # spent saturates at the int64 maximum
        big = 9223372036854775807
        d.send([{"id": "s1", "type": "order.paid", "user": "rich", "props": {"order_id": "a", "amount": big}},
                {"id": "s2", "type": "order.paid", "user": "rich", "props": {"order_id": "b", "amount": big}}])
        assert d.db_rows("SELECT spent, orders FROM users WHERE id='rich'") == [(big, 2)]
    finally:
        assert d.stop() == 0


def test_wall_clock_default_ts_is_receipt_time():
    d = Daemon(clock="wall")
    try:
        t0 = int(time.time() * 1000)
        ok(d.send([{"id": "w1", "type": "t", "user": "wu"}])[0], 0)
        t1 = int(time.time() * 1000)
        (fs,), = d.db_rows("SELECT first_seen FROM users WHERE id='wu'")
        assert t0 - 1000 <= fs <= t1 + 1000, (t0, fs, t1)
    finally:
        assert d.stop() == 0
