import time

from proxy.memo import Memo


def test_bounded_oldest_first_and_none_values() -> None:
    memo: Memo[str, int | None] = Memo(2)
    memo.put("a", None)
    memo.put("b", 2)
    assert memo.get("a") == (True, None)
    memo.put("c", 3)  # evicts "a", the oldest insertion
    assert memo.get("a") == (False, None) and memo.get("c") == (True, 3) and len(memo) == 2
    memo.put("b", 4)  # replacing does not evict
    assert memo.get("b") == (True, 4) and memo.get("c") == (True, 3)
    memo.pop("b")
    memo.pop("missing")
    assert memo.get("b") == (False, None)


def test_entries_expire() -> None:
    memo: Memo[str, int] = Memo(10, ttl_seconds=0.05)
    memo.put("a", 1)
    assert memo.get("a") == (True, 1)
    time.sleep(0.06)
    assert memo.get("a") == (False, None) and len(memo) == 0
