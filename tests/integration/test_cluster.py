"""Cluster mode (spec 17), the publishing side: `mktd cluster init`,
`mktd cluster status` and `mktd publish` against a real three-node NATS
JetStream cluster on 127.0.0.1 started by the test."""
import json
import os
import subprocess
import tempfile
import time

from harness import command, mktd
from natscluster import NatsCluster

PARTITIONS = 8


def fnv1a(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def write_config(d, nats, partitions=PARTITIONS, extra=""):
    path = os.path.join(d, "mktd.yaml")
    urls = ", ".join(f'"{u}"' for u in nats)
    with open(os.path.join(d, "cluster.secret"), "w") as f:
        f.write("a secret of the test's cluster\n")
    with open(path, "w") as f:
        f.write("daemon:\n"
                f"  database: {d}/mktd.db\n"
                f"  cluster: {{nats: [{urls}], partitions: {partitions}, worker: w1,"
                " secret_file: cluster.secret}\n"
                f"{extra}"
                "campaigns: []\n")
    return path


def init(cfg):
    """`cluster init`, again while JetStream is still electing its leaders."""
    deadline = time.time() + 30
    while True:
        r = mktd("cluster", "init", "-c", cfg)
        if r.returncode == 0 or time.time() > deadline:
            return r
        time.sleep(0.5)


def events(n, users, prefix="e"):
    return [{"id": f"{prefix}{i}", "type": "page.view", "user": f"u{i % users}",
             "ts": 1767225600000 + i} for i in range(n)]


def publish(cfg, lines):
    text = "".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines)
    r = mktd("publish", "-c", cfg, "-", input=text)
    return r, [json.loads(x) for x in r.stdout.splitlines()]


