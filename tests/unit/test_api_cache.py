"""The gateway's short-lived memo: fresh within its TTL, recomputed after, bounded."""
from __future__ import annotations

from api_gateway.cache import Memo


def test_a_value_is_reused_within_the_ttl_and_recomputed_after_it():
    now = [0.0]
    calls = []
    memo = Memo(ttl_s=1.0, clock=lambda: now[0])

    def compute():
        calls.append(now[0])
        return len(calls)
    assert memo.get("k", compute) == 1
    now[0] = 0.9
    assert memo.get("k", compute) == 1
    now[0] = 1.1
    assert memo.get("k", compute) == 2
    assert calls == [0.0, 1.1]


def test_the_memo_never_holds_more_than_its_bound():
    memo = Memo(ttl_s=60, max_entries=3)
    for key in range(10):
        memo.get(key, lambda: 0)
    assert len(memo._entries) <= 3


def test_while_one_caller_recomputes_an_expired_value_the_others_get_the_previous_one():
    import threading

    now = [0.0]
    memo = Memo(ttl_s=1.0, clock=lambda: now[0])
    memo.get("k", lambda: "old")
    now[0] = 2.0
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(5)
        return "new"
    worker = threading.Thread(target=lambda: memo.get("k", slow))
    worker.start()
    started.wait(5)
    assert memo.get("k", lambda: "should not run") == "old"
    release.set()
    worker.join(5)
    assert memo.get("k", lambda: "should not run") == "new"
