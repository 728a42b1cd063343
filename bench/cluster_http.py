"""A worker's HTTP gateway (POST /v1/events) into a three-node NATS
JetStream cluster on 127.0.0.1 (R3, 16 partitions): N new events posted in
bodies of B lines by C clients at once; prints events/s (stored in three
replicas and answered) and the bodies' latency percentiles, then the same
for `mktd publish` of the same number of events, for comparison. The
worker applies the events meanwhile (welcome coupon and win-back
campaigns), as it would in production. Run from the repository root
after a build:
    MKTD_BIN=build/mktd MKTD_PLUGINS=build/plugins python3 bench/cluster_http.py [N] [B] [C]
"""
import json
import os
import sys
import threading
import time
import urllib.request

os.environ.setdefault("MKTD_BIN", os.path.abspath("build/mktd"))
os.environ.setdefault("MKTD_PLUGINS", os.path.abspath("build/plugins"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import test_cluster_worker as W  # noqa: E402
from harness import free_port  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
per = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4


def bodies(prefix):
    evs = [json.dumps({"id": f"{prefix}{i}", "type": "page.view", "user": f"user{i % 37500}",
                       "ts": W.T0 + i}) for i in range(n)]
    return ["\n".join(evs[k:k + per]).encode() + b"\n" for k in range(0, n, per)]


nc, d, ws = W.setup(1)
w = ws[0]
port = free_port()
with open(w.cfg) as f:
    text = f.read()
with open(w.cfg, "w") as f:
    f.write(text.replace("daemon:\n", f'daemon:\n  http: "127.0.0.1:{port}"\n', 1))
w.start()
W.wait_for("the gateway", lambda: "gateway: http on" in open(w.log).read(), 30)
W.wait_for("every partition owned", lambda: W.owners(w.cfg) == ["w1"] * W.PARTITIONS, 30)

todo = bodies("h")
lat = []
lock = threading.Lock()
answers = [0]


def client():
    while True:
        with lock:
            if not todo:
                return
            b = todo.pop()
        t = time.time()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=b, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            got = resp.read().decode().splitlines()
        dt = time.time() - t
        assert all('"status":"ok"' in x for x in got), got[:2]
        with lock:
            lat.append(dt)
            answers[0] += len(got)


t0 = time.time()
th = [threading.Thread(target=client) for _ in range(clients)]
for t in th:
    t.start()
for t in th:
    t.join()
dt = time.time() - t0
lat.sort()
print(f"http: {answers[0]} events in {len(lat)} bodies of {per}, {clients} clients: "
      f"{dt:.2f} s = {answers[0] / dt:,.0f} events/s; a body's latency p50 "
      f"{lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1000:.0f} ms")

evs = [{"id": f"p{i}", "type": "page.view", "user": f"user{i % 37500}", "ts": W.T0 + i}
       for i in range(n)]
t0 = time.time()
W.publish(w.cfg, evs)
dt = time.time() - t0
print(f"mktd publish: {n} events in {dt:.2f} s = {n / dt:,.0f} events/s")
w.stop()
nc.close()
