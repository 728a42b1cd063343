"""Webhook outputs (spec section 15): committed actions POSTed as NDJSON to
a receiver (a python http.server on 127.0.0.1 in a thread), signed, in seq
order, at least once; positions kept in the database; `mktd outputs`."""
import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
import time

from harness import Daemon, metric_lines, mktd, ok, slow

SECRET = b"s3cret-key"

CAMPAIGNS = """
- id: a
  plugin: probe
  when: {event: [hit.a, probe.disarm]}
  params: {emit_on: [hit.a]}
- id: b
  plugin: probe
  when: {event: hit.b}
  params: {emit_on: [hit.b]}
"""


class Receiver:
    """An HTTP server that records each POST (headers, body) and answers
    with the status self.status gives (a list is used up one per request),
    or hangs for self.hang seconds first."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.hang = 0
        self.cond = threading.Condition()
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.cond:
                    st = rec.status.pop(0) if isinstance(rec.status, list) and rec.status else rec.status
                    if isinstance(st, list):
                        st = 200
                    hang = rec.hang
                    # recorded as it arrives (mktd sends the next request only
                    # after this one's answer); a hung request's client gives
                    # up: it counts as no answer (0)
                    rec.requests.append({"status": 0 if hang else st, "headers": dict(self.headers),
                                         "body": body, "path": self.path})
                    rec.cond.notify_all()
                if hang:
                    time.sleep(hang)
                try:
                    self.send_response(st)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, pred, timeout=20):
        """Waits until pred(requests) is true; returns the requests."""
        deadline = time.time() + slow(timeout)
        with self.cond:
            while not pred(self.requests):
                left = deadline - time.time()
                assert left > 0, f"receiver: condition not met; got {self.requests}"
                self.cond.wait(left)
            return list(self.requests)

    def delivered(self):
        """Rows of the 2xx-answered requests, in the order they came."""
        out = []
        for r in self.requests:
            if 200 <= r["status"] < 300:
                out += [json.loads(x) for x in r["body"].split(b"\n") if x]
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def rows_in(n):
    return lambda reqs: sum(len([x for x in r["body"].split(b"\n") if x])
                            for r in reqs if 200 <= r["status"] < 300) >= n


class OutDaemon(Daemon):
    """A daemon whose config has an `outputs:` section (YAML text)."""

    def __init__(self, outputs, **kw):
        self.outputs = outputs
        super().__init__(CAMPAIGNS, **kw)

    def config_text(self, campaigns):
        text = super().config_text(campaigns)
        if self.outputs:
            text += "outputs:\n" + "\n".join("  " + x for x in self.outputs.strip("\n").split("\n")) + "\n"
        return text

    def write_config(self, campaigns):
        with open(os.path.join(self.dir, "secret"), "wb") as f:
            f.write(SECRET + b"\n")
        super().write_config(campaigns)

    def set_outputs(self, outputs):
        self.outputs = outputs
        self.write_config(CAMPAIGNS)


def wait_rows(d, sql, want, timeout=10):
    """Waits until the query gives want (the daemon writes a position once it
    has the receiver's answer, which the receiver records first)."""
    deadline = time.time() + slow(timeout)
    while True:
        got = d.db_rows(sql)
        if got == want:
            return
        assert time.time() < deadline, (sql, got, want)
        time.sleep(0.02)


def hits(prefix, n, kind="hit.a", user="u1", start=0):
    return [{"id": f"{prefix}{i}", "type": kind, "user": user} for i in range(start, start + n)]


def out_yaml(rec, id="crm", extra=""):
    return f'- {{id: {id}, url: "{rec.url()}", secret_file: secret{extra}}}'


def test_delivery_in_order_signed_ndjson():
    rec = Receiver()
    d = OutDaemon(out_yaml(rec, extra=", batch: 3"), http=True)
    try:
        for x in d.send(hits("e", 7)):
            ok(x, 1)
        reqs = rec.wait(rows_in(7))
        acts = d.actions()
        assert len(acts) == 7
        rows = rec.delivered()
        # every action once, in seq order, the same rows as the table's
        assert rows == acts, (rows, acts)
        for r in reqs:
            h = {k.lower(): v for k, v in r["headers"].items()}
            assert h["content-type"] == "application/x-ndjson"
            assert h["x-mktd-output"] == "crm"
            body_rows = [json.loads(x) for x in r["body"].split(b"\n") if x]
            assert 1 <= len(body_rows) <= 3
            assert h["x-mktd-seq"] == f"{body_rows[0]['seq']}-{body_rows[-1]['seq']}"
            want = "sha256=" + hmac.new(SECRET, r["body"], hashlib.sha256).hexdigest()
            assert hmac.compare_digest(h["x-mktd-signature"], want), (h, want)
            assert r["body"].endswith(b"\n")
        # the position is kept in the database
        wait_rows(d, "SELECT position, delivered FROM outputs WHERE id='crm'", [(7, 7)])
        m = d.metrics()
        assert m['mktd_output_delivered_total{output="crm"}'] == 7
        assert m['mktd_output_lag{output="crm"}'] == 0
        assert m['mktd_output_failures_total{output="crm"}'] == 0
        assert m['mktd_output_last_success_timestamp_seconds{output="crm"}'] > 1e9
    finally:
        assert d.stop() == 0
        rec.close()


def test_filters_by_kind_and_campaign():
    rec = Receiver()
    outs = "\n".join([
        out_yaml(rec, "only-b", ", campaigns: [b]"),
        out_yaml(rec, "disarms", ", kinds: [probe.disarmed]"),
        out_yaml(rec, "a-hits", ", kinds: [probe.hit, other.kind], campaigns: [a]"),
    ])
    d = OutDaemon(outs)
    try:
        evs = (hits("a", 2) + hits("b", 3, kind="hit.b") +
               [{"id": "d1", "type": "probe.disarm", "user": "u2"}] + hits("a", 1, start=5))
        for x in d.send(evs):
            ok(x)
        acts = d.actions()
        want = {
            "only-b": [a for a in acts if a["campaign"] == "b"],
            "disarms": [a for a in acts if a["kind"] == "probe.disarmed"],
            "a-hits": [a for a in acts if a["kind"] == "probe.hit" and a["campaign"] == "a"],
        }
        assert [len(v) for v in want.values()] == [3, 1, 3]

        def by_output(reqs):
            got = {k: [] for k in want}
            for r in reqs:
                if 200 <= r["status"] < 300:
                    got[r["headers"]["X-Mktd-Output"]] += [json.loads(x) for x in r["body"].split(b"\n") if x]
            return got

        rec.wait(lambda reqs: all(len(by_output(reqs)[k]) >= len(v) for k, v in want.items()))
        time.sleep(0.3)  # nothing more comes
        assert by_output(rec.requests) == want
    finally:
        assert d.stop() == 0
        rec.close()


def test_failure_retried_in_order_then_delivered():
    rec = Receiver()
    rec.status = [500, 503]  # two failures, then 200
    d = OutDaemon(out_yaml(rec, extra=", batch: 2"), http=True)
    try:
        for x in d.send(hits("e", 5)):
            ok(x, 1)
        reqs = rec.wait(rows_in(5))
        wait_rows(d, "SELECT position FROM outputs", [(5,)])
        assert [r["status"] for r in reqs[:3]] == [500, 503, 200]
        # the failed batch was sent again, the same rows, before anything later
        assert reqs[0]["body"] == reqs[1]["body"] == reqs[2]["body"]
        assert [x["seq"] for x in rec.delivered()] == [1, 2, 3, 4, 5]
        m = d.metrics()
        assert m['mktd_output_failures_total{output="crm"}'] == 2
        assert m['mktd_output_delivered_total{output="crm"}'] == 5
        # mktd outputs shows the last error and no lag
        r = mktd("outputs", "-c", d.config)
        assert r.returncode == 0, r.stderr
        line = [x for x in r.stdout.splitlines() if x.startswith("crm ")][0]
        f = line.split()
        assert f[1:4] == ["5", "0", "5"], line
        assert "HTTP 503" in line, line
    finally:
        assert d.stop() == 0
        rec.close()


def test_restart_resumes_from_stored_position():
    rec = Receiver()
    d = OutDaemon(out_yaml(rec, extra=", batch: 10"))
    try:
        for x in d.send(hits("e", 3)):
            ok(x, 1)
        rec.wait(rows_in(3))
        rec.status = 500  # un-acked from now on
        for x in d.send(hits("f", 2)):
            ok(x, 1)
        rec.wait(lambda reqs: any(r["status"] == 500 for r in reqs))
        assert d.stop() == 0
        assert d.db_rows("SELECT position FROM outputs") == [(3,)]
        rec.status = 200
        n_before = len(rec.requests)
        d.start()
        rec.wait(rows_in(5))
        later = rec.requests[n_before:]
        ok_rows = [json.loads(x)["seq"] for r in later if r["status"] == 200
                   for x in r["body"].split(b"\n") if x]
        # only the un-acked ones again, nothing acked before
        assert ok_rows == [4, 5], later
        assert [x["seq"] for x in rec.delivered()] == [1, 2, 3, 4, 5]
        wait_rows(d, "SELECT position, delivered FROM outputs", [(5, 5)])
    finally:
        d.stop()
        rec.close()


def test_new_output_starts_at_end_and_rewind():
    rec = Receiver()
    d = OutDaemon("")
    try:
        for x in d.send(hits("e", 4)):
            ok(x, 1)
        d.set_outputs(out_yaml(rec, "late"))
        d.reload()
        deadline = time.time() + slow(10)
        while not d.db_rows("SELECT position FROM outputs WHERE id='late'") and time.time() < deadline:
            time.sleep(0.05)
        assert d.db_rows("SELECT position FROM outputs WHERE id='late'") == [(4,)]
        for x in d.send(hits("f", 2)):
            ok(x, 1)
        rec.wait(rows_in(2))
        time.sleep(0.3)
        assert [x["seq"] for x in rec.delivered()] == [5, 6]
        # rewound while running: delivers seq 2 on again
        r = mktd("outputs", "--db", d.db, "--from", "2", "late")
        assert r.returncode == 0, r.stderr
        rec.wait(rows_in(2 + 5))
        assert [x["seq"] for x in rec.delivered()] == [5, 6, 2, 3, 4, 5, 6]
        # a reload that changes the url keeps the position
        d.set_outputs(f'- {{id: late, url: "{rec.url("/v2")}", secret_file: secret}}')
        d.reload()
        for x in d.send(hits("h", 1)):
            ok(x, 1)
        reqs = rec.wait(rows_in(2 + 5 + 1))
        assert reqs[-1]["path"] == "/v2" and [x["seq"] for x in rec.delivered()][-1] == 7
        assert all(r["path"] == "/hook" for r in reqs[:-1])
        # an unknown output is refused
        r = mktd("outputs", "--db", d.db, "--from", "2", "nope")
        assert r.returncode != 0 and "no output nope" in r.stderr
        # removed from the config: it stops
        d.set_outputs("")
        d.reload()
        n = len(rec.requests)
        for x in d.send(hits("g", 1)):
            ok(x, 1)
        time.sleep(0.5)
        assert len(rec.requests) == n
    finally:
        assert d.stop() == 0
        rec.close()


def test_hanging_receiver_does_not_hold_up_ingestion():
    rec = Receiver()
    rec.hang = 1
    d = OutDaemon(out_yaml(rec, extra=", timeout: 300ms"), http=True)
    try:
        for x in d.send(hits("e", 1)):
            ok(x, 1)
        # the daemon answers events while its delivery hangs and times out
        for i in range(5):
            for x in d.send(hits(f"x{i}-", 3, user=f"v{i}")):
                ok(x, 1)
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
        deadline = time.time() + slow(10)
        while time.time() < deadline:
            m = d.metrics()
            if m['mktd_output_failures_total{output="crm"}'] >= 1:
                break
            time.sleep(0.1)
        assert m['mktd_output_failures_total{output="crm"}'] >= 1
        assert m['mktd_output_lag{output="crm"}'] == 16
        r = mktd("outputs", "-c", d.config)
        assert r.returncode == 0, r.stderr
        line = [x for x in r.stdout.splitlines() if x.startswith("crm ")][0]
        assert line.split()[1:3] == ["0", "16"], line
        assert "timed out" in line.lower(), line
        rec.hang = 0
        rec.wait(rows_in(16))
        assert [x["seq"] for x in rec.delivered()] == list(range(1, 17))
    finally:
        assert d.stop() == 0
        rec.close()


def test_check_reports_bad_outputs():
    rec = Receiver()
    d = OutDaemon(out_yaml(rec), start=False)
    try:
        bad = "\n".join([
            '- {id: "Bad Id", url: "ftp://x", secret_file: missing, batch: 0, timeout: soon, extra: 1}',
            f'- {{id: dup, url: "{rec.url()}", secret_file: secret, kinds: [1, ""]}}',
            f'- {{id: dup, url: "{rec.url()}"}}',
        ])
        d.set_outputs(bad)
        r = mktd("check", "-c", d.config)
        assert r.returncode == 1
        errs = r.stderr
        for want in ["id: must be 1-64 characters", "url: 'ftp://x' must be an http:// or https://",
                     "secret_file:", "batch: must be an integer from 1 to 10000",
                     "timeout: must be a duration", "unknown key 'extra'",
                     "output id 'dup' is used twice", "missing required key 'secret_file'",
                     "kinds: must be a non-empty string"]:
            assert want in errs, (want, errs)
        # each message names its place as FILE:LINE:COL
        for line in errs.strip().splitlines():
            assert line.startswith(d.config + ":"), line
        with open(os.path.join(d.dir, "empty"), "w"):
            pass
        d.set_outputs(f'- {{id: x, url: "{rec.url()}", secret_file: empty}}')
        r = mktd("check", "-c", d.config)
        assert r.returncode == 1 and "is empty" in r.stderr, r.stderr
        d.set_outputs(out_yaml(rec))
        r = mktd("check", "-c", d.config)
        assert r.returncode == 0, r.stderr
    finally:
        rec.close()


def test_retention_keeps_undelivered_and_last_actions():
    rec = Receiver()
    d = OutDaemon(out_yaml(rec, extra=", batch: 2"), http=True,
                  daemon="retention: {actions: 1d}")
    old = 1600000000000  # 2020: older than a day

    def pruned():
        return d.metrics()["mktd_actions_pruned_total"]

    def wait_pruned(n):
        deadline = time.time() + slow(15)
        while pruned() < n:
            assert time.time() < deadline, (pruned(), d.actions())
            time.sleep(0.05)
        assert pruned() == n

    try:
        evs = [dict(e, ts=old + i) for i, e in enumerate(hits("e", 5))]
        for x in d.send(evs[:2]):
            ok(x, 1)
        wait_rows(d, "SELECT position FROM outputs", [(2,)])
        rec.status = 500
        for x in d.send(evs[2:]):
            ok(x, 1)
        # delivered and old: pruned; old but not delivered: kept
        wait_pruned(2)
        assert [a["seq"] for a in d.actions()] == [3, 4, 5]
        rec.status = 200
        rec.wait(rows_in(5))
        # all delivered: the last action stays all the same (seq goes on from it)
        wait_pruned(4)
        assert [a["seq"] for a in d.actions()] == [5]
        for x in d.send([{"id": "f0", "type": "hit.a", "user": "u1", "ts": int(time.time() * 1000)}]):
            ok(x, 1)
        wait_pruned(5)
        acts = d.actions()
        assert [a["seq"] for a in acts] == [6] and acts[0]["event_id"] == "f0"
        assert [x["seq"] for x in rec.delivered()] == [1, 2, 3, 4, 5, 6]
        assert "retention: " in d.log()
    finally:
        assert d.stop() == 0
        rec.close()
