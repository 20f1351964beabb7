"""The disk budget against a real cache directory: eviction evicts what it must, in LRU order,
never the entry being committed, and counts fills in flight from their announcement."""

import errno
import io
import os
import time
from pathlib import Path

import pytest

from proxy.policy.freshness import StoredResponse
from proxy.store.index import Store

MIB = 1024 * 1024


def commit(store: Store, key: str, size: int) -> bool:
    temp = store.tmp_dir / f"{os.getpid()}.{abs(hash(key))}.part"
    temp.write_bytes(b"x" * size)
    meta = StoredResponse(200, (("ETag", '"1"'),), 0.0, time.time(), size)
    return store.commit(key, str(temp), meta)


def keys(store: Store) -> list[str]:
    rows = store._reader.execute("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid")
    return [str(r[0]) for r in rows.fetchall()]


def test_a_commit_evicts_only_as_many_of_the_oldest_as_it_must(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=64 * MIB)
    ten = [f"/five/{i}" for i in range(10)]
    for key in ten:
        assert commit(store, key, 5 * MIB)
    assert commit(store, "/twenty", 20 * MIB)
    # 50 + 20 MiB is 6 MiB over 64 MiB: two 5 MiB entries (the index takes a little more).
    assert keys(store) == [*ten[2:], "/twenty"]
    assert store.usage().total <= 64 * MIB
    store.close()


def test_the_entry_being_committed_is_never_evicted(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=64 * MIB)
    for i in range(3):
        assert commit(store, f"/big/{i}", 25 * MIB)
        assert keys(store)[-1] == f"/big/{i}"
    assert keys(store) == ["/big/1", "/big/2"]
    store.close()


def test_least_recently_used_goes_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=16 * MIB)
    for i in range(3):
        assert commit(store, f"/o/{i}", 5 * MIB)
    used = store.lookup("/o/0")  # the oldest is used again: /o/1 is now the least recent
    assert used is not None
    used.close()
    assert commit(store, "/o/3", 5 * MIB)
    assert keys(store) == ["/o/0", "/o/2", "/o/3"]
    store.close()


def test_a_body_a_stream_holds_is_not_evicted_for_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=16 * MIB)
    for i in range(3):
        assert commit(store, f"/h/{i}", 5 * MIB)
    reading = store.lookup("/h/0")  # a stream holds it: evicting it would free nothing yet
    assert reading is not None
    store.flush_access_times()  # then made the oldest of all again, by hand
    store.cache._sql("UPDATE Cache SET access_time = 0 WHERE key = '/h/0'")
    assert commit(store, "/h/3", 5 * MIB)
    assert keys(store) == ["/h/0", "/h/2", "/h/3"]
    reading.close()
    store.close()


def test_an_announced_fill_makes_room_ahead_of_its_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=32 * MIB)
    for i in range(5):
        assert commit(store, f"/a/{i}", 5 * MIB)
    claim = store.claims.try_claim("/a/new")
    assert claim is not None
    claim.paths.part.write_bytes(b"")
    claim.publish({"meta": {}, "expected": 12 * MIB, "key": "/a/new"})
    # 25 MiB stored + 12 MiB announced is over 32 MiB: two of the oldest go before a byte.
    assert keys(store) == ["/a/2", "/a/3", "/a/4"]
    usage = store.usage()
    assert usage.in_flight_bytes == 12 * MIB and usage.total <= 32 * MIB
    # A second fill is admitted against the first one's announced size, not its 0 bytes.
    other = store.claims.try_claim("/a/other")
    assert other is not None
    other.paths.part.write_bytes(b"")
    other.publish({"meta": {}, "expected": 6 * MIB, "key": "/a/other"})
    assert keys(store) == ["/a/3", "/a/4"]
    claim.release()
    other.release()
    store.close()


def test_a_fill_that_cannot_fit_is_refused_and_evicts_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=16 * MIB)
    assert commit(store, "/k/0", 5 * MIB)
    claim = store.claims.try_claim("/k/huge")
    assert claim is not None
    with pytest.raises(OSError) as raised:
        claim.publish({"meta": {}, "expected": 17 * MIB, "key": "/k/huge"})
    assert raised.value.errno == errno.ENOSPC
    assert keys(store) == ["/k/0"]
    assert not claim.paths.meta.exists()  # never announced: followers do not join it
    claim.release()
    store.close()


def test_background_cull_counts_the_graveyard_and_stops_at_the_budget(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=64 * MIB)
    for i in range(6):
        assert commit(store, f"/g/{i}", 5 * MIB)
    held = store.lookup("/g/5")
    assert held is not None
    store.delete("/g/5")  # superseded while streaming: it waits in the graveyard, counted
    store.max_size_bytes = 20 * MIB
    assert store.cull() == 3  # 5 x 5 MiB left + 5 MiB graveyard: 3 go to fit 20 MiB
    assert store.usage().total <= 20 * MIB
    assert keys(store) == ["/g/3", "/g/4"]
    assert isinstance(held.file, io.FileIO)
    held.close()
    store.close()
