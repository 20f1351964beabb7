"""Helpers shared by the fault tests: plain HTTP with partial reads, the admin endpoints, and an
independent look at the cache directory (the SQLite index against the body files on disk)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ADMIN_TOKEN, sha256

PURGE_TOKEN = "faults-admin-token-0123456789"
ADMIN_EXTRA = f'[admin]\ntoken = "{PURGE_TOKEN}"\n'


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` passes (a bound, never an assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    error: str | None = None  # set when the body was cut or the connection failed

    @property
    def x_cache(self) -> str:
        return self.headers.get("x-cache", "")

    @property
    def complete(self) -> bool:
        return self.error is None


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> Answer:
    """One GET on a fresh connection; a short body is reported in `error`, not raised."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.request("GET", target, headers=headers or {})
            response = conn.getresponse()
        except OSError as exc:
            return Answer(0, {}, b"", f"no response: {exc!r}")
        fields = {k.lower(): v for k, v in response.getheaders()}
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            return Answer(response.status, fields, exc.partial,
                          f"body cut after {len(exc.partial)} bytes (IncompleteRead)")
        except OSError as exc:
            return Answer(response.status, fields, b"", f"body read failed: {exc!r}")
        return Answer(response.status, fields, body)
    finally:
        conn.close()


def body_problem(url: str, answer: Answer, expected_sha: str) -> str | None:
    """None when `answer` is a complete 200 whose bytes are exactly the origin's object."""
    if answer.error is not None:
        return f"GET {url}: {answer.error} (status {answer.status}, X-Cache {answer.x_cache})"
    if answer.status != 200:
        return (f"GET {url}: status {answer.status} (X-Cache {answer.x_cache}): "
                f"{answer.body[:200]!r}")
    got = sha256(answer.body)
    declared = answer.headers.get("x-content-sha256")
    length = answer.headers.get("content-length")
    if got != expected_sha or declared != expected_sha or (
            length is not None and int(length) != len(answer.body)):
        return (f"GET {url}: WRONG BODY: {len(answer.body)} bytes sha256 {got[:16]}, "
                f"X-Content-SHA256 {str(declared)[:16]}, Content-Length {length}, "
                f"expected sha256 {expected_sha[:16]} (X-Cache {answer.x_cache})")
    return None


