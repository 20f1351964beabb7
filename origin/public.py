"""GET and HEAD of media: validators, conditionals, one byte range, streamed from SQLite.

Rule: every answer about an item (200, 206, 304, 412, 416) carries its validators and policy
headers, including `X-Media-Access: public|protected` (the item's access policy, which a cache
stores and enforces); the body streams from the revision pinned at the start, never re-looked-up.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from multidict import CIMultiDict

from origin import conditional, ranges
from origin.db import Revision
from origin.faults import Fault
from origin.keys import FAULTS_KEY, LIBRARY_KEY, SETTINGS_KEY
from origin.library import CHUNK_BYTES, Library

ACCESS_HEADER = "X-Media-Access"
REVISION_HEADER = "X-Media-Revision"
SHA256_HEADER = "X-Content-SHA256"
# Small enough that a throttled body is paced smoothly, large enough not to cost a hop per byte.
_MIN_THROTTLED_CHUNK_BYTES = 1024

log = logging.getLogger(__name__)


def representation_headers(revision: Revision, default_cache_control: str) -> CIMultiDict[str]:
    return CIMultiDict(
        {
            "ETag": revision.etag,
            "Last-Modified": conditional.format_http_date(revision.last_modified),
            "Cache-Control": revision.cache_control or default_cache_control,
            ACCESS_HEADER: revision.access.value,
            REVISION_HEADER: str(revision.revision),
            SHA256_HEADER: revision.sha256,
        }
    )


async def injected(request: web.Request) -> tuple[Fault | None, web.Response | None]:
    """The fault matching this path, once its delay has passed, and the answer to send
    instead of the real one when it injects a status."""
    fault = request.app[FAULTS_KEY].match(request.path)
    if fault is not None and fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault is not None and fault.status is not None:
        return fault, web.Response(status=fault.status,
                                   text=f"injected fault: status {fault.status}\n")
    return fault, None


async def serve_media(request: web.Request) -> web.StreamResponse:
    fault, instead = await injected(request)
    if instead is not None:
        return instead
    library = request.app[LIBRARY_KEY]
    revision = await library.pin_current(request.path)
    if revision is None:
        return web.Response(status=404, text=f"not found: {request.path}\n")
    try:
        return await _answer(request, library, revision, fault)
    finally:
        library.unpin(revision)


async def _answer(
    request: web.Request, library: Library, revision: Revision, fault: Fault | None
) -> web.StreamResponse:
    headers = representation_headers(revision, request.app[SETTINGS_KEY].default_cache_control)
    outcome = conditional.evaluate(
        request.method, request.headers, etag=revision.etag, last_modified=revision.last_modified
    )
    if outcome is conditional.Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)
    if outcome is conditional.Outcome.PRECONDITION_FAILED:
        return web.Response(status=412, headers=headers, text="precondition failed\n")

    selection: ranges.Selection = ranges.FullBody()
    if request.method == "GET":  # Range is defined for GET only (RFC 9110 §14.2)
        selection = ranges.select(
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            size_bytes=revision.size_bytes,
            etag=revision.etag,
            last_modified=revision.last_modified,
        )
    headers["Accept-Ranges"] = "bytes"
    if isinstance(selection, ranges.Unsatisfiable):
        headers["Content-Range"] = selection.content_range(revision.size_bytes)
        return web.Response(status=416, headers=headers, text="range not satisfiable\n")

    if isinstance(selection, ranges.Partial):
        status, start, length = 206, selection.start, selection.length
        headers["Content-Range"] = selection.content_range(revision.size_bytes)
    else:
        status, start, length = 200, 0, revision.size_bytes
    headers["Content-Type"] = revision.content_type
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response
    await _stream_body(request, response, library, revision, start, length, fault)
    return response


async def _stream_body(
    request: web.Request,
    response: web.StreamResponse,
    library: Library,
    revision: Revision,
    start: int,
    length: int,
    fault: Fault | None,
) -> None:
    rate = fault.rate_bytes_per_second if fault is not None else None
    cut_at = fault.truncate_after_bytes if fault is not None else None
    chunk_bytes = CHUNK_BYTES
    if rate is not None:
        chunk_bytes = max(_MIN_THROTTLED_CHUNK_BYTES, min(CHUNK_BYTES, rate // 10))
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = 0
    try:
        async with library.open_body(revision) as body:
            while sent < length:
                size = min(chunk_bytes, length - sent)
                if cut_at is not None:
                    size = min(size, cut_at - sent)
                    if size <= 0:
                        break
                data = await body.read(start + sent, size)
                if not data:
                    raise RuntimeError(f"revision {revision.id} ended at {start + sent}")
                await response.write(data)
                sent += len(data)
                if rate is not None:
                    ahead = sent / rate - (loop.time() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        if sent < length:
            # The truncation fault: the Content-Length promised more. close() still flushes
            # what was written, so the client sees exactly `cut_at` bytes, then EOF.
            _close_connection(request)
            return
        await response.write_eof()
    except ConnectionError:
        log.debug("client left %s after %d of %d bytes", request.path, sent, length)
    except Exception:
        # Headers are gone already: all we can do is cut the body short, never send a 500.
        log.exception("reading %s (revision %d) failed", request.path, revision.id)
        _close_connection(request)


def _close_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
