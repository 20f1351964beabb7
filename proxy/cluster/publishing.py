"""Publishing this node's purges, recording acknowledgements, and answering who applied what.

Rule: a purge's ban-list entry, this node's acknowledgement and the message go out in one Redis
transaction, so a node catching up never sees one without the other. Publishing never raises:
with Redis down the purge is queued (bounded) and published when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline

from proxy.cluster.link import ClusterUnavailable, Link
from proxy.cluster.membership import Membership
from proxy.cluster.messages import NOT_LIVE, UNREACHABLE, Acks, NodeState, Published, Purge
from proxy.policy.bans import Ban

log = logging.getLogger("proxy.cluster")

ACK_POLL_SECONDS = 0.25  # wait_for_acks re-reads Redis this often even without an ack message
MAX_UNPUBLISHED = 10_000  # purges made while Redis was down, published when it is back


@dataclass(slots=True)
class State:
    """This node's record of purges (shared by publishing and receiving)."""

    applied: dict[str, float] = field(default_factory=dict)  # purge id -> created
    retry: dict[str, Purge] = field(default_factory=dict)  # received, store failed
    unpublished: list[Purge] = field(default_factory=list)  # made while Redis was down
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # kind label -> count


class Publisher:
    def __init__(self, link: Link, state: State, members: Membership) -> None:
        self.link = link
        self.state = state
        self.members = members

    async def publish(self, ban: Ban) -> Published:
        """Tell the other nodes about a ban this node has applied. Never raises: with Redis
        down the purge is queued and published when Redis is back."""
        purge = Purge(id=uuid.uuid4().hex, origin_node=self.link.node, kind=ban.kind,
                      value=ban.value, soft=ban.soft, created=ban.created)
        self.state.applied[purge.id] = purge.created
        if self.link.connected:
            try:
                await self.send(purge)
                return Published(purge, reached=True)
            except ClusterUnavailable as exc:
                log.warning("cluster: purge %s not published (%s); queued", purge.id, exc)
        self._queue(purge)
        return Published(purge, reached=False)

    async def report(self, published: Published, *, wait: bool,
                     timeout_seconds: float | None = None) -> list[NodeState]:
        """Every node's state for a purge, this node first. With `wait`, up to the timeout
        for every live node to acknowledge."""
        timeout = self.link.config.wait_timeout_seconds if timeout_seconds is None else (
            timeout_seconds)
        local = NodeState(self.link.node, applied=True)
        if published.reached:
            try:
                if wait:
                    acks = await self.wait_for_acks(published.purge.id, timeout)
                else:
                    acks = await self.acks(published.purge.id)
            except ClusterUnavailable:
                pass
            else:
                return [local, *self._states(acks, wait, timeout)]
        return [local, *(NodeState(n, applied=False, error=UNREACHABLE)
                         for n in sorted(self.members.view.known - {self.link.node}))]

    def _states(self, acks: Acks, waited: bool, timeout: float) -> list[NodeState]:
        states: list[NodeState] = []
        for name in sorted((acks.applied | acks.missing | acks.not_live) - {self.link.node}):
            if name in acks.applied:
                states.append(NodeState(name, applied=True))
            elif name in acks.missing:
                states.append(NodeState(name, applied=False, pending=True) if not waited else
                              NodeState(name, applied=False,
                                        error=f"no acknowledgement within {timeout:g} s"))
            else:
                states.append(NodeState(name, applied=False, error=NOT_LIVE))
        return states

    async def wait_for_acks(self, purge_id: str, timeout_seconds: float) -> Acks:
        """Until every live node has applied `purge_id`, or the timeout; which did, which not.
        Raises ClusterUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        event = self.state.waiters.setdefault(purge_id, asyncio.Event())
        try:
            while True:
                event.clear()
                acks = await self.acks(purge_id)
                remaining = deadline - loop.time()
                if not acks.missing or remaining <= 0:
                    return acks
                # The ack channel wakes us early; the poll also notices nodes that die.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, ACK_POLL_SECONDS)):
                        await event.wait()
        finally:
            self.state.waiters.pop(purge_id, None)

    async def acks(self, purge_id: str) -> Acks:
        view = await self.members.refresh()
        names = sorted(view.known | view.live)
        async with self.link.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zscore(self.link.applied_key(name), purge_id)
            scores = await self.link.call(pipe.execute())
        applied = frozenset(n for n, s in zip(names, scores, strict=True) if s is not None)
        return Acks(applied=applied, missing=view.live - applied,
                    not_live=view.known - view.live - applied)

    def acknowledged(self, data: str) -> None:
        """An ack message arrived: wake whoever waits for that purge."""
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            event = self.state.waiters.get(json.loads(data)["id"])
            if event is not None:
                event.set()

    # -- Redis writes ----------------------------------------------------------------------

    async def send(self, purge: Purge) -> None:
        link = self.link
        now = link.clock()
        ttl = link.config.ban_ttl_seconds
        # One transaction: a node catching up can never see the ban list without the
        # message having been published, nor the reverse.
        async with link.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(link.bans_key, {purge.to_json(): purge.created})
            pipe.zremrangebyscore(link.bans_key, "-inf", now - ttl)
            pipe.expire(link.bans_key, math.ceil(ttl))
            self._ack_commands(pipe, purge, now)
            pipe.publish(link.channel, purge.to_json())
            await link.call(pipe.execute())

    async def ack(self, purge: Purge) -> None:
        async with self.link.redis.pipeline(transaction=True) as pipe:
            self._ack_commands(pipe, purge, self.link.clock())
            await self.link.call(pipe.execute())

    def _ack_commands(self, pipe: Pipeline, purge: Purge, now: float) -> None:
        link = self.link
        ttl = link.config.ban_ttl_seconds
        key = link.applied_key(link.node)
        pipe.zadd(key, {purge.id: purge.created})
        pipe.zremrangebyscore(key, "-inf", now - ttl)
        pipe.expire(key, math.ceil(ttl))
        pipe.publish(link.ack_channel, json.dumps({"id": purge.id, "node": link.node}))

    def _queue(self, purge: Purge) -> None:
        queue = self.state.unpublished
        queue.append(purge)
        if len(queue) > MAX_UNPUBLISHED:
            dropped = queue.pop(0)
            log.warning("cluster: more than %d purges made while Redis is unreachable; "
                        "purge %s will not reach the other nodes", MAX_UNPUBLISHED, dropped.id)

    async def flush_unpublished(self) -> None:
        queue = self.state.unpublished
        if queue:
            log.info("cluster: publishing %d purge(s) made while Redis was unreachable",
                     len(queue))
        while queue:
            await self.send(queue[0])
            queue.pop(0)
