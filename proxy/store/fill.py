"""A fill: one origin body streaming into a temp file that any number of readers tail.

Rule: the temp file only grows; `written` is advanced after the bytes are in the file, so a
reader may send anything below it. The end of a body is held back (its last byte, and the
COMPLETE state) until the fill is settled: verified and committed, so a client that has the
whole body can never find the entry missing with its next request, and a body that fails
its check reaches no client whole. A fill is committed only when it reached its expected size
(or a clean end of a body of unknown length); otherwise its temp file is discarded.
`Fill` is the filling process's view; `RemoteFill` is another process's view of the same
file, which learns progress from the file size and the end from the released claim.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import fcntl
import hashlib
import io
import os
import stat
from typing import Protocol

from proxy.errors import StoreError
from proxy.policy.freshness import StoredResponse
from proxy.store.claims import Claim, Claims
from proxy.store.retention import hold, unheld


class FillOutcome(enum.Enum):
    """How a fill ended: the `outcome` label of `mediaproxy_fills_total`."""

    COMMITTED = "committed"
    INCOMPLETE = "incomplete"  # shorter than its Content-Length, or cancelled
    ORIGIN_ERROR = "origin_error"
    STORE_ERROR = "store_error"  # relayed whole through memory (disk failing), not stored
    PURGED = "purged"  # a purge issued after the fetch covers it
    ABANDONED = "abandoned"  # every client left with much still to come
    MISMATCH = "mismatch"  # the temp file was not the file, size or bytes it wrote
    DIGEST_MISMATCH = "digest_mismatch"  # the body does not match the origin's Repr-Digest
    NO_ROOM = "no_room"  # larger than the budget can hold: relayed uncached


class FillState(enum.Enum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    # Another process's fill whose disk write failed: its file ends here, the filler relays
    # the rest to its own readers from memory; ours must get the rest elsewhere.
    SPILLED = "spilled"


class FillView(Protocol):
    """What a reader needs of a fill, local or remote."""

    key: str
    meta: StoredResponse
    expected: int | None
    written: int
    state: FillState
    vary_names: tuple[str, ...]
    variant: str

    @property
    def disk_bytes(self) -> int: ...

    def open_reader(self) -> io.FileIO | None: ...

    def release_reader(self, handle: io.FileIO) -> None: ...

    async def wait_beyond(self, offset: int) -> None: ...


class Fill:
    def __init__(
        self, key: str, temp_path: str, meta: StoredResponse, expected: int | None
    ) -> None:
        self.key = key
        self.temp_path = temp_path
        self.meta = meta  # headers as received; body_size fixed at completion
        self.expected = expected  # Content-Length, or None for a body of unknown length
        self.received = 0  # bytes appended (on disk, then in the spill window)
        self.written = 0  # bytes readers may send: `received`, less the held-back end
        self.disk_bytes = 0  # bytes in the temp file
        self.state = FillState.RUNNING
        self.readers = 0
        self.claim: Claim | None = None  # set by the filler; released when the fill ends
        # Vary: the fields this response varies on, the variant it is, and the URL key whose
        # vary record the commit updates (None: not recorded).
        self.vary_names: tuple[str, ...] = ()
        self.variant = ""
        self.vary_record: tuple[str, tuple[str, ...]] | None = None
        self.background = False  # a stale-while-revalidate refresh: nobody reads it by design
        # Set when the temp file could not be written (ENOSPC, EIO, read-only): the fill goes
        # on as a plain relay for the readers it has, through a bounded memory window.
        self.spill_error: OSError | None = None
        self._spill: collections.deque[tuple[int, bytes]] = collections.deque()
        self._spill_bytes = 0
        self._positions: dict[int, int] = {}  # reader id -> next offset it will send
        self._changed = asyncio.Event()
        # Of every byte written to the temp file, in order: `verify` checks the file against
        # it before the commit adopts the file.
        self._digest = hashlib.sha256()
        # More digests the origin promised (RFC 9530: sha-512), by algorithm name.
        self.extra_digests: dict[str, hashlib._Hash] = {}
        try:
            # Owner-only: cached bodies may be protected items (the cache dir is 0700 too).
            self._fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            # Readers dup this fd rather than open the path: the path disappears at commit
            # (renamed into the cache) or at discard, while joiners may still arrive.
            self._read_fd = os.open(temp_path, os.O_RDONLY)
            # Held from the start: once committed this file is a cache body like any other,
            # and readers joining the fill must keep it alive if it is replaced or purged.
            hold(self._read_fd)
        except OSError as exc:
            raise StoreError(f"cannot create temp file: {exc}") from exc

    def open_reader(self) -> io.FileIO | None:
        """A read handle on the growing file; None once the fill has been closed."""
        if self._read_fd < 0:
            return None
        self.readers += 1
        handle = io.FileIO(os.dup(self._read_fd), "r")
        self._positions[id(handle)] = 0
        return handle

    @property
    def closed(self) -> bool:
        return self._read_fd < 0

    def close(self) -> None:
        """No more readers may join (they find the committed entry in the store instead)."""
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def release_reader(self, handle: io.FileIO) -> None:
        self.readers -= 1
        self._positions.pop(id(handle), None)
        handle.close()
        self._trim()

    def read_anywhere(self) -> bool:
        """Does any reader, in this process or another, still hold this fill's file?"""
        if self.readers > 0 or self._read_fd < 0:
            return self.readers > 0
        # Our own shared lock would hide the others: drop it for the test, then take it back.
        # (Gone from its temp path means committed: not ours to judge any more.)
        fcntl.flock(self._read_fd, fcntl.LOCK_UN)
        try:
            return unheld(self.temp_path) is not True
        finally:
            hold(self._read_fd)

    @property
    def joinable(self) -> bool:
        """New readers may join only while every byte from 0 is still to be had."""
        return self.spill_error is None and not self.closed

    def append(self, chunk: bytes) -> None:
        """Write a chunk (page-cache write, no thread hop); wake the readers. A write
        failure turns the fill into a relay: the rest of the body goes through memory."""
        view = memoryview(chunk)
        if self.spill_error is None:
            try:
                while view:
                    n = os.write(self._fd, view)
                    self._digest.update(view[:n])
                    for extra in self.extra_digests.values():
                        extra.update(view[:n])
                    view = view[n:]
                    self.disk_bytes += n
            except OSError as exc:
                self.spill_error = exc
        if view:
            self._spill.append((self.received + len(chunk) - len(view), bytes(view)))
            self._spill_bytes += len(view)
        self.received += len(chunk)
        # The last byte of a body of known length waits for `settle`.
        at_end = self.expected is not None and self.received >= self.expected
        self.written = self.received - 1 if at_end and self.received else self.received
        self._wake()

    def mark_spilled(self) -> None:
        """Tell readers in other processes that this file will not grow any more. On a full
        disk no notice can be written, so the signal costs no space: the file's mode loses its
        write bit."""
        with contextlib.suppress(OSError):
            os.fchmod(self._read_fd, 0o400)

    def read_spilled(self, offset: int, limit: int) -> bytes:
        """Bytes from `offset` (past the disk part) up to `limit`, from the memory window."""
        parts: list[bytes] = []
        for start, data in self._spill:
            end = start + len(data)
            if end <= offset or start >= limit:
                continue
            parts.append(data[max(0, offset - start):min(len(data), limit - start)])
        return b"".join(parts)

    def advanced(self, handle: io.FileIO, offset: int) -> None:
        """A reader has sent everything below `offset`: spilled bytes all readers have sent
        can go."""
        self._positions[id(handle)] = offset
        self._trim()

    def _trim(self) -> None:
        if not self._spill:
            return
        floor = min(self._positions.values(), default=self.written)
        while self._spill and self._spill[0][0] + len(self._spill[0][1]) <= floor:
            _, data = self._spill.popleft()
            self._spill_bytes -= len(data)
        self._wake()

    async def wait_for_room(self, max_spill_bytes: int) -> None:
        """Pace the origin by the slowest reader once the body lives in memory."""
        while self._spill_bytes > max_spill_bytes and self._positions:
            await self._changed.wait()

    def finish(self) -> bool:
        """Close the temp file; True when the whole body arrived (it may be served whole
        once `settle`d; committed only if it also reached the disk). A short body fails
        its readers at once."""
        self._close_fd()
        complete = self.expected is None or self.received == self.expected
        if not complete:
            self.fail()
        return complete

    def settle(self, whole: bool) -> None:
        """The fill is over: its readers get the held-back end (`whole`: the body was
        complete and, if it was to be committed, verified) or are cut short."""
        if self.state is not FillState.RUNNING:
            return
        if whole:
            self.written = self.received
            self.state = FillState.COMPLETE
        else:
            self.state = FillState.FAILED
        self._wake()

    def digests(self) -> dict[str, bytes]:
        """Digests of every byte written so far: `sha-256`, and any extra ones asked for."""
        return {"sha-256": self._digest.digest(),
                **{name: h.digest() for name, h in self.extra_digests.items()}}

    def verify(self) -> bool:
        """Is the file at `temp_path` exactly the body this fill wrote: the same file (inode)
        it created, of the size it wrote, with the digest of the bytes it wrote? Checked
        before the commit adopts the file (blocking: run it in a thread)."""
        if self._read_fd < 0 or self.spill_error is not None:
            return False
        try:
            mine = os.fstat(self._read_fd)
            there = os.stat(self.temp_path)
            if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
                return False
            if there.st_size != self.disk_bytes or self.disk_bytes != self.received:
                return False
            digest = hashlib.sha256()
            with open(self.temp_path, "rb", buffering=0) as body:
                while chunk := body.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        return digest.digest() == self._digest.digest()

    def fail(self) -> None:
        self._close_fd()
        self.state = FillState.FAILED
        self._wake()

    async def wait_beyond(self, offset: int) -> None:
        """Return once bytes past `offset` exist or the fill has ended."""
        while self.written <= offset and self.state is FillState.RUNNING:
            await self._changed.wait()

    def _wake(self) -> None:
        # Swap in a fresh event so waiters that arrive later block until the next change.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1


