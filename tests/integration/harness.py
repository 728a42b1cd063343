"""Helpers for integration tests: the real mktd binary, real sockets, the
real SQLite file. Paths come from the environment ctest sets (MKTD_BIN,
MKTD_PLUGINS, MKTD_TEST_PLUGINS, MKTD_SRC), with defaults for a build/ dir.

MKTD_VALGRIND=1 runs every mktd process (daemon and command line) under
valgrind's memcheck, each with its own log file; run.py fails a test whose
processes left a non-empty log. Waits are longer then (see slow()).
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import textwrap
import time
import urllib.request

SRC = os.environ.get("MKTD_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
BIN = os.environ.get("MKTD_BIN", os.path.join(SRC, "build/mktd"))
PLUGINS = os.environ.get("MKTD_PLUGINS", os.path.join(SRC, "build/plugins"))
TEST_PLUGINS = os.environ.get("MKTD_TEST_PLUGINS", os.path.join(SRC, "build/tests/plugins"))
VALGRIND = os.environ.get("MKTD_VALGRIND", "") not in ("", "0")
SLOW = 10 if VALGRIND else 1  # how much longer everything takes under valgrind


_TEMP_DIRS = []
_DAEMONS = []


@atexit.register
def _cleanup():
    """Daemons a failed test left running are killed and temp dirs go when
    the test file ends (MKTD_KEEP=1 keeps them)."""
    for d in _DAEMONS:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    if os.environ.get("MKTD_KEEP"):
        return
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def slow(seconds):
    """A timeout or a wait for the daemon, stretched under valgrind."""
    return seconds * SLOW


_VG_DIR = []  # where this run's valgrind logs go, once made
_VG_RUNS = []  # (log file name up to the pid, argv) of each process run under valgrind
_VG_SEEN = set()  # the logs already reported


def command(*args):
    """The argv that runs mktd with args: BIN itself, or BIN under valgrind
    (MKTD_VALGRIND=1) writing to a log file of its own."""
    if not VALGRIND:
        return [BIN, *args]
    if not _VG_DIR:
        _VG_DIR.append(tempfile.mkdtemp(prefix="mktd-vg-"))
        _TEMP_DIRS.append(_VG_DIR[0])
    head = os.path.join(_VG_DIR[0], f"vg.{len(_VG_RUNS) + 1}.")
    _VG_RUNS.append((head, [BIN, *args]))
    return [shutil.which("valgrind") or "valgrind", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=9", "-q", "--num-callers=30", "--vgdb=no",
            f"--log-file={head}%p.log", BIN, *args]


def valgrind_reports():
    """The valgrind logs not reported before that have something in them (an
    error or a leak), as (argv, text) pairs."""
    out = []
    logs = sorted(os.listdir(_VG_DIR[0])) if _VG_DIR else []
    for head, argv in _VG_RUNS:
        for f in logs:
            path = os.path.join(_VG_DIR[0], f)
            if not path.startswith(head) or path in _VG_SEEN:
                continue
            with open(path, errors="replace") as fh:
                text = fh.read()
            if text.strip():
                _VG_SEEN.add(path)
                out.append((argv, text))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mktd(*args, input=None, cwd=None, timeout=60):
    """Runs the mktd command line; returns CompletedProcess (text)."""
    return subprocess.run(command(*args), input=input, cwd=cwd, capture_output=True, text=True,
                          timeout=slow(timeout))


def lines_of(events):
    """Events (dicts or strings) as NDJSON bytes."""
    out = []
    for e in events:
        out.append(e if isinstance(e, (str, bytes)) else json.dumps(e))
    return b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in out)


def metric_lines(text):
    """Prometheus text format lines as {"name{labels}": value}; each line must parse."""
    vals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_]+)(\{[a-z_][a-z0-9_]*="[^"\\]*"(?:,[a-z_][a-z0-9_]*="[^"\\]*")*\})? (\S+)',
                         line)
        assert m, line
        vals[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return vals


class Daemon:
    """A mktd daemon in its own temp dir.

    campaigns: YAML text of the `campaigns:` list (may be "[]").
    daemon: extra YAML lines for the `daemon:` map (indented for you).
    top: extra top-level YAML (caps:, outputs:, ...), as written.
    """

    def __init__(self, campaigns="[]", clock="event", http=False, daemon="", plugin_dirs=None,
                 start=True, env=None, pid_env=(), preexec=None, top=""):
        self.dir = tempfile.mkdtemp(prefix="mktd-it-")
        _TEMP_DIRS.append(self.dir)
        _DAEMONS.append(self)
        self.port = free_port()
        self.http_port = free_port() if http else None
        self.sock = os.path.join(self.dir, "mktd.sock")
        self.db = os.path.join(self.dir, "mktd.db")
        self.config = os.path.join(self.dir, "mktd.yaml")
        self.plugin_dirs = plugin_dirs or [PLUGINS, TEST_PLUGINS]
        self.clock = clock
        self.extra = daemon
        self.top = textwrap.dedent(top).strip("\n") + "\n" if top else ""
        self.proc = None
        self.logfile = os.path.join(self.dir, "stderr.log")
        # env: extra environment variables; pid_env: variables set to the
        # daemon's own pid (as a service manager does, e.g. WATCHDOG_PID)
        self.env = dict(env or {})
        self.pid_env = tuple(pid_env)
        self.preexec = preexec  # run in the child before exec (limits)
        self.write_config(campaigns)
        if start:
            self.start()

    def config_text(self, campaigns):
        http = f'  http: "127.0.0.1:{self.http_port}"\n' if self.http_port else ""
        extra = textwrap.indent(textwrap.dedent(self.extra).strip("\n"), "  ") + "\n" if self.extra else ""
        dirs = ", ".join(json.dumps(d) for d in self.plugin_dirs)
        camp = textwrap.dedent(campaigns).strip("\n")
        if not camp.startswith("[") and not camp.startswith("-"):
            camp = camp
        body = camp if camp.startswith("[") else "\n" + textwrap.indent(camp, "  ")
        return (f"daemon:\n"
                f'  listen: ["tcp:127.0.0.1:{self.port}", "unix:{self.sock}"]\n'
                f"{http}"
                f"  database: {self.db}\n"
                f"  plugin_dirs: [{dirs}]\n"
                f"  clock: {self.clock}\n"
                f"{extra}"
                f"campaigns: {body}\n"
                f"{self.top}")

    def write_config(self, campaigns):
        with open(self.config, "w") as f:
            f.write(self.config_text(campaigns))

    def start(self, wait=True):
        self.log_fh = open(self.logfile, "ab")
        argv = command("-c", self.config)
        if self.pid_env:
            sets = "; ".join(f"export {v}=$$" for v in self.pid_env)
            argv = ["/bin/sh", "-c", sets + '; exec "$0" "$@"', *argv]
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(argv, stdout=self.log_fh, stderr=self.log_fh, cwd=self.dir,
                                     env=env, preexec_fn=self.preexec)
        if wait:
            deadline = time.time() + slow(15)
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mktd exited {self.proc.returncode}:\n{self.log()}")
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        u.connect(self.sock)  # every listener is up (bound in order)
                    finally:
                        u.close()
                    if self.http_port:
                        socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.02)
            raise RuntimeError("mktd did not start listening:\n" + self.log())

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, campaigns=None, wait=0.5):
        if VALGRIND:  # a reload takes longer: wait for its outcome in the log
            reload_wait(self, campaigns)
            return
        if campaigns is not None:
            self.write_config(campaigns)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(wait)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the daemon; returns its exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=slow(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log_fh.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log_fh.close()

    def connect(self, unix=False):
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
        else:
            s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(slow(30))
        return s

    def send_raw(self, data, unix=False, expect=None):
        """Sends bytes on a new connection, half-closes, reads every answer
        until the daemon closes. Returns the answers as dicts."""
        s = self.connect(unix)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.close()
        return [json.loads(x) for x in buf.split(b"\n") if x.strip()]

    def send(self, events, unix=False):
        return self.send_raw(lines_of(events), unix=unix)

    def http(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=slow(30)) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def metrics(self):
        """/metrics as {"name{labels}": value} (needs http=True)."""
        st, text = self.http("GET", "/metrics")
        assert st == 200, (st, text)
        return metric_lines(text)

    def db_rows(self, sql, args=()):
        c = sqlite3.connect(self.db, timeout=10)
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    def actions(self, campaign=None):
        """Rows of the actions table as dicts, payload parsed, by seq."""
        q = "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions"
        args = ()
        if campaign:
            q += " WHERE campaign = ?"
            args = (campaign,)
        rows = self.db_rows(q + " ORDER BY seq", args)
        return [dict(seq=r[0], ts=r[1], campaign=r[2], kind=r[3], user=r[4], event_id=r[5],
                     payload=json.loads(r[6])) for r in rows]

    def close(self):
        self.stop()

    def rss_kb(self):
        """The daemon's resident set size in kB (VmRSS from /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def check_refuses_at(d, campaign, campaigns, want):
    """`mktd check` refuses campaigns (YAML with one '@' marking the
    offending value): exit 1 and FILE:LINE:COL of the '@', then
    `campaign <campaign>: ` and `want` (a regex), on one line."""
    d.write_config(campaigns)
    with open(d.config) as f:
        text = f.read()
    at = text.index("@")
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    d.write_config(campaigns.replace("@", ""))
    r = mktd("check", "-c", d.config)
    out = r.stdout + r.stderr
    assert r.returncode == 1, (campaigns, r.returncode, out)
    where = f"{re.escape(d.config)}:{line}:{col}: campaign {re.escape(campaign)}: "
    assert re.search(where + want, out, re.M), (campaigns, where, want, out)


def ok(answer, actions=None):
    assert answer["status"] == "ok", answer
    if actions is not None:
        assert answer["actions"] == actions, answer


def _reload_marks(text):
    return text.count("reloaded:") + text.count("reload failed") + text.count("reload refused")


def reload_wait(d, campaigns=None, timeout=10):
    """Reloads a Daemon and waits until its log tells the outcome. Returns
    True when the new config was swapped in, False when it was refused."""
    before_ok = d.log().count("reloaded:")
    before = _reload_marks(d.log())
    if campaigns is not None:
        d.write_config(campaigns)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + slow(timeout)
    while time.time() < deadline:
        text = d.log()
        if _reload_marks(text) > before and "reload" in text:
            time.sleep(0.05)
            return d.log().count("reloaded:") > before_ok
        time.sleep(0.02)
    raise RuntimeError("no reload outcome in the log:\n" + d.log())
