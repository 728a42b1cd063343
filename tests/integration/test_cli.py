"""The command line (spec section 6): check, send, actions, simulate."""
import json
import os
import select
import subprocess
import tempfile
import time

from harness import PLUGINS, Daemon, command, lines_of, mktd, slow

COUPON = """
- id: welcome
  plugin: coupon
  when: {event: order.paid}
  params: {value: 500, valid_for: 7d}
- id: vip
  plugin: coupon
  when:
    event: order.paid
    all:
      - {field: props.amount, op: gte, value: 10000}
  params: {percent: 10, valid_for: 1d, code_prefix: VIP-}
"""

REACT = """
- id: winback
  plugin: reactivation
  params: {inactive_for: 1h}
"""

COLUMNS = ["seq", "ts", "campaign", "kind", "user", "event_id", "payload"]


def paid(id, user="u1", amount=1000, ts=None):
    e = {"id": id, "type": "order.paid", "user": user, "props": {"order_id": "o-" + id, "amount": amount}}
    if ts is not None:
        e["ts"] = ts
    return e


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def ndjson(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def config(dirpath, body, database=None):
    db = database or os.path.join(dirpath, "never", "mktd.db")
    return write(os.path.join(dirpath, "c.yaml"),
                 "daemon:\n"
                 '  listen: ["tcp:127.0.0.1:1"]\n'
                 f"  database: {db}\n"
                 f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
                 f"{body}")


# ---- check ----

def test_check_ok_and_errors_with_position():
    t = tempfile.mkdtemp(prefix="mktd-cli-")
    good = config(t, "campaigns:\n"
                     "  - id: welcome\n"
                     "    plugin: coupon\n"
                     "    when: {event: order.paid}\n"
                     "    params: {value: 500, valid_for: 7d}\n")
    r = mktd("check", "-c", good)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    # the database is not created by a check
    assert not os.path.exists(os.path.join(t, "never"))

    bad_value = config(t, "campaigns:\n"
                          "  - id: welcome\n"
                          "    plugin: coupon\n"
                          "    when: {event: order.paid}\n"
                          "    params: {value: -5, valid_for: 7d}\n")
    r = mktd("check", "-c", bad_value)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    # line 9 of the file, the column where -5 starts
    line9 = open(bad_value).read().splitlines()[8]
    col = line9.index("-5") + 1
    assert r.stderr.startswith(f"{bad_value}:9:{col}: "), r.stderr

    bad_duration = config(t, "campaigns:\n"
                             "  - id: welcome\n"
                             "    plugin: coupon\n"
                             "    when: {event: order.paid}\n"
                             "    params:\n"
                             "      value: 500\n"
                             "      valid_for: soon\n")
    r = mktd("check", "-c", bad_duration)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad_duration}:11:18: "), r.stderr

    unknown_key = config(t, "campaigns:\n"
                            "  - id: welcome\n"
                            "    plugin: coupon\n"
                            "    colour: red\n"
                            "    when: {event: order.paid}\n"
                            "    params: {value: 500, valid_for: 7d}\n")
    r = mktd("check", "-c", unknown_key)
    assert r.returncode == 1
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{unknown_key}:8:5: "), first
    assert "colour" in first
    for k in ("id", "plugin", "enabled", "starts", "ends", "when", "params"):
        assert k in first, (k, first)

    unknown_param = config(t, "campaigns:\n"
                              "  - id: welcome\n"
                              "    plugin: coupon\n"
                              "    when: {event: order.paid}\n"
                              "    params: {value: 500, valid_for: 7d, colour: red}\n")
    r = mktd("check", "-c", unknown_param)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{unknown_param}:9:"), r.stderr
    assert "colour" in r.stderr and "valid_for" in r.stderr and "per_user_limit" in r.stderr

    unknown_daemon_key = write(os.path.join(t, "d.yaml"),
                               "daemon:\n"
                               '  listen: ["tcp:127.0.0.1:1"]\n'
                               "  databse: x.db\n"
                               "campaigns: []\n")
    r = mktd("check", "-c", unknown_daemon_key)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{unknown_daemon_key}:3:3: "), r.stderr
    assert "databse" in r.stderr and "database" in r.stderr

    unknown_plugin = config(t, "campaigns:\n"
                               "  - id: welcome\n"
                               "    plugin: nosuchplugin\n"
                               "    when: {event: order.paid}\n")
    r = mktd("check", "-c", unknown_plugin)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{unknown_plugin}:7:13: "), r.stderr
    assert "nosuchplugin" in r.stderr

    more = [
        # (campaigns text, line, col, words in the message)
        ("campaigns:\n"
         "  - id: a\n"
         "    plugin: reactivation\n"
         "    params: {inactive_for: 1h}\n"
         "  - id: a\n"
         "    plugin: reactivation\n"
         "    params: {inactive_for: 1h}\n", 9, 9, ["a"]),
        ("campaigns:\n"
         "  - id: r\n"
         "    plugin: reactivation\n"
         "    when: {event: x}\n"
         "    params: {inactive_for: 1h}\n", 8, 11, ["when"]),
        ("campaigns:\n"
         "  - id: r\n"
         "    plugin: reactivation\n"
         "    params: {inactive_for: 1h, max_attempts: 0}\n", 8, 46, ["max_attempts"]),
        ("campaigns:\n"
         "  - id: r\n"
         "    plugin: reactivation\n"
         "    params: {}\n", None, None, ["inactive_for"]),
        ("  commit: {max_batch: many}\n"
         "campaigns: []\n", 5, 23, ["max_batch"]),
        ("  clock: sometimes\n"
         "campaigns: []\n", 5, 10, ["clock"]),
    ]
    for i, (body, line, col, words) in enumerate(more):
        f = os.path.join(t, f"m{i}.yaml")
        os.rename(config(t, body), f)
        r = mktd("check", "-c", f)
        assert r.returncode == 1, (body, r.stdout, r.stderr)
        if line:
            assert r.stderr.startswith(f"{f}:{line}:{col}: "), (body, r.stderr)
        else:
            assert r.stderr.startswith(f"{f}:"), (body, r.stderr)
        for w in words:
            assert w in r.stderr, (w, r.stderr)

    r = mktd("check", "-c", os.path.join(t, "missing.yaml"))
    assert r.returncode != 0
    assert "missing.yaml" in r.stderr


