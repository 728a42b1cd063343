"""mktd publish into a three-node NATS JetStream cluster on 127.0.0.1 (R3,
16 partitions): lines/s for N new events, then for the same N again (all
duplicates). Run from the repository root after a build:
    MKTD_BIN=build/mktd python3 bench/cluster_publish.py [N]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("MKTD_BIN", os.path.abspath("build/mktd"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from natscluster import NatsCluster  # noqa: E402
import test_cluster as T  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
nc = NatsCluster(3)
d = tempfile.mkdtemp()
cfg = T.write_config(d, nc.urls(), partitions=16)
print(T.init(cfg).stdout.strip().splitlines()[0])
path = os.path.join(d, "ev.ndjson")
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"b-{i}", "type": "page.view", "user": f"user{i % 37500}",
                            "ts": 1767225600000 + i, "props": {"path": "/p/%d" % (i % 1000)}}) + "\n")
for run in range(2):
    t = time.time()
    r = subprocess.run([os.environ["MKTD_BIN"], "publish", "-c", cfg, path], capture_output=True, text=True)
    dt = time.time() - t
    print(f"run {run}: {n} lines in {dt:.2f} s = {n/dt:,.0f} lines/s; {r.stderr.strip()}")
print(T.status(cfg)["events"])
nc.close()