def admin_json(url: str, timeout: float = 10.0) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def metrics(admin_url: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (samples only)."""
    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[name] = found.get(name, 0.0) + float(value)
    return found


def store_error_count(admin_url: str) -> float:
    """mediaproxy_store_errors_total (all operations) + mediaproxy_fills_total{store_error}."""
    samples = metrics(admin_url)
    total = sum(v for k, v in samples.items() if k.startswith("mediaproxy_store_errors_total"))
    total += sum(v for k, v in samples.items()
                 if k.startswith("mediaproxy_fills_total") and 'outcome="store_error"' in k)
    return total


def clear_origin_faults(origin_url: str) -> None:
    request = urllib.request.Request(origin_url + "/_origin/faults", method="DELETE",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()


# -- the cache directory, seen from outside the proxy ---------------------------------------

SKIP_DIRS = ("graveyard", "tmp", "locks")


@dataclass
class Snapshot:
    rows: dict[str, int]  # filename (relative to the cache dir) -> size, raw = 1 rows
    files: dict[str, int]  # every *.val body file outside graveyard/ and tmp/ -> size
    bad_rows: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.bad_rows and not self.orphans


def index_rows(cache_dir: Path) -> dict[str, int]:
    db = cache_dir / "cache.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        con.execute("PRAGMA busy_timeout = 10000")
        rows = con.execute("SELECT filename, size FROM Cache WHERE raw = 1").fetchall()
    finally:
        con.close()
    return {str(f): int(s) for f, s in rows if f is not None}


def body_files(cache_dir: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for root, dirs, files in os.walk(cache_dir):
        if Path(root) == cache_dir:
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".val"):
                path = Path(root, name)
                with contextlib.suppress(FileNotFoundError):
                    found[str(path.relative_to(cache_dir))] = path.stat().st_size
    return found


def snapshot(cache_dir: Path) -> Snapshot:
    rows = index_rows(cache_dir)
    files = body_files(cache_dir)
    snap = Snapshot(rows, files)
    for name, size in sorted(rows.items()):
        path = cache_dir / name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            snap.bad_rows.append(f"row {name} (size {size}): body file missing")
            continue
        if actual != size:
            snap.bad_rows.append(f"row {name}: index says {size} bytes, file has {actual}")
    snap.orphans = sorted(set(files) - set(rows))
    return snap


def settled_snapshot(cache_dir: Path, timeout: float = 5.0,
                     known_orphans: frozenset[str] = frozenset()) -> Snapshot:
    """The index against the disk, retried while it disagrees (a delete removes the row first
    and the file just after; a commit renames the file just before inserting the row).
    Orphans already reported are not waited for again."""
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot(cache_dir)
        settled = not snap.bad_rows and set(snap.orphans) <= known_orphans
        if settled or time.monotonic() >= deadline:
            return snap
        time.sleep(0.2)


def tmp_leftovers(cache_dir: Path, meta_grace_seconds: float = 60.0) -> list[str]:
    """Files in tmp/ that an idle proxy must not have: any *.part, and anything but a *.meta
    younger than the grace period (followers of a just-finished fill may still read those)."""
    leftovers = []
    now = time.time()
    try:
        entries = list(os.scandir(cache_dir / "tmp"))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if entry.name.endswith(".meta") and age < meta_grace_seconds:
            continue
        leftovers.append(f"tmp/{entry.name} (age {age:.1f} s)")
    return sorted(leftovers)


def part_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "tmp").glob("*.part"))


def open_part_writers(pid: int, cache_dir: Path) -> int:
    """How many temp body files process `pid` has open for writing (it is filling them)."""
    tmp = str(cache_dir / "tmp")
    count = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not (target.startswith(tmp) and ".part" in target):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = next(int(line.split()[1], 8) for line in info
                             if line.startswith("flags:"))
        except (OSError, StopIteration, ValueError):
            continue
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            count += 1
    return count


# -- mounts ----------------------------------------------------------------------------------

def mount_tmpfs(directory: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` on `directory`; None on success, else why not."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(directory)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return repr(exc)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
    return None


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def remount(directory: Path, mode: str) -> None:
    result = run("mount", "-o", f"remount,{mode}", str(directory))
    if result.returncode != 0:
        raise AssertionError(f"mount -o remount,{mode} {directory}: {result.stderr.strip()}")


def stack_bind_mount(directory: Path) -> None:
    """Mount `directory` on itself. Files the proxy opened before stay on the mount below;
    every path lookup from now on goes through this one, which can then be remounted
    read-only and back (the mount below cannot: the proxy's SQLite holds files open for
    writing on it, and the kernel refuses `remount,ro` with EBUSY while writers exist)."""
    result = run("mount", "--bind", str(directory), str(directory))
    if result.returncode != 0:
        raise AssertionError(f"mount --bind {directory}: {result.stderr.strip()}")


def remount_bind(directory: Path, mode: str, timeout: float = 10.0) -> None:
    """`mount -o remount,bind,<mode>`, retried while the top mount has writers (a fill)."""
    errors: list[str] = []

    def done() -> bool:
        result = run("mount", "-o", f"remount,bind,{mode}", str(directory))
        errors.append(result.stderr.strip())
        return result.returncode == 0

    if not wait_for(done, timeout, interval=0.2):
        raise AssertionError(f"mount -o remount,bind,{mode} {directory}: {errors[-1]}")


def mount_ext4_image(image: Path, directory: Path, size_mb: int) -> str | None:
    """A loop-mounted ext4 with errors=remount-ro on `directory`; None on success."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        for argv in (("mkfs.ext4", "-q", "-F", str(image)),
                     ("mount", "-o", "loop,errors=remount-ro", str(image), str(directory))):
            result = run(*argv)
            if result.returncode != 0:
                return f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return repr(exc)
    return None


def ext4_error_trigger(directory: Path) -> Path | None:
    """/sys/fs/ext4/<dev>/trigger_fs_error of the ext4 mounted on `directory` (a test hook:
    writing to it raises a filesystem error, which errors=remount-ro turns into read-only)."""
    source = run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(directory)).stdout.strip()
    if not source:
        return None
    trigger = Path("/sys/fs/ext4") / Path(source).name / "trigger_fs_error"
    return trigger if trigger.exists() else None


def is_mountpoint(directory: Path) -> bool:
    return run("mountpoint", "-q", str(directory)).returncode == 0


def unmount(directory: Path) -> None:
    """Unmount everything stacked on `directory`, lazily if something still holds a mount."""
    for _ in range(4):
        if not is_mountpoint(directory):
            return
        if run("umount", str(directory)).returncode != 0:
            run("umount", "-l", str(directory))
