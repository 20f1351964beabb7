"""`/readyz` reports a cache filesystem that is full (fills cannot be written there, though an
empty file can still be created) and recovers once there is room again; 2 workers.

The cache directory is a real 64 MiB tmpfs (root mounts it; the test is skipped only when the
mount itself fails), filled up by the test with a file of its own beside the cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Running, start_proxy, stop
from tests.faults.support import admin_json, body_problem, http_get, store_error_count, wait_for
from tests.faults.test_disk_faults import cache_until_hit, publish, tmpfs_cache

CACHE = "memory_bytes = 0\n"  # the default budget (10 GiB) is far above the filesystem


@pytest.fixture
def tmpfs_64m(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs_cache(tmp_path, "64m")


def fill_up(directory: Path) -> Path:
    """Write a file on `directory`'s filesystem until it is full (ENOSPC)."""
    filler = directory / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(chunk)
    return filler


def readyz(proxy: Running) -> tuple[int, object]:
    return admin_json(proxy.admin_url + "/readyz")


def test_readyz_reports_a_full_cache_filesystem_and_recovers(
    tmp_path: Path, origin_process: Running, tmpfs_64m: Path
) -> None:
    shas = publish(origin_process, {"/rz/cached.bin": b"c" * 300_000,
                                    **{f"/rz/new-{i}.bin": bytes([i]) * 2_000_000
                                       for i in range(6)},
                                    "/rz/after.bin": b"a" * 500_000})
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, cache_extra=CACHE)
    problems: list[str] = []
    filler: Path | None = None
    try:
        cache_until_hit(proxy, "/rz/cached.bin", shas["/rz/cached.bin"], problems)
        status, body = readyz(proxy)
        assert status == 200, body
        errors_before = store_error_count(proxy.admin_url)

        filler = fill_up(tmpfs_64m)
        for i in range(6):  # new objects: their fills cannot be written, the clients are served
            path = f"/rz/new-{i}.bin"
            problem = body_problem(path, http_get(proxy.url + path), shas[path])
            if problem:
                problems.append(f"disk full: {problem}")
        if not wait_for(lambda: store_error_count(proxy.admin_url) > errors_before, timeout=10):
            problems.append("disk full: no store error was counted")
        answers: list[tuple[int, object]] = []

        def not_ready() -> bool:
            answers.append(readyz(proxy))
            status, body = answers[-1]
            return status == 503 and isinstance(body, dict) and any(
                "cache directory" in p for p in body.get("problems", []))

        if not wait_for(not_ready, timeout=10, interval=0.2):
            problems.append(f"/readyz with the cache filesystem full: expected 503 naming the "
                            f"cache directory, got {answers[-1]} (main: 200)")

        filler.unlink()
        filler = None
        def ready() -> bool:
            answers.append(readyz(proxy))
            return answers[-1][0] == 200

        if not wait_for(ready, timeout=15, interval=0.2):
            problems.append(f"/readyz once there is room again: still {answers[-1]}")
        cache_until_hit(proxy, "/rz/after.bin", shas["/rz/after.bin"], problems)
    finally:
        if filler is not None:
            filler.unlink()
        stop(proxy.proc)
    assert not problems, "full cache filesystem:\n" + "\n".join(problems)

