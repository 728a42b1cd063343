"""Crash recovery (spec 8): SIGKILL at random moments during a stream,
restart, re-send everything over one connection: the actions table equals
a run without the crash (coupon codes aside), nothing answered ok is lost,
and the database is intact."""
import json
import os
import random
import re
import resource
import signal
import socket
import threading
import time

from harness import VALGRIND, Daemon, lines_of

CAMPAIGNS = """
- id: first-order
  plugin: coupon
  when:
    event: order.paid
    all:
      - {field: props.amount, op: gte, value: 10000}
      - {field: user.orders, op: eq, value: 1}
  params: {value: 2000, min_spend: 10000, valid_for: 7d}
- id: invite
  plugin: referral
  params: {commission: [1000, 300], reward: {amount: 1000, referrer_share: 50}}
- id: winback
  plugin: reactivation
  params: {inactive_for: 2d, max_attempts: 2, cooldown: 1d, holdout_percent: 10}
- id: winback-coupon
  plugin: coupon
  when: {event: reactivation.offer}
  params: {value: 500, valid_for: 3d, per_user_limit: 5}
"""

N = int(os.environ.get("MKTD_CRASH_EVENTS", "2000" if VALGRIND else "20000"))  # fewer under valgrind
T0 = 1735689600000  # 2025-01-01


