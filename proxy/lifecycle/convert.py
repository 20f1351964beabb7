"""Image conversions (`?preset=`): a stored conversion made from the current source, or one
conversion per key across every process, made from the original as our own listener serves it.

Rule: one I/O step per call, returning the next step. The original is fetched through this
proxy's public listener, so it is cached, collapsed, revalidated and kept fresh exactly as a
request for it would be, and the client is authorized for the original (a token for it, or
its prefix, covers its conversions) before anything is converted. A conversion is stored
under its own key (`imagekey.conversion_key`, under its source's key: purging the original
purges it) with the source's validator, and reused only while it is fresh by its own copy of
the source's Cache-Control AND the stored source still has that validator. A soft-purged
conversion is served as it is (UPDATING) while it is remade in the background, paced per
worker by images.max_conversions_per_second. A claimant's failure (a refused conversion, an
unreadable original) reaches those waiting for the same key at once; an access refusal is
the client's own and reaches nobody else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from proxy.errors import ImageRefused, OriginError, OriginTimeout, ProxyError, StoreError
from proxy.exchange import Exchange
from proxy.images.spec import Spec
from proxy.lifecycle import steps
from proxy.lifecycle.admit import fields
from proxy.lifecycle.authorize import authorize
from proxy.lifecycle.context import Context
from proxy.policy import cachekey, decide, imageformat, imagekey, images
from proxy.policy.access import Access
from proxy.policy.bans import response_tags
from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import Headers, get
from proxy.signing import sign_url
from proxy.status import CacheStatus
from proxy.store.claims import Claim

log = logging.getLogger("proxy.images")

POLL_SECONDS = 0.02
TOKEN_TTL_SECONDS = 60  # the loopback request's own token, for protected originals
# The source's fields a conversion keeps (besides the access header): its freshness, and the
# purge tags the origin gave the original.
KEPT = ("cache-control", "expires", "date", "age", "last-modified", "surrogate-key",
        "cache-tag", "cache-groups")


def requested(ctx: Context, request: web.BaseRequest, target: cachekey.Target
              ) -> steps.Convert | None:
    """The conversion a GET/HEAD asks for (`None`: an ordinary request); a bad one is
    refused (ImageRefused 400/403) before any work."""
    if not ctx.image_params:
        return None
    raw_query = request.raw_path.partition("#")[0].partition("?")[2]
    parsed = images.parse_request(
        raw_query, target.path, presets=ctx.config.images.presets,
        allow_free_form=ctx.config.images.allow_free_form, keys=ctx.keys)
    if parsed is None:
        return None
    if isinstance(parsed, images.ImageRefusal):
        raise ImageRefused(parsed.message, status=parsed.status, reason=parsed.reason)
    if ctx.pool is None or ctx.loopback is None:
        raise ImageRefused("conversions are not running", status=503,
                           reason="conversion_unavailable")
    return steps.Convert(parsed)


def lookup(ctx: Context, ex: Exchange, step: steps.Convert
           ) -> steps.Fresh | steps.ConvertRefresh | steps.ConvertMiss:
    """A stored conversion this request may have, made from the source as it is stored now."""
    image = step.image
    accepted = imageformat.accept_tokens(ex.request.headers.getall("Accept", []))
    miss = steps.ConvertMiss(image, imagekey.conversion_key(ex.key, image, _hint(image, accepted)),
                             step.round)
    source = ctx.lookup(ex.key)
    if source is None:
        return miss
    source.close()  # its fields are all we need
    if ctx.ban_for(source.key, source.meta) is not None:
        # The original itself is purged, hard or soft: what it is now (its access policy
        # included) is known only once it is revalidated, which the remake does.
        return miss
    fmt = imageformat.negotiate(image.format, accepted, imageformat.format_of_type(
        get(source.meta.headers, "content-type") or ""))
    key = imagekey.conversion_key(ex.key, image, fmt)
    cached = ctx.lookup(key)
    if cached is None:
        return miss
    ban = banned(ctx, key, cached.meta)
    same_source = get(cached.meta.headers, imagekey.SOURCE_VALIDATOR) == validator(
        source.meta.headers) and _access(ctx, ex, cached.meta.headers) is _access(
        ctx, ex, source.meta.headers)  # an access change keeps the validator, not the copy
    decision = decide.on_request_facts(ctx.facts(key, cached.meta), fields(ex.request),
                                       ctx.clock())
    if (ban is not None and not ban.soft) or not same_source or not isinstance(
            decision, decide.Serve):
        cached.close()  # purged, made from another source, or stale: remake it now
        return miss
    if ban is not None:  # soft-purged: served as it is while it is remade
        return steps.ConvertRefresh(ex.held.body(cached), decision.age_seconds, image,
                                    miss.claim_key)
    return steps.Fresh(ex.held.body(cached), decision.age_seconds)


def _access(ctx: Context, ex: Exchange, headers: Headers) -> Access:
    return ctx.access.for_object(ex.target.path, headers)


def remake_later(ctx: Context, ex: Exchange, step: steps.ConvertRefresh) -> steps.Stale:
    """Start remaking a soft-purged conversion in the background (one per key across
    processes, at most images.max_conversions_per_second per worker: past that, the copy
    keeps being served until a later request finds room) and answer with the copy."""
    key = step.body.key
    name = imagekey.conversion_of(key)
    if ctx.store is not None and name is not None and key not in ctx.refreshing and (
            ctx.remakes.try_take()):
        try:
            held = ctx.store.claims.try_claim(step.claim_key)
        except OSError:
            held = None
        if held is not None:  # else it is being made or remade somewhere
            ctx.refreshing.add(key)
            url, sent = loopback_request(ctx, ex)
            ctx.spawn(_remake(ctx, url, sent, steps.Source(step.image, b"", (), name.format,
                                                           key), held))
    return steps.Stale(step.body, step.age, CacheStatus.UPDATING)


async def _remake(ctx: Context, url: str, sent: dict[str, str], source: steps.Source,
                  held: Claim) -> None:
    try:
        headers, body, _ = await read_source(ctx, url, sent, None)
        await convert_and_store(ctx, dataclasses.replace(source, body=body, headers=headers))
    except (ProxyError, OSError) as exc:
        log.info("remaking %r failed: %s", source.key, exc)
    finally:
        held.release()
        ctx.refreshing.discard(source.key)


async def claim(ctx: Context, ex: Exchange, step: steps.ConvertMiss
                ) -> steps.ConvertClaimed | steps.ConvertFollow | steps.Convert:
    """One conversion per key: take its claim, or wait for whoever holds it."""
    store = ctx.store
    if store is None or step.round >= steps.ROUNDS:
        return steps.ConvertClaimed(step.image)  # converted without the claim
    pending = ctx.pending.get(step.claim_key)
    if pending is not None:
        _raise_failure(await asyncio.shield(pending))
        return steps.Convert(step.image, step.round + 1)
    try:
        held = store.claims.try_claim(step.claim_key)
    except OSError as exc:
        ctx.metrics.store_errors.labels("claim").inc()
        log.warning("cannot claim %s: %s", step.claim_key, exc)
        return steps.ConvertClaimed(step.image)
    if held is None:
        return steps.ConvertFollow(step.image, step.claim_key, step.round)
    ex.held.take(held, step.claim_key)  # no await since the pending check above
    return steps.ConvertClaimed(step.image)


async def wait(ctx: Context, ex: Exchange, step: steps.ConvertFollow) -> steps.Convert:
    """Another process converts this key: wait for its claim's release (or its failure)."""
    assert ctx.store is not None
    claims = ctx.store.claims
    since = time.time()
    limits = ctx.config.origin
    deadline = time.monotonic() + ctx.config.images.timeout_seconds + (
        limits.connect_timeout_seconds + limits.read_timeout_seconds)
    while time.monotonic() < deadline:
        held = claims.is_held(step.claim_key)
        info = claims.read_meta(step.claim_key)  # after is_held: a failure is published first
        if info is not None and isinstance(info.get("failed"), dict) and (
                info["failed"].get("at", 0) >= since - 1.0):
            _raise_failure(_error_of(info["failed"]))
        if not held:
            break
        await asyncio.sleep(POLL_SECONDS)
    return steps.Convert(step.image, step.round + 1)


