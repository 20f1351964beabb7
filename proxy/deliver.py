"""Writes one response: headers decided by `policy.respond`, bytes by `loop.sendfile`.

Rule: cached bytes come from the file object opened at lookup (or at fill start), never from a
path re-opened here; a body that cannot be completed is cut (connection closed short of its
Content-Length), never padded or ended cleanly, so clients and CDNs see the truncation.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from multidict import CIMultiDict

from proxy.errors import OriginError
from proxy.origin import OriginResponse
from proxy.policy.respond import Plan
from proxy.status import CacheStatus
from proxy.store.fill import Fill, FillState, FillView

BYTES_KEY = web.RequestKey("body_bytes", int)


class FillClosed(Exception):
    """The fill ended and closed before this reader joined; look the key up again."""


class Truncated(Exception):
    """The body was cut short; the connection has been closed."""


def build_headers(
    fields: Sequence[tuple[str, str]],
    status: CacheStatus,
    via: str,
    hidden: frozenset[str] = frozenset(),
    *,
    x_cache: bool = True,
    cache_status: str | None = None,
) -> CIMultiDict[str]:
    """The client's fields: the response's own (less `hidden`), our Via, our X-Cache, and our
    Cache-Status member after the origin's (RFC 9211 §2: the closest cache to the client last)."""
    headers: CIMultiDict[str] = CIMultiDict((k, v) for k, v in fields if k.lower() not in hidden)
    existing = headers.getall("Via", [])
    if existing:
        del headers["Via"]
    headers["Via"] = ", ".join([*existing, f"1.1 {via}"])  # RFC 9110 §7.6.3
    if x_cache:
        headers["X-Cache"] = status.value
    if cache_status is not None:
        headers.add("Cache-Status", cache_status)
    return headers


WIRE_DRAIN_BYTES = 256 * 1024  # above this much unsent, a wire response waits for the client


def wire_head(status: int, reason: str, fields: Sequence[tuple[str, str]], length: int
              ) -> bytes | None:
    """A complete HTTP/1.1 header block minus its last fields (Age and the blank line), for
    responses sent many times with the same fields; None if a value cannot be put on the wire
    verbatim (the caller then uses aiohttp's own writer, which refuses such values)."""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    has_type = False
    for name, value in fields:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            return None
        lowered = name.lower()
        if lowered in ("content-length", "transfer-encoding", "connection", "age"):
            continue
        has_type = has_type or lowered == "content-type"
        lines.append(f"{name}: {value}\r\n")
    if not has_type and length:
        lines.append("Content-Type: application/octet-stream\r\n")  # as aiohttp would add
    lines.append(f"Content-Length: {length}\r\n")
    try:
        return "".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        return None


class WireResponse(web.StreamResponse):
    """A response whose bytes are already serialised: one `writelines` on the transport, no
    header building or serialising per request. Only for HTTP/1.1 keep-alive requests."""

    def __init__(self, status: int, parts: tuple[bytes, ...]) -> None:
        super().__init__(status=status)
        self._parts = parts

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._eof_sent:
            return
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client left")
        transport.writelines(self._parts)
        self._eof_sent = True
        self._keep_alive = True
        if transport.get_write_buffer_size() > WIRE_DRAIN_BYTES:
            await request.writer.drain()  # a client that pipelines but never reads: wait

    async def write_eof(self, data: bytes = b"") -> None:
        return


def _response(plan: Plan, headers: CIMultiDict[str]) -> web.StreamResponse:
    response = web.StreamResponse(status=plan.status, headers=headers)
    if plan.content_length is not None and plan.status not in (204, 304):
        response.content_length = plan.content_length
    return response


# The `loop.sendfile` in flight for a request, so `abort` can cancel it first.
SENDING_KEY: web.RequestKey[asyncio.Task[int]] = web.RequestKey("sendfile_in_flight")


def abort(request: web.BaseRequest) -> None:
    """Close the connection mid-body so the client sees a short response.

    A `loop.sendfile` in flight is cancelled first: its cancellation unregisters the socket's
    writer while the fd is still open. Aborting under it instead would close the fd with the
    writer still in the selector's map, and the next connection given that fd number could
    never be read (asyncio's `modify` fails on it), hanging that client."""
    sending = request.get(SENDING_KEY)
    if sending is not None:
        sending.cancel()
    transport = request.transport
    if transport is not None:
        transport.abort()


