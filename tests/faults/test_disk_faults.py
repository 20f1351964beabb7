"""Never serve a wrong byte when the disk fails under a running proxy: the cache directory fills
up (ENOSPC) during a fill, is remounted read-only, or is deleted. The client is still answered
with the origin's exact bytes, nothing partial is committed, the failure is counted, and
`/readyz` says what is wrong.

The cache directory is a real small tmpfs (root mounts it; a test is skipped only when the
mount itself fails), or a loop-mounted ext4 image for a real filesystem error, unmounted in the
fixture's teardown (everything stacked on it, lazily if something still holds it). Every
check of a test is evaluated and the violations are reported together.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import sha256
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import put
from tests.faults.support import (
    Answer,
    admin_json,
    body_problem,
    ext4_error_trigger,
    http_get,
    mount_ext4_image,
    mount_tmpfs,
    part_files,
    remount_bind,
    stack_bind_mount,
    store_error_count,
    unmount,
    wait_for,
)

WORKERS = [1, 2]
NO_MEMORY_TIER = "memory_bytes = 0\n"  # hits must come from the disk under test


def tmpfs_cache(tmp_path: Path, size: str) -> Iterator[Path]:
    directory = tmp_path / "cache"  # where start_proxy puts the cache
    why = mount_tmpfs(directory, size)
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs on {directory} (needs root / CAP_SYS_ADMIN): {why}")
    try:
        yield directory
    finally:
        unmount(directory)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs_cache(tmp_path, "8m")


@pytest.fixture
def roomy_tmpfs(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs_cache(tmp_path, "64m")


def publish(origin: Running, objects: dict[str, bytes]) -> dict[str, str]:
    for path, body in objects.items():
        put(origin, path, body)
    return {path: sha256(body) for path, body in objects.items()}


def cache_until_hit(proxy: Running, path: str, sha: str, problems: list[str]) -> bool:
    """GET until the answer is a HIT (the fill commits just after its last byte)."""
    seen: list[str] = []

    def hit() -> bool:
        answer = http_get(proxy.url + path)
        problem = body_problem(path, answer, sha)
        if problem:
            problems.append(problem)
            return True
        seen.append(answer.x_cache)
        return answer.x_cache == "HIT"

    if not wait_for(hit, timeout=15, interval=0.1) or (seen and seen[-1] != "HIT"):
        problems.append(f"GET {path} never became a HIT (X-Cache seen: {seen[-5:]})")
        return False
    return True


def keys_in_index(cache_dir: Path, prefix: str) -> list[str]:
    con = sqlite3.connect(f"file:{cache_dir / 'cache.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT key FROM Cache WHERE key >= ? AND key < ?",
                           (prefix, prefix + "\U0010ffff")).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]


def readyz_problems(proxy: Running) -> tuple[int, object]:
    return admin_json(proxy.admin_url + "/readyz")


def expect_not_ready(proxy: Running, problems: list[str], what: str) -> None:
    answers: list[tuple[int, object]] = []

    def not_ready() -> bool:
        answers.append(readyz_problems(proxy))
        status, body = answers[-1]
        return status == 503 and isinstance(body, dict) and bool(body.get("problems"))

    if not wait_for(not_ready, timeout=10, interval=0.2):
        problems.append(f"/readyz with the cache directory {what}: expected 503 naming the "
                        f"problem, got {answers[-1]}")


@pytest.mark.parametrize("workers", WORKERS)
def test_enospc_during_a_fill_still_serves_the_whole_response(
    tmp_path: Path, origin_process: Running, small_tmpfs: Path, workers: int
) -> None:
    small = {f"/keep/s{i}.bin": bytes([i]) * 20_000 + f"{i}".encode() for i in range(3)}
    big = {"/big/o20m.bin": (b"0123456789abcdef" * 1_250_000)[:20_000_000]}
    shas = publish(origin_process, {**small, **big})
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers,
                        cache_extra=NO_MEMORY_TIER)
    problems: list[str] = []
    try:
        for path in small:
            cache_until_hit(proxy, path, shas[path], problems)
        errors_before = store_error_count(proxy.admin_url)

        # The fill of 20 MB cannot fit in the 8 MB tmpfs: its temp file write hits ENOSPC.
        answer = http_get(proxy.url + "/big/o20m.bin")
        problem = body_problem("/big/o20m.bin", answer, shas["/big/o20m.bin"])
        if problem:
            problems.append(f"the client of the fill that hit ENOSPC did not get the whole "
                            f"response: {problem}")

        if not wait_for(lambda: not part_files(small_tmpfs), timeout=20, interval=0.1):
            problems.append(f"temp files left after the failed fill: {part_files(small_tmpfs)}")
        committed = keys_in_index(small_tmpfs, "/big/")
        if committed:
            problems.append(f"a body that hit ENOSPC was committed: {committed}")
        if not wait_for(lambda: store_error_count(proxy.admin_url) > errors_before, timeout=10,
                        interval=0.2):
            problems.append(
                "no error counter rose: mediaproxy_store_errors_total + mediaproxy_fills_total"
                f'{{outcome="store_error"}} stayed at {errors_before:g}')

        for path in small:
            again = http_get(proxy.url + path)
            problem = body_problem(path, again, shas[path])
            if problem:
                problems.append(f"hit after ENOSPC: {problem}")
            elif again.x_cache != "HIT":
                problems.append(f"GET {path} after ENOSPC: X-Cache {again.x_cache}, expected "
                                f"HIT (it was cached before)")

        # And a second request for the object that does not fit: again whole and exact.
        second = http_get(proxy.url + "/big/o20m.bin")
        problem = body_problem("/big/o20m.bin", second, shas["/big/o20m.bin"])
        if problem:
            problems.append(f"second request for the object that does not fit: {problem}")
    finally:
        stop(proxy.proc)
    assert not problems, "ENOSPC during a fill:\n" + "\n".join(problems)


def check_read_only_answers(proxy: Running, shas: dict[str, str], problems: list[str],
                            what: str) -> None:
    """New objects come from the origin (PASS); the cached one may still be a HIT."""
    for _ in range(3):
        answer = http_get(proxy.url + "/ro/new.bin")
        problem = body_problem("/ro/new.bin", answer, shas["/ro/new.bin"])
        if problem:
            problems.append(f"{what}, new object: {problem}")
        elif answer.x_cache != "PASS":
            problems.append(f"{what}, new object: X-Cache {answer.x_cache}, expected PASS")
        answer = http_get(proxy.url + "/ro/cached.bin")
        problem = body_problem("/ro/cached.bin", answer, shas["/ro/cached.bin"])
        if problem:
            problems.append(f"{what}, cached object: {problem}")
        elif answer.x_cache not in ("HIT", "PASS"):
            problems.append(f"{what}, cached object: X-Cache {answer.x_cache}, expected HIT "
                            f"or PASS")


RO_OBJECTS = {"/ro/cached.bin": b"c" * 200_000, "/ro/new.bin": b"n" * 300_000 + b"!",
              "/ro/after.bin": b"a" * 100_000 + b"?"}


@pytest.mark.parametrize("workers", WORKERS)
def test_read_only_cache_dir_passes_to_the_origin_and_recovers(
    tmp_path: Path, origin_process: Running, roomy_tmpfs: Path, workers: int
) -> None:
    """`mount -o remount,ro` of the tmpfs itself is refused (EBUSY) while the proxy's SQLite
    holds files open for writing on it, so the cache directory gets a bind mount of itself
    stacked on top once the proxy runs, and that mount goes read-only and back: every path
    the proxy opens, creates or renames from then on is on a read-only filesystem (EROFS)."""
    shas = publish(origin_process, RO_OBJECTS)
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers,
                        cache_extra=NO_MEMORY_TIER)
    problems: list[str] = []
    read_only = False
    try:
        cache_until_hit(proxy, "/ro/cached.bin", shas["/ro/cached.bin"], problems)
        stack_bind_mount(roomy_tmpfs)
        remount_bind(roomy_tmpfs, "ro")
        read_only = True

        check_read_only_answers(proxy, shas, problems, "read-only cache dir")
        expect_not_ready(proxy, problems, "read-only")

        remount_bind(roomy_tmpfs, "rw")
        read_only = False
        answers: list[tuple[int, object]] = []
        if not wait_for(lambda: answers.append(readyz_problems(proxy)) or answers[-1][0] == 200,
                        timeout=15, interval=0.2):
            problems.append(f"/readyz after remount rw: still {answers[-1]}")
        for path in ("/ro/after.bin", "/ro/new.bin"):
            cache_until_hit(proxy, path, shas[path], problems)
    finally:
        if read_only:
            remount_bind(roomy_tmpfs, "rw")
        stop(proxy.proc)
    assert not problems, "read-only cache directory:\n" + "\n".join(problems)


def read_only_now(directory: Path) -> bool:
    try:
        (directory / ".ro-probe").mkdir()
    except OSError as exc:
        return exc.errno == errno.EROFS
    (directory / ".ro-probe").rmdir()
    return False


@pytest.fixture
def ext4_cache(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    directory = tmp_path / "cache"
    why = mount_ext4_image(tmp_path / "cache.img", directory, size_mb=64)
    if why is not None:
        pytest.skip(f"cannot loop-mount an ext4 image on {directory}: {why}")
    try:
        trigger = ext4_error_trigger(directory)
        if trigger is None:
            pytest.skip("this kernel has no /sys/fs/ext4/<dev>/trigger_fs_error")
        yield directory, trigger
    finally:
        unmount(directory)


@pytest.mark.parametrize("workers", WORKERS)
def test_filesystem_error_remounts_read_only_under_the_proxy(
    tmp_path: Path, origin_process: Running, ext4_cache: tuple[Path, Path], workers: int
) -> None:
    """How disks really go read-only: an ext4 error with errors=remount-ro. Unlike a bind
    mount, this also fails writes on files the proxy already has open (its SQLite database).
    There is no way back without unmounting, so only the degraded service is checked."""
    directory, trigger = ext4_cache
    shas = publish(origin_process, RO_OBJECTS)
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers,
                        cache_extra=NO_MEMORY_TIER)
    problems: list[str] = []
    try:
        cache_until_hit(proxy, "/ro/cached.bin", shas["/ro/cached.bin"], problems)
        trigger.write_text("1\n")
        if not wait_for(lambda: read_only_now(directory), timeout=10):
            problems.append("the ext4 error did not make the filesystem read-only")
        check_read_only_answers(proxy, shas, problems, "ext4 gone read-only")
        expect_not_ready(proxy, problems, "on a filesystem gone read-only")
    finally:
        stop(proxy.proc)
    assert not problems, "filesystem gone read-only:\n" + "\n".join(problems)


@pytest.mark.parametrize("workers", WORKERS)
def test_deleted_cache_dir_passes_to_the_origin(
    tmp_path: Path, origin_process: Running, workers: int
) -> None:
    objects = {"/del/cached.bin": b"d" * 150_000, "/del/new.bin": b"e" * 250_000 + b"."}
    shas = publish(origin_process, objects)
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers,
                        cache_extra=NO_MEMORY_TIER)
    cache_dir = tmp_path / "cache"
    problems: list[str] = []
    try:
        cache_until_hit(proxy, "/del/cached.bin", shas["/del/cached.bin"], problems)
        shutil.rmtree(cache_dir)

        for _ in range(3):
            for path in objects:
                answer = http_get(proxy.url + path)
                problem = body_problem(path, answer, shas[path])
                if problem:
                    problems.append(f"deleted cache dir: {problem}")
                elif answer.x_cache not in ("PASS", "MISS"):
                    problems.append(f"deleted cache dir: GET {path}: X-Cache {answer.x_cache},"
                                    f" expected PASS or MISS")
        expect_not_ready(proxy, problems, "deleted")
    finally:
        stop(proxy.proc)
    assert not problems, "deleted cache directory:\n" + "\n".join(problems)


def test_min_free_bytes_is_enforced_by_eviction(tmp_path: Path) -> None:
    """On a 16 MiB filesystem with min_free_bytes = 8 MiB, each commit evicts the least
    recently used entries until 8 MiB are free again (max_size_bytes alone would allow far
    more), so the background cull finds nothing left to do."""
    import os
    import subprocess

    from proxy.policy.freshness import StoredResponse
    from proxy.store.index import Store

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        store = Store(mount / "cache", max_size_bytes=1 << 30, min_free_bytes=8 << 20)
        for i in range(10):
            temp = store.tmp_dir / f"{os.getpid()}.t{i}.part"
            temp.write_bytes(os.urandom(1 << 20))
            meta = StoredResponse(200, (("ETag", '"x"'),), 0.0, float(i), 1 << 20)
            assert store.commit(f"/k/{i}", str(temp), meta)
            assert shutil.disk_usage(mount).free >= 8 << 20
        assert store.cull() == 0
        assert store.lookup("/k/0") is None  # least recently used first
        last = store.lookup("/k/9")
        assert last is not None
        last.close()
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_during_a_fill_followed_from_both_workers(
        tmp_path: Path, origin_process: Running) -> None:
    """The clients of a fill get the whole response in every worker: those in the filling
    worker through its memory window, those following from the other worker by a range of the
    same representation from the origin once the file stops short (it cannot grow: the disk
    is full)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.test_collapsing import fault

    cache = tmp_path / "cache"
    why = mount_tmpfs(cache, "16m")
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs on {cache} (needs root / CAP_SYS_ADMIN): {why}")
    try:
        body = (bytes(range(256)) * 160_000)[:40_000_000]
        shas = publish(origin_process, {"/full/o40m.bin": body})
        fault(origin_process, path_prefix="/full/", rate_bytes_per_second=20_000_000)
        proxy = start_proxy(tmp_path, origin_process.url, workers=2,
                            cache_extra=NO_MEMORY_TIER)
        try:
            def one(delay: float) -> Answer:
                time.sleep(delay)
                return http_get(proxy.url + "/full/o40m.bin")

            with ThreadPoolExecutor(12) as pool:  # new connections: both workers get some
                answers = list(pool.map(one, [0.1 * i for i in range(12)]))
        finally:
            stop(proxy.proc)
        problems = [p for a in answers
                    if (p := body_problem("/full/o40m.bin", a, shas["/full/o40m.bin"]))]
        assert not problems, "\n".join(problems)
    finally:
        unmount(cache)