async def fetch_source(ctx: Context, ex: Exchange, step: steps.ConvertClaimed) -> steps.Source:
    """The original, read whole through our own listener; this client authorized for it."""
    try:
        return await _fetch(ctx, ex, step.image)
    except (ImageRefused, OriginError) as exc:
        ex.held.fail(exc, notice(exc))
        raise


async def make(ctx: Context, ex: Exchange, step: steps.Source) -> steps.Converted:
    """Convert in the pool and store the result under the conversion's key."""
    try:
        return await convert_and_store(ctx, step)
    except ImageRefused as exc:
        ex.held.fail(exc, notice(exc))
        raise


async def convert_and_store(ctx: Context, step: steps.Source) -> steps.Converted:
    image, fmt = step.image, step.format
    spec = Spec(image.width, image.height, image.fit, fmt, image.quality)
    made_at = ctx.clock()
    converted = await ctx.pool.convert(step.body, spec, preset=image.preset)
    body = converted.body
    assert body is not None
    headers = conversion_headers(ctx, step, body)
    meta = StoredResponse(200, headers, made_at, ctx.clock(), len(body))
    tags = (*imagekey.conversion_tags(image, fmt), *response_tags(step.headers))
    stored = await _store(ctx, step.key, body, meta, tags)
    return steps.Converted(body, headers, stored)