# ---- send ----

def test_send_tcp_and_unix_summary_and_exit_codes():
    d = Daemon(COUPON)
    try:
        f = write(os.path.join(d.dir, "ev.ndjson"),
                  lines_of([paid("s1"), paid("s2", user="u2", amount=20000), {"id": "s3", "type": "t", "user": "u"}]).decode())
        r = mktd("send", f"tcp:127.0.0.1:{d.port}", f)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "3 answered" in r.stdout and "3 ok" in r.stdout and "3 actions" in r.stdout, r.stdout
        # the same again over the Unix socket: all duplicates, still success
        r = mktd("send", f"unix:{d.sock}", f)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "3 duplicate" in r.stdout and "0 error" in r.stdout, r.stdout
        assert len(d.actions()) == 3
        # one error among good lines: non-zero, the good ones still count
        g = write(os.path.join(d.dir, "ev2.ndjson"),
                  lines_of([paid("s4"), "{broken", {"id": "s5", "type": "t", "user": "u"}]).decode())
        r = mktd("send", f"unix:{d.sock}", g)
        assert r.returncode != 0, r.stdout
        assert "3 answered" in r.stdout and "2 ok" in r.stdout and "1 error" in r.stdout, r.stdout
        assert "invalid_json" in r.stderr + r.stdout
        assert d.db_rows("SELECT count(*) FROM events WHERE id IN ('s4','s5')")[0][0] == 2
        # a large file, pipelined
        big = write(os.path.join(d.dir, "big.ndjson"),
                    lines_of([{"id": f"b{i}", "type": "t", "user": f"u{i % 9}"} for i in range(20000)]).decode())
        r = mktd("send", f"tcp:127.0.0.1:{d.port}", big)
        assert r.returncode == 0, r.stderr
        assert "20000 answered" in r.stdout and "20000 ok" in r.stdout, r.stdout
        # nobody listening: an error, non-zero
        r = mktd("send", "unix:" + os.path.join(d.dir, "nobody.sock"), f)
        assert r.returncode != 0
    finally:
        assert d.stop() == 0