def make_events(n, seed=7):
    rnd = random.Random(seed)
    users = [f"u{i}" for i in range(max(50, n // 40))]
    joined = []
    evs = []
    ts = T0
    orders = 0
    for i in range(n):
        ts += rnd.randint(0, 120000)
        r = rnd.random()
        if r < 0.15 or not joined:
            u = users[len(joined) % len(users)] + f"-{i}"
            props = {"referrer": rnd.choice(joined)} if joined and rnd.random() < 0.7 else {}
            evs.append({"id": f"e{i}", "type": "user.signup", "user": u, "ts": ts, "props": props})
            joined.append(u)
        elif r < 0.55:
            orders += 1
            evs.append({"id": f"e{i}", "type": "order.paid", "user": rnd.choice(joined), "ts": ts,
                        "props": {"order_id": f"o{orders}", "amount": rnd.randint(1000, 30000)}})
        elif r < 0.6 and orders:
            evs.append({"id": f"e{i}", "type": "order.refunded", "user": rnd.choice(joined), "ts": ts,
                        "props": {"order_id": f"o{rnd.randint(1, orders)}"}})
        else:
            evs.append({"id": f"e{i}", "type": "page.view", "user": rnd.choice(joined), "ts": ts})
        if rnd.random() < 0.002:
            ts += 3 * 86400000  # a quiet spell: win-back timers fall due
    # end two days before now, whatever n is (ts may not be in the future)
    shift = min(0, int(time.time() * 1000) - 2 * 86400000 - ts)
    for e in evs:
        e["ts"] += shift
    return evs


CODE = re.compile(r'"code":"[A-Z2-9]+"')


def table(d):
    rows = d.db_rows("SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions ORDER BY seq")
    return [(r[0], r[1], r[2], r[3], r[4], r[5], CODE.sub('"code":"*"', r[6])) for r in rows]


def send_all(d, data):
    """One connection; returns the answers."""
    return d.send_raw(data)


def send_until_killed(d, data, kill_after_s):
    """Streams data on one connection and SIGKILLs the daemon meanwhile;
    returns the ids answered ok before the kill."""
    s = d.connect()
    answered = []
    buf = bytearray()

    def reader():
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf.extend(chunk)
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    killer = threading.Timer(kill_after_s, d.kill9)
    killer.start()
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(60)
    killer.join()
    s.close()
    for line in bytes(buf).split(b"\n"):
        if line.strip():
            a = json.loads(line)
            if a["status"] == "ok":
                answered.append(a["id"])
    return answered


def test_kill9_restart_resend_same_table():
    evs = make_events(N)
    data = lines_of(evs)
    ref = Daemon(CAMPAIGNS)
    try:
        answers = send_all(ref, data)
        assert len(answers) == len(evs)
        assert all(a["status"] == "ok" for a in answers), [a for a in answers if a["status"] != "ok"][:3]
        expected = table(ref)
        assert len(expected) > 100
    finally:
        assert ref.stop() == 0

    rnd = random.Random(int(os.environ.get("MKTD_CRASH_SEED", "1")))
    d = Daemon(CAMPAIGNS)
    try:
        ok_before = set()
        cut = 0
        for round_ in range(3):
            got = send_until_killed(d, data, rnd.uniform(0.05, 0.6))
            cut += len(got) < len(evs)
            ok_before |= set(got)
            remembered = {r[0] for r in d.db_rows("SELECT id FROM events")}
            lost = ok_before - remembered
            assert not lost, f"answered ok but lost after kill -9: {sorted(lost)[:5]}"
            assert d.db_rows("PRAGMA integrity_check")[0][0] == "ok"
            d.start()
        assert cut > 0, "no kill landed in the middle of the stream"
        answers = send_all(d, data)
        assert len(answers) == len(evs)
        assert all(a["status"] in ("ok", "duplicate") for a in answers)
        assert table(d) == expected
        assert d.db_rows("PRAGMA integrity_check")[0][0] == "ok"
    finally:
        assert d.stop() == 0


FULL_AT = 1 << 20  # bytes: any file the daemon writes past 1 MB fails


def disk_full():
    """In the daemon's process before exec: files may not grow past FULL_AT
    (EFBIG, as from a full disk), until the test lifts the soft limit."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_AT, resource.RLIM_INFINITY))


def test_disk_full_loses_nothing_and_recovers():
    """Commits fail while the disk is full: every event of such a batch is
    answered with error internal ("not committed"), nothing of it is kept,
    and the connection and the daemon keep serving. Once there is room
    again, re-sending everything gives the actions table of a daemon that
    saw the events answered ok, in stream order, and then everything again.
    (A smaller batch may still fit after a larger one failed, so the events
    kept need not be a prefix of the stream.)"""
    evs = make_events(N)
    d = Daemon(CAMPAIGNS, preexec=disk_full, http=True)
    try:
        answers = send_all(d, lines_of(evs))
        assert [a["id"] for a in answers] == [e["id"] for e in evs]
        failed = [a for a in answers if a["status"] != "ok"]
        assert failed, "the disk never filled up"
        assert all(a["status"] == "error" and a["error"] == "internal" and
                   "not committed" in a["detail"] for a in failed), failed[:3]
        assert "commit failed" in d.log()
        ok = {a["id"] for a in answers if a["status"] == "ok"}
        kept = {r[0] for r in d.db_rows("SELECT id FROM events")}
        assert ok == kept, (f"answered ok but not kept: {sorted(ok - kept)[:5]}, "
                            f"kept but not answered ok: {sorted(kept - ok)[:5]}")
        m = d.metrics()
        assert m["mktd_events_total{status=\"ok\"}"] == len(ok)
        assert m["mktd_events_total{status=\"internal\"}"] == len(failed)
        assert m["mktd_commit_failures_total"] > 0
        # room again: the running daemon takes everything, on a new connection
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        answers = send_all(d, lines_of(evs))
        assert [a["status"] for a in answers] == ["duplicate" if e["id"] in kept else "ok" for e in evs], \
            [a for a in answers if a["status"] not in ("ok", "duplicate")][:3]
        got = table(d)
        assert d.db_rows("PRAGMA integrity_check")[0][0] == "ok"
    finally:
        assert d.stop() == 0

    ref = Daemon(CAMPAIGNS)
    try:
        first = [e for e in evs if e["id"] in kept]
        answers = send_all(ref, lines_of(first + evs))
        assert [a["status"] for a in answers] == \
            ["ok"] * len(first) + ["duplicate" if e["id"] in kept else "ok" for e in evs]
        expected = table(ref)
    finally:
        assert ref.stop() == 0
    assert got == expected
