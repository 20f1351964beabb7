"""Session authorisation for the proxy's auth callout: which session may read which paths.

Rule: `GET /_origin/auth` answers like nginx's `auth_request` expects: 204 when the session
named by the `session` cookie (or `Authorization: Bearer <id>`) may read the path in
`X-Original-URI`, 401 without a session, 403 otherwise. Grants live in memory and are set by
the admin API (`PUT/DELETE /_origin/sessions/<id>`), the way a CMS keeps its login sessions.
Faults under `/_origin/auth` apply here too (delay, status), so tests can make it slow or fail.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from origin.admin import admin_only, error
from origin.keys import SESSIONS_KEY
from origin.public import injected

SESSION_COOKIE = "session"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _session_of(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(SESSION_COOKIE) or None


async def auth_check(request: web.Request) -> web.StreamResponse:
    _fault, instead = await injected(request)
    if instead is not None:
        return instead
    uri = request.headers.get("X-Original-URI", "")
    if not uri.startswith("/"):
        return error(400, "X-Original-URI must carry the requested path")
    session = _session_of(request)
    if session is None:
        return web.Response(status=401)
    path = uri.partition("?")[0]
    allowed = request.app[SESSIONS_KEY].allows(session, path)
    return web.Response(status=204 if allowed else 403)


@admin_only
async def put_session(request: web.Request) -> web.StreamResponse:
    session = request.match_info["session"]
    if not _SESSION_ID.fullmatch(session):
        return error(400, "a session id is 1-128 characters of [A-Za-z0-9_-]")
    try:
        body = json.loads(await request.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'body must be JSON: {"prefixes": ["/media/private/"]}')
    prefixes = body.get("prefixes") if isinstance(body, dict) else None
    if not isinstance(prefixes, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in prefixes
    ):
        return error(400, '"prefixes" must be a list of paths starting with "/"')
    request.app[SESSIONS_KEY].prefixes[session] = tuple(prefixes)
    return web.json_response({"session": session, "prefixes": prefixes})


@admin_only
async def delete_session(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS_KEY].prefixes.pop(request.match_info["session"], None)
    return web.Response(status=204)
