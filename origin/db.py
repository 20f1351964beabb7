"""SQLite storage of media items and their revisions; synchronous, so call it from a worker thread.

Rule: `MediaStore` is the one way in: lookups, history, publishes (bodies in `origin.bodies`),
deletes and access changes, over the connections of `origin.connections`; a revision becomes
visible only when the transaction that wrote all of its bytes commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from origin.bodies import SEGMENT_BYTES, BodyReader, PendingPublish
from origin.connections import PAGE_SIZE_BYTES, SCHEMA, ConnectionPool
from origin.records import (
    REVISION_COLUMNS,
    UNSET,
    Access,
    Published,
    Revision,
    StoredRevision,
    StoreError,
    Unset,
    revision_from_row,
)

__all__ = ["SEGMENT_BYTES", "UNSET", "Access", "BodyReader", "MediaStore", "PendingPublish",
           "Published", "Revision", "StoreError", "StoredRevision", "Unset"]


class MediaStore:
    """The media database. Every method blocks; none may run on the event loop."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._pool = ConnectionPool(path)
        with self._pool.connection() as conn:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)

    def close(self) -> None:
        self._pool.close()

    def is_empty(self) -> bool:
        with self._pool.connection() as conn:
            return conn.execute("SELECT 1 FROM items LIMIT 1").fetchone() is None

    def lookup(self, path: str) -> Revision | None:
        """The live revision of `path`, or None when absent or deleted."""
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {REVISION_COLUMNS} FROM items i JOIN revisions r ON r.id = i.current_id"
                " WHERE i.path = ? AND i.deleted = 0",
                (path,),
            ).fetchone()
        return None if row is None else revision_from_row(row)

    def history(self, path: str) -> list[StoredRevision]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, revision, superseded FROM revisions WHERE path = ? ORDER BY id", (path,)
            ).fetchall()
        return [StoredRevision(id=r[0], revision=r[1], superseded=bool(r[2])) for r in rows]

    def segment_count(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM segments").fetchone()
        return int(row[0])

    def begin_publish(
        self,
        path: str,
        size_bytes: int,
        *,
        content_type: str,
        access: Access | None,
        cache_control: str | Unset | None = UNSET,
    ) -> PendingPublish:
        """Start a revision of `size_bytes`; the caller writes exactly that many, then commits.

        `access` None and `cache_control` UNSET keep the item's current values (public and the
        default for a new item). The write transaction stays open until commit or abort, so the
        caller must serialise publishes (and other writes) itself.
        """
        if size_bytes < 0:
            raise StoreError("size must not be negative")
        conn = self._pool.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            item = conn.execute(
                "SELECT current_id, last_revision, access, cache_control FROM items WHERE path = ?",
                (path,),
            ).fetchone()
            if item is None:
                previous_id, last_revision, old_access, old_cache_control = None, 0, "public", None
            else:
                previous_id, last_revision, old_access, old_cache_control = item
            cur = conn.execute(
                "INSERT INTO revisions (path, revision, content_type, size, sha256, last_modified)"
                " VALUES (?, ?, ?, ?, '', 0)",
                (path, last_revision + 1, content_type, size_bytes),
            )
            assert cur.lastrowid is not None
            return PendingPublish(
                store=self,
                conn=conn,
                revision=Revision(
                    id=cur.lastrowid,
                    path=path,
                    revision=last_revision + 1,
                    content_type=content_type,
                    size_bytes=size_bytes,
                    sha256="",
                    last_modified=0,
                    access=access if access is not None else Access(old_access),
                    cache_control=(
                        old_cache_control if isinstance(cache_control, Unset) else cache_control
                    ),
                ),
                previous_id=previous_id,
                item_exists=item is not None,
            )
        except BaseException:
            self._pool.release(conn)
            raise

    def publish(
        self,
        path: str,
        size_bytes: int,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        access: Access | None = None,
        cache_control: str | Unset | None = UNSET,
    ) -> Published:
        """Publish from an iterable of chunks in one call (seeding, spooled uploads)."""
        pending = self.begin_publish(
            path, size_bytes, content_type=content_type, access=access, cache_control=cache_control
        )
        try:
            for chunk in chunks:
                pending.write(chunk)
            return pending.commit()
        finally:
            pending.abort()  # no-op after a commit

    def delete(self, path: str) -> int | None:
        """Withdraw the live revision of `path`; returns its id (now superseded) or None."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT current_id FROM items WHERE path = ? AND deleted = 0", (path,)
            ).fetchone()
            if row is None or row[0] is None:
                conn.rollback()
                return None
            conn.execute("UPDATE items SET deleted = 1, current_id = NULL WHERE path = ?", (path,))
            conn.execute("UPDATE revisions SET superseded = 1 WHERE id = ?", (row[0],))
            conn.commit()
            return int(row[0])

    def update_item(
        self,
        path: str,
        *,
        access: Access | None = None,
        cache_control: str | Unset | None = UNSET,
    ) -> Revision | None:
        """Change the policy of a live item without a new revision; None when absent."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            exists = conn.execute(
                "SELECT 1 FROM items WHERE path = ? AND deleted = 0", (path,)
            ).fetchone()
            if exists is None:
                conn.rollback()
                return None
            if access is not None:
                conn.execute("UPDATE items SET access = ? WHERE path = ?", (access.value, path))
            if not isinstance(cache_control, Unset):
                conn.execute(
                    "UPDATE items SET cache_control = ? WHERE path = ?", (cache_control, path)
                )
            conn.commit()
        return self.lookup(path)

    def drop_revision(self, revision_id: int) -> bool:
        """Delete a superseded revision and its body; a live revision is never touched."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM segments WHERE revision_id IN"
                " (SELECT id FROM revisions WHERE id = ? AND superseded = 1)",
                (revision_id,),
            )
            cur = conn.execute(
                "DELETE FROM revisions WHERE id = ? AND superseded = 1", (revision_id,)
            )
            conn.commit()
            return cur.rowcount > 0

    def drop_all_superseded(self) -> int:
        """At start-up no download runs, so every superseded revision can go."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM segments WHERE revision_id IN"
                " (SELECT id FROM revisions WHERE superseded = 1)"
            )
            cur = conn.execute("DELETE FROM revisions WHERE superseded = 1")
            conn.commit()
            return cur.rowcount

    def open_body(self, revision_id: int) -> BodyReader:
        conn = self._pool.acquire()
        try:
            rows = conn.execute(
                "SELECT id, length(data) FROM segments WHERE revision_id = ? ORDER BY seq",
                (revision_id,),
            ).fetchall()
        except BaseException:
            self._pool.release(conn)
            raise
        return BodyReader(self._pool, conn, [(int(r[0]), int(r[1])) for r in rows])

    def _now(self) -> int:
        return int(self._clock())
