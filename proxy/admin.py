"""The admin listener: purge (by URL, prefix, tag, everything), stats, metrics, health.

Rule: every state-changing call needs `Authorization: Bearer <admin.token>` (compared in
constant time); with no token configured, purging is refused rather than left open. Health and
metrics stay unauthenticated: the listener belongs on a private interface. A purge is applied
to this node before it is published to the cluster (`proxy.cluster`), so it never depends on
Redis being up. The admin console (`proxy.console`, HTML pages behind a sign-in with the same
token) is mounted at /console/, and / redirects there.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.config import Config
from proxy.errors import StoreError
from proxy.metrics import (
    NodeCollector,
    StoreCollector,
    purge_kind_label,
    register_process_collectors,
)
from proxy.policy import cachekey, groups, imagekey, tokens
from proxy.policy.bans import Ban, BanKind
from proxy.policy.freshness import Heuristic
from proxy.store import listing
from proxy.store.index import Store

if TYPE_CHECKING:  # redis is imported only when [cluster] redis_url is set
    from proxy.cluster import Cluster

MAX_PURGE_BODY = 64 * 1024


def node_name(config: Config) -> str:
    return config.admin.node_name or socket.gethostname()


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def authorized(config: Config, header: str | None) -> bool:
    token = config.admin.token
    if not token or header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def purge_target(value: str, max_length: int) -> str | None:
    """A URL or path given to purge -> the cache key it names (None when malformed). Signed-URL
    parameters are dropped as for any request: they are never part of a key, and must not
    reach the ban table, /stats or the logs."""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[::1/a": not a URL at all
        return None
    path = parts.path or "/"
    target = cachekey.normalise_target(path, parts.query, max_length=max_length,
                                       strip_params=tokens.PARAMS)
    return None if isinstance(target, cachekey.Rejected) else target.key


def parse_purge(body: Any, max_length: int) -> tuple[BanKind, str, bool] | str:
    """The purge request JSON -> (kind, value, soft), or an error text."""
    if not isinstance(body, dict):
        return "expected a JSON object"
    soft = body.get("soft", False)
    if not isinstance(soft, bool):
        return "soft: expected true or false"
    given = [k for k in ("url", "prefix", "tag", "group", "all") if k in body]
    if not given and ("preset" in body or "format" in body):
        # Image conversions by preset and/or format: a ban on the tag each is stored with.
        selector = imagekey.parse_purge(body)
        if isinstance(selector, str) or selector is None:
            return selector or "preset/format: expected a preset name or a format"
        return BanKind.TAG, selector.tag, soft
    if len(given) != 1:
        return ('give exactly one of "url", "prefix", "tag", "group", "all", or "preset" '
                'and/or "format"')
    kind = given[0]
    value = body[kind]
    if kind == "all":
        if value is not True:
            return "all: expected true"
        return BanKind.PREFIX, "", soft
    if not isinstance(value, str) or not value or len(value) > max_length:
        return f"{kind}: expected a non-empty string"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape (JSON allows "\ud800")
        return f"{kind}: not valid Unicode text"
    if kind == "tag":
        if any(c.isspace() for c in value):
            return "tag: one tag, no spaces"
        return BanKind.TAG, value, soft
    if kind == "group":  # an HTTP Cache Group (RFC 9875) the origin named
        if len(value) > groups.MAX_GROUP_CHARS or not value.isprintable():
            return f"group: at most {groups.MAX_GROUP_CHARS} printable characters"
        return BanKind.TAG, groups.tag(value), soft
    key = purge_target(value, max_length)
    if key is None:
        return f"{kind}: not a valid path"
    if kind == "prefix":
        return BanKind.PREFIX, key, soft
    return BanKind.EXACT, key, soft


def parse_wait(body: Any) -> bool | str:
    """`"wait": true` (wait for every live node's acknowledgement) -> bool, or an error text."""
    wait = body.get("wait", False) if isinstance(body, dict) else False
    return wait if isinstance(wait, bool) else "wait: expected true or false"


def ban_json(ban: Ban, node: str) -> dict[str, Any]:
    return {
        "ban_id": ban.id,
        "kind": "all" if ban.kind is BanKind.PREFIX and not ban.value else ban.kind.value,
        "value": ban.value,
        "soft": ban.soft,
        "created": ban.created,
        "nodes": [{"node": node, "applied": True}],
    }


async def apply_purge(store: Store, kind: BanKind, value: str, soft: bool,
                      clock: Callable[[], float] = time.time) -> Ban:
    return await asyncio.to_thread(store.add_ban, kind, value, soft=soft, now=clock())


def create_admin_app(
    config: Config,
    registry: CollectorRegistry,
    store_for: Callable[[], Store | None],
    *,
    workers_ready: Callable[[], tuple[int, int]] | None = None,
    clock: Callable[[], float] = time.time,
    cluster: Cluster | None = None,
    config_for: Callable[[], Config] | None = None,
) -> web.Application:
    """`config_for` gives the configuration now in force (a reload replaces it); the admin
    listener's address and the node name are fixed at start."""
    app = web.Application(client_max_size=MAX_PURGE_BODY)
    node = node_name(config)
    started_config = config
    current = config_for or (lambda: started_config)
    register_process_collectors(registry)
    registry.register(StoreCollector(
        lambda: _require(store_for()).usage().total,
        lambda: _require(store_for()).entry_count(),
        lambda: _superseded(_require(store_for())),
        lambda: _require(store_for()).max_size_bytes,
        lambda: len(_require(store_for()).bans().all),
    ))
    purges: dict[str, int] = {}  # kind label -> count, for mediaproxy_purges_total

    def problems() -> list[str]:
        return readiness_problems(store_for(), workers_ready)

    registry.register(NodeCollector(problems, purges,
                                    cluster.gauges if cluster is not None else None))

    async def purge(request: web.Request) -> web.Response:
        config = current()
        if not config.admin.token:
            return _error(403, "purge_disabled", "set admin.token to enable purging")
        if not authorized(config, request.headers.get("Authorization")):
            return _error(401, "unauthorized", "Authorization: Bearer <admin.token> required")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "bad_json", "the body must be a small JSON object")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", "purge requests are small JSON objects")
        parsed = parse_purge(body, config.server.max_url_bytes)
        if isinstance(parsed, str):
            return _error(400, "bad_purge", parsed)
        wait = parse_wait(body)
        if isinstance(wait, str):
            return _error(400, "bad_purge", wait)
        store = store_for()
        if store is None:
            return _error(503, "store_unavailable", "the cache directory is not usable")
        try:
            ban = await apply_purge(store, *parsed, clock=clock)
        except StoreError as exc:
            return _error(503, "store_error", exc.message)
        kind = purge_kind_label(ban.kind, ban.value)
        purges[kind] = purges.get(kind, 0) + 1
        answer = ban_json(ban, node)
        if cluster is not None:
            published = await cluster.publish(ban)
            answer["purge_id"] = published.purge.id
            answer["published"] = published.reached  # false: queued until Redis is back
            answer["nodes"] = [state.to_json()
                               for state in await cluster.report(published, wait=wait)]
        return web.json_response(answer)

    async def stats(_: web.Request) -> web.Response:
        store = store_for()
        if store is None:
            return _error(503, "store_unavailable", "the cache directory is not usable")
        body = await asyncio.to_thread(stats_body, store, registry)
        if cluster is not None:
            body["cluster"] = cluster.status()
        return web.json_response(body)

    def heuristic() -> Heuristic:
        cache = current().cache
        return Heuristic(cache.heuristic_fraction, cache.heuristic_max_seconds)

    async def entries(request: web.Request) -> web.Response:
        store = store_for()
        if store is None:
            return _error(503, "store_unavailable", "the cache directory is not usable")
        raw_prefix = request.query.get("prefix", "")
        prefix = raw_prefix
        if prefix:
            key = purge_target(prefix, current().server.max_url_bytes)
            if key is None:
                return _error(400, "bad_prefix", "prefix: not a valid path")
            prefix = key
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "bad_limit", "limit: expected an integer")
        try:
            body = await asyncio.to_thread(listing.entries, store, prefix, limit, heuristic())
        except StoreError as exc:
            return _error(503, "store_error", exc.message)
        return web.json_response(body)

    async def entry(request: web.Request) -> web.Response:
        store = store_for()
        if store is None:
            return _error(503, "store_unavailable", "the cache directory is not usable")
        key = purge_target(request.query.get("url", ""), current().server.max_url_bytes)
        if not request.query.get("url") or key is None:
            return _error(400, "bad_url", "url: give a URL or path")
        try:
            body = await asyncio.to_thread(listing.entry, store, key, heuristic())
        except StoreError as exc:
            return _error(503, "store_error", exc.message)
        return web.json_response(body)

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        found = await asyncio.to_thread(problems)
        return web.json_response({"ready": not found, "problems": found},
                                 status=503 if found else 200)

    from proxy.console import live, routes  # they use this module's purge and stats

    app.router.add_get("/", _to_console)
    app.router.add_get("/console", _to_console)  # before the sub-application that owns /console
    app.add_subapp("/console", routes.create_console_app(live.Sources(
        node=node, config=current, store=store_for, registry=registry, cluster=cluster,
        clock=clock)))
    app.router.add_post("/purge", purge)
    app.router.add_get("/stats", stats)
    app.router.add_get("/entries", entries)
    app.router.add_get("/entry", entry)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _to_console(_: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def stats_body(store: Store, registry: CollectorRegistry) -> dict[str, Any]:
    requests: dict[str, int] = {}
    for family in registry.collect():
        if family.name == "mediaproxy_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    status = sample.labels["cache_status"]
                    requests[status] = requests.get(status, 0) + int(sample.value)
    served = sum(requests.values())
    hits = requests.get("HIT", 0) + requests.get("REVALIDATED", 0)
    graveyard = store.graveyard_stats()
    return {
        "entries": store.entry_count(),
        "bytes": store.volume(),
        "max_size_bytes": store.max_size_bytes,
        "disk": store.usage().as_json(),  # what max_size_bytes bounds, by part
        "hit_ratio": round(hits / served, 4) if served else None,
        "requests": requests,
        "active_bans": [
            {"ban_id": b.id, "kind": b.kind.value, "value": b.value, "soft": b.soft,
             "created": b.created} for b in store.bans().all
        ],
        "fills_in_progress": len(store.claims.running_fills()),
        "superseded_files": graveyard.files,
        "superseded_bytes": graveyard.bytes,
    }


def readiness_problems(store: Store | None,
                       workers_ready: Callable[[], tuple[int, int]] | None) -> list[str]:
    """Why this node should not get traffic ([] = ready): /readyz and mediaproxy_ready."""
    problems: list[str] = []
    if store is None:
        problems.append("cache directory unavailable")
    else:
        # A real 1 MiB write into tmp/: a full filesystem counts (an empty file would not).
        problem = store.write_problem()
        if problem is not None:
            problems.append(problem)
    if workers_ready is not None:
        ready, wanted = workers_ready()
        if ready < wanted:
            problems.append(f"{ready} of {wanted} workers listening")
    return problems


def _superseded(store: Store) -> tuple[int, int]:
    stats = store.graveyard_stats()
    return stats.files, stats.bytes


def _require(store: Store | None) -> Store:
    if store is None:
        raise StoreError("no store")
    return store



