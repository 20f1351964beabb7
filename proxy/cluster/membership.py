"""Membership: this node's heartbeat, and which nodes are known and which are live.

Rule: a node is live while its heartbeat key exists (it expires after `node_ttl_seconds`) and
known while its last heartbeat is within `ban_ttl_seconds` (it may come back and catch up).
The last view read is kept, so answers made while Redis is down can still name the nodes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from proxy.cluster.link import Link, as_float, awaited


@dataclass(slots=True)
class View:
    """The last membership read from Redis (kept for answers while Redis is down)."""

    live: frozenset[str] = frozenset()
    known: frozenset[str] = frozenset()


class Membership:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.started = link.clock()
        self.view = View()

    async def heartbeat(self) -> None:
        link = self.link
        now = link.clock()
        beat = json.dumps({"node": link.node, "pid": os.getpid(), "started": self.started,
                           "seen": now})
        async with link.redis.pipeline(transaction=True) as pipe:
            pipe.set(link.node_key(link.node), beat,
                     px=max(1, int(link.config.node_ttl_seconds * 1000)))
            pipe.hset(link.nodes_key, link.node, str(now))
            pipe.expire(link.nodes_key, math.ceil(link.config.ban_ttl_seconds))
            await link.call(pipe.execute())

    async def refresh(self) -> View:
        link = self.link
        seen: dict[str, str] = await link.call(awaited(link.redis.hgetall(link.nodes_key)))
        horizon = link.clock() - link.config.ban_ttl_seconds
        gone = [n for n, t in seen.items() if as_float(t) < horizon]
        known = sorted(n for n in seen if n not in gone)
        beats: list[str | None] = (
            await link.call(link.redis.mget([link.node_key(n) for n in known])) if known
            else [])
        if gone:
            await link.call(awaited(link.redis.hdel(link.nodes_key, *gone)))
        self.view = View(live=frozenset(n for n, b in zip(known, beats, strict=True)
                                        if b is not None),
                         known=frozenset(known))
        return self.view

    async def live_nodes(self) -> frozenset[str]:
        """Nodes with a current heartbeat (this one included once it has announced itself)."""
        return (await self.refresh()).live

    async def members(self) -> list[tuple[str, float, bool]]:
        """Every known node: (name, time of its last heartbeat, live now), by name."""
        view = await self.refresh()
        link = self.link
        seen: dict[str, str] = await link.call(awaited(link.redis.hgetall(link.nodes_key)))
        return [(name, as_float(seen.get(name, "0")), name in view.live)
                for name in sorted(view.known | view.live)]
