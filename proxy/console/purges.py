"""Purges made from the console: applied and published as `POST /purge` does, then followed
until every node has acknowledged and this node's sweep has retired the ban.

Rule: the purge itself is the admin listener's (`proxy.admin.apply_purge`, then
`Cluster.publish`); this module only remembers the last purges it made (in memory, bounded) so
their progress page can be polled.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from proxy.admin import apply_purge
from proxy.console.live import Live, Sources, size
from proxy.errors import ProxyError, StoreError
from proxy.policy.bans import Ban, BanKind
from proxy.store import listing

MAX_REMEMBERED = 200
KIND_NAMES = {BanKind.PREFIX: "prefix", BanKind.EXACT: "URL", BanKind.TAG: "tag"}


@dataclass(frozen=True, slots=True)
class Made:
    id: str  # random, in the progress page's URL
    ban: Ban  # this node's ban
    purge_id: str | None  # the cluster's id (None: no cluster)
    published: bool
    entries: int  # what it covered here when it was made
    bytes: int

    @property
    def what(self) -> str:
        if self.ban.kind is BanKind.PREFIX and not self.ban.value:
            return "everything"
        return f"{KIND_NAMES[self.ban.kind]} {self.ban.value}"


class Purges:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._made: OrderedDict[str, Made] = OrderedDict()

    def get(self, made_id: str) -> Made | None:
        return self._made.get(made_id)

    async def make(self, kind: BanKind, value: str, soft: bool) -> Made:
        """Apply to this node, publish to the others. Raises ProxyError (store unusable)."""
        store = self.sources.store()
        if store is None:
            raise StoreError("the cache directory is not usable")
        entries, covered = await asyncio.to_thread(listing.covers, store, kind, value)
        ban = await apply_purge(store, kind, value, soft, clock=self.sources.clock)
        purge_id, published = None, False
        if self.sources.cluster is not None:
            sent = await self.sources.cluster.publish(ban)
            purge_id, published = sent.purge.id, sent.reached
        made = Made(secrets.token_urlsafe(12), ban, purge_id, published, entries, covered)
        self._made[made.id] = made
        while len(self._made) > MAX_REMEMBERED:
            self._made.popitem(last=False)
        return made

    async def progress(self, made: Made) -> Live:
        nodes, acked = await self._nodes(made)
        store = self.sources.store()
        left: int | None = 0
        if store is None:
            sweep = "the cache directory is not usable"
        else:
            try:
                left = await asyncio.to_thread(listing.ban_left, store, made.ban)
            except ProxyError as exc:
                sweep = f"the store could not be read: {exc.message}"
            else:
                sweep = ("retired: every matching entry swept" if left is None else
                         f"sweeping: {left} of {made.entries} entries left" if left else
                         "swept; retiring once no fill that predates it is running")
        retired = store is not None and left is None
        done = retired and acked
        return Live(fields={"sweep": sweep, "state": "done" if done else "in progress",
                            "updated": time.strftime("%H:%M:%S",
                                                     time.localtime(self.sources.clock()))},
                    tables={"nodes": nodes}, done=done)

    async def _nodes(self, made: Made) -> tuple[list[list[str]], bool]:
        """Each node's acknowledgement, this node first; True when no live node is missing."""
        local = [self.sources.node, "applied"]
        cluster = self.sources.cluster
        if cluster is None or made.purge_id is None:
            return [local], True
        from proxy.cluster import ClusterUnavailable

        try:
            acks = await cluster.wait_for_acks(made.purge_id, 0)
        except ClusterUnavailable:
            return [local, ["other nodes", "Redis unreachable: queued, published when it is "
                            "back" if not made.published else "Redis unreachable"]], False
        rows = [local]
        for name in sorted(acks.applied | acks.missing | acks.not_live):
            if name == self.sources.node:
                continue
            rows.append([name, "applied" if name in acks.applied else
                         "waiting for acknowledgement" if name in acks.missing else
                         "not live: applies it when it starts"])
        return rows, not acks.missing


def summary(made: Made) -> str:
    return f"{made.entries} entries, {size(made.bytes)} on this node when purged"
