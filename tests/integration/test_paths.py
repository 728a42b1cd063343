"""Paths in the config resolve against the config file's folder (spec 18):
`mktd check` from another directory reports the real error, the daemon
finds its database and plugins wherever it was started, and an install
whose relative database an older mktd found from the current directory is
not given a new, empty one."""
import json
import os
import sqlite3
import subprocess
import tempfile

from harness import PLUGINS, TEST_PLUGINS, _TEMP_DIRS, command, free_port, lines_of, mktd, slow

COUPON = """
  - id: first
    plugin: coupon
    when: {event: order.paid}
    params: {value: VALUE, valid_for: 7d}
"""


def setup(value="500", database="var/m.db"):
    """A config in <tmp>/etc with relative paths, and <tmp>/elsewhere to
    run from; plugins reached through etc/plugins and etc/test-plugins."""
    top = tempfile.mkdtemp(prefix="mktd-paths-")
    _TEMP_DIRS.append(top)
    etc = os.path.join(top, "etc")
    os.makedirs(etc)
    os.makedirs(os.path.join(top, "elsewhere"))
    os.symlink(os.path.abspath(PLUGINS), os.path.join(etc, "plugins"))
    os.symlink(os.path.abspath(TEST_PLUGINS), os.path.join(etc, "test-plugins"))
    port = free_port()
    with open(os.path.join(etc, "mktd.yaml"), "w") as f:
        f.write("daemon:\n"
                f'  listen: ["tcp:127.0.0.1:{port}", "unix:run/m.sock"]\n'
                f"  database: {database}\n"
                "  plugin_dirs: [plugins, ./test-plugins]\n"
                "  clock: event\n"
                "campaigns:" + COUPON.replace("VALUE", value))
    return top, etc, port


def run_daemon(top, cwd, config):
    """Starts the daemon from cwd; returns the process once its Unix socket
    answers, or the process that exited."""
    import socket
    import time
    log = open(os.path.join(top, "daemon.log"), "ab")
    p = subprocess.Popen(command("-c", config), cwd=cwd, stdout=log, stderr=log)
    sock = os.path.join(top, "etc", "run", "m.sock")
    deadline = time.time() + slow(15)
    while time.time() < deadline and p.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            s.close()
            return p
        except OSError:
            time.sleep(0.02)
    return p


def daemon_log(top):
    with open(os.path.join(top, "daemon.log"), "rb") as f:
        return f.read().decode(errors="replace")


def test_check_from_another_directory_reports_the_real_error():
    top, etc, _ = setup(value="x")
    elsewhere = os.path.join(top, "elsewhere")
    r = mktd("check", "-c", "../etc/mktd.yaml", cwd=elsewhere)
    assert r.returncode == 1
    # the plugin was found (relative to etc/): the error is the param's
    assert "value" in r.stderr and "integer" in r.stderr, r.stderr
    assert "plugin_dirs" not in r.stderr, r.stderr
    # the same config with a good value checks ok from anywhere
    top, etc, _ = setup()
    for cwd in (os.path.join(top, "elsewhere"), "/"):
        r = mktd("check", "-c", os.path.join(etc, "mktd.yaml"), cwd=cwd)
        assert r.returncode == 0, r.stderr
        assert "ok, 1 campaigns" in r.stdout, r.stdout


def test_missing_plugin_dir_names_the_resolved_path():
    top, etc, _ = setup()
    os.unlink(os.path.join(etc, "plugins"))
    r = mktd("check", "-c", "etc/mktd.yaml", cwd=top)
    assert r.returncode == 1
    real = os.path.realpath(etc)
    assert f"{real}/plugins" in r.stderr, r.stderr
    assert "resolve against the config's folder" in r.stderr, r.stderr


def test_daemon_started_elsewhere_uses_the_configs_folder():
    top, etc, port = setup()
    p = run_daemon(top, os.path.join(top, "elsewhere"), "../etc/mktd.yaml")
    try:
        assert p.poll() is None, daemon_log(top)
        ev = {"id": "p1", "type": "order.paid", "user": "u", "ts": 1767225600000,
              "props": {"order_id": "o1", "amount": 100}}
        r = mktd("send", "-c", os.path.join(etc, "mktd.yaml"), "-", input=lines_of([ev]).decode(),
                 cwd="/")
        assert r.returncode == 0, r.stderr
    finally:
        p.terminate()
        p.wait(timeout=slow(15))
    db = os.path.join(etc, "var", "m.db")
    assert os.path.exists(db)
    assert not os.path.exists(os.path.join(top, "elsewhere", "var"))
    con = sqlite3.connect(db)
    kinds = [r[0] for r in con.execute("SELECT kind FROM actions")]
    con.close()
    assert kinds == ["coupon.issued"], kinds


def test_database_at_the_old_place_refuses_to_start():
    top, etc, port = setup()
    # an older mktd ran from top/ and made top/var/m.db there
    old = os.path.join(top, "var", "m.db")
    os.makedirs(os.path.dirname(old))
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    r = mktd("check", "-c", "etc/mktd.yaml", cwd=top)
    assert r.returncode == 1, r.stdout
    new = os.path.join(os.path.realpath(etc), "var", "m.db")
    assert new in r.stderr and os.path.realpath(old) in r.stderr.replace(top, os.path.realpath(top)), r.stderr
    p = run_daemon(top, top, "etc/mktd.yaml")
    rc = p.wait(timeout=slow(15))
    log = daemon_log(top)
    assert rc == 1, log
    assert f"database: {new} does not exist, but " in log, log
    assert "/var/m.db does:" in log and "Refusing to start" in log, log
    assert not os.path.exists(new), "a new, empty database was made"
    # moved as the message says: the daemon starts on it
    os.makedirs(os.path.dirname(new))
    os.rename(old, new)
    p = run_daemon(top, top, "etc/mktd.yaml")
    try:
        assert p.poll() is None, daemon_log(top)
    finally:
        p.terminate()
        assert p.wait(timeout=slow(15)) == 0
    con = sqlite3.connect(new)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)  # the old file, kept
    con.close()
