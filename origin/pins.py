"""Reader counts per revision row, so a superseded revision outlives the downloads streaming it.

Rule: finding the live revision and counting its reader happen under one lock, and a publish or
delete consults the counts only after its transaction committed. Then a revision is either seen
pinned by its superseder or never found again by a new reader: it is dropped exactly once, unread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from origin.db import Revision


class RevisionPins:
    """Thread-safe: lookups run in worker threads, releases on the event loop.

    The lock is held at most for one indexed SELECT (WAL readers never wait for writers), so
    taking it on the event loop in `unpin` does not stall the loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[int, int] = {}
        self._superseded: set[int] = set()  # superseded while read: drop on the last release

    def pin_current(self, lookup: Callable[[], Revision | None]) -> Revision | None:
        """Run `lookup` (a blocking store call) and pin what it returns."""
        with self._lock:
            revision = lookup()
            if revision is not None:
                self._readers[revision.id] = self._readers.get(revision.id, 0) + 1
            return revision

    def unpin(self, revision_id: int) -> bool:
        """Release one reader; True when it was the last of a superseded revision (drop it now)."""
        with self._lock:
            left = self._readers.get(revision_id, 0) - 1
            if left > 0:
                self._readers[revision_id] = left
                return False
            self._readers.pop(revision_id, None)
            if revision_id in self._superseded:
                self._superseded.discard(revision_id)
                return True
            return False

    def supersede(self, revision_id: int) -> bool:
        """Call after the superseding commit; True when nobody reads it (drop it now)."""
        with self._lock:
            if self._readers.get(revision_id, 0) > 0:
                self._superseded.add(revision_id)
                return False
            return True

    def readers(self, revision_id: int) -> int:
        with self._lock:
            return self._readers.get(revision_id, 0)

    def total_readers(self) -> int:
        with self._lock:
            return sum(self._readers.values())
