"""Failure isolation (spec section 12): one daemon per database, and no
daemon takes over a live daemon's Unix socket."""
import os
import socket
import subprocess

from harness import Daemon, lines_of, mktd, ok, slow

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
