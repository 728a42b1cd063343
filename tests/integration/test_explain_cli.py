"""`mktd explain`: events sent dry with an explanation, printed per event as
the actions they would cause and a line per campaign considered (spec 10)."""
import json

from harness import Daemon, mktd, ok

T = 1_700_000_000_000

CAMPAIGNS = """
- id: first
  plugin: coupon
  when:
    event: order.paid
    all:
      - {field: user.orders, op: eq, value: 1}
  params: {value: 500, valid_for: 7d}
- id: off
  plugin: coupon
  enabled: false
  when: {event: order.paid}
  params: {value: 100, valid_for: 7d}
"""


def paid(id, user, order, ts):
    return {"id": id, "type": "order.paid", "user": user, "ts": ts,
            "props": {"order_id": order, "amount": 1000}}


def test_explain_prints_actions_and_reasons_and_stores_nothing():
    d = Daemon(CAMPAIGNS)
    ok(d.send([paid("p1", "old", "o1", T)])[0], 1)
    before = d.db_rows("SELECT count(*) FROM actions")[0][0]
    line = json.dumps(paid("q1", "new", "o2", T + 1))
    out = mktd("explain", f"unix:{d.sock}", line)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("q1: 1 action\n"), text
    assert "+ coupon.issued for new by first" in text and '"code":null' in text, text
    depth0 = [l for l in text.splitlines()[2:] if l.startswith("  ") and not l.startswith("   ")]
    rows = {l.split()[0]: l.split()[1] for l in depth0 if not l.strip().startswith(("+", "order."))}
    assert rows.get("first") == "ran" and rows.get("off") == "inactive", (rows, text)
    assert "disabled" in text, text
    # a second user's first order, already placed, does not match: the
    # condition and the value seen are shown
    out = mktd("explain", f"unix:{d.sock}", json.dumps(paid("q2", "old", "o3", T + 2)))
    assert out.returncode == 0 and "q2: 0 actions" in out.stdout, out.stdout
    assert "user.orders eq 1: is 2" in out.stdout, out.stdout
    # nothing was kept, and the same ids can be sent for real afterwards
    assert d.db_rows("SELECT count(*) FROM actions")[0][0] == before
    ok(d.send([paid("q1", "new", "o2", T + 1)])[0], 1)
    # a file of events and an error: exit 1, the error shown
    path = f"{d.dir}/ev.ndjson"
    with open(path, "w") as f:
        f.write(json.dumps(paid("q3", "x", "o4", T + 3)) + "\n{\"id\":\"bad\"}\n")
    out = mktd("explain", f"unix:{d.sock}", path)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "q3: 1 action" in out.stdout and "bad: error invalid_event" in out.stdout, out.stdout
    d.stop()
