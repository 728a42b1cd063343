"""Helpers shared by the plugin integration tests (test_groupbuy.py,
test_points.py): time units, the README worked-example check, event
building and a tape of the actions recorded since the last look."""
import datetime
import json
import os
import re
import shutil
import tempfile

from harness import PLUGINS, SRC, mktd, ok

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H


def T(s):
    return int(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def readme_example(plugin):
    """The worked example of plugins/<plugin>/README.md: (campaigns YAML,
    simulate's extra args, events text, actions as dicts), from its first
    ```yaml block, the line naming the simulate command and the two ```json
    blocks after "## Worked example"."""
    with open(os.path.join(SRC, "plugins", plugin, "README.md")) as f:
        text = f.read()
    text = text[text.index("## Worked example"):]
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.S)
    yaml = next(b for lang, b in blocks if lang == "yaml")
    jsons = [b for lang, b in blocks if lang == "json"]
    cmd = re.search(r"`mktd simulate -c mktd\.yaml(.*?)\s*events\.ndjson`", text, re.S)
    extra = cmd.group(1).split()
    return yaml, extra, jsons[0], [json.loads(x) for x in jsons[1].splitlines() if x.strip()]


def check_readme_example(plugin):
    """Runs the README's worked example through `mktd simulate` and
    compares the actions printed with the README's, line by line."""
    yaml, extra, events, want = readme_example(plugin)
    d = tempfile.mkdtemp(prefix="mktd-readme-")
    with open(os.path.join(d, "mktd.yaml"), "w") as f:
        f.write("daemon:\n"
                f'  listen: ["unix:{d}/mktd.sock"]\n'
                f"  database: {d}/mktd.db\n"
                f"  plugin_dirs: [{json.dumps(PLUGINS)}]\n"
                "  clock: event\n" + yaml)
    with open(os.path.join(d, "events.ndjson"), "w") as f:
        f.write(events)
    r = mktd("simulate", "-c", os.path.join(d, "mktd.yaml"), *extra,
             os.path.join(d, "events.ndjson"))
    shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert got == want, "\n".join(["got:"] + r.stdout.splitlines())


def ev(id, type, user, ts, **props):
    e = {"id": id, "type": type, "user": user, "ts": ts}
    if props:
        e["props"] = props
    return e


def send_ok(d, events, counts):
    answers = d.send(events)
    assert len(answers) == len(events), answers
    for a, e, n in zip(answers, events, counts):
        assert a["id"] == e["id"], (a, e)
        ok(a, n)


class Tape:
    """The actions recorded since the last check, compared row by row."""

    def __init__(self, d):
        self.d = d
        self.seen = 0

    def expect(self, *rows):
        new = self.d.actions()[self.seen:]
        got = [(r["ts"], r["campaign"], r["kind"], r["user"], r["event_id"], r["payload"])
               for r in new]
        assert got == list(rows), "\n".join(["got:"] + [f"  {g}" for g in got] +
                                            ["expected:"] + [f"  {x}" for x in rows])
        self.seen += len(new)


