"""Purges from other nodes: applied as they arrive, caught up after a restart or an outage,
retried while this node's store refuses them, each acknowledged once applied.

Rule: a live purge is never dated before this node's own now (a clock running ahead of the
origin node's cannot keep copies fetched just before it); a caught-up one keeps its own time
(what this node fetched after the purge stays cached). Each purge is applied once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from proxy.cluster.link import Link
from proxy.cluster.messages import Purge
from proxy.cluster.publishing import Publisher, State
from proxy.errors import StoreError
from proxy.metrics import purge_kind_label
from proxy.store.index import Store

log = logging.getLogger("proxy.cluster")


class Receiver:
    def __init__(self, link: Link, state: State, publisher: Publisher,
                 store_for: Callable[[], Store | None]) -> None:
        self.link = link
        self.state = state
        self.publisher = publisher
        self.store_for = store_for
        self._malformed = 0

    async def on_message(self, message: dict[str, Any]) -> None:
        link = self.link
        if message.get("type") != "message" or not isinstance(message.get("data"), str):
            return
        if message.get("channel") == link.ack_channel:
            self.publisher.acknowledged(message["data"])
            return
        purge = Purge.from_json(message["data"])
        if purge is None:
            self._malformed += 1
            log.log(logging.WARNING if self._malformed % 1000 == 1 else logging.DEBUG,
                    "cluster: ignoring a malformed message on %s (%d so far)", link.channel,
                    self._malformed)
            return
        if purge.origin_node == link.node or purge.id in self.state.applied:
            return
        # Live: never date the ban before our own now, so a clock running ahead of the
        # origin node's cannot keep copies fetched just before the purge.
        if await self._apply(purge, created=max(purge.created, link.clock())):
            await self.publisher.ack(purge)

    async def catch_up(self) -> None:
        """Apply the bans published while this node was stopped or cut off from Redis."""
        link = self.link
        horizon = link.clock() - link.config.ban_ttl_seconds
        entries: list[str] = await link.call(
            link.redis.zrangebyscore(link.bans_key, horizon, "+inf"))
        done: list[str] = await link.call(
            link.redis.zrange(link.applied_key(link.node), 0, -1))
        acknowledged = set(done)
        caught_up = 0
        for entry in entries:
            purge = Purge.from_json(entry)
            if purge is None or purge.id in acknowledged:
                if purge is not None:
                    self.state.applied.setdefault(purge.id, purge.created)
                continue
            # The ban's own time: what this node fetched after the purge stays cached.
            if purge.id in self.state.applied or await self._apply(purge,
                                                                  created=purge.created):
                await self.publisher.ack(purge)
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
            log.log(logging.DEBUG if purge.id in self.state.retry else logging.WARNING,
                    "cluster: purge %s from %s not applied (will retry): %s", purge.id,
                    purge.origin_node, exc.message)
            self.state.retry[purge.id] = purge
            return False
        self.state.retry.pop(purge.id, None)
        self.state.applied[purge.id] = purge.created
        kind = purge_kind_label(purge.kind, purge.value)
        self.state.received[kind] = self.state.received.get(kind, 0) + 1
        log.info("cluster: applied purge %s from %s: %s %r%s", purge.id, purge.origin_node,
                 purge.kind.value, purge.value, " (soft)" if purge.soft else "")
        return True

    async def retry_failed(self) -> None:
        for purge in list(self.state.retry.values()):
            if await self._apply(purge, created=purge.created):
                await self.publisher.ack(purge)

    def forget_old(self) -> None:
        horizon = self.link.clock() - self.link.config.ban_ttl_seconds
        applied = self.state.applied
        for purge_id in [i for i, created in applied.items() if created < horizon]:
            del applied[purge_id]
        retry = self.state.retry
        for purge_id in [i for i, p in retry.items() if p.created < horizon]:
            del retry[purge_id]
