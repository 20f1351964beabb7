"""What the console's live parts show, computed once for the page and for its JSON poll.

Rule: a `Live` holds display text only (fields and table rows); the page renders it as escaped
HTML and the script copies it with `textContent`, so both paths show the same and neither can
inject markup. Everything here reads; purging happens in `proxy.console.purges`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from proxy.admin import stats_body
from proxy.config import Config
from proxy.errors import ProxyError
from proxy.status import CacheStatus
from proxy.store.index import Store

if TYPE_CHECKING:
    from proxy.cluster import Cluster

RATE_WINDOW_SECONDS = 10.0  # requests/s are averaged over the polls of this long


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the console reads from: the admin listener's own handles."""

    node: str
    config: Callable[[], Config]
    store: Callable[[], Store | None]
    registry: CollectorRegistry
    cluster: Cluster | None
    clock: Callable[[], float] = time.time


@dataclass(slots=True)
class Live:
    fields: dict[str, str] = field(default_factory=dict)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    done: bool = False  # the page stops polling

    def to_json(self) -> dict[str, Any]:
        return {"fields": self.fields, "tables": self.tables, "done": self.done}


def size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ago(seconds: float) -> str:
    return f"{max(0.0, seconds):.1f} s ago"


class Rates:
    """Counters sampled at each overview poll -> per-second rates over the last window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def add(self, counters: dict[str, float]) -> dict[str, float] | None:
        """Record a sample; the rates since the oldest one in the window (None: no history)."""
        now = self._clock()
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()
        oldest = self._samples[0] if self._samples else None
        self._samples.append((now, counters))
        if oldest is None or now - oldest[0] < 0.5:
            return None
        span = now - oldest[0]
        return {k: max(0.0, (v - oldest[1].get(k, 0.0)) / span) for k, v in counters.items()}


def _origin_fetches(registry: CollectorRegistry) -> float:
    total = 0.0
    for family in registry.collect():
        if family.name == "mediaproxy_origin_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def members(sources: Sources, now: float) -> list[list[str]]:
    """The nodes table: name, last heartbeat, state."""
    cluster = sources.cluster
    if cluster is None:
        return [[sources.node, "—", "single node (no cluster.redis_url)"]]
    from proxy.cluster import ClusterUnavailable

    try:
        found = await cluster.members()
    except ClusterUnavailable:
        status = cluster.status()
        return [[name, "—", "Redis unreachable: last seen live" if name in status["live_nodes"]
                 else "Redis unreachable"] for name in status["known_nodes"]] or [
            [sources.node, "—", "Redis unreachable"]]
    rows = [[name, ago(now - seen) if seen else "—", "live" if up else "not live"]
            for name, seen, up in found]
    return rows or [[sources.node, "—", "joining"]]


async def overview(sources: Sources, rates: Rates) -> Live:
    store = sources.store()
    if store is None:
        return Live(fields={"problem": "the cache directory is not usable"})
    try:
        stats = await asyncio.to_thread(stats_body, store, sources.registry)
        fetched = await asyncio.to_thread(_origin_fetches, sources.registry)
    except ProxyError as exc:
        return Live(fields={"problem": f"the store could not be read: {exc.message}"})
    requests: dict[str, int] = stats["requests"]
    counters: dict[str, float] = {s.value: float(requests.get(s.value, 0)) for s in CacheStatus}
    counters["origin"] = fetched
    per_second = rates.add(counters)

    def rate(name: str) -> str:
        return "—" if per_second is None else f"{per_second[name]:.1f}/s"

    budget = int(stats["max_size_bytes"])
    used = int(stats["disk"]["total"])
    ratio = stats["hit_ratio"]
    now = sources.clock()
    return Live(
        fields={
            "problem": "",
            "hit_ratio": "no requests yet" if ratio is None else f"{ratio * 100:.1f} %",
            "entries": str(stats["entries"]),
            "store": f"{size(used)} of {size(budget)}"
                     + (f" ({used / budget * 100:.1f} %)" if budget else ""),
            "superseded": f"{size(stats['superseded_bytes'])} in "
                          f"{stats['superseded_files']} files",
            "origin_fetches": f"{int(fetched)} ({rate('origin')})",
            "fills": str(stats["fills_in_progress"]),
            "bans": str(len(stats["active_bans"])),
            "updated": time.strftime("%H:%M:%S", time.localtime(now)),
        },
        tables={
            "requests": [[s.value, str(requests.get(s.value, 0)), rate(s.value)]
                         for s in CacheStatus],
            "nodes": await members(sources, now),
        })
