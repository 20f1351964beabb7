"""`PURGE /path` on the public listener: drop one URL (every variant), from a trusted network
or with the admin token; in cluster mode through the admin listener, so it reaches every node.

Rule: never a cache step: it answers with the purge's JSON (recorded as PASS by `answer`).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from proxy.admin import apply_purge, authorized, ban_json, node_name
from proxy.errors import AuthError, StoreError
from proxy.exchange import KEY_KEY
from proxy.lifecycle.context import Context
from proxy.policy import forward, tokens
from proxy.policy.bans import BanKind

log = logging.getLogger("proxy.handler")

_YES = ("1", "true", "yes")


async def handle(ctx: Context, request: web.BaseRequest) -> web.Response:
    # Signed-URL parameters are not part of any key: purging a signed URL purges its
    # object, and the signature reaches neither the ban table nor the logs.
    target = ctx.target(request, tokens.PARAMS)
    request[KEY_KEY] = target.key
    allowed = authorized(ctx.config, request.headers.get("Authorization")) or (
        forward.in_networks(request.remote, ctx.purge_networks))
    if not allowed:
        raise AuthError("PURGE needs an allowed network or the admin token",
                        status=403, reason="purge_forbidden")
    if ctx.store is None:
        raise StoreError("the cache directory is not usable")
    soft = request.headers.get("X-Purge-Soft", "").lower() in _YES
    wait = request.headers.get("X-Purge-Wait", "").lower() in _YES
    if ctx.config.cluster.redis_url and ctx.config.admin.token:
        # The cluster connection lives with the admin listener: hand the purge to it, so it
        # reaches every node exactly as `POST /purge {"url": ...}` does.
        forwarded = await _via_admin(ctx, target.key, soft, wait)
        if forwarded is not None:
            return forwarded
    ban = await apply_purge(ctx.store, BanKind.EXACT, target.key, soft, ctx.clock)
    answer = ban_json(ban, node_name(ctx.config))
    if ctx.config.cluster.redis_url:
        answer["published"] = False  # applied here only: the admin listener was not reached
    return web.json_response(answer)


async def _via_admin(ctx: Context, key: str, soft: bool, wait: bool) -> web.Response | None:
    host, _, port = ctx.config.server.admin_listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    timeout = aiohttp.ClientTimeout(total=ctx.config.cluster.wait_timeout_seconds + 5.0)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                f"http://{host}:{port}/purge", json={"url": key, "soft": soft, "wait": wait},
                headers={"Authorization": f"Bearer {ctx.config.admin.token}"}) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body,
                                content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("PURGE %s: admin listener not reached (%s): applying it here only",
                    key, exc.__class__.__name__)
        return None
