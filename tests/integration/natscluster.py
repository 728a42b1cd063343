"""A NATS JetStream cluster of its own for a test: N nats-server processes
on 127.0.0.1 (client, route and monitoring ports picked free), each with
its store under a temp dir; stopped (and removed) at exit."""
import atexit
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import free_port, slow

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"


class NatsCluster:
    def __init__(self, n=3, name="mktdtest", max_payload=None):
        """max_payload: the servers' largest message in bytes (None: their
        default, 1 MB)."""
        self.dir = tempfile.mkdtemp(prefix="mktd-nats-")
        self.n = n
        self.name = name
        self.max_payload = max_payload
        self.procs = [None] * n
        atexit.register(self.close)
        # a port picked free may be taken by another test before its server
        # binds it (tests run two at a time): new ports, up to three times
        for attempt in range(3):
            self.client = [free_port() for _ in range(n)]
            self.route = [free_port() for _ in range(n)]
            self.monitor = [free_port() for _ in range(n)]
            for i in range(n):
                self._write_conf(i)
            # (a server may also lose its route or monitoring port after its
            # client port listens: it exits, and the cluster never forms)
            try:
                for i in range(n):
                    self.start(i)
                self.wait_ready()
                break
            except RuntimeError as e:
                taken = "address already in use" in str(e) or any(
                    "address already in use" in self.log(i) for i in range(n))
                if attempt == 2 or not taken:
                    raise
                self._stop_all()
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = tempfile.mkdtemp(prefix="mktd-nats-")
                self.procs = [None] * n

    def urls(self):
        return [f"nats://127.0.0.1:{p}" for p in self.client]

    def _write_conf(self, i):
        routes = ", ".join(f"nats-route://127.0.0.1:{self.route[j]}" for j in range(self.n) if j != i)
        limit = f"max_payload: {self.max_payload}\n" if self.max_payload else ""
        conf = (f"server_name: n{i}\n"
                f"listen: 127.0.0.1:{self.client[i]}\n"
                f"http: 127.0.0.1:{self.monitor[i]}\n"
                f"{limit}"
                f"jetstream {{ store_dir: \"{self.dir}/store{i}\", max_memory_store: 64MB,"
                f" max_file_store: 1GB }}\n"
                f"cluster {{ name: {self.name}, listen: 127.0.0.1:{self.route[i]},"
                f" routes: [{routes}] }}\n")
        with open(os.path.join(self.dir, f"n{i}.conf"), "w") as f:
            f.write(conf)

    def start(self, i):
        log = open(os.path.join(self.dir, f"n{i}.log"), "ab")
        self.procs[i] = subprocess.Popen([NATS_SERVER, "-c", os.path.join(self.dir, f"n{i}.conf")],
                                         stdout=log, stderr=log)
        deadline = time.time() + slow(15)
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.client[i]), timeout=0.2).close()
                return
            except OSError:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"nats-server n{i} exited:\n{self.log(i)}")
                time.sleep(0.05)
        raise RuntimeError(f"nats-server n{i} did not listen:\n{self.log(i)}")

    def jsz(self, i):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor[i]}/jsz", timeout=2) as r:
            return json.load(r)

    def wait_ready(self):
        """Until the JetStream meta group has a leader and every peer (on a
        loaded machine the peers can take a while to be current)."""
        deadline = time.time() + slow(60)
        while time.time() < deadline:
            for i in range(self.n):
                if self.procs[i] is not None and self.procs[i].poll() is not None:
                    raise RuntimeError(f"nats-server n{i} exited:\n{self.log(i)}")
                try:
                    meta = self.jsz(i).get("meta_cluster", {})
                except OSError:
                    continue
                peers = meta.get("replicas") or []  # the leader lists them
                if (meta.get("leader") == f"n{i}" and len(peers) == self.n - 1
                        and all(p.get("current") for p in peers)):
                    return
            time.sleep(0.2)
        raise RuntimeError("the NATS cluster has no JetStream leader:\n" + self.log(0))

    def publish(self, subject, payload, i=0):
        """A plain NATS publish (a key-value put is one to $KV.<bucket>.<key>),
        with the client protocol over a socket: CONNECT, PUB, then PING until
        PONG so that the server has it."""
        data = payload.encode() if isinstance(payload, str) else payload
        with socket.create_connection(("127.0.0.1", self.client[i]), timeout=5) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"INFO")
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                      + f"PUB {subject} {len(data)}\r\n".encode() + data + b"\r\nPING\r\n")
            while True:
                line = f.readline()
                assert line and not line.startswith(b"-ERR"), line
                if line.startswith(b"PONG"):
                    return

    def requests(self, msgs, i=0):
        """[(subject, payload)] sent in order, each with a reply subject:
        the replies' payloads (bytes), in order."""
        with socket.create_connection(("127.0.0.1", self.client[i]), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"INFO")
            out = b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.mktdtest 1\r\n'
            for subject, payload in msgs:
                data = payload.encode() if isinstance(payload, str) else payload
                out += f"PUB {subject} _INBOX.mktdtest {len(data)}\r\n".encode() + data + b"\r\n"
            s.sendall(out)
            replies = []
            while len(replies) < len(msgs):
                line = f.readline()
                assert line and not line.startswith(b"-ERR"), line
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG"):
                    n = int(line.split()[-1])
                    replies.append(f.read(n + 2)[:n])
            return replies

    def request(self, subject, payload, i=0):
        """A plain NATS request: the one reply's payload (bytes)."""
        return self.requests([(subject, payload)], i)[0]

    def publish_acked(self, msgs, i=0):
        """[(subject, payload)] published in order with JetStream's
        acknowledgements: the stream sequences they were stored at."""
        acks = [json.loads(a) for a in self.requests(msgs, i)]
        assert all("seq" in a for a in acks), acks
        return [a["seq"] for a in acks]

    def stream_messages(self, stream, subject):
        """[(stream seq, data bytes)] of a stream's messages on subject,
        read one by one through JetStream's API (erased ones are gone)."""
        out, seq = [], 1
        while True:
            r = json.loads(self.request(f"$JS.API.STREAM.MSG.GET.{stream}",
                                        json.dumps({"seq": seq, "next_by_subj": subject})))
            if "message" not in r:
                assert r.get("error", {}).get("code") == 404, r
                return out
            m = r["message"]
            out.append((m["seq"], base64.b64decode(m.get("data") or "")))
            seq = m["seq"] + 1

    def kill9(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def log(self, i):
        try:
            with open(os.path.join(self.dir, f"n{i}.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        self._stop_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_all(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
