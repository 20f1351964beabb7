"""`PURGE /path` on the public listener: drop one URL (every variant), from a trusted network
or with the admin token; in cluster mode through the admin listener, so it reaches every node.

Rule: never a cache step: it answers with the purge's JSON (recorded as PASS by `answer`).
"""

from __future__ import annotations

from aiohttp import web

from proxy.admin import apply_purge, authorized, ban_json, node_name
from proxy.errors import AuthError, StoreError
from proxy.exchange import KEY_KEY
from proxy.lifecycle.context import Context
from proxy.policy import forward, tokens
from proxy.policy.bans import BanKind

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
        forwarded = await ctx.purge_via_admin({"url": target.key, "soft": soft, "wait": wait})
        if forwarded is not None:
            return forwarded
    ban = await apply_purge(ctx.store, BanKind.EXACT, target.key, soft, ctx.clock)
    answer = ban_json(ban, node_name(ctx.config))
    if ctx.config.cluster.redis_url:
        answer["published"] = False  # applied here only: the admin listener was not reached
    return web.json_response(answer)
