"""Housekeeping of the cache directory: files that no row and no live process owns any more.

Rule: nothing here removes a file something may still use: a body file is an orphan only when
no row names it and it is older than any commit in flight, a temp file only when its process
is gone (pid-named) or no live fill holds its key's lock (Claims.sweep), a superseded body
only once its last stream has ended (retention.py). One process runs the orphan scan at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from proxy.errors import StoreError
from proxy.store.claims import Claims
from proxy.store.reads import Reads
from proxy.store.retention import reap

log = logging.getLogger(__name__)

# A body file is renamed into place inside the commit's write transaction (BEGIN IMMEDIATE is
# taken first), so a file without a row for this long is a crash's leftover, not a commit.
ORPHAN_MIN_AGE_SECONDS = 10.0
# The readiness probe writes this much: an empty file can still be created on a full disk.
PROBE_BYTES = 1024 * 1024


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Janitor:
    def __init__(self, directory: Path, tmp_dir: Path, graveyard: str, reads: Reads,
                 claims: Claims) -> None:
        self.directory = directory
        self.tmp_dir = tmp_dir
        self.graveyard = graveyard
        self.reads = reads
        self.claims = claims
        self._scan_position = int.from_bytes(os.urandom(1), "big")

    def scan_orphans(self, dirs: int = 2, min_age_seconds: float = ORPHAN_MIN_AGE_SECONDS,
                     now: float | None = None) -> int:
        """One step of the background check (like nginx's cache loader, but for leftovers):
        remove body files in one top-level hashed directory that no row owns (a crash between
        the rename into place and the commit). One process at a time; each call moves on to
        the next of the 256 directories, so a full pass costs 256 calls."""
        job = self.claims.try_job("orphan-scan")
        if job is None:
            return 0
        now = time.time() if now is None else now
        removed = 0
        try:
            for _ in range(min(dirs, 256)):
                prefix = f"{self._scan_position:02x}"
                self._scan_position = (self._scan_position + 1) % 256
                removed += self._scan_dir(prefix, min_age_seconds, now)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"orphan scan failed: {exc}") from exc
        finally:
            job.release()
        return removed

    def _scan_dir(self, prefix: str, min_age_seconds: float, now: float) -> int:
        removed = 0
        top = self.directory / prefix
        if top.is_dir():
            for sub in sorted(os.scandir(top), key=lambda e: e.name):
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub.path):
                    if not entry.name.endswith(".val"):
                        continue
                    try:
                        if now - entry.stat().st_mtime < min_age_seconds:
                            continue  # may be a commit in flight
                    except FileNotFoundError:
                        continue
                    filename = f"{prefix}/{sub.name}/{entry.name}"
                    if not self.reads.owned(filename):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
                            log.debug("removed orphan body %s", filename)
        return removed

    def sweep_temp(self) -> int:
        """Remove temp files left by processes that no longer run (a crashed fill's)."""
        removed = self.claims.sweep()
        try:
            entries = list(os.scandir(self.tmp_dir))
        except OSError:
            return 0
        for entry in entries:
            pid_text = entry.name.split(".", 1)[0]
            # Only pid-named files are ours to judge here; <sha>.part/.meta belong to fills
            # and are judged by their claim lock (Claims.sweep, above).
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            try:
                os.unlink(entry.path)
                log.debug("swept %s (its process is gone)", entry.name)
                removed += 1
            except OSError:
                continue
        return removed

    def reap(self) -> int:
        """Delete superseded bodies whose last stream has ended."""
        try:
            return reap(self.graveyard)
        except OSError as exc:
            raise StoreError(f"reap failed: {exc}") from exc

    def write_problem(self) -> str | None:
        """Why a fill could not be written now (None: it could): a write of real bytes beside
        the fills' temp files, since a full disk still lets an empty file be created."""
        probe = self.tmp_dir / f".probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(bytes(PROBE_BYTES))
            return None
        except OSError as exc:
            return f"cache directory cannot be written ({exc.strerror or exc}): {self.directory}"
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
