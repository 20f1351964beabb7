"""The store's ban sweeps against a real cache directory."""

import os
import time
from pathlib import Path

from proxy.policy.bans import BanKind
from proxy.policy.freshness import StoredResponse
from proxy.store.index import Store


def put(store: Store, key: str, age: float = 10.0) -> None:
    temp = store.tmp_dir / f"{os.getpid()}.{abs(hash(key))}.part"
    temp.write_bytes(b"body")
    meta = StoredResponse(200, (("ETag", '"1"'),), 0.0, time.time() - age, 4)
    assert store.commit(key, str(temp), meta)


def test_soft_sweep_marks_each_row_once_and_finishes(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    for i in range(3):
        put(store, f"/s/{i}")
    ban = store.add_ban(BanKind.PREFIX, "/s/", soft=True, now=time.time())
    assert store.sweep_ban(ban) == 3
    assert store.sweep_ban(ban) == 0  # already invalidated: the sweep terminates
    assert store.peek("/s/1").invalidated  # type: ignore[union-attr]
    store.sweep_bans(min_ban_age_seconds=0)
    assert not store.bans().all
    store.close()


def test_exact_sweep_covers_variants(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    put(store, "/v/a.jpg\x1faccept=image/webp")
    put(store, "/v/a.jpg\x1faccept=image/avif")
    put(store, "/v/a.jpgx")
    ban = store.add_ban(BanKind.EXACT, "/v/a.jpg", soft=False, now=time.time())
    assert store.sweep_ban(ban) == 2
    assert store.peek("/v/a.jpgx") is not None
    store.close()


def test_a_ban_reaches_another_store_at_once_and_quiet_lookups_do_not_query(
    tmp_path: Path,
) -> None:
    # Two Store objects on one directory stand for two worker processes.
    writer = Store(tmp_path / "c", max_size_bytes=1 << 30)
    reader = Store(tmp_path / "c", max_size_bytes=1 << 30)
    statements: list[str] = []
    reader._reader.set_trace_callback(statements.append)
    assert not reader.bans().all
    queried = len(statements)
    for _ in range(100):
        reader.bans()
    assert len(statements) == queried  # the shared signal did not move: no query
    writer.add_ban(BanKind.PREFIX, "/x/", soft=False, now=time.time())
    assert [b.value for b in reader.bans().all] == ["/x/"]  # no wait, no sleep
    ban = writer.bans().all[0]
    writer.retire_ban(ban)
    assert not reader.bans().all
    writer.close()
    reader.close()


def test_without_a_signal_file_every_lookup_queries(tmp_path: Path) -> None:
    from proxy.store.bans import BanSignal

    signal = BanSignal(tmp_path / "missing-dir" / "bans.signal")
    assert signal.read() is None
    signal.bump()  # harmless
    writer = Store(tmp_path / "c", max_size_bytes=1 << 30)
    reader = Store(tmp_path / "c", max_size_bytes=1 << 30)
    reader._bans._signal = signal
    assert not reader.bans().all
    writer.add_ban(BanKind.EXACT, "/y", soft=False, now=time.time())
    assert len(reader.bans().all) == 1
    writer.close()
    reader.close()


def _bodies(store: Store) -> int:
    pages: int = store._reader.execute("PRAGMA page_count").fetchone()[0]
    size: int = store._reader.execute("PRAGMA page_size").fetchone()[0]
    return store.volume() - pages * size


def test_volume_counts_bodies_in_whole_blocks(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    for i in range(10):
        put(store, f"/b/{i}")  # 4-byte bodies: one 4 KiB block each on disk
    assert _bodies(store) == 10 * 4096
    ban = store.add_ban(BanKind.PREFIX, "/b/", soft=False, now=time.time())
    store.sweep_ban(ban)
    assert _bodies(store) == 0
    store.close()


def test_block_usage_is_computed_for_a_cache_made_before_it_was_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    for i in range(3):
        put(store, f"/old/{i}")
    with store.cache.transact():
        store.cache._sql("DROP TABLE MediaUsage")
        for name in ("Insert", "Delete", "Update"):
            store.cache._sql(f"DROP TRIGGER MediaUsage{name}")
    store.close()
    reopened = Store(tmp_path / "c", max_size_bytes=1 << 30)
    assert _bodies(reopened) == 3 * 4096
    reopened.close()
