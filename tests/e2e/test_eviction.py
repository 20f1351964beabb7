"""Eviction under a tight budget, 2 workers: it removes least-recently-used entries until the
budget holds and no more, never the entry it is committing, and a fill counts against the
budget from its first byte (it evicts ahead of itself, or streams through uncached)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import sha256
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_collapsing import fault
from tests.e2e.test_workers import put
from tests.faults.support import admin_json, http_get, wait_for

MIB = 1024 * 1024
BUDGET = 64 * MIB
CACHE = f"max_size_bytes = {BUDGET}\nmemory_bytes = 0\n"


def body(tag: int, size: int) -> bytes:
    return (bytes([tag % 251]) * 4093 + tag.to_bytes(3, "big"))[: 4096] * (size // 4096)


def stored_keys(cache_dir: Path) -> list[str]:
    """The index's keys, oldest use first (read from outside the proxy)."""
    con = sqlite3.connect(f"file:{cache_dir / 'cache.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT key FROM Cache WHERE raw = 1 ORDER BY access_time, rowid")
        return [str(r[0]) for r in rows.fetchall()]
    finally:
        con.close()


def fetch_and_wait_stored(proxy: Running, cache_dir: Path, path: str, sha: str) -> str:
    """GET `path` (whole and exact), then wait until its fill has committed; its X-Cache."""
    answer = http_get(proxy.url + path)
    assert answer.complete and answer.status == 200 and sha256(answer.body) == sha, path
    assert wait_for(lambda: path in stored_keys(cache_dir), timeout=20), f"{path} not stored"
    return answer.x_cache


def disk_bytes(cache_dir: Path) -> int:
    """What the files under the cache directory take on disk (directories aside)."""
    total = 0
    for root, _, files in os.walk(cache_dir):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


@contextlib.contextmanager
def peak_disk(cache_dir: Path) -> Iterator[list[int]]:
    """Sample the cache directory's disk use until the block ends; yields [peak]."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], disk_bytes(cache_dir))
            done.wait(0.01)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def test_a_new_entry_evicts_only_as_many_of_the_oldest_as_needed(
    tmp_path: Path, origin_process: Running
) -> None:
    small = {f"/ev/five-{i}.bin": body(i, 5 * MIB) for i in range(10)}
    big = {"/ev/twenty.bin": body(99, 20 * MIB)}
    for path, data in {**small, **big}.items():
        put(origin_process, path, data)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, cache_extra=CACHE)
    cache_dir = tmp_path / "cache"
    try:
        for path, data in small.items():
            fetch_and_wait_stored(proxy, cache_dir, path, sha256(data))
        assert stored_keys(cache_dir) == list(small)
        fetch_and_wait_stored(proxy, cache_dir, "/ev/twenty.bin", sha256(big["/ev/twenty.bin"]))
        kept = stored_keys(cache_dir)
        gone = [p for p in small if p not in kept]
        # 50 MiB + 20 MiB is 6 MiB over 64 MiB: two 5 MiB objects, a third only if the index
        # and its WAL took more than the 4 MiB left. Main evicted all ten.
        assert gone == list(small)[: len(gone)], "the oldest go first"
        assert 2 <= len(gone) <= 3, f"evicted {len(gone)} of ten for 6 MiB: {gone}"
        assert kept == [p for p in small if p not in gone] + ["/ev/twenty.bin"]
        again = http_get(proxy.url + "/ev/twenty.bin")
        assert again.x_cache == "HIT" and sha256(again.body) == sha256(big["/ev/twenty.bin"])
        status, stats = admin_json(proxy.admin_url + "/stats")
        assert status == 200 and isinstance(stats, dict)
        assert stats["disk"]["total"] <= BUDGET, stats["disk"]
    finally:
        assert stop(proxy.proc) == 0


def test_three_large_objects_in_turn_keep_the_last_one(
    tmp_path: Path, origin_process: Running
) -> None:
    objects = {f"/ev/big-{i}.bin": body(i, 25 * MIB) for i in range(3)}
    for path, data in objects.items():
        put(origin_process, path, data)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, cache_extra=CACHE)
    cache_dir = tmp_path / "cache"
    try:
        for path, data in objects.items():
            assert fetch_and_wait_stored(proxy, cache_dir, path, sha256(data)) == "MISS"
        assert stored_keys(cache_dir) == ["/ev/big-1.bin", "/ev/big-2.bin"]
        for _ in range(2):  # both workers, most likely: each answers from the shared disk
            last = http_get(proxy.url + "/ev/big-2.bin")
            assert last.x_cache == "HIT", "the object just stored stays (main: MISS again)"
            assert sha256(last.body) == sha256(objects["/ev/big-2.bin"])
    finally:
        assert stop(proxy.proc) == 0


def test_a_fill_evicts_ahead_of_itself_and_disk_use_stays_in_budget(
    tmp_path: Path, origin_process: Running
) -> None:
    small = {f"/ahead/five-{i}.bin": body(i, 5 * MIB) for i in range(10)}
    slow = body(77, 30 * MIB)
    for path, data in small.items():
        put(origin_process, path, data)
    put(origin_process, "/slow/thirty.bin", slow)
    fault(origin_process, path_prefix="/slow/", rate_bytes_per_second=20 * MIB)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, cache_extra=CACHE)
    cache_dir = tmp_path / "cache"
    try:
        for path, data in small.items():
            fetch_and_wait_stored(proxy, cache_dir, path, sha256(data))
        with peak_disk(cache_dir) as peak:
            answer = http_get(proxy.url + "/slow/thirty.bin")
            assert wait_for(lambda: "/slow/thirty.bin" in stored_keys(cache_dir), timeout=20)
        assert answer.complete and sha256(answer.body) == sha256(slow)
        # The temp file of an in-flight fill counts: main reached 50 + 30 MiB before culling.
        assert peak[0] <= BUDGET, f"disk use peaked at {peak[0] / MIB:.1f} MiB during the fill"
        kept = stored_keys(cache_dir)
        assert kept[-1] == "/slow/thirty.bin" and len(kept) >= 7  # 6 x 5 MiB went, at most
    finally:
        assert stop(proxy.proc) == 0


def test_an_object_larger_than_the_budget_streams_through_uncached(
    tmp_path: Path, origin_process: Running
) -> None:
    keep = body(1, 4 * MIB)
    huge = body(2, 20 * MIB)
    put(origin_process, "/fit/keep.bin", keep)
    put(origin_process, "/huge/twenty.bin", huge)
    fault(origin_process, path_prefix="/huge/", rate_bytes_per_second=20 * MIB)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2,
                        cache_extra=f"max_size_bytes = {16 * MIB}\nmemory_bytes = 0\n")
    cache_dir = tmp_path / "cache"
    try:
        fetch_and_wait_stored(proxy, cache_dir, "/fit/keep.bin", sha256(keep))
        with peak_disk(cache_dir) as peak:
            for _ in range(2):
                answer = http_get(proxy.url + "/huge/twenty.bin")
                assert answer.complete and sha256(answer.body) == sha256(huge)
                assert answer.x_cache == "PASS"
        assert peak[0] <= 16 * MIB, f"disk use peaked at {peak[0] / MIB:.1f} MiB"
        assert stored_keys(cache_dir) == ["/fit/keep.bin"], "nothing evicted for it"
        assert http_get(proxy.url + "/fit/keep.bin").x_cache == "HIT"
    finally:
        assert stop(proxy.proc) == 0