def _count(request: web.BaseRequest, n: int) -> None:
    request[BYTES_KEY] = request.get(BYTES_KEY, 0) + n


async def _sendfile(request: web.BaseRequest, file: io.FileIO, offset: int, count: int) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away")
    loop = asyncio.get_running_loop()
    sending = asyncio.ensure_future(loop.sendfile(transport, file, offset, count))
    request[SENDING_KEY] = sending
    try:
        await sending
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and not task.cancelling():
            raise ConnectionResetError("stream cut") from None  # by `abort`, not by our caller
        raise
    finally:
        del request[SENDING_KEY]
    _count(request, count)


async def send_file(
    request: web.BaseRequest, plan: Plan, file: io.FileIO, headers: CIMultiDict[str]
) -> web.StreamResponse:
    response = _response(plan, headers)
    await response.prepare(request)
    if plan.send_body and plan.length:
        await _sendfile(request, file, plan.offset, plan.length)
    await response.write_eof()
    return response


Resume = Callable[[int, int | None], AsyncIterator[bytes]]


async def send_fill(
    request: web.BaseRequest, plan: Plan, fill: FillView, headers: CIMultiDict[str],
    resume: Resume | None = None,
) -> web.StreamResponse:
    """Tail a growing fill: send each byte range as soon as it is in the temp file. When the
    fill's file stops short for good (`SPILLED`: another process's disk failed), the rest
    comes from `resume(offset, end)`, or the response is cut short."""
    handle = fill.open_reader()
    if handle is None:
        raise FillClosed()
    response = _response(plan, headers)
    try:
        await response.prepare(request)
        if not plan.send_body:
            await response.write_eof()
            return response
        offset = plan.offset
        end = None if plan.length is None else plan.offset + plan.length
        while True:
            await fill.wait_beyond(offset)
            available = fill.written if end is None else min(fill.written, end)
            on_disk = min(available, fill.disk_bytes)
            if on_disk > offset:
                if plan.content_length is None:
                    # Unknown length: the response is chunked, which sendfile would bypass.
                    data = os.pread(handle.fileno(), on_disk - offset, offset)
                    await response.write(data)
                    _count(request, len(data))
                else:
                    await _sendfile(request, handle, offset, on_disk - offset)
                offset = on_disk
            if available > offset and isinstance(fill, Fill):
                # Past what reached the disk (it is full or failing): from memory.
                data = fill.read_spilled(offset, available)
                await response.write(data)
                _count(request, len(data))
                offset += len(data)
            if isinstance(fill, Fill):
                fill.advanced(handle, offset)
            if end is not None and offset >= end:
                break
            if fill.state is FillState.SPILLED and offset >= fill.written:
                if resume is None:
                    abort(request)
                    raise Truncated("fill spilled")
                try:
                    async for data in resume(offset, end):
                        await response.write(data)
                        _count(request, len(data))
                        offset += len(data)
                except Truncated:
                    abort(request)
                    raise
                if end is not None and offset < end:
                    abort(request)
                    raise Truncated("resumed body ended early")
                break
            if fill.state is FillState.FAILED:
                abort(request)
                raise Truncated("fill failed")
            if fill.state is FillState.COMPLETE and offset >= fill.written:
                if end is not None and offset < end:
                    abort(request)  # origin ended short of the range we promised
                    raise Truncated("fill ended early")
                break
        await response.write_eof()
        return response
    finally:
        fill.release_reader(handle)


async def relay(
    request: web.BaseRequest, plan: Plan, origin: OriginResponse, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Stream an origin response that is not being stored."""
    response = _response(plan, headers)
    if plan.content_length is None and request.version >= (1, 1) and plan.send_body:
        response.enable_chunked_encoding()
    await response.prepare(request)
    if plan.send_body:
        try:
            async for chunk in origin.iter_chunks():
                await response.write(chunk)
                _count(request, len(chunk))
        except OriginError:
            abort(request)
            raise Truncated("origin body broke") from None
    await response.write_eof()
    return response
