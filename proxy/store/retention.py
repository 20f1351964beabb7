"""Retention of superseded bodies: a body file lives until the last stream reading it ends.

Rule: every reader holds a shared flock on the body it opened (taken at lookup, released by
the kernel when the fd closes or the process dies). `retire` unlinks a body nobody holds and
moves a held one to `graveyard/`; `reap` deletes graveyard files nobody holds any more. An
exclusive non-blocking flock is the only test of "nobody holds it", across all processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass

log = logging.getLogger(__name__)

GRAVEYARD_DIR = "graveyard"


def hold(fd: int) -> None:
    """Mark `fd`'s file as being read (shared lock; never blocks against other readers)."""
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)


def probe(path: str, *, exclusive: bool) -> bool | None:
    """Could a flock of that kind on `path` be taken now? None if the file is gone. The
    probe's own lock is dropped at once (closing the fd)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:  # pragma: no cover - flock unsupported
        if exc.errno in (errno.ENOLCK, errno.EINVAL):
            return True
        raise
    finally:
        os.close(fd)


def unheld(path: str) -> bool | None:
    """True if nobody holds `path`, False if someone does, None if it is gone."""
    return probe(path, exclusive=True)


def retire(path: str, graveyard: str) -> None:
    state = unheld(path)
    if state is None:
        return
    if state:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    os.makedirs(graveyard, exist_ok=True)
    target = os.path.join(graveyard, f"{uuid.uuid4().hex}.val")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return
    # A reader may have let go between our test and the rename: reap it now if so.
    if unheld(target):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


@dataclass(frozen=True, slots=True)
class GraveyardStats:
    files: int
    bytes: int


def stats(graveyard: str) -> GraveyardStats:
    files = size = 0
    try:
        entries = list(os.scandir(graveyard))
    except FileNotFoundError:
        return GraveyardStats(0, 0)
    for entry in entries:
        with contextlib.suppress(OSError):
            size += entry.stat().st_size
            files += 1
    return GraveyardStats(files, size)


def reap(graveyard: str) -> int:
    """Delete graveyard files no stream holds; returns how many went."""
    removed = 0
    try:
        entries = list(os.scandir(graveyard))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if unheld(entry.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed
