"""The admin API: publish, delete and re-police items; reset stats; set and clear faults.

Rule: every admin request proves `Authorization: Bearer <admin token>` (compared in constant
time) before anything else happens, including reading an upload; errors are one JSON object
{"error": "..."} with a 4xx status, never a traceback.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from origin import conditional
from origin.db import UNSET, Access, Revision, Unset
from origin.faults import parse_fault
from origin.keys import FAULTS_KEY, LIBRARY_KEY, PURGE_KEY, SETTINGS_KEY, STATS_KEY
from origin.library import CHUNK_BYTES, UploadError
from origin.public import ACCESS_HEADER

CACHE_CONTROL_HEADER = "X-Media-Cache-Control"
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,1024}")  # printable ASCII: no CR/LF smuggling
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def refusal(request: web.Request) -> web.Response | None:
    """None when the request carries the admin token, else the 401 or 403 to send."""
    token = request.app[SETTINGS_KEY].admin_token
    if token is None:
        return error(403, "the admin API is disabled: start the origin with an admin token")
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    ):
        return error(
            401,
            "missing or wrong admin token (Authorization: Bearer <token>)",
            **{"WWW-Authenticate": 'Bearer realm="mediaproxy-origin"'},
        )
    return None


def admin_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = refusal(request)
        return refused if refused is not None else await handler(request)

    return guarded


def revision_json(revision: Revision, default_cache_control: str) -> dict[str, object]:
    return {
        "path": revision.path,
        "revision": revision.revision,
        "sha256": revision.sha256,
        "size": revision.size_bytes,
        "etag": revision.etag,
        "content_type": revision.content_type,
        "access": revision.access.value,
        "cache_control": revision.cache_control or default_cache_control,
        "last_modified": conditional.format_http_date(revision.last_modified),
    }


def _parse_access(value: object, source: str) -> Access:
    if isinstance(value, str):
        try:
            return Access(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"{source} must be 'public' or 'protected'")


def _parse_cache_control(value: object, source: str) -> str | None:
    """A Cache-Control value to serve; None (or an empty header) restores the default."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if _HEADER_VALUE.fullmatch(value):
            return value
    raise ValueError(f"{source} must be printable ASCII, at most 1024 characters")


def _notify(request: web.Request, path: str) -> None:
    notifier = request.app.get(PURGE_KEY)
    if notifier is not None:
        notifier.notify(path)


@admin_only
async def publish(request: web.Request) -> web.StreamResponse:
    path = request.path
    if _CONTROL_CHARS.search(path):
        return error(400, "the path must not contain control characters")
    content_type = request.headers.get("Content-Type", "application/octet-stream").strip()
    if not _HEADER_VALUE.fullmatch(content_type):
        return error(400, "Content-Type must be printable ASCII, at most 1024 characters")
    try:
        access_header = request.headers.get(ACCESS_HEADER)
        access = None if access_header is None else _parse_access(access_header, ACCESS_HEADER)
        cache_control: str | Unset | None = UNSET
        if CACHE_CONTROL_HEADER in request.headers:
            cache_control = _parse_cache_control(
                request.headers[CACHE_CONTROL_HEADER], CACHE_CONTROL_HEADER
            )
    except ValueError as exc:
        return error(400, str(exc))

    library = request.app[LIBRARY_KEY]
    chunks = request.content.iter_chunked(CHUNK_BYTES)
    try:
        if request.content_length is None:
            published = await library.publish_unsized(
                path, chunks, content_type=content_type, access=access, cache_control=cache_control
            )
        else:
            published = await library.publish(
                path,
                request.content_length,
                chunks,
                content_type=content_type,
                access=access,
                cache_control=cache_control,
            )
    except UploadError as exc:
        return error(400, f"upload of {path} failed, nothing stored: {exc}")
    except (ConnectionError, HttpProcessingError) as exc:
        # The client broke the upload; it will not read this answer, the log is for operators.
        log.info("upload of %s broken, nothing stored: %r", path, exc)
        return error(400, f"upload of {path} broken, nothing stored")
    _notify(request, path)
    default = request.app[SETTINGS_KEY].default_cache_control
    return web.json_response(
        revision_json(published.revision, default), status=201 if published.created else 200
    )


@admin_only
async def delete(request: web.Request) -> web.StreamResponse:
    if not await request.app[LIBRARY_KEY].delete(request.path):
        return error(404, f"not found: {request.path}")
    _notify(request, request.path)
    return web.Response(status=204)


@admin_only
async def update(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'the body must be JSON, e.g. {"access": "protected"}')
    if not isinstance(body, dict) or not body:
        return error(400, 'the body must be a JSON object with "access" and/or "cache_control"')
    unknown = sorted(set(body) - {"access", "cache_control"})
    if unknown:
        return error(400, f"unknown fields: {', '.join(unknown)}; known: access, cache_control")
    try:
        access = _parse_access(body["access"], "access") if "access" in body else None
        cache_control: str | Unset | None = UNSET
        if "cache_control" in body:
            cache_control = _parse_cache_control(body["cache_control"], "cache_control")
    except ValueError as exc:
        return error(400, str(exc))
    revision = await request.app[LIBRARY_KEY].update(
        request.path, access=access, cache_control=cache_control
    )
    if revision is None:
        return error(404, f"not found: {request.path}")
    _notify(request, request.path)
    return web.json_response(
        revision_json(revision, request.app[SETTINGS_KEY].default_cache_control)
    )


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATS_KEY].as_json())


@admin_only
async def reset_stats(request: web.Request) -> web.StreamResponse:
    request.app[STATS_KEY].reset()
    return web.Response(status=204)


@admin_only
async def list_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response({"faults": [f.as_json() for f in request.app[FAULTS_KEY].rules()]})


@admin_only
async def add_fault(request: web.Request) -> web.StreamResponse:
    try:
        fault = parse_fault(await request.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'the body must be JSON, e.g. {"path_prefix": "/x/", "status": 503}')
    except ValueError as exc:
        return error(400, str(exc))
    rules = request.app[FAULTS_KEY]
    rules.add(fault)
    return web.json_response({"faults": [f.as_json() for f in rules.rules()]}, status=201)


@admin_only
async def clear_faults(request: web.Request) -> web.StreamResponse:
    request.app[FAULTS_KEY].clear()
    return web.Response(status=204)
