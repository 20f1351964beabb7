"""The admin console: a web application mounted at /console/ on the admin listener.

Rule: every page but sign-in and the two static files needs a session (`proxy.console.sessions`);
every POST but sign-in needs the session's CSRF token, and every POST an `Origin` (when the
browser sends one) equal to the listener's own. Every answer is `no-store` under a CSP that
allows only this origin's script and style (no inline script) and no framing.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.admin import parse_purge, purge_target
from proxy.console import views
from proxy.console.live import Live, Rates, Sources, overview
from proxy.console.markup import Markup
from proxy.console.purges import Purges
from proxy.console.sessions import (
    COOKIE,
    FAILURE_DELAY_SECONDS,
    Session,
    Sessions,
    Throttle,
    token_matches,
)
from proxy.errors import ProxyError
from proxy.policy.freshness import Heuristic
from proxy.store import listing

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
       " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
       " object-src 'none'")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make POSTs send Origin: null
}
PUBLIC = frozenset({"/console/login", "/console/static/console.js", "/console/static/console.css"})
STATIC_TYPES = {"console.js": "text/javascript", "console.css": "text/css"}
FORM_KINDS = {"url": "url", "prefix": "prefix", "tag": "tag"}


class Console:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.sessions = Sessions()
        self.throttle = Throttle()
        self.rates = Rates()
        self.purges = Purges(sources)
        folder = resources.files("proxy.console") / "static"
        self.static = {name: (folder / name).read_bytes() for name in STATIC_TYPES}

    def admin_token(self) -> str:
        return self.sources.config().admin.token


CONSOLE = web.AppKey("console", Console)


def _html(markup: Markup, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", charset="utf-8")


def _session(request: web.Request) -> Session:
    """The request's session (the guard has checked that there is one)."""
    console = request.app[CONSOLE]
    session = console.sessions.get(request.cookies.get(COOKIE), console.admin_token())
    if session is None:
        raise web.HTTPSeeOther("/console/login")
    return session


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if request.method == "POST" and not _same_origin(request):
        return _html(views.problem("Refused", "This form was sent from another site.", None),
                     403)
    if request.path in PUBLIC:
        return await handler(request)
    session = console.sessions.get(request.cookies.get(COOKIE), console.admin_token())
    if session is None:
        if request.path.startswith("/console/api/"):
            return web.json_response({"error": "unauthorized", "detail": "sign in again"},
                                     status=401)
        raise web.HTTPSeeOther("/console/login")
    if request.method == "POST":
        form = await request.post()
        given = form.get("csrf")
        if not isinstance(given, str) or not session.csrf_matches(given):
            return _html(views.problem("Refused", "The form had expired or was not sent from "
                                       "this console; reload the page and try again.",
                                       session.csrf), 403)
    return await handler(request)


async def login_page(request: web.Request) -> web.Response:
    disabled = not request.app[CONSOLE].admin_token()
    return _html(views.login(disabled=disabled), 403 if disabled else 200)


async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    admin_token = console.admin_token()
    if not admin_token:
        return _html(views.login(disabled=True), 403)
    address = request.remote or "unknown"
    locked = console.throttle.locked_for(address)
    if locked or not console.throttle.begin(address):
        wait = max(locked, 1.0)
        response = _html(views.login(f"Too many refused tokens: try again in {wait:.0f} s."),
                         429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    try:
        form = await request.post()
        given = form.get("token")
        right = isinstance(given, str) and token_matches(given, admin_token)
        if not right:
            console.throttle.failed(address)  # counted before the attempt's slot is freed
    finally:
        console.throttle.end(address)
    if not right:
        await asyncio.sleep(FAILURE_DELAY_SECONDS)  # slows guessing; other requests go on
        return _html(views.login("That is not the admin token."), 401)
    console.throttle.succeeded(address)
    cookie, _ = console.sessions.open(admin_token)
    response = web.HTTPSeeOther("/console/")
    response.set_cookie(COOKIE, cookie, path="/console/", httponly=True, samesite="Strict",
                        secure=request.secure)
    raise response


async def logout(request: web.Request) -> web.Response:
    request.app[CONSOLE].sessions.close(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console/")
    raise response


async def overview_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    live = await overview(console.sources, console.rates)
    return _html(views.overview(live, _session(request).csrf))


async def overview_json(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.json_response((await overview(console.sources, console.rates)).to_json())


async def purge_page(request: web.Request) -> web.Response:
    return _html(views.purge_form(_session(request).csrf))


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def purge(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    csrf = _session(request).csrf
    form = await request.post()
    kind, value, soft = _text(form, "kind"), _text(form, "value"), _text(form, "soft") == "1"
    if kind == "all":
        body: dict[str, Any] = {"all": True}
    elif kind in FORM_KINDS:
        body = {FORM_KINDS[kind]: value}
    else:
        return _html(views.purge_form(csrf, "Choose what to purge.", value=value), 400)
    parsed = parse_purge(body, console.sources.config().server.max_url_bytes)
    if isinstance(parsed, str):
        return _html(views.purge_form(csrf, parsed, kind, value, soft), 400)
    ban_kind, ban_value, _ = parsed
    store = console.sources.store()
    try:
        if store is None:
            raise ProxyError("the cache directory is not usable")
        if _text(form, "confirm") != "1":
            entries, covered = await asyncio.to_thread(listing.covers, store, ban_kind,
                                                       ban_value)
            return _html(views.purge_confirm(csrf, kind, ban_value, soft, entries, covered))
        made = await console.purges.make(ban_kind, ban_value, soft)
    except ProxyError as exc:
        return _html(views.problem("Purge failed", exc.message, csrf), 503)
    raise web.HTTPSeeOther(f"/console/purges/{made.id}")


async def _progress(request: web.Request) -> tuple[Any, Live]:
    purges = request.app[CONSOLE].purges
    made = purges.get(request.match_info["id"])
    if made is None:
        raise web.HTTPNotFound(text="no such purge (the console remembers the last 200)")
    return made, await purges.progress(made)


async def progress_page(request: web.Request) -> web.Response:
    made, live = await _progress(request)
    return _html(views.purge_progress(made, live, _session(request).csrf))


async def progress_json(request: web.Request) -> web.Response:
    _, live = await _progress(request)
    return web.json_response(live.to_json())


async def lookup_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    csrf = _session(request).csrf
    url = request.query.get("url", "").strip()
    if not url:
        return _html(views.lookup(csrf, "", None))
    config = console.sources.config()
    key = purge_target(url, config.server.max_url_bytes)
    store = console.sources.store()
    if key is None:
        return _html(views.lookup(csrf, url, None, "Not a valid URL or path."), 400)
    try:
        if store is None:
            raise ProxyError("the cache directory is not usable")
        found = await asyncio.to_thread(
            listing.entry, store, key,
            Heuristic(config.cache.heuristic_fraction, config.cache.heuristic_max_seconds))
    except ProxyError as exc:
        return _html(views.lookup(csrf, url, None, exc.message), 503)
    return _html(views.lookup(csrf, url, found))


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = request.app[CONSOLE].static.get(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=STATIC_TYPES[name], charset="utf-8")


def create_console_app(sources: Sources) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[CONSOLE] = Console(sources)
    app.router.add_get("/", overview_page)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/purge", purge_page)
    app.router.add_post("/purge", purge)
    app.router.add_get("/purges/{id}", progress_page)
    app.router.add_get("/lookup", lookup_page)
    app.router.add_get("/api/overview", overview_json)
    app.router.add_get("/api/purges/{id}", progress_json)
    app.router.add_get("/static/{name}", static)
    return app
