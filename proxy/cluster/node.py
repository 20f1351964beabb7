"""`Cluster`: this node's membership in the cluster, and the loop that keeps it connected.

Rule: one session at a time: subscribe, publish what was queued, catch up, announce, then
listen and beat until Redis fails; then reconnect with jittered backoff, forever, until close.
Redis down is never an error for the caller: the node serves and purges locally meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from proxy.cluster.link import SOCKET_TIMEOUT_SECONDS, ClusterUnavailable, Link, redact, stop
from proxy.cluster.membership import Membership
from proxy.cluster.messages import Acks, Gauges, NodeState, Published
from proxy.cluster.publishing import Publisher, State
from proxy.cluster.receiving import Receiver
from proxy.config import ClusterConfig
from proxy.policy.bans import Ban
from proxy.store.index import Store

log = logging.getLogger("proxy.cluster")

BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0


class Cluster:
    """This node's membership in the cluster: publish, receive, acknowledge, catch up."""

    def __init__(self, config: ClusterConfig, node: str, store_for: Callable[[], Store | None],
                 *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.node = node
        self.store_for = store_for
        self.clock = clock
        self._link = link = Link(config, node, clock)
        self.channel = link.channel
        self.ack_channel = link.ack_channel
        self.bans_key = link.bans_key
        self.nodes_key = link.nodes_key
        self._state = State()
        self._members = Membership(link)
        self.started = self._members.started
        self._publisher = Publisher(link, self._state, self._members)
        self._receiver = Receiver(link, self._state, self._publisher, store_for)
        self._session_up = False
        self._attempted = asyncio.Event()  # the first session has synced or failed
        self._task: asyncio.Task[None] | None = None

    # -- keys ------------------------------------------------------------------------------

    def node_key(self, node: str) -> str:
        return self._link.node_key(node)

    def applied_key(self, node: str) -> str:
        return self._link.applied_key(node)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link.connected

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
        link = self._link
        was_connected = link.connected
        link.closing.set()
        if self._task is not None:
            # Slower than the session's own clean-up, so a repeated cancel cannot cut it short.
            await stop([self._task], interval_seconds=1.0)
            self._task = None
        if was_connected:
            # Leave at once rather than after node_ttl: waiters stop counting on us.
            with contextlib.suppress(ClusterUnavailable, TimeoutError):
                async with asyncio.timeout(SOCKET_TIMEOUT_SECONDS):
                    await link.call(link.redis.delete(link.node_key(self.node)))
        link.connected = False
        with contextlib.suppress(RedisError, OSError):
            await link.redis.aclose()

    def status(self) -> dict[str, Any]:
        """For /stats: no Redis round trip, the view of the last heartbeat."""
        view = self._members.view
        return {"node": self.node, "redis": redact(self.config.redis_url),
                "connected": self._link.connected, "live_nodes": sorted(view.live),
                "known_nodes": sorted(view.known),
                "unpublished": len(self._state.unpublished)}

    def gauges(self) -> Gauges:
        state = self._state
        return Gauges(connected=self._link.connected, live_nodes=len(self._members.view.live),
                      pending=len(state.retry) + len(state.unpublished),
                      newest_applied=max(state.applied.values(), default=None),
                      received=dict(state.received))

    # -- publishing and answering (publishing.py, membership.py) ---------------------------

    async def publish(self, ban: Ban) -> Published:
        """Tell the other nodes about a ban this node has applied. Never raises: with Redis
        down the purge is queued and published when Redis is back."""
        return await self._publisher.publish(ban)

    async def report(self, published: Published, *, wait: bool,
                     timeout_seconds: float | None = None) -> list[NodeState]:
        """Every node's state for a purge, this node first. With `wait`, up to the timeout
        for every live node to acknowledge."""
        return await self._publisher.report(published, wait=wait,
                                            timeout_seconds=timeout_seconds)

    async def live_nodes(self) -> frozenset[str]:
        """Nodes with a current heartbeat (this one included once it has announced itself)."""
        return await self._members.live_nodes()

    async def members(self) -> list[tuple[str, float, bool]]:
        """Every known node with its last heartbeat and whether it is live (the console).
        Raises ClusterUnavailable."""
        return await self._members.members()

    async def wait_for_acks(self, purge_id: str, timeout_seconds: float) -> Acks:
        """Until every live node has applied `purge_id`, or the timeout. Raises
        ClusterUnavailable."""
        return await self._publisher.wait_for_acks(purge_id, timeout_seconds)

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        down_since: float | None = None
        while not self._link.closing.is_set():
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
            await self._link.pause(delay * random.uniform(0.5, 1.0))  # jitter: no herd

    async def _session(self, down_since: float | None) -> None:
        pubsub = self._link.redis.pubsub()
        tasks: list[asyncio.Task[None]] = []
        try:
            early = await self._subscribe(pubsub)
            # Subscribed before reading the ban list: a purge is in one or the other.
            await self._publisher.flush_unpublished()
            await self._receiver.catch_up()
            for message in early:
                await self._receiver.on_message(message)
            await self._members.heartbeat()
            await self._members.refresh()
            self._link.connected = self._session_up = True
            self._attempted.set()
            if down_since is not None:
                log.info("cluster: Redis reachable again after %.1f s",
                         time.monotonic() - down_since)
            else:
                log.info("cluster: node %s joined via %s (%d live nodes)", self.node,
                         redact(self.config.redis_url), len(self._members.view.live))
            tasks = [asyncio.create_task(self._listen(pubsub)),
                     asyncio.create_task(self._beat())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self._link.connected = False
            await stop(tasks)
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribe(self, pubsub: PubSub) -> list[dict[str, Any]]:
        call = self._link.call
        await call(pubsub.subscribe(self.channel, self.ack_channel))
        early: list[dict[str, Any]] = []
        confirmed = 0
        while confirmed < 2:
            message = await call(pubsub.get_message(timeout=SOCKET_TIMEOUT_SECONDS))
            if message is None:
                raise ClusterUnavailable("no subscription confirmation")
            if message["type"] == "subscribe":
                confirmed += 1
            else:
                early.append(message)
        return early

    async def _listen(self, pubsub: PubSub) -> None:
        while not self._link.closing.is_set():
            message = await self._link.call(
                pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0))
            if message is not None:
                await self._receiver.on_message(message)

    async def _beat(self) -> None:
        while not self._link.closing.is_set():
            await self._link.pause(self.config.heartbeat_seconds)
            await self._members.heartbeat()
            await self._members.refresh()
            await self._receiver.retry_failed()
            self._receiver.forget_old()
