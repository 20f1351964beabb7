"""Cross-process fill coordination: at most one process fills a key at a time.

Rule: the filler holds an exclusive flock on `locks/<h>.lock` for the whole fill and publishes
the response metadata in `tmp/<h>.meta` (naming its body file) before the first body byte lands
in its own `tmp/<h>.<unique>.part`: a file name is never shared by two fills, so no fill can
write into another's body. A process that finds the lock held follows that fill by tailing the
part file the metadata names. The kernel drops a flock when its process dies, so a crashed
filler never blocks a key; its leftovers are removed by the sweep once no live process holds
the key's lock, never by a reader. Only the claim's owner releases it.
Publishing a fill's metadata is its admission to the disk budget: the store makes room for its
expected size first (`admit`), or refuses with NoRoom (an OSError) and the fill is relayed
uncached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.store.retention import probe

log = logging.getLogger(__name__)

LOCK_DIR = "locks"
META_GRACE_SECONDS = 60.0


def _younger_than(entry: os.DirEntry[str], seconds: float) -> bool:
    try:
        return time.time() - entry.stat().st_mtime < seconds
    except OSError:
        return False


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class FillPaths:
    lock: Path
    part: Path
    meta: Path


# (the fill's paths, its expected size or None, the write that publishes it) -> None; raises
# OSError (NoRoom) when the fill cannot fit. The store's; the default admits everything.
Admit = Callable[[FillPaths, int | None, Callable[[], None]], None]


def admit_all(paths: FillPaths, expected: int | None, publish: Callable[[], None]) -> None:
    publish()


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path` (created if needed), or None if held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # If the lock file was removed between our open and our flock we locked an orphan
        # inode nobody else will see: check that the path still names what we hold.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    return None


def lock_held(lock: Path) -> bool:
    """Does some live process hold the claim or job lock at `lock`? (A shared probe: it
    never takes the lock from anyone; a missing file means nobody holds it.)"""
    return probe(str(lock), exclusive=False) is False


_PART_NAME = re.compile(r"[0-9a-f]{64}(?:\.[0-9a-f]{32})?\.part")


class Claim:
    """Held by the filling process; `release` ends the fill for every follower."""

    def __init__(self, fd: int, paths: FillPaths, admit: Admit = admit_all) -> None:
        self._fd = fd
        self.paths = paths
        # This claim's own body file: unique, so a fill of this key that outlived a bug in
        # claim handling can never share (and truncate, or commit) another fill's file.
        self.part = paths.part.with_name(
            f"{paths.part.name[:-len('.part')]}.{uuid.uuid4().hex}.part")
        # Set when a running fill took the claim over: it releases it when its body ends,
        # and nobody else may (the request that started it may leave long before).
        self.owned_by_fill = False
        self._admit = admit

    def publish(self, meta: dict[str, Any]) -> None:
        """Atomically (re)write the metadata file followers read. The first announcement of
        a fill (its response metadata) is admitted to the budget first."""
        if "meta" in meta and not meta.get("done"):
            expected = meta.get("expected")
            # Admitted as this claim's own body file (the one left out of "in flight").
            self._admit(dataclasses.replace(self.paths, part=self.part),
                        expected if isinstance(expected, int) else None,
                        lambda: self._write(meta))
        else:
            self._write(meta)

    def _write(self, meta: dict[str, Any]) -> None:
        temp = self.paths.meta.with_suffix(f".meta.{os.getpid()}")
        temp.write_bytes(json.dumps(meta, separators=(",", ":")).encode())
        os.replace(temp, self.paths.meta)

    def release(self) -> None:
        if self._fd >= 0:
            # Unlinked while still held, so lock files do not pile up (one per key ever
            # filled). Safe: `_try_lock` only trusts a lock whose inode the path still names,
            # and a prober that finds no file knows nobody holds it.
            with contextlib.suppress(OSError):
                os.unlink(self.paths.lock)
            os.close(self._fd)  # drops the flock
            self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0


class Claims:
    def __init__(self, directory: Path, admit: Admit = admit_all) -> None:
        self._admit = admit
        self.lock_dir = directory / LOCK_DIR
        self.tmp_dir = directory / "tmp"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def paths(self, key: str) -> FillPaths:
        h = key_hash(key)
        return FillPaths(
            self.lock_dir / h[:2] / f"{h}.lock", self.tmp_dir / f"{h}.part",
            self.tmp_dir / f"{h}.meta",
        )

    def try_claim(self, key: str) -> Claim | None:
        """The claim on `key`, or None when another live process holds it."""
        paths = self.paths(key)
        fd = _try_lock(paths.lock)
        if fd is None:
            return None
        for leftover in (paths.part, paths.meta):  # a crashed filler's
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return Claim(fd, paths, self._admit)

    def try_job(self, name: str) -> Claim | None:
        """An exclusive claim on a named background job (a ban's sweep), or None."""
        lock = self.lock_dir / "jobs" / f"{name}.lock"
        fd = _try_lock(lock)
        return None if fd is None else Claim(fd, FillPaths(lock, lock, lock))

    def running_fills(self) -> list[dict[str, Any]]:
        """Metadata of the fills some live process is running now."""
        found = []
        for meta_path in self.tmp_dir.glob("*.meta"):
            stem = meta_path.name.split(".", 1)[0]
            if not lock_held(self.lock_dir / stem[:2] / f"{stem}.lock"):
                continue
            try:
                info = json.loads(meta_path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and "meta" in info and not info.get("done"):
                found.append(info)
        return found

    def is_held(self, key: str) -> bool:
        return lock_held(self.paths(key).lock)

    def part_path(self, key: str, info: dict[str, Any]) -> Path:
        """The body file of the fill `info` (its published metadata) describes."""
        name = info.get("part")
        if isinstance(name, str) and _PART_NAME.fullmatch(name):
            return self.tmp_dir / name
        return self.paths(key).part  # published by a process running an older version

    def read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.paths(key).meta.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def sweep(self) -> int:
        """Remove part/meta files of fills no live process holds (start-up and periodic)."""
        removed = 0
        try:
            entries = list(os.scandir(self.tmp_dir))
        except OSError:
            return 0
        for entry in entries:
            stem = entry.name.split(".", 1)[0]
            if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem):
                if lock_held(self.lock_dir / stem[:2] / f"{stem}.lock"):
                    continue
                if entry.name.endswith(".meta") and _younger_than(entry, META_GRACE_SECONDS):
                    continue  # followers of a just-finished fill may still read it
            elif stem.isdigit():
                continue  # pid-named files: Store.sweep_temp decides
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                log.debug("swept %s (no live fill holds it)", entry.name)
                removed += 1
        return removed
