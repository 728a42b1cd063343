"""The daemon over real sockets: answers, order, duplicates, errors."""
from harness import Daemon, ok


def test_tcp_and_unix_answer_in_order():
    d = Daemon()
    try:
        evs = [{"id": f"e{i}", "type": "page.view", "user": f"u{i % 3}"} for i in range(200)]
        a = d.send(evs)
        assert [x["id"] for x in a] == [f"e{i}" for i in range(200)]
        for x in a:
            ok(x, 0)
        b = d.send(evs[:5] + [{"id": "n1", "type": "page.view", "user": "u"}], unix=True)
        assert [x["status"] for x in b] == ["duplicate"] * 5 + ["ok"]
        assert d.db_rows("SELECT count(*) FROM events")[0][0] == 201
        assert d.db_rows("SELECT events FROM users WHERE id='u1'")[0][0] == 67
    finally:
        assert d.stop() == 0
