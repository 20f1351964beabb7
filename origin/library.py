"""The asynchronous face of the media store: every SQLite call runs on a dedicated thread pool.

Rules: one writer at a time (an asyncio lock, held for a whole upload, so SQLite never waits on
its busy timeout); a download pins its revision row until it ends, and superseded rows are
dropped in the background once unpinned.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import IO, ParamSpec, TypeVar

from origin.db import (
    UNSET,
    Access,
    BodyReader,
    MediaStore,
    PendingPublish,
    Published,
    Revision,
    StoreError,
    Unset,
)
from origin.pins import RevisionPins

CHUNK_BYTES = 256 << 10
DB_THREADS = 4

_P = ParamSpec("_P")
_T = TypeVar("_T")

log = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload that cannot become a revision (short or long body); nothing was stored."""


class Library:
    """Owns the media store and its threads from `start` to `close`."""

    def __init__(
        self,
        db_path: Path,
        *,
        threads: int = DB_THREADS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db_path = db_path
        self._clock = clock
        self.pins = RevisionPins()
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._store: MediaStore | None = None
        self._write_lock = asyncio.Lock()
        self._drops: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> MediaStore:
        if self._store is None:
            raise RuntimeError("the library is not started")
        return self._store

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="origin-db")
        self._store = await self.run(MediaStore, self.db_path, clock=self._clock)
        dropped = await self.run(self._store.drop_all_superseded)
        if dropped:
            log.info("dropped %d superseded revisions left from the last run", dropped)

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking store call on the database threads."""
        if self._executor is None:
            raise RuntimeError("the library is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def pin_current(self, path: str) -> Revision | None:
        """The live revision of `path`, pinned: the caller must `unpin` it, whatever happens."""
        return await self.run(self.pins.pin_current, functools.partial(self.store.lookup, path))

    def unpin(self, revision: Revision) -> None:
        if self.pins.unpin(revision.id):
            self._schedule_drop(revision.id)

    def open_body(self, revision: Revision) -> BodyStream:
        return BodyStream(self, revision)

    async def publish(
        self,
        path: str,
        size_bytes: int,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        access: Access | None,
        cache_control: str | Unset | None = UNSET,
    ) -> Published:
        """Stream `chunks` (exactly `size_bytes`) into a new revision; nothing stays on failure."""
        async with self._write_lock:
            pending = await self.run(
                self.store.begin_publish,
                path,
                size_bytes,
                content_type=content_type,
                access=access,
                cache_control=cache_control,
            )
            try:
                published = await self._fill(pending, size_bytes, chunks)
            finally:
                # Shielded: a cancelled upload must still roll back before the lock is free.
                await asyncio.shield(self.run(pending.abort))
        self._superseded(published.superseded_id)
        return published

    async def _fill(
        self, pending: PendingPublish, size_bytes: int, chunks: AsyncIterable[bytes]
    ) -> Published:
        received = 0
        async with aclosing(_batched(chunks)) as blocks:
            async for block in blocks:
                received += len(block)
                if received > size_bytes:
                    raise UploadError(f"body longer than the declared {size_bytes} bytes")
                await self.run(pending.write, block)
        if received != size_bytes:
            raise UploadError(f"body ended after {received} of {size_bytes} bytes")
        return await self.run(pending.commit)

    async def publish_unsized(
        self,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        access: Access | None,
        cache_control: str | Unset | None = UNSET,
    ) -> Published:
        """Spool a body of unknown length to a temporary file, then publish it from there."""
        # Beside the database: same disk, and usually more room than /tmp.
        spool = await self.run(_spool_file, self.store.path.parent)
        try:
            size_bytes = 0
            async with aclosing(_batched(chunks)) as blocks:
                async for block in blocks:
                    await self.run(spool.write, block)
                    size_bytes += len(block)
            await self.run(spool.seek, 0)
            async with self._write_lock:
                published = await self.run(
                    self.store.publish,
                    path,
                    size_bytes,
                    _read_chunks(spool),
                    content_type=content_type,
                    access=access,
                    cache_control=cache_control,
                )
        finally:
            await self.run(spool.close)
        self._superseded(published.superseded_id)
        return published

    async def delete(self, path: str) -> bool:
        async with self._write_lock:
            revision_id = await self.run(self.store.delete, path)
        self._superseded(revision_id)
        return revision_id is not None

    async def update(
        self, path: str, *, access: Access | None, cache_control: str | Unset | None
    ) -> Revision | None:
        async with self._write_lock:
            return await self.run(
                self.store.update_item, path, access=access, cache_control=cache_control
            )

    async def wait_for_drops(self) -> None:
        """Wait until every scheduled drop of a superseded revision has finished."""
        while self._drops:
            await asyncio.gather(*self._drops, return_exceptions=True)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self.wait_for_drops()
        if self._store is not None:
            await self.run(self._store.close)
            self._store = None
        self._executor.shutdown(wait=True)
        self._executor = None

    def _superseded(self, revision_id: int | None) -> None:
        # Runs after the commit returned, which is what makes RevisionPins' rule hold.
        if revision_id is not None and self.pins.supersede(revision_id):
            self._schedule_drop(revision_id)

    def _schedule_drop(self, revision_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._drop(revision_id))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    async def _drop(self, revision_id: int) -> None:
        try:
            async with self._write_lock:
                await self.run(self.store.drop_revision, revision_id)
        except (StoreError, sqlite3.Error, OSError, RuntimeError) as exc:
            # The row stays superseded and is dropped at the next start-up.
            log.warning("could not drop superseded revision %d: %s", revision_id, exc)


async def _batched(chunks: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """Join network reads, which come in small pieces, so a thread hop carries ~256 KiB."""
    buffered: list[bytes] = []
    buffered_bytes = 0
    async for chunk in chunks:
        buffered.append(chunk)
        buffered_bytes += len(chunk)
        if buffered_bytes >= CHUNK_BYTES:
            yield b"".join(buffered)
            buffered, buffered_bytes = [], 0
    if buffered:
        yield b"".join(buffered)


def _spool_file(directory: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(mode="w+b", dir=directory)


def _read_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    return iter(functools.partial(spool.read, CHUNK_BYTES), b"")


class BodyStream:
    """An async context over one revision's body; the blob is opened on the first read."""

    def __init__(self, library: Library, revision: Revision) -> None:
        self._library = library
        self._revision = revision
        self._reader: BodyReader | None = None

    async def read(self, offset: int, size: int) -> bytes:
        return await self._library.run(self._read, offset, size)

    def _read(self, offset: int, size: int) -> bytes:
        if self._reader is None:
            self._reader = self._library.store.open_body(self._revision.id)
        return self._reader.read(offset, size)

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.shield(self._library.run(reader.close))

    async def __aenter__(self) -> BodyStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