def test_send_stdin_with_config_first_listen_address():
    d = Daemon()
    try:
        evs = lines_of([{"id": "i1", "type": "t", "user": "u"}, {"id": "i2", "type": "t", "user": "u"}]).decode()
        r = mktd("send", "-c", d.config, "-", input=evs)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "2 ok" in r.stdout, r.stdout
        # a config listing the Unix socket first: send goes there (TCP would refuse: wrong port)
        other = os.path.join(d.dir, "unixfirst.yaml")
        text = open(d.config).read().replace(
            f'listen: ["tcp:127.0.0.1:{d.port}", "unix:{d.sock}"]', f'listen: ["unix:{d.sock}", "tcp:127.0.0.1:1"]')
        assert "unix:" + d.sock + '", "tcp:127.0.0.1:1' in text
        write(other, text)
        r = mktd("send", "-c", other, "-", input=lines_of([{"id": "i3", "type": "t", "user": "u"}]).decode())
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "1 ok" in r.stdout
        r = mktd("send", "-c", other, "-", input=evs)
        assert r.returncode == 0 and "2 duplicate" in r.stdout, r.stdout
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 3
    finally:
        assert d.stop() == 0


# ---- actions ----

def test_actions_db_since_campaign_config():
    d = Daemon(COUPON)
    try:
        d.send([paid("a1", "u1", 500), paid("a2", "u2", 20000), paid("a3", "u3", 30000)])
        rows = d.actions()
        assert len(rows) == 5
        r = mktd("actions", "--db", d.db)
        assert r.returncode == 0, r.stderr
        out = ndjson(r.stdout)
        assert out == rows, (out, rows)
        for x in out:
            assert list(x) == COLUMNS, x
            assert isinstance(x["payload"], dict)
        r = mktd("actions", "--db", d.db, "--since", str(rows[1]["seq"]))
        assert ndjson(r.stdout) == rows[2:]
        r = mktd("actions", "--db", d.db, "--campaign", "vip")
        assert ndjson(r.stdout) == [x for x in rows if x["campaign"] == "vip"]
        assert len(ndjson(r.stdout)) == 2
        r = mktd("actions", "--db", d.db, "--campaign", "vip", "--since", str(rows[-1]["seq"]))
        assert r.returncode == 0 and r.stdout == ""
        r = mktd("actions", "-c", d.config)
        assert r.returncode == 0, r.stderr
        assert ndjson(r.stdout) == rows
        r = mktd("actions", "-c", d.config, "--campaign", "welcome")
        assert [x["user"] for x in ndjson(r.stdout)] == ["u1", "u2", "u3"]
        # without -c or --db: var/mktd.db relative to the working directory
        r = mktd("actions", cwd=tempfile.mkdtemp())
        assert r.returncode != 0
    finally:
        assert d.stop() == 0