class RemoteFill:
    """Follow a fill that another process is running (it holds the claim on `key`)."""

    def __init__(
        self,
        claims: Claims,
        key: str,
        meta: StoredResponse,
        expected: int | None,
        handle: io.FileIO,
        poll_seconds: float = 0.005,
    ) -> None:
        self.claims = claims
        self.key = key  # the entry's key (the caller may set it from the notice)
        self.claim_key = key  # the claim the filler holds
        self.meta = meta
        self.expected = expected
        self._handle = handle
        self.poll_seconds = poll_seconds
        self.vary_names: tuple[str, ...] = ()
        self.variant = ""
        self.state = FillState.RUNNING
        self.written = os.fstat(handle.fileno()).st_size

    def open_reader(self) -> io.FileIO | None:
        return io.FileIO(os.dup(self._handle.fileno()), "r")

    @property
    def disk_bytes(self) -> int:
        return self.written

    def release_reader(self, handle: io.FileIO) -> None:
        handle.close()

    def close(self) -> None:
        self._handle.close()

    async def wait_beyond(self, offset: int) -> None:
        while self.state is FillState.RUNNING:
            status = os.fstat(self._handle.fileno())
            size = status.st_size
            # As for a local fill, the last byte waits until the filler has settled (released
            # its claim after verifying and committing).
            self.written = size if self.expected is None else min(size, self.expected - 1)
            if self.written > offset:
                return
            if not self.claims.is_held(self.claim_key):
                # The filler is done (or dead): what is in the file now is all there will be.
                self.written = os.fstat(self._handle.fileno()).st_size
                self.state = FillState.COMPLETE if self._complete() else FillState.FAILED
                return
            if not status.st_mode & stat.S_IWUSR:
                # The filler's disk failed (see Fill.mark_spilled): the file will not grow.
                self.written = os.fstat(self._handle.fileno()).st_size
                self.state = FillState.SPILLED
                return
            await asyncio.sleep(self.poll_seconds)

    def _complete(self) -> bool:
        final = self.claims.read_meta(self.claim_key) or {}
        if final.get("done") and final.get("ok") is False and final.get("verified") is False:
            return False  # the filler found the file was not what it wrote
        if self.expected is not None:
            return self.written == self.expected
        return bool(final.get("done")) and final.get("size") == self.written