# -- the source -------------------------------------------------------------------------------


async def _fetch(ctx: Context, ex: Exchange, image: images.ImageRequest) -> steps.Source:
    url, sent = loopback_request(ctx, ex)
    headers, body, source_format = await read_source(ctx, url, sent, ex.request)
    accepted = imageformat.accept_tokens(ex.request.headers.getall("Accept", []))
    fmt = imageformat.negotiate(image.format, accepted, source_format)
    return steps.Source(image, body, headers, fmt, imagekey.conversion_key(ex.key, image, fmt))


async def read_source(ctx: Context, url: str, sent: dict[str, str],
                      client: web.BaseRequest | None) -> tuple[Headers, bytes, str]:
    """The original's fields and whole body (at most images.max_source_bytes), and its
    format; `client` (when a client asked) is authorized for it before its body is read."""
    limit = ctx.config.images.max_source_bytes
    assert ctx.loopback is not None
    try:
        async with ctx.loopback.get(url, headers=sent, allow_redirects=False) as response:
            if response.status != 200:
                raise _source_failed(response.status)
            headers: Headers = tuple(response.headers.items())
            if client is not None:
                await authorize(ctx, client, headers)  # as a request for the original would be
            content_type = response.headers.get("Content-Type", "")
            source_format = imageformat.format_of_type(content_type)
            if source_format not in ctx.config.images.input_formats():
                raise ImageRefused(f"the original is {content_type[:64] or 'untyped'}, not an "
                                   "allowed image", status=415, reason="not_an_allowed_image")
            if (response.content_length or 0) > limit:
                raise _too_large(limit)
            body = bytearray()
            async for chunk in response.content.iter_chunked(256 * 1024):
                body += chunk
                if len(body) > limit:
                    raise _too_large(limit)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OriginError(f"the original could not be read: {exc.__class__.__name__}") from exc
    assert source_format is not None
    return headers, bytes(body), source_format


def loopback_request(ctx: Context, ex: Exchange) -> tuple[str, dict[str, str]]:
    """The URL of the original on our own public listener, signed when tokens are on (so a
    protected original serves the proxy itself), and the fields sent with it."""
    host, _, port = ctx.config.server.listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    target = ex.target.url_key
    if ctx.keys:
        key_id, secret = next(iter(ctx.keys.items()))
        target = sign_url(target, key_id=key_id, secret=secret, ttl_seconds=TOKEN_TTL_SECONDS,
                          now=ctx.clock())
    sent = {"Accept-Encoding": "identity", "User-Agent": "mediaproxy-images"}
    client_host = ex.request.headers.get("Host")
    if client_host:
        sent["Host"] = client_host
    return f"http://{host}:{port}{target}", sent


def _source_failed(status: int) -> ProxyError:
    if status in (404, 410):
        return ImageRefused(f"the original answered {status}", status=status,
                            reason="source_not_found")
    if status == 504:
        return OriginTimeout("the original did not arrive in time")
    return ImageRefused(f"the original answered {status}", status=502, reason="source_error")


