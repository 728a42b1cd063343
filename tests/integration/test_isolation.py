"""Failure isolation (spec section 12): one daemon per database, no daemon
takes over a live daemon's Unix socket, and a database that cannot be
written (locked by another process, a full disk) fails only the events
that need it, promptly, while everything else keeps being served."""
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import time

from harness import VALGRIND, Daemon, lines_of, mktd, ok, slow

T = 1767225600000  # 2026-01-01T00:00:00Z

CAMP_PROBE = """
- id: hits
  plugin: probe
  params: {emit_on: [page.view]}
"""


def ev(id, type="page.view", user="u1", ts=None, **props):
    e = {"id": id, "type": type, "user": user}
    if ts is not None:
        e["ts"] = ts
    if props:
        e["props"] = props
    return e


def wait_exit(proc, timeout=15):
    try:
        return proc.wait(timeout=slow(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the second daemon did not exit")


def sock_ident(path):
    st = os.lstat(path)
    return (st.st_dev, st.st_ino)


# ---- one daemon per database ----

def test_second_daemon_on_same_database_refuses():
    """A second daemon with the very same config (same database, same
    sockets) exits non-zero naming the database and the first daemon's pid,
    before it touches anything: the first daemon's Unix socket is still the
    same file and still served, its config is not recorded twice."""
    d = Daemon(CAMP_PROBE)
    try:
        ok(d.send([ev("a1")])[0], 1)
        sock_before = sock_ident(d.sock)
        configs = d.db_rows("SELECT count(*) FROM configs")[0][0]
        r = mktd("-c", d.config, timeout=30)
        assert r.returncode != 0, (r.returncode, r.stderr)
        assert d.db in r.stderr, r.stderr
        assert f"pid {d.proc.pid}" in r.stderr, r.stderr
        assert "listening" not in r.stderr, r.stderr
        # the first daemon's sockets and database are as they were
        assert sock_ident(d.sock) == sock_before
        ok(d.send([ev("a2")], unix=True)[0], 1)
        ok(d.send([ev("a3")])[0], 1)
        assert d.db_rows("SELECT count(*) FROM configs")[0][0] == configs
        # the lock file names the running daemon
        with open(d.db + ".lock") as f:
            assert f.read().strip() == str(d.proc.pid)
    finally:
        assert d.stop() == 0


def test_same_database_by_another_path_refuses():
    """The lock goes with the database file, however the path is spelled:
    a second daemon (its own sockets) naming the database through a
    symbolic link to its folder and a relative path is refused too."""
    d = Daemon(CAMP_PROBE)
    other = Daemon(CAMP_PROBE, start=False)
    try:
        link = os.path.join(other.dir, "data")
        os.symlink(d.dir, link)
        other.db = "data/mktd.db"  # relative to the second daemon's cwd, through the link
        other.write_config(CAMP_PROBE)
        other.start(wait=False)
        rc = wait_exit(other.proc)
        assert rc != 0, other.log()
        assert f"pid {d.proc.pid}" in other.log(), other.log()
        assert "one daemon per database" in other.log(), other.log()
        ok(d.send([ev("b1")], unix=True)[0], 1)
    finally:
        other.stop()
        assert d.stop() == 0


def test_kill9_leaves_no_stale_lock():
    """A daemon killed with SIGKILL leaves its lock file behind, with its
    pid; that blocks nothing: the next daemon starts and writes its own."""
    d = Daemon(CAMP_PROBE)
    try:
        ok(d.send([ev("c1")])[0], 1)
        dead = d.proc.pid
        d.kill9()
        with open(d.db + ".lock") as f:
            assert f.read().strip() == str(dead)
        d.start()
        with open(d.db + ".lock") as f:
            assert f.read().strip() == str(d.proc.pid)
        assert [a["status"] for a in d.send([ev("c1"), ev("c2")])] == ["duplicate", "ok"]
        # and a clean stop lets the next one start as well
        assert d.stop() == 0
        d.start()
        ok(d.send([ev("c3")])[0], 1)
    finally:
        assert d.stop() == 0


def test_simulate_beside_a_running_daemon():
    """simulate plays against a throw-away database: the daemon's lock does
    not concern it."""
    d = Daemon(CAMP_PROBE)
    try:
        path = os.path.join(d.dir, "events.ndjson")
        with open(path, "wb") as f:
            f.write(lines_of([ev("s1", ts=T), ev("s2", ts=T + 1)]))
        r = mktd("simulate", "-c", d.config, path)
        assert r.returncode == 0, r.stderr
        assert len([x for x in r.stdout.splitlines() if x.strip()]) == 2, r.stdout
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 0
    finally:
        assert d.stop() == 0


# ---- Unix sockets ----

def test_live_unix_socket_is_not_taken_over():
    """A daemon on another database whose config names a Unix socket a live
    daemon listens on refuses to start, naming the path, and leaves the
    socket alone (same file, still served)."""
    d = Daemon(CAMP_PROBE)
    other = Daemon(CAMP_PROBE, start=False)
    try:
        other.sock = d.sock
        other.write_config(CAMP_PROBE)
        before = sock_ident(d.sock)
        other.start(wait=False)
        rc = wait_exit(other.proc)
        assert rc != 0, other.log()
        assert d.sock in other.log() and "accepts connections" in other.log(), other.log()
        assert sock_ident(d.sock) == before
        ok(d.send([ev("d1")], unix=True)[0], 1)
    finally:
        other.stop()
        assert d.stop() == 0


def test_stale_unix_socket_is_replaced():
    """The socket file of a daemon that is gone (SIGKILL: nothing removed
    it) is removed and bound again by the next daemon, on any database."""
    d = Daemon(CAMP_PROBE)
    other = Daemon(CAMP_PROBE, start=False)
    try:
        d.kill9()
        assert os.path.exists(d.sock)  # stale: nobody accepts on it
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            u.connect(d.sock)
            raise AssertionError("the stale socket accepted a connection")
        except ConnectionRefusedError:
            pass
        finally:
            u.close()
        other.sock = d.sock
        other.write_config(CAMP_PROBE)
        other.start()
        ok(other.send([ev("e1")], unix=True)[0], 1)
        assert other.db_rows("SELECT count(*) FROM events")[0][0] == 1
    finally:
        assert other.stop() == 0


# ---- a database that cannot be written ----

class WriteLock:
    """Another process's write transaction on the database (BEGIN IMMEDIATE
    from this test's own sqlite3 connection), held until release()."""

    def __init__(self, db):
        self.c = sqlite3.connect(db, timeout=10, isolation_level=None)
        self.c.execute("BEGIN IMMEDIATE")
        self.t0 = time.monotonic()

    def release(self):
        self.c.execute("ROLLBACK")
        self.c.close()


def timed(f, *args, **kw):
    t0 = time.monotonic()
    r = f(*args, **kw)
    return r, time.monotonic() - t0


def ask(s, line):
    """Sends one line on an open connection, returns its answer."""
    s.sendall(lines_of([line]))
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
    return json.loads(buf)


def internal(a):
    assert a["status"] == "error" and a["error"] == "internal", a
    assert "database is locked" in a["detail"], a


def test_locked_database_fails_fast_and_recovers():
    """While another process holds the write lock for ~3 s: events streamed
    on one connection are answered internal, each promptly (no 5 s wait per
    batch); a burst of 500 pipelined events too; health, HTTP events and
    events on other connections (TCP and Unix) are answered well within a
    second; /v1/health is 503 with the reason and /metrics shows the state.
    Once the lock goes: health is 200 again without any event sent, the
    failed events sent again are ok, and the log has one line for the start
    of the state and one for its end."""
    d = Daemon(CAMP_PROBE, http=True)
    try:
        ok(d.send([ev("w0")])[0], 1)
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
        a = d.connect()
        failed = []
        lock = WriteLock(d.db)
        try:
            i = 0
            while time.monotonic() - lock.t0 < 3.0:
                i += 1
                ans, dt = timed(ask, a, ev(f"s{i}", user=f"u{i % 7}"))
                internal(ans)
                assert dt < slow(2.0), f"event s{i} took {dt:.2f} s to be answered"
                failed.append(f"s{i}")
                if i % 5 == 0:
                    # health says why, at once
                    (st, text), dt = timed(d.http, "GET", "/v1/health")
                    assert st == 503, (st, text)
                    h = json.loads(text)
                    assert h["status"] == "unwritable" and "database is locked" in h["reason"], h
                    assert dt < slow(2.0), f"health took {dt:.2f} s"
                    # another connection, TCP and Unix, is served at once
                    for unix in (False, True):
                        ans, dt = timed(d.send, [ev(f"o{i}{unix}")], unix=unix)
                        internal(ans[0])
                        assert dt < slow(2.0), f"another connection waited {dt:.2f} s"
                        failed.append(f"o{i}{unix}")
                if i == 10:
                    # a pipelined burst: every event fails fast, not one
                    # lock wait after another
                    burst = [ev(f"b{j}", user=f"u{j % 7}") for j in range(500)]
                    got, dt = timed(d.send, burst)
                    assert len(got) == 500
                    for x in got:
                        internal(x)
                    assert dt < slow(2.0), f"500 events took {dt:.2f} s"
                    failed += [e["id"] for e in burst]
                    # HTTP events: answered, each line internal
                    (st, text), dt = timed(d.http, "POST", "/v1/events", lines_of([ev("h1")]))
                    assert st == 200, (st, text)
                    internal(json.loads(text))
                    assert dt < slow(2.0)
                    failed.append("h1")
                    m = d.metrics()
                    assert m["mktd_db_unwritable"] == 1, m
                    # a batch fails at its commit, all its events with it
                    assert m["mktd_db_write_failures_total"] >= 1, m
                    assert m['mktd_events_total{status="internal"}'] >= 500, m
                time.sleep(0.05)
            assert i >= (3 if VALGRIND else 20), i
        finally:
            lock.release()
        # nothing of the failed events was kept
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 1
        # health recovers by itself (no event sent)
        deadline = time.monotonic() + slow(3)
        while True:
            st, text = d.http("GET", "/v1/health")
            if st == 200:
                break
            assert time.monotonic() < deadline, (st, text)
            time.sleep(0.05)
        assert json.loads(text)["status"] == "ok"
        assert d.metrics()["mktd_db_unwritable"] == 0
        # the same connection takes the failed events again
        for id in failed[:20]:
            ok(ask(a, ev(id)))
        a.close()
        again = d.send([ev(id) for id in failed])
        assert [x["status"] for x in again] == ["duplicate"] * 20 + ["ok"] * (len(failed) - 20), \
            [x for x in again if x["status"] not in ("ok", "duplicate")][:3]
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 1 + len(failed)
        log = d.log()
        assert log.count("cannot be written") == 1, log
        assert log.count("can be written again") == 1, log
        assert "database is locked" in [x for x in log.splitlines() if "cannot be written" in x][0]
        assert "commit failed" not in log, log
    finally:
        assert d.stop() == 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_locked_database_wall_clock_timer_waits():
    """Under clock: wall, a timer falling due while the database is locked
    is not retried in a busy loop (the daemon stays nearly idle) and fires
    once the lock is gone; health is 503 meanwhile."""
    camp = """
    - id: t
      plugin: probe
      params: {timer_after: 1s}
    """
    d = Daemon(camp, clock="wall", http=True)
    try:
        due = int(time.time() * 1000) + 300
        ok(d.send([ev("arm", "probe.arm", "u1", due=due)])[0], 0)
        lock = WriteLock(d.db)
        try:
            time.sleep(0.5)  # the timer is due now
            cpu0 = cpu_seconds(d.proc.pid)
            time.sleep(1.5)
            used = cpu_seconds(d.proc.pid) - cpu0
            assert used < slow(0.5), f"the daemon used {used:.2f} s of CPU in 1.5 s while locked"
            st, text = d.http("GET", "/v1/health")
            assert st == 503 and "database is locked" in json.loads(text)["reason"], (st, text)
            assert d.actions(campaign="t") == []
        finally:
            lock.release()
        deadline = time.monotonic() + slow(5)
        while not d.actions(campaign="t"):
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        acts = d.actions(campaign="t")
        assert [a["kind"] for a in acts] == ["probe.timer"] and acts[0]["payload"]["due"] == due, acts
        st, _ = d.http("GET", "/v1/health")
        assert st == 200
        log = d.log()
        assert log.count("cannot be written") == 1 and log.count("can be written again") == 1, log
    finally:
        assert d.stop() == 0


def fsize_1mb():
    """In the daemon's process before exec: no file may grow past 1 MB
    (EFBIG, as from a full disk) until the test lifts the soft limit."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))


def test_full_disk_state_in_health_metrics_and_log():
    """Commits that fail for want of room: health 503 with the reason and
    mktd_db_unwritable 1 while it lasts, 200 and 0 after the next commit
    that works; each start of the state has its end in the log."""
    d = Daemon(CAMP_PROBE, http=True, preexec=fsize_1mb)
    try:
        pad = "x" * 4000
        n = 0
        while True:
            got = d.send([ev(f"f{n}-{j}", pad=pad) for j in range(100)])
            n += 1
            if any(a["status"] != "ok" for a in got):
                break
            assert n < 100, "the file never filled up"
        # a send's lines go in batches as they are read: a later, smaller
        # batch of the same send may still have fit. One event at a time
        # until one does not.
        for k in range(200):
            if d.send([ev(f"g{k}", pad=pad)])[0]["status"] != "ok":
                break
        else:
            raise AssertionError("every event fitted again after the file filled up")
        st, text = d.http("GET", "/v1/health")
        assert st == 503, (st, text)
        h = json.loads(text)
        assert h["status"] == "unwritable" and "commit failed" in h["reason"], h
        m = d.metrics()
        assert m["mktd_db_unwritable"] == 1 and m["mktd_commit_failures_total"] >= 1, m
        assert m["mktd_db_write_failures_total"] >= m["mktd_commit_failures_total"], m
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        ok(d.send([ev("after")])[0], 1)
        st, text = d.http("GET", "/v1/health")
        assert st == 200, (st, text)
        assert d.metrics()["mktd_db_unwritable"] == 0
        log = d.log()
        starts = log.count("cannot be written")
        assert starts >= 1 and log.count("can be written again") == starts, log
        # not a line per failed batch: the errors logged are the starts
        errors = [x for x in log.splitlines() if re.match(r"\S+ error[ :]", x)]
        assert len(errors) == starts, errors[:5]
    finally:
        assert d.stop() == 0
