"""Writes one response: headers decided by `policy.respond`, bytes by `loop.sendfile`.

Rule: cached bytes come from the file object opened at lookup (or at fill start), never from a
path re-opened here; a body that cannot be completed is cut (connection closed short of its
Content-Length), never padded or ended cleanly, so clients and CDNs see the truncation.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence

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
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict((k, v) for k, v in fields if k.lower() not in hidden)
    existing = headers.getall("Via", [])
    if existing:
        del headers["Via"]
    headers["Via"] = ", ".join([*existing, f"1.1 {via}"])  # RFC 9110 §7.6.3
    headers["X-Cache"] = status.value
    return headers


def _response(plan: Plan, headers: CIMultiDict[str]) -> web.StreamResponse:
    response = web.StreamResponse(status=plan.status, headers=headers)
    if plan.content_length is not None and plan.status not in (204, 304):
        response.content_length = plan.content_length
    return response


def abort(request: web.BaseRequest) -> None:
    """Close the connection mid-body so the client sees a short response."""
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
    await loop.sendfile(transport, file, offset, count)
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


async def send_fill(
    request: web.BaseRequest, plan: Plan, fill: FillView, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Tail a growing fill: send each byte range as soon as it is in the temp file."""
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