def _too_large(limit: int) -> ImageRefused:
    return ImageRefused(f"the original is over images.max_source_bytes ({limit})",
                        reason="source_too_large")


# -- what is stored ---------------------------------------------------------------------------


def validator(headers: Headers) -> str:
    """The source's validator a conversion records: its ETag, else its Last-Modified."""
    return get(headers, "etag") or get(headers, "last-modified") or ""


def conversion_headers(ctx: Context, step: steps.Source, body: bytes
                       ) -> tuple[tuple[str, str], ...]:
    image, fmt, source = step.image, step.format, step.headers
    kept = {*KEPT, ctx.config.auth.access_header.lower()}
    made_from = validator(source)
    tag = hashlib.sha256(
        f"{made_from}|{image.name};fmt={fmt}".encode() if made_from else body).hexdigest()
    out: list[tuple[str, str]] = [("Content-Type", imageformat.content_type(fmt)),
                                  ("Content-Length", str(len(body))),
                                  ("ETag", f'"{tag[:32]}"')]
    out += [(k, v) for k, v in source if k.lower() in kept]
    if imageformat.varies(image.format):
        out.append(("Vary", "Accept"))
    out.append((imagekey.SOURCE_VALIDATOR, made_from))
    return tuple(out)


def banned(ctx: Context, key: str, meta: StoredResponse) -> Any:
    """The ban covering a stored conversion: by URL, prefix, the source's tags, or its
    preset/format tags (kept in the store's tag table, not in its fields)."""
    name = imagekey.conversion_of(key)
    if ctx.store is None or name is None:
        return None
    try:
        index = ctx.store.bans()
    except StoreError:
        return None
    if not index.size:
        return None
    tags = (*response_tags(meta.headers), imagekey.PurgeSelector(name.preset, None).tag,
            imagekey.PurgeSelector(None, name.format).tag,
            imagekey.PurgeSelector(name.preset, name.format).tag)
    return index.match(key, tags, meta.response_time)


async def _store(ctx: Context, key: str, body: bytes, meta: StoredResponse,
                 tags: tuple[str, ...]) -> bool:
    store = ctx.store
    if store is None or not decide.storable("GET", 200, (), meta.headers, meta.response_time,
                                            ctx.lifetime_rule(key)):
        return False
    temp = store.new_temp_path()

    def write_and_commit() -> bool:
        with open(temp, "wb") as out:
            out.write(body)
        return store.commit(key, temp, meta, tags=tags)

    try:
        committed = await asyncio.to_thread(write_and_commit)
    except (StoreError, OSError) as exc:
        ctx.metrics.store_errors.labels("fill").inc()
        log.warning("conversion %r not stored: %s", key, exc)
        committed = False
    if not committed:
        store.discard_temp(temp)
    return committed


# -- failures shared with those waiting -------------------------------------------------------


def notice(exc: ProxyError) -> dict[str, Any]:
    return {"failed": {"at": time.time(), "status": exc.status, "reason": exc.reason,
                       "message": exc.message}}


def _error_of(failed: dict[str, Any]) -> ProxyError:
    status, message = failed.get("status"), str(failed.get("message", "conversion failed"))
    if failed.get("reason") in ("origin_error", "origin_timeout"):
        return OriginTimeout(message) if status == 504 else OriginError(message)
    return ImageRefused(message, status=status if isinstance(status, int) else 422,
                        reason=str(failed.get("reason", "conversion_failed")))


def _raise_failure(result: object) -> None:
    """The claimant failed: so does this request, with the same error (a fresh copy)."""
    if isinstance(result, ImageRefused):
        raise ImageRefused(result.message, status=result.status, reason=result.reason)
    if isinstance(result, OriginError):
        raise type(result)(result.message)


def _hint(image: images.ImageRequest, accepted: frozenset[str]) -> str:
    """The output format as far as it is known before the source is (the claim's key)."""
    if not imageformat.varies(image.format):
        return str(image.format)
    return next((f for f in imageformat.NEGOTIATED if f in accepted), "source")
