"""The one gate before any object byte or header: tokens, the object's access policy, the
auth callout.

Rule: applied wherever an object's bytes or headers are about to be sent, whatever the
method; it raises AuthError (401/403/503) or returns; what it learns (the token's verdict,
a grant) is remembered on the request.
"""

from __future__ import annotations

import time

from aiohttp import web

from proxy.errors import AuthError, StoreError
from proxy.exchange import GRANTED_KEY, SESSION_GRANTED_KEY, TARGET_KEY, VERDICT_KEY
from proxy.lifecycle.context import Context
from proxy.policy import cachekey, session, tokens
from proxy.policy.access import Access
from proxy.policy.headers import Headers


async def authorize(ctx: Context, request: web.BaseRequest, headers: Headers) -> None:
    """Refuse unless the object is public, the request carries a valid token, or the auth
    callout allows its session."""
    target = request.get(TARGET_KEY)
    if target is None:
        return
    if ctx.access.for_object(target.path, headers) is Access.PUBLIC:
        return
    if request.get(GRANTED_KEY):
        return
    verdict = request.get(VERDICT_KEY)
    if verdict is None:
        verdict = verify(ctx, request, target)
        request[VERDICT_KEY] = verdict
    if isinstance(verdict, tokens.Allowed):
        request[GRANTED_KEY] = True
        return
    if ctx.callout is not None:
        fields = ctx.callout.credentials(request.headers.items())
        if fields:
            forget_answers_after_purge(ctx)
            outcome = await ctx.callout.check(fields, target.url_key, request.method)
            if outcome is session.Outcome.ALLOW:
                request[GRANTED_KEY] = True
                request[SESSION_GRANTED_KEY] = True
                return
            if outcome is session.Outcome.DENY:
                ctx.metrics.auth_denied.labels("session_denied").inc()
                raise AuthError("session_denied", status=403, reason="session_denied")
            ctx.metrics.auth_denied.labels("auth_unavailable").inc()
            raise AuthError("auth_unavailable", reason="auth_unavailable",
                            status=ctx.config.auth.callout_failure_status)
    ctx.metrics.auth_denied.labels(verdict.reason.value).inc()
    raise AuthError(verdict.reason.value, status=verdict.reason.status,
                    reason=verdict.reason.value)


def forget_answers_after_purge(ctx: Context) -> None:
    """A purge (from any worker or node) may carry an access change: drop remembered callout
    answers when the shared ban table has moved since we last looked. At most once a second
    (any client's successful PUT or DELETE also moves it, and must not be a way to keep every
    answer forgotten); a later move is picked up on the next call."""
    if ctx.store is None or ctx.callout is None:
        return
    try:
        index = ctx.store.bans()
    except StoreError:
        return
    if index is ctx.bans_seen:
        return
    now = time.monotonic()
    if ctx.bans_seen is not None:
        if now - ctx.forgotten_at < 1.0:
            return
        ctx.callout.forget()
        ctx.forgotten_at = now
    ctx.bans_seen = index


def verify(ctx: Context, request: web.BaseRequest, target: cachekey.Target) -> tokens.Verdict:
    raw_query = request.raw_path.partition("?")[2].partition("#")[0]
    fields = tokens.token_fields(raw_query)
    cookie_name = ctx.config.auth.cookie_name
    if not fields and cookie_name:
        cookie = request.cookies.get(cookie_name)
        if cookie:
            fields = tokens.token_fields(cookie)
    return tokens.verify(fields, target.path, request.remote, ctx.clock(), ctx.keys,
                         ctx.config.auth.clock_skew_seconds)


def granted(ctx: Context, request: web.BaseRequest) -> bool:
    """May this request keep receiving the object should it become protected?"""
    if request.get(GRANTED_KEY):
        return True
    if not ctx.keys:
        return False
    verdict = request.get(VERDICT_KEY)
    target = request.get(TARGET_KEY)
    if verdict is None and target is not None:
        verdict = verify(ctx, request, target)
        request[VERDICT_KEY] = verdict
    return isinstance(verdict, tokens.Allowed)
