"""Purges across nodes: Redis pub/sub tells the others, a ban list in Redis the ones that missed it.

Rule: a purge is applied to this node's store first and published second, so Redis can delay or
lose a remote purge but never a local one. Every Redis or socket error becomes
`ClusterUnavailable` here (and `"redis unreachable"` in a purge answer): the node keeps serving
and reconnects by itself. One `Cluster` per node, where the admin listener
lives (the single process or the supervisor): bans go to the node's cache.db, which its workers
share.

Redis layout (`<ch>` is `cluster.channel`):

    <ch>                      pub/sub: one JSON purge per message (`Purge.to_json`)
    <ch>:acks                 pub/sub: {"id", "node"} when a node has applied a purge
    <ch>:bans                 sorted set: purge JSON scored by `created`, trimmed to ban_ttl
    <ch>:applied:<node>       sorted set: ids of purges <node> has applied (its acks), ban_ttl
    <ch>:node:<node>          string: heartbeat JSON, expires after node_ttl (live nodes)
    <ch>:nodes                hash: node -> last heartbeat time (known nodes, for "not live")
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.config import ClusterConfig
from proxy.errors import ProxyError, StoreError
from proxy.policy.bans import Ban, BanKind
from proxy.store.index import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

SOCKET_TIMEOUT_SECONDS = 2.0  # one Redis command; a blackholed Redis must not stall a purge
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
ACK_POLL_SECONDS = 0.25  # wait_for_acks re-reads Redis this often even without an ack message
MAX_UNPUBLISHED = 10_000  # purges made while Redis was down, published when it is back
UNREACHABLE = "redis unreachable"
NOT_LIVE = "not live"


class ClusterUnavailable(ProxyError):
    """Redis could not be reached or answered with an error (translated from redis-py)."""

    status = 503
    reason = "cluster_unavailable"


@dataclass(frozen=True, slots=True)
class Purge:
    """A purge as it travels between nodes; `created` is the origin node's ban time."""

    id: str
    origin_node: str
    kind: BanKind
    value: str
    soft: bool
    created: float

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "origin_node": self.origin_node,
                           "kind": self.kind.value, "value": self.value, "soft": self.soft,
                           "created": self.created}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Purge | None:
        """A purge message -> Purge, or None when it is not one of ours."""
        try:
            data = json.loads(text)
            purge = cls(id=data["id"], origin_node=data["origin_node"],
                        kind=BanKind(data["kind"]), value=data["value"], soft=data["soft"],
                        created=float(data["created"]))
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(purge.id, str) and purge.id and isinstance(purge.origin_node, str)
                and isinstance(purge.value, str) and isinstance(purge.soft, bool)
                and math.isfinite(purge.created)):
            return None
        return purge


@dataclass(frozen=True, slots=True)
class Published:
    purge: Purge
    reached: bool  # False: Redis was unreachable; queued for when it is back


@dataclass(frozen=True, slots=True)
class Acks:
    """Who has applied one purge: `missing` are live nodes that have not (yet)."""

    applied: frozenset[str]
    missing: frozenset[str]
    not_live: frozenset[str]  # known nodes without a heartbeat; they catch up when they start


@dataclass(frozen=True, slots=True)
class NodeState:
    """One line of a purge answer's `"nodes"`."""

    node: str
    applied: bool
    error: str | None = None  # "redis unreachable", "not live", "no acknowledgement within ..."
    pending: bool = False  # published, not waited for ("wait": false)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "applied": self.applied}
        if self.error is not None:
            out["error"] = self.error
        if self.pending:
            out["pending"] = True
        return out


@dataclass(slots=True)
class _View:
    """The last membership read from Redis (kept for answers while Redis is down)."""

    live: frozenset[str] = frozenset()
    known: frozenset[str] = frozenset()


@dataclass(slots=True)
class _State:
    applied: dict[str, float] = field(default_factory=dict)  # purge id -> created
    retry: dict[str, Purge] = field(default_factory=dict)  # received, store failed
    unpublished: list[Purge] = field(default_factory=list)  # made while Redis was down
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)


