"""Operations that tell the truth: `mktd check --running` compares a config
file with the config the running daemon loaded; /v1/health and /metrics
carry the config's hash, the last reload's time and result, and the
build; `mktd --version` is the project's version."""
import hashlib
import json
import os
import re
import urllib.request

from harness import SRC, Daemon, metric_lines, mktd, reload_wait

CAMPAIGN = """
- id: first
  plugin: coupon
  when: {event: order.paid}
  params: {value: VALUE, valid_for: 7d}
"""


def camp(value):
    return CAMPAIGN.replace("VALUE", str(value))


def health(d):
    with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/v1/health", timeout=10) as r:
        return json.loads(r.read())


def metrics(d):
    with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=10) as r:
        return r.read().decode()


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_check_running_says_what_needs_a_restart():
    d = Daemon(campaigns=camp(500), http=True)
    try:
        r = mktd("check", "--running", "-c", d.config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"holding {d.db}" in r.stdout, r.stdout
        assert "no change" in r.stdout, r.stdout
        # a campaign's value: a reload applies it
        d.write_config(camp(700))
        r = mktd("check", "--running", "-c", d.config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "applies on reload:\n  campaign first: changed\n" in r.stdout, r.stdout
        assert "needs a restart" not in r.stdout, r.stdout
        # the database: only a restart; the daemon is found over HTTP
        with open(d.config) as f:
            text = f.read()
        moved = d.db.replace("mktd.db", "other.db")
        with open(d.config, "w") as f:
            f.write(text.replace(d.db, moved))
        r = mktd("check", "--running", "-c", d.config)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"at 127.0.0.1:{d.http_port}, database {d.db}" in r.stdout, r.stdout
        assert (f"needs a restart (a reload is refused):\n  database: {d.db} -> {moved}\n"
                in r.stdout), r.stdout
        assert "applies on reload:\n  campaign first: changed\n" in r.stdout, r.stdout
        # and a reload is refused for the reason check gave
        assert reload_wait(d) is False
        assert "reload refused: `database` changed; that needs a restart" in d.log(), d.log()
        # plain check still says ok: the file is valid
        r = mktd("check", "-c", d.config)
        assert r.returncode == 0, r.stderr
    finally:
        d.stop()


def test_check_running_without_a_daemon():
    d = Daemon(campaigns=camp(500), start=False)
    r = mktd("check", "--running", "-c", d.config)
    assert r.returncode == 1
    assert f"no running mktd found: no process holds its database {d.db}" in r.stderr, r.stderr
    assert "it has no metrics or http address to ask" in r.stderr, r.stderr


def test_health_and_metrics_carry_config_and_last_reload():
    d = Daemon(campaigns=camp(500), http=True)
    try:
        h = health(d)
        assert h["config"]["sha256"] == sha256_of(d.config), h
        assert h["config"]["database"] == d.db, h
        assert h["last_reload"] is None, h
        assert re.fullmatch(r"\d+\.\d+\.\d+( \(git .+\))?", h["version"]), h
        m = metric_lines(metrics(d))
        assert m[f'mktd_config_info{{sha256="{sha256_of(d.config)}"}}'] == 1, m
        assert "mktd_last_reload_success" not in m
        info = [k for k in m if k.startswith("mktd_build_info{")]
        assert len(info) == 1 and m[info[0]] == 1, info
        version = re.search(r'version="([^"]*)"', info[0]).group(1)
        with open(os.path.join(SRC, "CMakeLists.txt")) as f:
            assert re.search(r"project\(mktd VERSION " + re.escape(version) + r"\b", f.read())
        loaded = h["config"]["loaded_at"]

        # a reload that works: a new hash, result ok
        assert reload_wait(d, camp(700)) is True
        h = health(d)
        assert h["config"]["sha256"] == sha256_of(d.config), h
        assert h["config"]["loaded_at"] >= loaded
        assert h["last_reload"]["result"] == "ok" and "error" not in h["last_reload"], h
        at = h["last_reload"]["at"]
        good = h["config"]["sha256"]
        m = metric_lines(metrics(d))
        assert m["mktd_last_reload_success"] == 1
        assert m["mktd_last_reload_timestamp_seconds"] == at / 1000

        # a reload that fails: the running config's hash stays, the error shows
        assert reload_wait(d, camp("x")) is False
        h = health(d)
        assert h["config"]["sha256"] == good, h
        assert h["last_reload"]["result"] == "error", h
        assert "value" in h["last_reload"]["error"], h
        assert h["last_reload"]["at"] >= at
        m = metric_lines(metrics(d))
        assert m["mktd_last_reload_success"] == 0
        assert m[f'mktd_config_info{{sha256="{good}"}}'] == 1
    finally:
        d.stop()


def test_version_is_the_projects():
    r = mktd("--version")
    assert r.returncode == 0
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        version = re.search(r"project\(mktd VERSION (\S+)", f.read()).group(1)
    assert r.stdout.startswith(f"mktd {version} "), r.stdout


def test_readme_walk_through_edits_a_copy():
    # a newcomer who follows the README changes config/try.yaml, never the
    # bundled config the tests check
    with open(os.path.join(SRC, "README.md")) as f:
        text = f.read()
    walk = text[text.index("## Five minutes with mktd"):text.index("## The house")]
    assert "cp config/mktd.yaml config/try.yaml" in walk
    configs = set(re.findall(r"-c (config/[\w.-]+)", walk))
    assert configs == {"config/try.yaml"}, configs
    with open(os.path.join(SRC, ".gitignore")) as f:
        assert "/config/try.yaml" in f.read().split()
    # the copy, beside the original, checks as the original does
    r = mktd("check", "-c", os.path.join(SRC, "config", "mktd.yaml"), cwd="/")
    assert r.returncode == 0, r.stderr