def status(cfg):
    r = mktd("cluster", "status", "-c", cfg, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_publish_partitions_and_duplicates():
    nc = NatsCluster(3)
    d = tempfile.mkdtemp(prefix="mktd-cl-")
    cfg = write_config(d, nc.urls())

    r = mktd("cluster", "status", "-c", cfg)
    assert r.returncode == 1 and "mktd cluster init" in r.stderr, (r.stdout, r.stderr)

    r = init(cfg)
    assert r.returncode == 0, r.stderr
    assert "stream MKTD_EVENTS: ready" in r.stdout and "partitions: 8" in r.stdout, r.stdout
    r = mktd("cluster", "init", "-c", cfg)  # again: nothing changes
    assert r.returncode == 0 and "partitions: 8 (as before)" in r.stdout, (r.stdout, r.stderr)
    other = write_config(tempfile.mkdtemp(prefix="mktd-cl-"), nc.urls(), partitions=4)
    r = mktd("cluster", "init", "-c", other)
    assert r.returncode == 1 and "made with 8 partitions" in r.stderr, r.stderr
    r, _ = publish(other, events(1, 1))
    assert r.returncode == 2 and "8 partitions" in r.stderr, r.stderr

    evs = events(400, 37)
    bad = ['{"id":"x1","type":"page.view"}', "{not json",
           '{"id":"x2","type":"a","user":"u","explain":"yes"}']
    lines = evs[:100] + bad + evs[100:]
    r, answers = publish(cfg, lines)
    assert r.returncode == 1, r.stderr  # some lines were not published
    assert "400 published, 0 duplicate, 3 not published" in r.stderr, r.stderr
    assert len(answers) == len(lines)
    # answers come in input order; errors are answered as a daemon would
    assert [a["status"] for a in answers[100:103]] == ["error"] * 3
    assert answers[100]["error"] == "invalid_event" and answers[100]["id"] == "x1"
    assert answers[101]["error"] == "invalid_json"
    assert answers[102]["error"] == "invalid_event" and answers[102]["id"] == "x2"
    assert "explain" in answers[102]["detail"], answers[102]
    ok = answers[:100] + answers[103:]
    assert [a["id"] for a in ok] == [e["id"] for e in evs]
    assert all(a["status"] == "ok" for a in ok), ok[:3]
    for a, e in zip(ok, evs):
        assert a["partition"] == fnv1a(e["user"]) % PARTITIONS, (a, e)
    seqs = [a["seq"] for a in ok]
    assert sorted(seqs) == list(range(1, 401)), seqs[:10]

    st = status(cfg)
    assert st["events"] == 400
    want = [0] * PARTITIONS
    for e in evs:
        want[fnv1a(e["user"]) % PARTITIONS] += 1
    assert [p["events"] for p in st["partitions"]] == want, st
    assert all(p["owner"] is None for p in st["partitions"])

    # the same events again: JetStream knows every id; nothing is stored
    r, again = publish(cfg, evs[:50])
    assert r.returncode == 0, r.stderr
    assert [a["status"] for a in again] == ["duplicate"] * 50
    assert [a["seq"] for a in again] == seqs[:50]
    assert status(cfg)["events"] == 400
    # event ids are unique per user (spec 18): the same ids for other
    # users are other events, stored
    others = [dict(e, user=e["user"] + "-other") for e in evs[:50]]
    r, theirs = publish(cfg, others)
    assert r.returncode == 0, r.stderr
    assert [a["status"] for a in theirs] == ["ok"] * 50, theirs[:3]
    assert sorted(a["seq"] for a in theirs) == list(range(401, 451))
    assert status(cfg)["events"] == 450

    # a dry line goes to its partition's owner; with no worker running,
    # nobody answers: error internal after a while, and nothing is stored
    r, dry = publish(cfg, ['{"id":"d1","type":"page.view","user":"u1","dry":true}'])
    assert r.returncode == 1 and [a["status"] for a in dry] == ["error"], dry
    assert dry[0]["error"] == "internal" and "no owner of partition" in dry[0]["detail"], dry
    assert status(cfg)["events"] == 450

    # one of three servers killed while a publish runs: the streams (3
    # replicas) go on; every event is answered ok once and stored once
    more = events(6000, 37, prefix="k")
    path = os.path.join(d, "more.ndjson")
    with open(path, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in more)
    proc = subprocess.Popen(command("publish", "-c", cfg, path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    nc.kill9(2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = [json.loads(x) for x in out.splitlines()]
    assert [a["id"] for a in got] == [e["id"] for e in more]
    assert {a["status"] for a in got} == {"ok"}, err
    assert sorted(a["seq"] for a in got) == list(range(451, 6451))
    assert status(cfg)["events"] == 6450


def test_config_is_checked():
    d = tempfile.mkdtemp(prefix="mktd-cl-")
    path = os.path.join(d, "mktd.yaml")
    with open(path, "w") as f:
        f.write("daemon:\n"
                "  clock: event\n"
                "  cluster:\n"
                "    nats: [\"nats://127.0.0.1:0\", \"ftp://x\"]\n"
                "    partitions: 0\n"
                "    stream: \"bad.name\"\n"
                "    takeover: 100ms\n"
                "    colour: blue\n"
                "campaigns: []\n")
    r = mktd("check", "-c", path)
    assert r.returncode != 0
    for want in ("mktd.yaml:2:10: clock: not allowed with daemon.cluster",
                 "mktd.yaml:4:12: cluster.nats: 'nats://127.0.0.1:0' must be nats://HOST:PORT",
                 "mktd.yaml:4:34: cluster.nats: 'ftp://x'",
                 "mktd.yaml:5:17: cluster.partitions: must be an integer from 1 to 1024",
                 "mktd.yaml:6:13: cluster.stream: 'bad.name' must be 1-32 of [A-Za-z0-9_-]",
                 "mktd.yaml:7:15: cluster.takeover: must be from 1s to 1h",
                 "mktd.yaml:4:5: cluster.secret_file: required",
                 "colour"):
        assert want in r.stderr, (want, r.stderr)
    # the secret: read when the config is, relative to its folder
    real = os.path.realpath(d)
    for content, why in (("", f"{real}/cluster.secret is empty"),
                         (None, f"{real}/cluster.secret")):
        sp = os.path.join(d, "cluster.secret")
        if content is None:
            os.unlink(sp)
        else:
            with open(sp, "w") as f:
                f.write(content)
        with open(path, "w") as f:
            f.write("daemon:\n  cluster: {nats: [\"nats://127.0.0.1:4222\"],"
                    " secret_file: cluster.secret}\ncampaigns: []\n")
        r = mktd("check", "-c", path)
        assert r.returncode != 0 and "cluster.secret_file: " + why in r.stderr \
            and f"(resolved against the config's folder {real})" in r.stderr, r.stderr
    with open(path, "w") as f:
        f.write("daemon:\n  cluster: {partitions: 4}\ncampaigns: []\n")
    r = mktd("check", "-c", path)
    assert r.returncode != 0 and "cluster.nats: required" in r.stderr, r.stderr


def test_no_server():
    d = tempfile.mkdtemp(prefix="mktd-cl-")
    from harness import free_port
    cfg = write_config(d, [f"nats://127.0.0.1:{free_port()}"])
    r = mktd("publish", "-c", cfg, "-", input='{"id":"a","type":"t","user":"u"}\n')
    assert r.returncode == 2 and "cannot connect to NATS" in r.stderr, r.stderr
    r = mktd("cluster", "status", "-c", cfg)
    assert r.returncode == 2 and "cannot connect to NATS" in r.stderr, r.stderr