def test_actions_follow_prints_new_lines():
    d = Daemon(COUPON)
    p = None
    try:
        d.send([paid("f1", "u1")])
        p = subprocess.Popen(command("actions", "--db", d.db, "--follow"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        got = []

        def wait_for(n, timeout=10):
            buf = b""
            deadline = time.time() + slow(timeout)
            while len(got) < n and time.time() < deadline:
                r, _, _ = select.select([p.stdout], [], [], 0.2)
                if r:
                    chunk = os.read(p.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    got.extend(json.loads(x) for x in lines if x.strip())
            return got

        assert len(wait_for(1)) == 1, got
        assert got[0]["event_id"] == "f1"
        d.send([paid("f2", "u2"), paid("f3", "u3", 20000)])
        wait_for(4)
        assert [x["event_id"] for x in got] == ["f1", "f2", "f3", "f3"], got
        assert [x["campaign"] for x in got] == ["welcome", "welcome", "welcome", "vip"]
        assert [x["seq"] for x in got] == sorted(x["seq"] for x in got)
        d.send([paid("f4", "u4")])
        wait_for(5)
        assert len(got) == 5 and got[-1]["event_id"] == "f4", got
        assert p.poll() is None  # still following
    finally:
        if p:
            p.kill()
            p.wait()
        assert d.stop() == 0


# ---- simulate ----

def test_simulate_prints_actions_and_touches_nothing():
    t = tempfile.mkdtemp(prefix="mktd-sim-")
    db = os.path.join(t, "var", "sim.db")
    cfg = config(t, "  clock: wall\n"
                    "campaigns:\n"
                    "  - id: welcome\n"
                    "    plugin: coupon\n"
                    "    when: {event: order.paid}\n"
                    "    params: {value: 500, valid_for: 1d}\n",
                 database=db)
    evf = write(os.path.join(t, "ev.ndjson"),
                lines_of([paid("e1", "u1", ts=1000), paid("e2", "u2", ts=5000),
                          paid("e1", "u1", ts=6000), paid("e3", "u1", ts=7000)]).decode())
    before = sorted(os.listdir(t))
    r = mktd("simulate", "-c", cfg, evf)
    assert r.returncode == 0, r.stderr
    out = ndjson(r.stdout)
    assert len(out) == 2, out
    for x in out:
        assert list(x) == COLUMNS, x
        assert x["kind"] == "coupon.issued" and x["campaign"] == "welcome"
        assert isinstance(x["payload"], dict)
    assert [x["user"] for x in out] == ["u1", "u2"]
    assert [x["event_id"] for x in out] == ["e1", "e2"]
    # clock: event implied: ts is the event ts, expiry counts from it
    assert [x["ts"] for x in out] == [1000, 5000]
    assert out[0]["payload"]["expires_at"] == 1000 + 86400000
    assert out[0]["payload"]["value"] == 500
    assert out[0]["seq"] < out[1]["seq"]
    assert not os.path.exists(db)
    assert not os.path.exists(os.path.dirname(db))
    assert sorted(os.listdir(t)) == before

    # an error line: all actions still printed, exit 1
    evf2 = write(os.path.join(t, "ev2.ndjson"),
                 lines_of([paid("e1", "u1", ts=1000), "{oops", paid("e2", "u2", ts=5000)]).decode())
    r = mktd("simulate", "-c", cfg, evf2)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert [x["user"] for x in ndjson(r.stdout)] == ["u1", "u2"]
    # invalid_event is an error too; blank lines are not
    evf3 = write(os.path.join(t, "ev3.ndjson"),
                 lines_of([paid("e1", "u1", ts=1000), "", "  ", '{"id":"x","type":"order.paid","user":"u"}']).decode())
    r = mktd("simulate", "-c", cfg, evf3)
    assert r.returncode == 1
    assert len(ndjson(r.stdout)) == 1
    evf4 = write(os.path.join(t, "ev4.ndjson"), "\n  \n" + lines_of([paid("e1", "u1", ts=1)]).decode())
    r = mktd("simulate", "-c", cfg, evf4)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.dirname(db))


def test_simulate_until_fires_timers():
    t = tempfile.mkdtemp(prefix="mktd-sim-")
    db = os.path.join(t, "nothere.db")
    cfg = config(t, "campaigns:\n"
                    "  - id: winback\n"
                    "    plugin: reactivation\n"
                    "    params: {inactive_for: 1h}\n", database=db)
    h = 3600000
    evf = write(os.path.join(t, "ev.ndjson"),
                lines_of([{"id": "a", "type": "page.view", "user": "u1", "ts": 0},
                          {"id": "b", "type": "page.view", "user": "u2", "ts": 10 * 60000}]).decode())
    # no --until: the pending timers do not fire
    r = mktd("simulate", "-c", cfg, evf)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
    # --until in ms between the two due times
    r = mktd("simulate", "-c", cfg, "--until", str(h + 60000), evf)
    assert r.returncode == 0, r.stderr
    out = ndjson(r.stdout)
    assert [(x["user"], x["ts"], x["event_id"]) for x in out] == [("u1", h, None)], out
    assert out[0]["kind"] in ("reactivation.offer", "reactivation.holdout")
    assert out[0]["payload"]["attempt"] == 1 and out[0]["payload"]["inactive_ms"] == h
    assert list(out[0]) == COLUMNS
    # --until as RFC 3339, past both
    r = mktd("simulate", "-c", cfg, "--until", "1970-01-01T05:00:00Z", evf)
    assert r.returncode == 0, r.stderr
    out = ndjson(r.stdout)
    assert [(x["user"], x["ts"]) for x in out] == [("u1", h), ("u2", h + 10 * 60000)], out
    # --until far in the future: max_future does not apply
    r = mktd("simulate", "-c", cfg, "--until", "2999-01-01T00:00:00Z", evf)
    assert r.returncode == 0, r.stderr
    assert len(ndjson(r.stdout)) == 2
    # a bad --until is refused
    r = mktd("simulate", "-c", cfg, "--until", "tomorrow", evf)
    assert r.returncode != 0
    assert not os.path.exists(db)
