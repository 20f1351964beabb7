"""The request lifecycle driver: admit -> key -> look up -> decide -> origin -> deliver -> record.

Rule: this module asks `policy` what to do and performs the I/O the answer names; it parses no
header itself. Every request ends with exactly one CacheStatus in `request[STATUS_KEY]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import assert_never

import aiohttp
from aiohttp import HttpVersion11, web
from cachetools import TTLCache
from multidict import CIMultiDict

from proxy import deliver
from proxy.callout import AuthCallout
from proxy.config import Config, split_csv
from proxy.errors import AuthError, BadRequest, OriginError, ProxyError, StoreError
from proxy.memo import Memo
from proxy.metrics import Metrics
from proxy.origin import OriginClient, OriginResponse
from proxy.policy import cachekey, decide, forward, respond, revalidate, session, tokens, vary
from proxy.policy.access import Access, AccessRules
from proxy.policy.bans import Ban, BanKind, parse_tags
from proxy.policy.freshness import Heuristic, StoredResponse, current_age
from proxy.policy.headers import Headers, end_to_end, get
from proxy.status import CacheStatus
from proxy.store.budget import NoRoom
from proxy.store.claims import Claim
from proxy.store.fill import Fill, FillView, RemoteFill
from proxy.store.front import FrontCache, FrontEntry
from proxy.store.index import CachedBody, Store, meta_dict, meta_from_dict
from proxy.store.retention import hold

log = logging.getLogger(__name__)

STATUS_KEY = web.RequestKey("cache_status", CacheStatus)
KEY_KEY = web.RequestKey("cache_key", str)
TARGET_KEY = web.RequestKey("target", cachekey.Target)
VERDICT_KEY: web.RequestKey[tokens.Verdict] = web.RequestKey("token_verdict")
# Set once a protected object may be sent to this request (valid token or callout allow).
GRANTED_KEY: web.RequestKey[bool] = web.RequestKey("access_granted")
# Granted by the auth callout: the answer must not be stored by shared caches in front.
SESSION_GRANTED_KEY: web.RequestKey[bool] = web.RequestKey("session_granted")

# The TCP peer, when the client's address (`request.remote`) was read from a trusted proxy's
# forwarding header (see `client_request_factory`).
PEER_KEY: web.RequestKey[str | None] = web.RequestKey("peer")

# Request fields that make an answer more than "the stored 200 as it is".
_PLAN_FIELDS = ("range", "if-none-match", "if-modified-since", "if-match",
                "if-unmodified-since")
# Never forwarded on a fill or revalidation: we ask for the whole current representation and
# evaluate the client's own conditions and ranges against it ourselves.
_CLIENT_ONLY = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"}
)


def _request_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    return list(request.headers.items())


class Proxy:
    def __init__(
        self,
        config: Config,
        store: Store | None,
        origin: OriginClient,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.origin = origin
        self.metrics = metrics
        self.clock = clock
        self.heuristic = Heuristic(config.cache.heuristic_fraction,
                                   config.cache.heuristic_max_seconds)
        self.via = config.server.via
        self.fills: dict[str, Fill] = {}
        # In-process collapsing: the first miss for a key parks a future here while it waits
        # for the origin's headers; others await it and join the resulting fill.
        self._pending: dict[str, asyncio.Future[Fill | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.streams: dict[str, set[Stream]] = {}
        self._refreshing: set[str] = set()
        self._vary_known: Memo[str, tuple[str, ...] | None] = Memo(100_000, ttl_seconds=1.0)
        # Request target text -> its normalised target (a pure function of the text).
        self._targets: Memo[str, cachekey.Target] = Memo(10_000)
        self.lifetime_rules = config.cache.lifetime_overrides()
        # Hit-for-pass: keys whose last answer was not storable go straight to the origin for a
        # while instead of queueing behind a claim (Varnish's hit-for-pass).
        self.pass_keys: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=30)
        memory = config.cache
        self.front = FrontCache(memory.memory_bytes, memory.memory_body_max_bytes,
                                memory.memory_ttl_seconds) if memory.memory_bytes else None
        auth = config.auth
        parsed_keys = tokens.parse_keys(auth.keys)
        self.keys: dict[str, bytes] = parsed_keys if isinstance(parsed_keys, dict) else {}
        self.token_params = tokens.PARAMS if self.keys else frozenset()
        self.callout = AuthCallout(auth, origin.base, metrics, clock) if auth.callout_url else None
        # With the callout, the session fields go to the auth endpoint only: never to the
        # origin on a GET or HEAD (inside a fill another session will read, or not).
        self._session_fields = frozenset(
            name.lower() for name in (self.callout.forward if self.callout else ()))
        self._fill_strip = _CLIENT_ONLY | self._session_fields
        # With origin.forward_host the origin may answer per Host: every response then varies
        # on it, as if it said `Vary: Host` (nginx keys on $host for the same reason).
        self._implicit_vary: tuple[str, ...] = ("host",) if config.origin.forward_host else ()
        self.trusted_proxies = forward.parse_networks(config.server.trusted_networks())
        # Never per-client, never hidden by a `Connection` field: the access policy.
        self._shared = frozenset({auth.access_header.lower()})
        self._bans_seen: object = None
        self._forgotten_at = -1.0
        self.access = AccessRules.build(split_csv(auth.protected_prefixes),
                                        split_csv(auth.public_prefixes), auth.access_header)
        self.purge_networks = forward.parse_networks(config.admin.networks_text())
        self.hidden = frozenset() if config.cache.expose_surrogate_keys else frozenset(
            TAG_HEADERS)

    # -- entry -----------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            if forward.carries_body(request.headers.items()):
                # Refused rather than drained: a body on a cacheable read has no meaning (RFC
                # 9110 §9.3.1) and is the classic way to desynchronise the next hop.
                error = BadRequest("a GET or HEAD request must not carry a body")
                error.reason = "body_not_allowed"
                raise error
            return await self._cacheable(request)
        if request.method == "PURGE":
            return await self._purge(request)
        return await self._pass(request)

    async def _purge(self, request: web.BaseRequest) -> web.StreamResponse:
        """`PURGE /path`: drop one URL, from an allowed network or with the admin token."""
        from proxy.admin import apply_purge, authorized, ban_json, node_name

        request[STATUS_KEY] = CacheStatus.PASS
        # Signed-URL parameters are not part of any key: purging a signed URL purges its
        # object, and the signature reaches neither the ban table nor the logs.
        target = self._target(request, tokens.PARAMS)
        request[KEY_KEY] = target.key
        allowed = authorized(self.config, request.headers.get("Authorization")) or (
            forward.in_networks(request.remote, self.purge_networks))
        if not allowed:
            raise AuthError("PURGE needs an allowed network or the admin token",
                            status=403, reason="purge_forbidden")
        if self.store is None:
            raise StoreError("the cache directory is not usable")
        soft = request.headers.get("X-Purge-Soft", "").lower() in ("1", "true", "yes")
        wait = request.headers.get("X-Purge-Wait", "").lower() in ("1", "true", "yes")
        if self.config.cluster.redis_url and self.config.admin.token:
            # The cluster connection lives with the admin listener: hand the purge to it, so
            # it reaches every node exactly as `POST /purge {"url": ...}` does.
            forwarded = await self._purge_via_admin(target.key, soft, wait)
            if forwarded is not None:
                return forwarded
        ban = await apply_purge(self.store, BanKind.EXACT, target.key, soft, self.clock)
        answer = ban_json(ban, node_name(self.config))
        if self.config.cluster.redis_url:
            answer["published"] = False  # applied here only: the admin listener was not reached
        return web.json_response(answer)

    async def _purge_via_admin(self, key: str, soft: bool, wait: bool
                               ) -> web.Response | None:
        host, _, port = self.config.server.admin_listen.rpartition(":")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        timeout = aiohttp.ClientTimeout(total=self.config.cluster.wait_timeout_seconds + 5.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                    f"http://{host}:{port}/purge", json={"url": key, "soft": soft, "wait": wait},
                    headers={"Authorization": f"Bearer {self.config.admin.token}"}) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body,
                                    content_type="application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("PURGE %s: admin listener not reached (%s): applying it here only",
                        key, exc.__class__.__name__)
            return None

    def _target(self, request: web.BaseRequest, strip: frozenset[str] = frozenset()
                ) -> cachekey.Target:
        raw = request.raw_path.partition("#")[0]
        path, _, query = raw.partition("?")
        target = cachekey.normalise_target(
            path, query, strip_params=strip, max_length=self.config.server.max_url_bytes
        )
        if isinstance(target, cachekey.Rejected):
            error = BadRequest(f"rejected request target: {target.reason}")
            error.status = target.status
            error.reason = target.reason
            raise error
        return target

    def _forward_headers(
        self, request: web.BaseRequest, *, for_fill: bool, body_length: int | None = None
    ) -> list[tuple[str, str]]:
        """The fields sent to the origin for `request` (framing, unkeyed and, for reads,
        session fields never among them: `policy/forward.py`)."""
        if for_fill:
            strip = self._fill_strip
        elif request.method in ("GET", "HEAD"):
            strip = self._session_fields
        else:
            strip = frozenset()
        peer = request.get(PEER_KEY, request.remote)
        return forward.origin_request_fields(
            _request_headers(request), peer=peer, via=self.via, strip=strip,
            peer_trusted=forward.in_networks(peer, self.trusted_proxies),
            body_length=body_length)

    # -- non-cacheable methods ---------------------------------------------------------------

    async def _pass(self, request: web.BaseRequest) -> web.StreamResponse:
        target = self._target(request, self.token_params)
        request[STATUS_KEY] = CacheStatus.PASS
        request[TARGET_KEY] = target
        if self.access.by_rule(target.path) is Access.PROTECTED:
            # Every method, before any origin work: an origin view that answers POST or
            # PROPFIND with the item would otherwise hand it out tokenless.
            await self._authorize(request, ())
        data = request.content if request.body_exists else None
        # The body is framed by what aiohttp's parser read: its length, or chunked when the
        # client sent it chunked (never the client's own framing fields).
        length = request.content_length if data is not None else None
        origin = await self._origin_request(
            request.method, target,
            self._forward_headers(request, for_fill=False, body_length=length), data=data
        )
        try:
            await self._invalidate(request, target, origin)
            return await self._relay(request, origin, CacheStatus.PASS)
        finally:
            origin.release()

    async def _invalidate(self, request: web.BaseRequest, target: cachekey.Target,
                          origin: OriginResponse) -> None:
        """A successful unsafe request makes our copies of what it changed unusable."""
        if self.store is None:
            return
        for path in decide.invalidated_by(request.method, origin.status, target.key,
                                          origin.headers, self.origin.base.raw_authority):
            parts = path.partition("?")
            normal = cachekey.normalise_target(parts[0], parts[2], strip_params=self.token_params)
            if isinstance(normal, cachekey.Rejected):
                continue
            self._forget(normal.key)
            await self._store_call("invalidate", self.store.add_ban, BanKind.EXACT,
                                   normal.key, soft=False, now=self.clock())

    # -- GET / HEAD ------------------------------------------------------------------------

    async def _cacheable(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._lookup_and_serve(request)
        except deliver.FillClosed:
            # The fill we joined completed meanwhile: its entry is in the store now.
            return await self._lookup_and_serve(request)

    async def _lookup_and_serve(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        found, memo = self._targets.get(raw)
        if not found or memo is None:
            memo = self._target(request, self.token_params)
            if len(raw) <= 512:  # bounded memory: 10,000 short targets at most
                self._targets.put(raw, memo)
        target = self._with_variant(memo, request)
        key = target.key
        request[KEY_KEY] = target.url_key
        request[TARGET_KEY] = target
        if self.access.by_rule(target.path) is Access.PROTECTED:
            await self._authorize(request, ())  # configured as protected: refuse before any work
        if self.front is not None:
            entry = self.front.get(key)
            if entry is not None:
                now = self.clock()
                ban = self._ban_for(key, entry.meta)
                decision = decide.on_request_facts(entry.facts, request.headers.items(), now)
                if ban is None and isinstance(decision, decide.Serve):
                    if self.store is not None:
                        self.store.touch(entry.rowid, now)
                    return await self._serve_memory(request, entry, decision.age_seconds)
                self.front.drop(key)  # stale, purged or soft-purged: the disk path decides
        cached = self._lookup(key)
        if cached is None:
            return await self._collapsed(request, target, None, CacheStatus.MISS)
        ban = self._ban_for(key, cached.meta)
        if ban is not None and not ban.soft:
            cached.close()  # purged: the sweep will delete it; to us it is already gone
            return await self._collapsed(request, target, None, CacheStatus.MISS)
        if ban is not None:
            cached.meta = dataclasses.replace(cached.meta, invalidated=True)
        try:
            decision = decide.on_request_facts(self._facts(key, cached.meta),
                                               _request_headers(request), self.clock())
            match decision:
                case decide.Serve(age_seconds=age):
                    entry = self._remember(cached) if ban is None else None
                    if entry is not None:
                        return await self._serve_memory(request, entry, age)
                    return await self._serve_stored(request, cached, age, CacheStatus.HIT)
                case decide.Revalidate():
                    return await self._collapsed(request, target, cached, CacheStatus.EXPIRED)
                case decide.Fetch():
                    return await self._collapsed(request, target, None, CacheStatus.EXPIRED)
                case decide.ServeStale(age_seconds=age):
                    self._refresh_later(request, target, cached)
                    return await self._serve_stored(request, cached, age, CacheStatus.UPDATING)
                case _:
                    assert_never(decision)
        finally:
            cached.close()

    def _with_variant(self, target: cachekey.Target, request: web.BaseRequest
                      ) -> cachekey.Target:
        """If responses for this URL vary, the target of this request's variant. The names
        are remembered per process for a second: a stale answer costs a fetch, never a wrong
        variant (variants are only ever stored under their own key)."""
        url_key = target.url_key
        known, names = self._vary_known.get(url_key)
        if not known:
            try:
                names = self.store.vary_names(url_key) if self.store is not None else None
            except StoreError:
                names = None
            self._vary_known.put(url_key, names)
        if self._implicit_vary:
            names = tuple(sorted({*(names or ()), *self._implicit_vary}))
        if not names:
            return target
        return dataclasses.replace(target, variant=vary.variant(names, self._vary_fields(request)))

    def _vary_names(self, response: Headers) -> tuple[str, ...]:
        """The request fields a response varies on (its Vary, plus Host with forward_host)."""
        names = decide.vary_names(response)
        if self._implicit_vary:
            names = tuple(sorted({*names, *self._implicit_vary}))
        return names

    def _vary_fields(self, request: web.BaseRequest) -> Headers:
        """The request fields a variant is selected by: as the origin sees them on a fill,
        so fields never sent on fills (the callout's session fields, the unkeyed forwarding
        family) count as absent: a session secret never enters a cache key, sessions share
        the one anonymous variant, and a variant is never named by a value the origin did
        not see."""
        return [(k, v) for k, v in end_to_end(request.headers.items())
                if (name := k.lower()) not in self._session_fields
                and not forward.unkeyed(name)]

    def _still_storable(self, meta: StoredResponse, sent: Headers,
                        target: cachekey.Target) -> bool:
        """May a 304-updated response stay stored? Not if the 304 made it private or
        no-store (RFC 9111 §3): the stored copy then keeps its old fields."""
        return decide.storable("GET", meta.status, sent, meta.headers, meta.response_time,
                               self._lifetime_rule(target.path))

    def _reusable(self, fill: FillView, request: web.BaseRequest) -> bool:
        """May this request be answered from the response `fill` is storing? Only as a
        stored response could (RFC 9111 §4): a request with no-cache, max-age=0 or
        min-fresh, or a response that is no-cache or stale on arrival, is not served from a
        fill, for which the window is the whole transfer."""
        decision = decide.on_request_facts(self._facts(fill.key, fill.meta),
                                           _request_headers(request), self.clock())
        return isinstance(decision, decide.Serve)

    def _fill_matches(self, fill: FillView, request: web.BaseRequest) -> bool:
        """May this request be answered from `fill`? Not if the fill's response varies on a
        field whose value in this request differs."""
        if not fill.vary_names:
            return True
        return vary.variant(fill.vary_names, self._vary_fields(request)) == fill.variant

    def _facts(self, key: str, meta: StoredResponse) -> decide.Facts:
        path = key.split("?", 1)[0]
        protected = self.access.for_object(path, meta.headers) is Access.PROTECTED
        recheck = self.config.auth.access_recheck_seconds if protected else None
        return decide.facts(meta, self.heuristic, recheck, self._lifetime_rule(path),
                            self.config.cache.stale_if_error_seconds)

    def _lifetime_rule(self, path: str) -> float | None:
        for prefix, seconds in self.lifetime_rules:
            if path.startswith(prefix):
                return seconds
        return None

    def _usable_on_error(self, request: web.BaseRequest, key: str, cached: CachedBody) -> bool:
        return decide.usable_on_error(self._facts(key, cached.meta), _request_headers(request),
                                      self.clock())

    async def _serve_stale_on_error(self, request: web.BaseRequest, cached: CachedBody
                                    ) -> web.StreamResponse:
        """The origin failed and the stale copy is allowed to stand in (stale-if-error)."""
        age = current_age(cached.meta, self.clock())
        return await self._serve_stored(request, cached, age, CacheStatus.STALE)

    def _refresh_later(self, request: web.BaseRequest, target: cachekey.Target,
                       cached: CachedBody) -> None:
        """stale-while-revalidate: one background revalidation per key, across processes
        (the claim), started now; the stale answer does not wait for it."""
        if self.store is None or target.key in self._refreshing:
            return
        try:
            claim = self.store.claims.try_claim(target.key)
        except OSError:
            return
        if claim is None:
            return  # another request or process is already refreshing or filling it
        headers = self._forward_headers(request, for_fill=True) + (
            revalidate.conditional_fields(cached.meta.headers))
        self._refreshing.add(target.key)
        task = asyncio.create_task(self._background_refresh(
            target, headers, cached.meta, cached.filename, claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background_refresh(
        self, target: cachekey.Target, headers: list[tuple[str, str]], stale: StoredResponse,
        filename: str, claim: Claim,
    ) -> None:
        key = target.key
        fill: Fill | None = None
        try:
            request_time = self.clock()
            origin = await self._origin_request("GET", target, headers)
            response_time = self.clock()
            if origin.status == 304:
                origin.release()
                merged = revalidate.merge_304(stale.headers, origin.headers, self._shared)
                meta = StoredResponse(stale.status, merged.stored, request_time, response_time,
                                      stale.body_size)
                if self._still_storable(meta, headers, target):
                    await self._store_call("refresh", self._refresh, key, filename, meta)
            elif decide.storable("GET", origin.status, headers, origin.headers,
                                 response_time, self._lifetime_rule(target.path)) and (
                    self._vary_names(origin.headers) == fill_names(target)
            ) and self.store is not None:
                meta = StoredResponse(origin.status,
                                      revalidate.for_storage(origin.headers,
                                                             self._shared).stored,
                                      request_time, response_time, origin.content_length or 0)
                fill = self._open_fill(claim, target, meta, origin.content_length)
                fill.background = True
                self.fills[key] = fill
                await self._run_fill(fill, origin)  # releases the claim when it ends
            else:
                origin.close()
        except (ProxyError, OSError) as exc:
            log.info("background refresh of %s failed: %s", key, exc)
        finally:
            if fill is None or fill.claim is not claim:
                claim.release()
            self._refreshing.discard(key)

    async def _authorize(self, request: web.BaseRequest, headers: Headers) -> None:
        """Refuse (401/403/503) unless the object is public, the request carries a valid
        token, or the auth callout allows its session. Applied wherever an object's bytes or
        headers are about to be sent, whatever the method."""
        target = request.get(TARGET_KEY)
        if target is None:
            return
        if self.access.for_object(target.path, headers) is Access.PUBLIC:
            return
        if request.get(GRANTED_KEY):
            return
        verdict = request.get(VERDICT_KEY)
        if verdict is None:
            verdict = self._verify(request, target)
            request[VERDICT_KEY] = verdict
        if isinstance(verdict, tokens.Allowed):
            request[GRANTED_KEY] = True
            return
        if self.callout is not None:
            fields = self.callout.credentials(request.headers.items())
            if fields:
                self._forget_answers_after_purge()
                outcome = await self.callout.check(fields, target.url_key, request.method)
                if outcome is session.Outcome.ALLOW:
                    request[GRANTED_KEY] = True
                    request[SESSION_GRANTED_KEY] = True
                    return
                if outcome is session.Outcome.DENY:
                    self.metrics.auth_denied.labels("session_denied").inc()
                    raise AuthError("session_denied", status=403, reason="session_denied")
                self.metrics.auth_denied.labels("auth_unavailable").inc()
                raise AuthError("auth_unavailable", reason="auth_unavailable",
                                status=self.config.auth.callout_failure_status)
        self.metrics.auth_denied.labels(verdict.reason.value).inc()
        raise AuthError(verdict.reason.value, status=verdict.reason.status,
                        reason=verdict.reason.value)

    def _forget_answers_after_purge(self) -> None:
        """A purge (from any worker or node) may carry an access change: drop remembered
        callout answers when the shared ban table has moved since we last looked. At most
        once a second (any client's successful PUT or DELETE also moves it, and must not be
        a way to keep every answer forgotten); a later move is picked up on the next call."""
        if self.store is None or self.callout is None:
            return
        try:
            index = self.store.bans()
        except StoreError:
            return
        if index is self._bans_seen:
            return
        now = time.monotonic()
        if self._bans_seen is not None:
            if now - self._forgotten_at < 1.0:
                return
            self.callout.forget()
            self._forgotten_at = now
        self._bans_seen = index

    def _verify(self, request: web.BaseRequest, target: cachekey.Target) -> tokens.Verdict:
        raw_query = request.raw_path.partition("?")[2].partition("#")[0]
        fields = tokens.token_fields(raw_query)
        cookie_name = self.config.auth.cookie_name
        if not fields and cookie_name:
            cookie = request.cookies.get(cookie_name)
            if cookie:
                fields = tokens.token_fields(cookie)
        return tokens.verify(fields, target.path, request.remote, self.clock(), self.keys,
                             self.config.auth.clock_skew_seconds)

    def _remember(self, cached: CachedBody) -> FrontEntry | None:
        """Copy a small body into the memory tier (from the page cache, one pread)."""
        front = self.front
        if front is None or cached.size > front.max_body_bytes:
            return None
        try:
            body = os.pread(cached.file.fileno(), cached.size, 0)
        except OSError:
            return None
        if len(body) != cached.size:
            return None
        # Built with an Age (so any stored Age is dropped), then without it: `_serve_memory`
        # adds the current one per request.
        plan = respond.plan("GET", (), cached.meta.status, cached.meta.headers, cached.size, 0)
        hit_headers = tuple((k, v) for k, v in deliver.build_headers(
            plan.headers, CacheStatus.HIT, self.via, self.hidden).items() if k.lower() != "age")
        wire = None
        # Without Date aiohttp adds one per response; 204 and 304 have no Content-Length.
        if get(hit_headers, "date") is not None and plan.status not in (204, 304):
            wire = deliver.wire_head(plan.status, _reason(plan.status), hit_headers, len(body))
        entry = FrontEntry(cached.key, cached.filename, cached.rowid, cached.meta,
                           self._facts(cached.key, cached.meta), body, hit_headers, wire)
        front.put(entry)
        return entry

    async def _serve_memory(self, request: web.BaseRequest, entry: FrontEntry, age: float
                            ) -> web.StreamResponse:
        await self._authorize(request, entry.meta.headers)
        request[STATUS_KEY] = CacheStatus.HIT
        headers = request.headers
        if request.method == "GET" and not any(name in headers for name in _PLAN_FIELDS) and (
                SESSION_GRANTED_KEY not in request):
            # The common case: a plain GET of a fresh object. Headers were built once.
            request[deliver.BYTES_KEY] = len(entry.body)
            if entry.wire_head is not None and request.version == HttpVersion11 and (
                    request.keep_alive):
                age_line = b"Age: %d\r\n\r\n" % max(0, math.floor(age))
                return deliver.WireResponse(entry.meta.status,
                                            (entry.wire_head, age_line, entry.body))
            response = web.Response(status=entry.meta.status, headers=CIMultiDict(
                (*entry.hit_headers, ("Age", str(max(0, math.floor(age)))))), body=entry.body)
            return response
        plan = respond.plan(request.method, headers.items(), entry.meta.status,
                            entry.meta.headers, len(entry.body), age)
        fields = self._client_headers(request, plan.headers, CacheStatus.HIT)
        if not plan.send_body:
            if plan.content_length is not None and plan.status not in (304,):
                fields["Content-Length"] = str(plan.content_length)
            return web.Response(status=plan.status, headers=fields)
        length = len(entry.body) if plan.length is None else plan.length
        body = entry.body[plan.offset:plan.offset + length]
        request[deliver.BYTES_KEY] = len(body)
        return web.Response(status=plan.status, headers=fields, body=body)

    def _client_headers(self, request: web.BaseRequest, fields: Sequence[tuple[str, str]],
                        status: CacheStatus) -> CIMultiDict[str]:
        headers = deliver.build_headers(fields, status, self.via, self.hidden)
        if SESSION_GRANTED_KEY in request:
            value = session.private_cache_control(headers.getall("Cache-Control", []))
            headers.popall("Cache-Control", None)
            headers["Cache-Control"] = value
        return headers

    def _forget(self, key: str) -> None:
        if self.front is not None:
            self.front.drop(key)

    def _ban_for(self, key: str, meta: StoredResponse) -> Ban | None:
        if self.store is None:
            return None
        try:
            index = self.store.bans()
        except StoreError as exc:
            self.metrics.store_errors.labels("bans").inc()
            log.warning("ban read failed: %s", exc.message)
            return None
        if not index.size:
            return None
        tags = response_tags(meta.headers) if index.tags else ()
        return index.match(key, tags, meta.response_time)

    def _purged(self, fill: FillView) -> bool:
        ban = self._ban_for(fill.key, fill.meta)
        return ban is not None and not ban.soft

    def _lookup(self, key: str) -> CachedBody | None:
        if self.store is None:
            return None
        try:
            return self.store.lookup(key)
        except StoreError as exc:
            self.metrics.store_errors.labels("lookup").inc()
            log.warning("store lookup failed: %s", exc)
            return None

    async def _serve_stored(
        self, request: web.BaseRequest, cached: CachedBody, age: float, status: CacheStatus,
        client_only: Headers = (),
    ) -> web.StreamResponse:
        fields = (*cached.meta.headers, *client_only) if client_only else cached.meta.headers
        await self._authorize(request, fields)
        request[STATUS_KEY] = status
        plan = respond.plan(request.method, _request_headers(request), cached.meta.status,
                            fields, cached.size, age)
        headers = self._client_headers(request, plan.headers, status)
        with self._streaming(request, cached.key, cached.meta):
            return await deliver.send_file(request, plan, cached.file, headers)

    async def _serve_current(self, request: web.BaseRequest, key: str) -> web.StreamResponse | None:
        """Serve whatever entry is in the store now (someone else just filled or refreshed it)."""
        cached = self._lookup(key)
        if cached is None:
            return None
        decision = decide.on_request_facts(self._facts(key, cached.meta),
                                           _request_headers(request), self.clock())
        if self._ban_for(key, cached.meta) is not None or not isinstance(decision,
                                                                         decide.Serve):
            cached.close()  # purged, or not usable for this request: claim and fetch
            return None
        try:
            return await self._serve_stored(request, cached, decision.age_seconds,
                                            CacheStatus.HIT)
        finally:
            cached.close()

    async def _collapsed(
        self,
        request: web.BaseRequest,
        target: cachekey.Target,
        cached: CachedBody | None,
        status: CacheStatus,
    ) -> web.StreamResponse:
        """Fetch or revalidate `target` so that, across every process, one request at a time
        goes to the origin for it; everyone else follows that request's outcome."""
        key = target.key
        fill = self.fills.get(key)
        if fill is not None and fill.closed:
            fill = None  # ended meanwhile: its entry (if committed) is in the store
        if fill is not None and (fill.spill_error is not None
                                 or not self._fill_matches(fill, request)
                                 or not self._reusable(fill, request)):
            # The disk failed under this fill (it relays to its own readers only), it is
            # another variant than this request's, or this request may not reuse it.
            return await self._fetch_uncached(request, target, CacheStatus.PASS)
        if fill is not None and not self._purged(fill):
            return await self._serve_fill(request, fill, CacheStatus.HIT)
        if fill is not None:
            # A purge covers the fill in progress: it will not be committed; meanwhile new
            # requests must not get its (superseded) bytes.
            return await self._fetch_uncached(request, target, CacheStatus.PASS)
        if request.method == "HEAD" and cached is None:
            # A HEAD must not start a multi-GB fill: ask the origin for headers only.
            return await self._fetch_uncached(request, target, status)
        if self.store is None or key in self.pass_keys:
            return await self._fetch_uncached(request, target, CacheStatus.PASS)
        pending = self._pending.get(key)
        if pending is not None:
            fill = await asyncio.shield(pending)
            if fill is not None and fill.joinable and self._fill_matches(fill, request) and (
                    self._reusable(fill, request)):
                return await self._serve_fill(request, fill, CacheStatus.HIT)
            served = await self._serve_current(request, key)
            if served is not None:
                return served
        claim = None
        for _ in range(3):
            try:
                claim = self.store.claims.try_claim(key)
            except OSError as exc:
                # Read-only, full or vanished cache directory: serve from the origin.
                self.metrics.store_errors.labels("claim").inc()
                log.warning("cannot claim %s: %s", key, exc)
                return await self._fetch_uncached(request, target, CacheStatus.PASS)
            if claim is not None:
                break
            # Another process (or request) holds the claim. Each follower follows on its
            # own: parking siblings on a follower would make them wait for its whole body.
            followed = await self._follow(request, target)
            if followed is not None:
                return followed
        if claim is None:
            return await self._fetch_uncached(request, target, CacheStatus.PASS)
        # Registered only now that we hold the claim, and with no await since the check
        # above, so in-process requests for the key park on the one that goes to the origin.
        future: asyncio.Future[Fill | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            try:
                return await self._as_claimant(request, target, cached, status, claim, future)
            finally:
                if not claim.owned_by_fill:  # else the fill releases it when its body ends
                    claim.release()
        finally:
            if not future.done():
                future.set_result(None)
            if self._pending.get(key) is future:
                del self._pending[key]

    async def _as_claimant(
        self,
        request: web.BaseRequest,
        target: cachekey.Target,
        cached: CachedBody | None,
        status: CacheStatus,
        claim: Claim,
        future: asyncio.Future[Fill | None],
    ) -> web.StreamResponse:
        key = target.key
        current = self._lookup(key)
        if current is not None and self._ban_for(key, current.meta) is not None:
            current.close()  # purged (or soft-purged): not a substitute for asking the origin
            current = None
        if current is not None:
            # Another process may have committed or refreshed it between our lookup and our
            # claim: serve that only if it is new to us and usable as it is now (fresh for this
            # request); a stale entry is what we are here to replace.
            replaced = cached is None or current.filename != cached.filename or (
                current.meta.response_time > cached.meta.response_time)
            decision = decide.on_request_facts(self._facts(key, current.meta),
                                               _request_headers(request), self.clock())
            if replaced and isinstance(decision, decide.Serve):
                _hand_over(claim, future)
                try:
                    return await self._serve_stored(request, current, decision.age_seconds,
                                                    CacheStatus.HIT)
                finally:
                    current.close()
            current.close()
        headers = self._forward_headers(request, for_fill=True)
        if cached is not None:
            headers += revalidate.conditional_fields(cached.meta.headers)
        request_time = self.clock()
        try:
            origin = await self._origin_request("GET", target, headers)
        except OriginError:
            if cached is not None and self._usable_on_error(request, key, cached):
                _hand_over(claim, future)
                return await self._serve_stale_on_error(request, cached)
            raise
        if origin.status >= 500 and cached is not None and self._usable_on_error(
                request, key, cached):
            origin.release()
            _hand_over(claim, future)
            return await self._serve_stale_on_error(request, cached)
        if origin.status == 304 and cached is not None:
            origin.release()
            merged = revalidate.merge_304(cached.meta.headers, origin.headers, self._shared)
            meta = StoredResponse(
                status=cached.meta.status,
                headers=merged.stored,
                request_time=request_time,
                response_time=self.clock(),
                body_size=cached.size,
            )
            if self._still_storable(meta, headers, target):
                await self._store_call("refresh", self._refresh, key, cached.filename, meta)
            _hand_over(claim, future)
            cached.meta = meta
            age = current_age(meta, self.clock())
            # Per-client fields of the 304 (Set-Cookie...) go to this client only.
            return await self._serve_stored(request, cached, age, CacheStatus.REVALIDATED,
                                            merged.client_only)
        if origin.status in (404, 410) and cached is not None and self.store is not None:
            # Deleted at the origin: a ban (not a local delete) so every worker's memory tier
            # and, in strict mode, every running stream of it learn it at once.
            self._forget(key)
            await self._store_call("ban", self.store.add_ban, BanKind.EXACT, key, soft=False,
                                   now=self.clock())
        return await self._from_origin(request, target, origin, headers, request_time, status,
                                       future, claim)

    async def _follow(
        self, request: web.BaseRequest, target: cachekey.Target
    ) -> web.StreamResponse | None:
        """Another process holds the claim: serve its fill, or what it stored, once it is
        there. None means the claim was released with nothing to serve (try again)."""
        assert self.store is not None
        claims = self.store.claims
        key = target.key
        timeouts = self.config.origin
        deadline = time.monotonic() + timeouts.connect_timeout_seconds + (
            timeouts.read_timeout_seconds)
        while time.monotonic() < deadline:
            if not claims.is_held(key):
                return await self._serve_current(request, key)
            info = claims.read_meta(key)
            if info is not None and not info.get("done"):
                if info.get("pass") or info.get("spilled"):
                    return await self._fetch_uncached(request, target, CacheStatus.PASS)
                try:
                    handle = io.FileIO(claims.part_path(key, info), "r")
                    hold(handle.fileno())
                except FileNotFoundError:
                    await asyncio.sleep(0.005)  # committed meanwhile: the claim goes next
                    continue
                remote = RemoteFill(claims, key, meta_from_dict(info["meta"]),
                                    info.get("expected"), handle)
                remote.vary_names = tuple(info.get("vary_names", ()))
                remote.variant = str(info.get("variant", ""))
                if self._purged(remote) or not self._fill_matches(remote, request) or (
                        not self._reusable(remote, request)):
                    remote.close()
                    return await self._fetch_uncached(request, target, CacheStatus.PASS)
                try:
                    return await self._serve_fill(request, remote, CacheStatus.HIT)
                finally:
                    remote.close()
            await asyncio.sleep(0.005)
        return await self._fetch_uncached(request, target, CacheStatus.PASS)

    def _refresh(self, key: str, filename: str, meta: StoredResponse) -> None:
        assert self.store is not None
        self._forget(key)
        self.store.refresh(key, filename, meta)

    async def _fetch_uncached(
        self, request: web.BaseRequest, target: cachekey.Target, status: CacheStatus
    ) -> web.StreamResponse:
        """Relay the origin's answer to this request as it is; nothing is stored. The client's
        own conditionals and ranges go along, so the origin can answer 304 or 206 itself."""
        origin = await self._origin_request(
            request.method, target, self._forward_headers(request, for_fill=False)
        )
        try:
            request[STATUS_KEY] = status
            return await self._relay(request, origin, status)
        finally:
            origin.release()

    def _open_fill(self, claim: Claim, target: cachekey.Target, meta: StoredResponse,
                   expected: int | None) -> Fill:
        """Start the temp file of `target`'s body under `claim` and publish what followers in
        other processes need (headers, length, key, variant, tags) before its first byte."""
        names = self._vary_names(meta.headers)
        fill = Fill(target.key, str(claim.part), meta, expected)
        try:
            fill.vary_names = names
            fill.variant = target.variant
            fill.vary_record = (target.url_key, names)
            claim.publish({"meta": meta_dict(meta), "expected": expected, "key": target.key,
                           "vary_names": list(names), "variant": target.variant,
                           "tags": list(response_tags(meta.headers)),
                           "part": claim.part.name})
        except OSError:
            fill.fail()
            fill.close()
            if self.store is not None:
                self.store.discard_temp(fill.temp_path)
            raise
        fill.claim = claim
        claim.owned_by_fill = True
        return fill

    async def _from_origin(
        self,
        request: web.BaseRequest,
        target: cachekey.Target,
        origin: OriginResponse,
        sent: Headers,
        request_time: float,
        status: CacheStatus,
        future: asyncio.Future[Fill | None],
        claim: Claim,
    ) -> web.StreamResponse:
        """A full origin response (to the request fields `sent`) is in: store it while
        serving it, or relay it."""
        response_time = self.clock()
        fill: Fill | None = None
        storable = decide.storable(  # judged on what the origin was sent (RFC 9111 §3.5)
            "GET", origin.status, sent, origin.headers, response_time,
            self._lifetime_rule(target.path),
        )
        client_only: Headers = ()
        if storable:
            split = revalidate.for_storage(origin.headers, self._shared)
            client_only = split.client_only  # this client's own fields, kept out of the store
            meta = StoredResponse(origin.status, split.stored, request_time,
                                  response_time, origin.content_length or 0)
            names = self._vary_names(origin.headers)
            # Stored under its own variant's key (RFC 9111 §4.1), side by side with others.
            stored_target = dataclasses.replace(
                target, variant=vary.variant(names, self._vary_fields(request)) if names else "")
            try:
                fill = self._open_fill(claim, stored_target, meta, origin.content_length)
            except NoRoom as exc:
                # Larger than the budget can hold now: relayed uncached, not a store failure.
                self.metrics.fills.labels("no_room").inc()
                log.info("not storing %s: %s", target.key, exc)
            except (StoreError, OSError) as exc:
                self.metrics.store_errors.labels("fill_create").inc()
                log.warning("cannot start fill: %s", exc)
        elif not decide.storable("GET", origin.status, (), origin.headers, response_time,
                                 self._lifetime_rule(target.path)):
            # Hit-for-pass, only for what the *response* makes unstorable: a request field
            # (no-store, Authorization) must not switch caching off for everyone else.
            self.pass_keys[target.key] = True
            with contextlib.suppress(OSError):
                claim.publish({"pass": True})
        if not future.done():
            future.set_result(fill)
        if self._pending.get(target.key) is future:
            # Resolved: later requests join through self.fills (or the store), never through
            # a future that outlives its fill.
            del self._pending[target.key]
        if fill is None:
            claim.release()
            try:
                request[STATUS_KEY] = CacheStatus.PASS
                return await self._relay(request, origin, CacheStatus.PASS)
            finally:
                origin.release()
        self.fills[fill.key] = fill
        task = asyncio.create_task(self._run_fill(fill, origin))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._serve_fill(request, fill, status, client_only)

    async def _serve_fill(
        self, request: web.BaseRequest, fill: FillView, status: CacheStatus,
        client_only: Headers = (),
    ) -> web.StreamResponse:
        # Counted as a reader while the callout may be asked, so the fill is not abandoned
        # as "every client left" while its only client waits for its answer.
        fields = (*fill.meta.headers, *client_only) if client_only else fill.meta.headers
        held = fill.open_reader() if self.callout is not None and isinstance(fill, Fill) else None
        try:
            await self._authorize(request, fields)  # every field this client will get
        finally:
            if held is not None:
                fill.release_reader(held)
        request[STATUS_KEY] = status
        # Age only on answers from the cache (RFC 9111 §5.1), i.e. for those joining a fill.
        age = current_age(fill.meta, self.clock()) if status is CacheStatus.HIT else None
        plan = respond.plan(request.method, _request_headers(request), fill.meta.status,
                            fields, fill.expected, age)
        headers = self._client_headers(request, plan.headers, status)
        with self._streaming(request, fill.key, fill.meta):
            return await deliver.send_fill(request, plan, fill, headers)

    async def _run_fill(self, fill: Fill, origin: OriginResponse) -> None:
        """Origin body -> temp file -> commit. Runs to the end even if every client leaves."""
        store = self.store
        assert store is not None
        outcome = "committed"
        whole = False  # the body may reach its readers whole (see Fill.settle)
        abandon_after = self.config.cache.fill_abandon_bytes
        checked = time.monotonic()
        try:
            async for chunk in origin.iter_chunks():
                spilled = fill.spill_error is not None
                fill.append(chunk)
                if (abandon_after and not fill.background and fill.readers == 0
                        and time.monotonic() - checked > 0.5):
                    checked = time.monotonic()
                    remaining = (None if fill.expected is None
                                 else fill.expected - fill.received)
                    if (remaining is None or remaining > abandon_after) and (
                            not fill.read_anywhere()):
                        outcome = "abandoned"  # every client left: spare the origin the rest
                        fill.fail()
                        break
                if fill.spill_error is not None:
                    if not spilled:
                        self._spilled(fill)
                    await fill.wait_for_room(SPILL_WINDOW_BYTES)
            if outcome == "abandoned":
                pass
            elif not fill.finish():
                outcome = "incomplete"
            elif fill.spill_error is not None:
                whole = True  # relayed whole through memory; never committed
                outcome = "store_error"
            elif not await asyncio.to_thread(fill.verify):
                # Not the file, the size or the bytes this fill wrote: never adopted, and its
                # readers, still short of the last byte, are cut short.
                outcome = "mismatch"
                self.metrics.store_errors.labels("fill_verify").inc()
                log.error("fill of %s failed its identity check: not committed", fill.key)
            else:
                whole = True
                meta = dataclasses.replace(fill.meta, body_size=fill.received)
                committed = await asyncio.to_thread(store.commit, fill.key, fill.temp_path, meta,
                                                    response_tags(meta.headers), fill.vary_record)
                self._forget(fill.key)
                if fill.vary_record is not None:
                    self._vary_known.pop(fill.vary_record[0])
                if not committed:
                    outcome = "purged"
        except OriginError as exc:
            outcome = "origin_error"
            log.warning("fill of %s broke: %s", fill.key, exc.message)
            fill.fail()
        except StoreError as exc:
            outcome = "store_error"
            self.metrics.store_errors.labels("fill").inc()
            log.warning("fill of %s could not be stored: %s", fill.key, exc.message)
            if not whole:  # else the body is whole and verified, only its commit failed
                fill.fail()
        except asyncio.CancelledError:
            outcome = "incomplete"
            fill.fail()
            raise
        finally:
            origin.release() if outcome == "committed" else origin.close()
            if outcome != "committed":
                store.discard_temp(fill.temp_path)
            # Readers in this process get the held-back end (or are cut) only now that the
            # entry is in the store: their next request finds it.
            fill.settle(whole)
            if fill.claim is not None:
                with contextlib.suppress(OSError):
                    fill.claim.publish({"done": True, "ok": outcome == "committed",
                                        "verified": outcome != "mismatch",
                                        "size": fill.received})
                fill.claim.release()
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]
            fill.close()
            self.metrics.fills.labels(outcome).inc()

    # -- shared pieces -----------------------------------------------------------------------

    def _spilled(self, fill: Fill) -> None:
        """The temp file failed mid-fill (disk full, I/O error, read-only): keep serving the
        clients attached from memory, commit nothing, tell followers elsewhere to pass."""
        self.metrics.store_errors.labels("fill").inc()
        log.warning("fill of %s cannot be written (%s): relaying it uncached", fill.key,
                    fill.spill_error)
        if fill.claim is not None:
            with contextlib.suppress(OSError):
                fill.claim.publish({"spilled": True, "key": fill.key})

    async def _origin_request(
        self, method: str, target: cachekey.Target, headers: Headers, *, data: object = None
    ) -> OriginResponse:
        try:
            response = await self.origin.request(method, target.path, target.query, headers,
                                                 data=data)
        except OriginError as exc:
            outcome = "timeout" if exc.status == 504 else "error"
            self.metrics.origin_requests.labels(outcome).inc()
            raise
        self.metrics.origin_requests.labels("ok").inc()
        return response

    async def _relay(
        self, request: web.BaseRequest, origin: OriginResponse, status: CacheStatus
    ) -> web.StreamResponse:
        await self._authorize(request, origin.headers)
        head = request.method == "HEAD" or origin.status in (204, 304) or origin.status < 200
        plan = respond.Plan(
            status=origin.status,
            headers=tuple((k, v) for k, v in origin.headers if k.lower() != "content-length"),
            offset=0,
            length=origin.content_length,
            send_body=not head,
            content_length=origin.content_length,
        )
        headers = self._client_headers(request, plan.headers, status)
        return await deliver.relay(request, plan, origin, headers)

    async def _store_call(self, operation: str, fn: Callable[..., object], *args: object,
                          **kwargs: object) -> None:
        """Best-effort store write off the event loop: failures are counted, never raised."""
        try:
            await asyncio.to_thread(fn, *args, **kwargs)
        except StoreError as exc:
            self.metrics.store_errors.labels(operation).inc()
            log.warning("store %s failed: %s", operation, exc.message)

    @contextlib.contextmanager
    def _streaming(self, request: web.BaseRequest, key: str, meta: StoredResponse
                   ) -> Iterator[None]:
        """Register a body stream for the open-streams gauge and the strict-mode auditor."""
        record = Stream(request, key, meta.response_time, self._granted(request))
        self.streams.setdefault(key, set()).add(record)
        self.metrics.open_streams.inc()
        try:
            yield
        finally:
            self.metrics.open_streams.dec()
            group = self.streams.get(key)
            if group is not None:
                group.discard(record)
                if not group:
                    del self.streams[key]

    def _granted(self, request: web.BaseRequest) -> bool:
        """May this request keep receiving the object should it become protected?"""
        if request.get(GRANTED_KEY):
            return True
        if not self.keys:
            return False
        verdict = request.get(VERDICT_KEY)
        target = request.get(TARGET_KEY)
        if verdict is None and target is not None:
            verdict = self._verify(request, target)
            request[VERDICT_KEY] = verdict
        return isinstance(verdict, tokens.Allowed)

    def audit_streams(self) -> int:
        """Strict mode: cut every running stream whose object was purged or deleted since it
        began, or became protected while the stream carries no valid token. Returns the
        number cut. Runs every second in each worker; bans and the index are shared, so a
        change learned by any worker reaches streams in all of them."""
        if not self.streams or self.store is None:
            return 0
        cut = 0
        bans = self.store.bans()
        for key, group in list(self.streams.items()):
            current = self.store.peek(key)
            path = key.split("?", 1)[0]
            for stream in list(group):
                tags = response_tags(current.headers) if current is not None else ()
                banned = bans.match(key, tags, stream.response_time)
                revoked = (current is not None and not stream.token and self.access.for_object(
                    path, current.headers) is Access.PROTECTED)
                if (banned is not None and not banned.soft) or revoked:
                    deliver.abort(stream.request)
                    group.discard(stream)
                    cut += 1
        if cut:
            self.metrics.aborted_streams.inc(cut)
        return cut

    async def start(self) -> None:
        if self.callout is not None:
            await self.callout.start()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.callout is not None:
            await self.callout.close()


@dataclasses.dataclass(eq=False)
class Stream:
    """A response streaming a cached body, as the strict-mode auditor sees it."""

    request: web.BaseRequest
    key: str
    response_time: float  # of the version it is sending
    token: bool  # was granted access (token or callout) when it began


TAG_HEADERS = ("surrogate-key", "cache-tag")
SPILL_WINDOW_BYTES = 8 * 1024 * 1024  # per relayed fill, once its disk write has failed


def response_tags(headers: Headers) -> tuple[str, ...]:
    """The purge tags an origin attached (Surrogate-Key / Cache-Tag)."""
    return parse_tags(v for k, v in headers if k.lower() in TAG_HEADERS)


def fill_names(target: cachekey.Target) -> tuple[str, ...]:
    """The Vary names a target's variant was computed with (for a refresh to keep it)."""
    if not target.variant:
        return ()
    return tuple(part.split("=", 1)[0].rstrip("!") for part in target.variant.split("\x1e"))


def _hand_over(claim: Claim, future: asyncio.Future[Fill | None]) -> None:
    """The claimant is about to serve something that is not a fill (a stored entry, a
    refreshed one, a stale one): let others go before its body, which may take hours."""
    claim.release()
    if not future.done():
        future.set_result(None)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
