"""The fill runner: an origin body streamed into a temp file, verified, committed.

Rule: a fill is a task that owns its claim until the body ends (it releases it, nobody else);
it publishes what followers in other processes need before the first byte, runs to the end
even if every client leaves (unless it is abandoned), and settles its readers only once the
entry is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from proxy import deliver
from proxy.errors import OriginError, StoreError
from proxy.lifecycle.admit import forward_headers
from proxy.lifecycle.context import Context
from proxy.origin import OriginResponse
from proxy.policy import cachekey, digest
from proxy.policy.bans import response_tags
from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import get
from proxy.store.claims import Claim
from proxy.store.fill import Fill, FillOutcome, FillView
from proxy.store.index import meta_dict

log = logging.getLogger("proxy.handler")

SPILL_WINDOW_BYTES = 8 * 1024 * 1024  # per relayed fill, once its disk write has failed


def open_fill(ctx: Context, claim: Claim, target: cachekey.Target, meta: StoredResponse,
              expected: int | None) -> Fill:
    """Start the temp file of `target`'s body under `claim` and publish what followers in
    other processes need (headers, length, key, variant, tags, its file) before its first
    byte. Publishing admits the fill to the disk budget (NoRoom, an OSError, when it cannot
    fit). The fill owns the claim from here on."""
    names = ctx.vary_names(meta.headers)
    fill = Fill(target.key, str(claim.part), meta, expected)
    try:
        fill.vary_names = names
        fill.variant = target.variant
        fill.vary_record = (target.url_key, names)
        claim.publish({"meta": meta_dict(meta), "expected": expected, "key": target.key,
                       "vary_names": list(names), "variant": target.variant,
                       "tags": list(response_tags(meta.headers)), "part": claim.part.name})
    except OSError:
        fill.fail()
        fill.close()
        if ctx.store is not None:
            ctx.store.discard_temp(fill.temp_path)
        raise
    fill.claim = claim
    claim.owned_by_fill = True
    return fill


def start(ctx: Context, fill: Fill, origin: OriginResponse) -> None:
    """Register `fill` for joiners in this process and run it in the background."""
    ctx.fills[fill.key] = fill
    ctx.spawn(run(ctx, fill, origin))


async def run(ctx: Context, fill: Fill, origin: OriginResponse) -> None:
    """Origin body -> temp file -> verify (the file, and the origin's digest) -> commit.
    Runs to the end even if every client leaves (unless abandoned)."""
    store = ctx.store
    assert store is not None
    check = digest.expected("GET", origin.status, origin.headers)
    if isinstance(check, digest.Unsupported):
        log.info("fill of %s: %s; stored unchecked", fill.key, check.reason)
    elif isinstance(check, digest.Expected):
        fill.extra_digests = {name: digest.hasher(name) for name in check.algorithms
                              if name != "sha-256"}
    outcome = FillOutcome.COMMITTED
    whole = False  # the body may reach its readers whole (see Fill.settle)
    abandon_after = ctx.config.cache.fill_abandon_bytes
    checked = time.monotonic()
    try:
        async for chunk in origin.iter_chunks():
            spilled = fill.spill_error is not None
            fill.append(chunk)
            if (abandon_after and not fill.background and fill.readers == 0
                    and time.monotonic() - checked > 0.5):
                checked = time.monotonic()
                remaining = None if fill.expected is None else fill.expected - fill.received
                if (remaining is None or remaining > abandon_after) and (
                        not fill.read_anywhere()):
                    outcome = FillOutcome.ABANDONED  # spare the origin the rest
                    fill.fail()
                    break
            if fill.spill_error is not None:
                if not spilled:
                    _spilled(ctx, fill)
                await fill.wait_for_room(SPILL_WINDOW_BYTES)
        if outcome is FillOutcome.ABANDONED:
            pass
        elif not fill.finish():
            outcome = FillOutcome.INCOMPLETE
        elif fill.spill_error is not None:
            whole = True  # relayed whole through memory; never committed
            outcome = FillOutcome.STORE_ERROR
        elif not await asyncio.to_thread(fill.verify):
            # Not the file, the size or the bytes this fill wrote: never adopted, and its
            # readers, still short of the last byte, are cut short.
            outcome = FillOutcome.MISMATCH
            ctx.metrics.store_errors.labels("fill_verify").inc()
            log.error("fill of %s failed its identity check: not committed", fill.key)
        elif isinstance(check, digest.Expected) and not check.matches(fill.digests()):
            # RFC 9530: not the representation the origin described. Its readers, still
            # short of the last byte, are cut short as for a truncated body.
            outcome = FillOutcome.DIGEST_MISMATCH
            log.error("fill of %s does not match the origin's digest: not committed", fill.key)
        else:
            whole = True
            meta = dataclasses.replace(fill.meta, body_size=fill.received)
            if get(meta.headers, "repr-digest") is None:
                # Every answer from the cache says what it is (RFC 9530), so a CDN or a
                # client can check it; the fill read every byte anyway.
                meta = dataclasses.replace(meta, headers=(
                    *meta.headers, ("Repr-Digest", digest.repr_digest(fill.digests()["sha-256"]))))
            committed = await asyncio.to_thread(store.commit, fill.key, fill.temp_path, meta,
                                                response_tags(meta.headers), fill.vary_record)
            ctx.forget(fill.key)
            if fill.vary_record is not None:
                ctx.vary_known.pop(fill.vary_record[0])
            if not committed:
                outcome = FillOutcome.PURGED
    except OriginError as exc:
        outcome = FillOutcome.ORIGIN_ERROR
        log.warning("fill of %s broke: %s", fill.key, exc.message)
        fill.fail()
    except StoreError as exc:
        outcome = FillOutcome.STORE_ERROR
        ctx.metrics.store_errors.labels("fill").inc()
        log.warning("fill of %s could not be stored: %s", fill.key, exc.message)
        if not whole:  # else the body is whole and verified, only its commit failed
            fill.fail()
    except asyncio.CancelledError:
        outcome = FillOutcome.INCOMPLETE
        fill.fail()
        raise
    finally:
        committed_ok = outcome is FillOutcome.COMMITTED
        origin.release() if committed_ok else origin.close()
        if not committed_ok:
            store.discard_temp(fill.temp_path)
        # Readers in this process get the held-back end (or are cut) only now that the entry
        # is in the store: their next request finds it.
        fill.settle(whole)
        if fill.claim is not None:
            with contextlib.suppress(OSError):
                fill.claim.publish({"done": True, "ok": committed_ok,
                                    "verified": outcome not in (FillOutcome.MISMATCH,
                                                             FillOutcome.DIGEST_MISMATCH),
                                    "size": fill.received})
            fill.claim.release()
        if ctx.fills.get(fill.key) is fill:
            del ctx.fills[fill.key]
        fill.close()
        ctx.metrics.fills.labels(outcome.value).inc()


def resume_from_origin(ctx: Context, request: web.BaseRequest, target: cachekey.Target,
                       fill: FillView) -> deliver.Resume:
    """For a reader of another process's fill whose disk failed: the rest of the body from
    the origin, as a range of the same representation (`If-Range` on its strong validator),
    so every client of a fill gets the whole response in every worker. Anything else (no
    strong validator, no 206 for exactly that range, the origin failing) cuts the response
    short, as a broken fill does."""
    async def rest(offset: int, end: int | None) -> AsyncIterator[bytes]:
        etag = get(fill.meta.headers, "etag")
        validator = etag if etag is not None and not etag.startswith("W/") else get(
            fill.meta.headers, "last-modified")
        if validator is None:
            raise deliver.Truncated("no strong validator to resume with")
        fields = [*forward_headers(ctx, request, for_fill=True),
                  ("Range", f"bytes={offset}-{'' if end is None else end - 1}"),
                  ("If-Range", validator)]
        try:
            origin = await ctx.origin_request("GET", target, fields)
        except OriginError as exc:
            raise deliver.Truncated(f"resume failed: {exc.message}") from exc
        try:
            content_range = get(origin.headers, "content-range") or ""
            if origin.status != 206 or not content_range.startswith(f"bytes {offset}-"):
                raise deliver.Truncated("the origin did not resume the same representation")
            async for chunk in origin.iter_chunks():
                yield chunk
        except OriginError as exc:
            raise deliver.Truncated(f"resume broke: {exc.message}") from exc
        finally:
            origin.close()
    return rest


def _spilled(ctx: Context, fill: Fill) -> None:
    """The temp file failed mid-fill (disk full, I/O error, read-only): keep serving the
    clients attached from memory, commit nothing, tell followers elsewhere to pass."""
    ctx.metrics.store_errors.labels("fill").inc()
    log.warning("fill of %s cannot be written (%s): relaying it uncached", fill.key,
                fill.spill_error)
    fill.mark_spilled()
    if fill.claim is not None:
        with contextlib.suppress(OSError):
            fill.claim.publish({"spilled": True, "key": fill.key})
