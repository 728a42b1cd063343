"""Cluster mode (spec 17), losing one of three NATS servers: kill -9 of a
server while two workers apply a stream; the streams and buckets are
R3, the workers' consumers on the dead server are made again, and every
event is still applied once and every action published once.

Runs in the plain build only: under ASan or valgrind every process is
several times slower, and leases and consumers then wait out the
elections past the test's time (docs/cluster.md, "What the workers do
not do yet")."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster_worker as W  # noqa: E402  (the worker tests' helpers)


def test_a_nats_server_killed_mid_stream():
    if W.harness.VALGRIND or os.environ.get("ASAN_OPTIONS"):
        print("not run under valgrind or ASan (the plain build runs it)")
        return
    nc, d, ws = W.setup()
    cfg = ws[0].cfg
    with W.workers_running(ws):
        W.start_fair(ws, 20)
        evs = W.events(16000)
        W.publish(cfg, evs[:8000])
        # one of the three servers dies mid-stream; the workers and the
        # publisher reach the other two
        t0 = time.time()
        nc.kill9(2)
        W.publish(cfg, evs[8000:])
        print(f"the second half published {time.time() - t0:.1f} s after the kill")
        shards = W.wait_for("every event applied",
                            lambda: W.applied_all(cfg, ws, len(evs)), 150)
        print(f"every event applied {time.time() - t0:.1f} s after the kill")
        W.check_exactly_once(cfg, shards, evs)
