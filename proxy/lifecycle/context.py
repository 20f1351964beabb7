"""The lifecycle's long-lived state (one per worker) and the small I/O helpers every path uses.

Rule: the only state that outlives a request lives here: running fills, in-process pending
claims, background tasks, open streams, memos, hit-for-pass keys, the memory tier. Store calls
that may fail are best-effort here (counted, logged, never raised); the origin is asked only
through `origin_request`, which counts every outcome.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from cachetools import TTLCache

from proxy.callout import AuthCallout
from proxy.config import Config, split_csv
from proxy.errors import BadRequest, OriginError, StoreError
from proxy.images.rate import RemakeBudget
from proxy.lane.routes import Routes
from proxy.lifecycle.streams import Stream
from proxy.memo import Memo
from proxy.metrics import Metrics
from proxy.origin import OriginClient, OriginResponse
from proxy.policy import cachekey, decide, forward, imagekey, images, tokens
from proxy.policy.access import Access, AccessRules
from proxy.policy.bans import TAG_HEADERS, Ban, BanIndex, response_tags
from proxy.policy.freshness import Heuristic, StoredResponse
from proxy.policy.headers import Headers
from proxy.store.fill import Fill, FillView
from proxy.store.front import FrontCache
from proxy.store.index import CachedBody, Store

log = logging.getLogger("proxy.handler")

_NO_STORE = object()  # the ban table's identity when there is no store (never moves)


def ban_in(index: object, key: str, meta: StoredResponse) -> Ban | None:
    """The ban in `index` (a table from `bans_seen_now`) that covers this stored response."""
    if not isinstance(index, BanIndex) or not index.size:
        return None
    tags = response_tags(meta.headers) if index.tags else ()
    return index.match(key, tags, meta.response_time)

# Never forwarded on a fill or revalidation: we ask for the whole current representation and
# evaluate the client's own conditions and ranges against it ourselves.
CLIENT_ONLY = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"}
)


class Context:
    def __init__(self, config: Config, store: Store | None, origin: OriginClient,
                 metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.origin = origin
        self.metrics = metrics
        self.clock = clock
        self.heuristic = Heuristic(config.cache.heuristic_fraction,
                                   config.cache.heuristic_max_seconds)
        self.via = config.server.via
        # Fills running in this process, by the key they store.
        self.fills: dict[str, Fill] = {}
        # In-process collapsing: the first miss for a key parks a future here while it waits
        # for the origin's headers; others await it and join the resulting fill.
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.streams: dict[str, set[Stream]] = {}  # bodies being sent, by key (strict mode)
        self.refreshing: set[str] = set()
        # The steps the last requests went through (key, step names): debug logs and tests.
        self.trails: collections.deque[tuple[str, tuple[str, ...]]] = collections.deque(
            maxlen=64)
        self.vary_known: Memo[str, tuple[str, ...] | None] = Memo(100_000, ttl_seconds=1.0)
        # Request target text -> its normalised target (a pure function of the text).
        self.targets: Memo[str, cachekey.Target] = Memo(10_000)
        # (key, stored metadata) -> its policy facts (a pure function of both).
        self._facts: Memo[tuple[str, StoredResponse], decide.Facts] = Memo(20_000)
        # (stored metadata, body size) -> a memory-tier HIT's fields and serialised head.
        self.heads: Memo[tuple[StoredResponse, int],
                         tuple[tuple[tuple[str, str], ...], bytes | None]] = Memo(20_000)
        self.lifetime_rules = config.cache.lifetime_overrides()
        # Hit-for-pass: keys whose last answer was not storable go straight to the origin for a
        # while instead of queueing behind a claim (Varnish's hit-for-pass).
        self.pass_keys: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=30)
        memory = config.cache
        signals = store.keys if store is not None and store.keys.available else None
        # Without change signals (no store, or a read-only cache directory) a copy lives by
        # its TTL alone, which then may not exceed the one second other workers rely on.
        memory_ttl = memory.memory_ttl_seconds if signals is not None else min(
            memory.memory_ttl_seconds, 1.0)
        self.front = FrontCache(memory.memory_bytes, memory.memory_body_max_bytes,
                                memory_ttl, signals) if memory.memory_bytes else None
        # The lane's routes: targets just answered from the memory tier's pre-built bytes.
        self.routes: Routes | None = None
        if self.front is not None and config.server.fast_hits:
            self.routes = Routes(config.server.via, config.server.cache_status,
                                 memory_ttl, self.bans_seen_now, clock, signals)
            self.front.on_drop = self.routes.drop_key
        auth = config.auth
        parsed_keys = tokens.parse_keys(auth.keys)
        self.keys: dict[str, bytes] = parsed_keys if isinstance(parsed_keys, dict) else {}
        self.token_params = tokens.PARAMS if self.keys else frozenset()
        # With conversions on, `?preset=` (and free-form) parameters name a conversion: they
        # are never part of the source's key.
        self.image_params = images.params(config.images.allow_free_form) if (
            config.images.enabled) else frozenset()
        self.strip_params = self.token_params | self.image_params
        self.pool: Any = None  # proxy.images.pool.ConversionPool, when conversions are on
        self.loopback: aiohttp.ClientSession | None = None  # sources through our listener
        self.remakes = RemakeBudget(config.images.max_conversions_per_second)  # soft purges
        self.callout = AuthCallout(auth, origin.base, metrics, clock) if auth.callout_url else None
        # With the callout, the session fields go to the auth endpoint only: never to the
        # origin on a GET or HEAD (inside a fill another session will read, or not).
        self.session_fields = frozenset(
            name.lower() for name in (self.callout.forward if self.callout else ()))
        self.fill_strip = CLIENT_ONLY | self.session_fields
        # With origin.forward_host the origin may answer per Host: every response then varies
        # on it, as if it said `Vary: Host` (nginx keys on $host for the same reason).
        self.implicit_vary: tuple[str, ...] = ("host",) if config.origin.forward_host else ()
        self.trusted_proxies = forward.parse_networks(config.server.trusted_networks())
        # Never per-client, never hidden by a `Connection` field: the access policy.
        self.shared = frozenset({auth.access_header.lower()})
        self.bans_seen: object = None
        self.forgotten_at = -1.0
        self.access = AccessRules.build(split_csv(auth.protected_prefixes),
                                        split_csv(auth.public_prefixes), auth.access_header)
        self.purge_networks = forward.parse_networks(config.admin.networks_text())
        self.hidden = (frozenset() if config.cache.expose_surrogate_keys else frozenset(
            TAG_HEADERS)) | {imagekey.SOURCE_VALIDATOR.lower()}

    # -- targets and rules -------------------------------------------------------------------

    def target(self, request: web.BaseRequest, strip: frozenset[str] = frozenset()
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

    def lifetime_rule(self, path: str) -> float | None:
        for prefix, seconds in self.lifetime_rules:
            if path.startswith(prefix):
                return seconds
        return None

    def facts(self, key: str, meta: StoredResponse) -> decide.Facts:
        """The policy facts of a stored response (a pure function of the key and the
        metadata: remembered per stored version, so a disk hit does not parse them again)."""
        found, known = self._facts.get((key, meta))
        if found and known is not None:
            return known
        path = key.split("?", 1)[0]
        protected = self.access.for_object(path, meta.headers) is Access.PROTECTED
        recheck = self.config.auth.access_recheck_seconds if protected else None
        known = decide.facts(meta, self.heuristic, recheck, self.lifetime_rule(path),
                             self.config.cache.stale_if_error_seconds)
        self._facts.put((key, meta), known)
        return known

    def vary_names(self, response: Headers) -> tuple[str, ...]:
        """The request fields a response varies on (its Vary, plus Host with forward_host)."""
        names = decide.vary_names(response)
        if self.implicit_vary:
            names = tuple(sorted({*names, *self.implicit_vary}))
        return names

    def still_storable(self, meta: StoredResponse, sent: Headers,
                       target: cachekey.Target) -> bool:
        """May a 304-updated response stay stored? Not if the 304 made it private or
        no-store (RFC 9111 §3): the stored copy then keeps its old fields."""
        return decide.storable("GET", meta.status, sent, meta.headers, meta.response_time,
                               self.lifetime_rule(target.path))

    # -- store -------------------------------------------------------------------------------

    def lookup(self, key: str) -> CachedBody | None:
        if self.store is None:
            return None
        try:
            return self.store.lookup(key)
        except StoreError as exc:
            self.metrics.store_errors.labels("lookup").inc()
            log.warning("store lookup failed: %s", exc)
            return None

    def bans_seen_now(self) -> object:
        """This process's ban table as an identity: a new object whenever it moved (or could
        not be read), so whatever was judged against the old one is judged again."""
        if self.store is None:
            return _NO_STORE
        try:
            return self.store.bans()
        except StoreError:
            return object()

    def ban_for(self, key: str, meta: StoredResponse) -> Ban | None:
        if self.store is None:
            return None
        try:
            index = self.store.bans()
        except StoreError as exc:
            self.metrics.store_errors.labels("bans").inc()
            log.warning("ban read failed: %s", exc.message)
            return None
        return ban_in(index, key, meta)

    def purged(self, fill: FillView) -> bool:
        ban = self.ban_for(fill.key, fill.meta)
        return ban is not None and not ban.soft

    def forget(self, key: str) -> None:
        if self.front is not None:
            self.front.drop(key)

    def refresh(self, key: str, filename: str, meta: StoredResponse) -> None:
        assert self.store is not None
        self.forget(key)
        self.store.refresh(key, filename, meta)

    async def store_call(self, operation: str, fn: Callable[..., object], *args: object,
                         **kwargs: object) -> None:
        """Best-effort store write off the event loop: failures are counted, never raised."""
        try:
            await asyncio.to_thread(fn, *args, **kwargs)
        except StoreError as exc:
            self.metrics.store_errors.labels(operation).inc()
            log.warning("store %s failed: %s", operation, exc.message)

    # -- origin and tasks --------------------------------------------------------------------

    async def origin_request(self, method: str, target: cachekey.Target, headers: Headers, *,
                             data: object = None) -> OriginResponse:
        try:
            response = await self.origin.request(method, target.path, target.query, headers,
                                                 data=data)
        except OriginError as exc:
            outcome = "timeout" if exc.status == 504 else "error"
            self.metrics.origin_requests.labels(outcome).inc()
            raise
        self.metrics.origin_requests.labels("ok").inc()
        return response

    async def purge_via_admin(self, body: dict[str, Any]) -> web.Response | None:
        """Hand a purge to this node's admin listener, where the cluster connection lives,
        so it reaches every node as `POST /purge` does; None when it cannot be reached (the
        caller then applies it here only)."""
        host, _, port = self.config.server.admin_listen.rpartition(":")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        timeout = aiohttp.ClientTimeout(total=self.config.cluster.wait_timeout_seconds + 5.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                    f"http://{host}:{port}/purge", json=body,
                    headers={"Authorization": f"Bearer {self.config.admin.token}"}) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type="application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("purge %s: admin listener not reached (%s): applying it here only",
                        body, exc.__class__.__name__)
            return None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, cancelled by `close`."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        if self.callout is not None:
            await self.callout.start()
        if self.pool is not None:
            images_config, origin_config = self.config.images, self.config.origin
            self.loopback = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=origin_config.connect_timeout_seconds,
                    sock_read=origin_config.read_timeout_seconds + images_config.timeout_seconds),
                auto_decompress=False)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.callout is not None:
            await self.callout.close()
        if self.loopback is not None:
            await self.loopback.close()