def redact(url: str) -> str:
    """The Redis URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Cluster:
    """This node's membership in the cluster: publish, receive, acknowledge, catch up."""

    def __init__(self, config: ClusterConfig, node: str, store_for: Callable[[], Store | None],
                 *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.node = node
        self.store_for = store_for
        self.clock = clock
        self.channel = config.channel
        self.ack_channel = f"{config.channel}:acks"
        self.bans_key = f"{config.channel}:bans"
        self.nodes_key = f"{config.channel}:nodes"
        self.started = clock()
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            config.redis_url, decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # we reconnect ourselves, with backoff, in _run
            client_name=f"mediaproxy-{node}")
        self._state = _State()
        self._view = _View()
        self._connected = False
        self._session_up = False
        self._attempted = asyncio.Event()  # the first session has synced or failed
        self._closing = asyncio.Event()
        self._malformed = 0
        self._task: asyncio.Task[None] | None = None

    # -- keys ------------------------------------------------------------------------------

    def node_key(self, node: str) -> str:
        return f"{self.channel}:node:{node}"

    def applied_key(self, node: str) -> str:
        return f"{self.channel}:applied:{node}"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self, sync_timeout_seconds: float | None = None) -> None:
        """Connect in the background; wait (bounded) for the first catch-up so a restarted
        node applies the bans it missed before it serves. Redis down is not an error."""
        self._task = asyncio.create_task(self._run(), name="cluster")
        timeout = self.config.wait_timeout_seconds if sync_timeout_seconds is None else (
            sync_timeout_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._attempted.wait()

    async def close(self) -> None:
        was_connected = self._connected
        self._closing.set()
        if self._task is not None:
            # Slower than the session's own clean-up, so a repeated cancel cannot cut it short.
            await _stop([self._task], interval_seconds=1.0)
            self._task = None
        if was_connected:
            # Leave at once rather than after node_ttl: waiters stop counting on us.
            with contextlib.suppress(ClusterUnavailable, TimeoutError):
                async with asyncio.timeout(SOCKET_TIMEOUT_SECONDS):
                    await self._call(self._redis.delete(self.node_key(self.node)))
        self._connected = False
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    def status(self) -> dict[str, Any]:
        """For /stats: no Redis round trip, the view of the last heartbeat."""
        return {"node": self.node, "redis": redact(self.config.redis_url),
                "connected": self._connected, "live_nodes": sorted(self._view.live),
                "known_nodes": sorted(self._view.known),
                "unpublished": len(self._state.unpublished)}

    # -- publishing and answering ----------------------------------------------------------

    async def publish(self, ban: Ban) -> Published:
        """Tell the other nodes about a ban this node has applied. Never raises: with Redis
        down the purge is queued and published when Redis is back."""
        purge = Purge(id=uuid.uuid4().hex, origin_node=self.node, kind=ban.kind, value=ban.value,
                      soft=ban.soft, created=ban.created)
        self._state.applied[purge.id] = purge.created
        if self._connected:
            try:
                await self._send(purge)
                return Published(purge, reached=True)
            except ClusterUnavailable as exc:
                log.warning("cluster: purge %s not published (%s); queued", purge.id, exc)
        self._queue(purge)
        return Published(purge, reached=False)

    async def report(self, published: Published, *, wait: bool,
                     timeout_seconds: float | None = None) -> list[NodeState]:
        """Every node's state for a purge, this node first. With `wait`, up to the timeout
        for every live node to acknowledge."""
        timeout = self.config.wait_timeout_seconds if timeout_seconds is None else (
            timeout_seconds)
        local = NodeState(self.node, applied=True)
        if published.reached:
            try:
                if wait:
                    acks = await self.wait_for_acks(published.purge.id, timeout)
                else:
                    acks = await self._acks(published.purge.id)
            except ClusterUnavailable:
                pass
            else:
                return [local, *self._states(acks, wait, timeout)]
        return [local, *(NodeState(n, applied=False, error=UNREACHABLE)
                         for n in sorted(self._view.known - {self.node}))]

    def _states(self, acks: Acks, waited: bool, timeout: float) -> list[NodeState]:
        states: list[NodeState] = []
        for name in sorted((acks.applied | acks.missing | acks.not_live) - {self.node}):
            if name in acks.applied:
                states.append(NodeState(name, applied=True))
            elif name in acks.missing:
                states.append(NodeState(name, applied=False, pending=True) if not waited else
                              NodeState(name, applied=False,
                                        error=f"no acknowledgement within {timeout:g} s"))
            else:
                states.append(NodeState(name, applied=False, error=NOT_LIVE))
        return states

    async def live_nodes(self) -> frozenset[str]:
        """Nodes with a current heartbeat (this one included once it has announced itself)."""
        return (await self._refresh_view()).live

    async def members(self) -> list[tuple[str, float, bool]]:
        """Every known node: (name, time of its last heartbeat, live now), by name. Raises
        ClusterUnavailable."""
        view = await self._refresh_view()
        seen: dict[str, str] = await self._call(_async(self._redis.hgetall(self.nodes_key)))
        return [(name, _float(seen.get(name, "0")), name in view.live)
                for name in sorted(view.known | view.live)]

    async def wait_for_acks(self, purge_id: str, timeout_seconds: float) -> Acks:
        """Until every live node has applied `purge_id`, or the timeout; which did, which not.
        Raises ClusterUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        event = self._state.waiters.setdefault(purge_id, asyncio.Event())
        try:
            while True:
                event.clear()
                acks = await self._acks(purge_id)
                remaining = deadline - loop.time()
                if not acks.missing or remaining <= 0:
                    return acks
                # The ack channel wakes us early; the poll also notices nodes that die.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, ACK_POLL_SECONDS)):
                        await event.wait()
        finally:
            self._state.waiters.pop(purge_id, None)

    async def _acks(self, purge_id: str) -> Acks:
        view = await self._refresh_view()
        names = sorted(view.known | view.live)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zscore(self.applied_key(name), purge_id)
            scores = await self._call(pipe.execute())
        applied = frozenset(n for n, s in zip(names, scores, strict=True) if s is not None)
        return Acks(applied=applied, missing=view.live - applied,
                    not_live=view.known - view.live - applied)

    # -- Redis writes ----------------------------------------------------------------------

    async def _send(self, purge: Purge) -> None:
        now = self.clock()
        ttl = self.config.ban_ttl_seconds
        # One transaction: a node catching up can never see the ban list without the
        # message having been published, nor the reverse.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.bans_key, {purge.to_json(): purge.created})
            pipe.zremrangebyscore(self.bans_key, "-inf", now - ttl)
            pipe.expire(self.bans_key, math.ceil(ttl))
            self._ack_commands(pipe, purge, now)
            pipe.publish(self.channel, purge.to_json())
            await self._call(pipe.execute())

    async def _ack(self, purge: Purge) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._ack_commands(pipe, purge, self.clock())
            await self._call(pipe.execute())

    def _ack_commands(self, pipe: Pipeline, purge: Purge, now: float) -> None:
        ttl = self.config.ban_ttl_seconds
        key = self.applied_key(self.node)
        pipe.zadd(key, {purge.id: purge.created})
        pipe.zremrangebyscore(key, "-inf", now - ttl)
        pipe.expire(key, math.ceil(ttl))
        pipe.publish(self.ack_channel, json.dumps({"id": purge.id, "node": self.node}))

    def _queue(self, purge: Purge) -> None:
        queue = self._state.unpublished
        queue.append(purge)
        if len(queue) > MAX_UNPUBLISHED:
            dropped = queue.pop(0)
            log.warning("cluster: more than %d purges made while Redis is unreachable; "
                        "purge %s will not reach the other nodes", MAX_UNPUBLISHED, dropped.id)

    async def _heartbeat(self) -> None:
        now = self.clock()
        beat = json.dumps({"node": self.node, "pid": os.getpid(), "started": self.started,
                           "seen": now})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.node_key(self.node), beat,
                     px=max(1, int(self.config.node_ttl_seconds * 1000)))
            pipe.hset(self.nodes_key, self.node, str(now))
            pipe.expire(self.nodes_key, math.ceil(self.config.ban_ttl_seconds))
            await self._call(pipe.execute())

    async def _refresh_view(self) -> _View:
        seen: dict[str, str] = await self._call(_async(self._redis.hgetall(self.nodes_key)))
        horizon = self.clock() - self.config.ban_ttl_seconds
        gone = [n for n, t in seen.items() if _float(t) < horizon]
        known = sorted(n for n in seen if n not in gone)
        beats: list[str | None] = (
            await self._call(self._redis.mget([self.node_key(n) for n in known])) if known
            else [])
        if gone:
            await self._call(_async(self._redis.hdel(self.nodes_key, *gone)))
        self._view = _View(live=frozenset(n for n, b in zip(known, beats, strict=True)
                                          if b is not None),
                           known=frozenset(known))
        return self._view

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        down_since: float | None = None
        while not self._closing.is_set():
            self._session_up = False
            try:
                await self._session(down_since)
            except ClusterUnavailable as exc:
                self._attempted.set()
                if self._session_up:  # a new outage, not one more failed attempt
                    failures, down_since = 0, None
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("cluster: Redis at %s unreachable (%s); purges apply to this "
                                "node only until it is back", redact(self.config.redis_url),
                                exc)
                else:
                    log.debug("cluster: Redis still unreachable: %s", exc)
            except Exception:  # a bug must not end cluster membership for good
                self._attempted.set()
                log.exception("cluster: unexpected error; reconnecting")
                if down_since is None:
                    down_since = time.monotonic()
            failures += 1
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(failures - 1, 10))
            await self._pause(delay * random.uniform(0.5, 1.0))  # jitter: no herd

    async def _session(self, down_since: float | None) -> None:
        pubsub = self._redis.pubsub()
        tasks: list[asyncio.Task[None]] = []
        try:
            early = await self._subscribe(pubsub)
            # Subscribed before reading the ban list: a purge is in one or the other.
            await self._flush_unpublished()
            await self._catch_up()
            for message in early:
                await self._on_message(message)
            await self._heartbeat()
            await self._refresh_view()
            self._connected = self._session_up = True
            self._attempted.set()
            if down_since is not None:
                log.info("cluster: Redis reachable again after %.1f s",
                         time.monotonic() - down_since)
            else:
                log.info("cluster: node %s joined via %s (%d live nodes)", self.node,
                         redact(self.config.redis_url), len(self._view.live))
            tasks = [asyncio.create_task(self._listen(pubsub)),
                     asyncio.create_task(self._beat())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self._connected = False
            await _stop(tasks)
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribe(self, pubsub: PubSub) -> list[dict[str, Any]]:
        await self._call(pubsub.subscribe(self.channel, self.ack_channel))
        early: list[dict[str, Any]] = []
        confirmed = 0
        while confirmed < 2:
            message = await self._call(pubsub.get_message(timeout=SOCKET_TIMEOUT_SECONDS))
            if message is None:
                raise ClusterUnavailable("no subscription confirmation")
            if message["type"] == "subscribe":
                confirmed += 1
            else:
                early.append(message)
        return early

    async def _listen(self, pubsub: PubSub) -> None:
        while not self._closing.is_set():
            message = await self._call(
                pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0))
            if message is not None:
                await self._on_message(message)

    async def _beat(self) -> None:
        while not self._closing.is_set():
            await self._pause(self.config.heartbeat_seconds)
            await self._heartbeat()
            await self._refresh_view()
            await self._retry_failed()
            self._forget_old()

    # -- receiving -------------------------------------------------------------------------

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message" or not isinstance(message.get("data"), str):
            return
        if message.get("channel") == self.ack_channel:
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                event = self._state.waiters.get(json.loads(message["data"])["id"])
                if event is not None:
                    event.set()
            return
        purge = Purge.from_json(message["data"])
        if purge is None:
            self._malformed += 1
            log.log(logging.WARNING if self._malformed % 1000 == 1 else logging.DEBUG,
                    "cluster: ignoring a malformed message on %s (%d so far)", self.channel,
                    self._malformed)
            return
        if purge.origin_node == self.node or purge.id in self._state.applied:
            return
        # Live: never date the ban before our own now, so a clock running ahead of the
        # origin node's cannot keep copies fetched just before the purge.
        if await self._apply(purge, created=max(purge.created, self.clock())):
            await self._ack(purge)

    async def _catch_up(self) -> None:
        """Apply the bans published while this node was stopped or cut off from Redis."""
        horizon = self.clock() - self.config.ban_ttl_seconds
        entries: list[str] = await self._call(
            self._redis.zrangebyscore(self.bans_key, horizon, "+inf"))
        done: list[str] = await self._call(
            self._redis.zrange(self.applied_key(self.node), 0, -1))
        acknowledged = set(done)
        caught_up = 0
        for entry in entries:
            purge = Purge.from_json(entry)
            if purge is None or purge.id in acknowledged:
                if purge is not None:
                    self._state.applied.setdefault(purge.id, purge.created)
                continue
            # The ban's own time: what this node fetched after the purge stays cached.
            if purge.id in self._state.applied or await self._apply(purge,
                                                                   created=purge.created):
                await self._ack(purge)
                caught_up += 1
        if caught_up:
            log.info("cluster: caught up with %d purge(s) made while away", caught_up)

    async def _apply(self, purge: Purge, *, created: float) -> bool:
        """Add the ban to this node's store; on failure keep it for the next heartbeat (logged
        once per purge, not once per attempt)."""
        store = self.store_for()
        try:
            if store is None:
                raise StoreError("no usable cache directory")
            await asyncio.to_thread(store.add_ban, purge.kind, purge.value, soft=purge.soft,
                                    now=created)
        except StoreError as exc:
            log.log(logging.DEBUG if purge.id in self._state.retry else logging.WARNING,
                    "cluster: purge %s from %s not applied (will retry): %s", purge.id,
                    purge.origin_node, exc.message)
            self._state.retry[purge.id] = purge
            return False
        self._state.retry.pop(purge.id, None)
        self._state.applied[purge.id] = purge.created
        log.info("cluster: applied purge %s from %s: %s %r%s", purge.id, purge.origin_node,
                 purge.kind.value, purge.value, " (soft)" if purge.soft else "")
        return True

    async def _retry_failed(self) -> None:
        for purge in list(self._state.retry.values()):
            if await self._apply(purge, created=purge.created):
                await self._ack(purge)

    async def _flush_unpublished(self) -> None:
        queue = self._state.unpublished
        if queue:
            log.info("cluster: publishing %d purge(s) made while Redis was unreachable",
                     len(queue))
        while queue:
            await self._send(queue[0])
            queue.pop(0)

    def _forget_old(self) -> None:
        horizon = self.clock() - self.config.ban_ttl_seconds
        applied = self._state.applied
        for purge_id in [i for i, created in applied.items() if created < horizon]:
            del applied[purge_id]
        retry = self._state.retry
        for purge_id in [i for i, p in retry.items() if p.created < horizon]:
            del retry[purge_id]

    async def _pause(self, seconds: float) -> None:
        """Sleep, but not past close()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """The library boundary: redis-py and socket errors become ClusterUnavailable."""
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc) or type(exc).__name__) from exc


async def _stop(tasks: list[asyncio.Task[None]], interval_seconds: float = 0.1) -> None:
    """Cancel until done. One cancel() is not always enough on Python 3.11: redis-py awaits
    `asyncio.wait_for`, which there drops a cancellation that races with its result; the loops
    also end by themselves once `_closing` is set."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=interval_seconds)
    for task in tasks:  # retrieve outcomes, so none is reported as never retrieved
        if not task.cancelled():
            task.exception()


def _async(result: Awaitable[Any] | Any) -> Awaitable[Any]:
    """redis-py types some commands `Awaitable[T] | T` (shared with its sync client)."""
    assert inspect.isawaitable(result)
    return result


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
