"""Routes: request targets the lifecycle has just answered as a plain memory-tier hit, so the
next identical request can be answered from pre-serialised bytes without the lifecycle.

Rule: a route is only ever made by the lifecycle itself (`answer.memory`, on the pre-built
bytes branch), for an exact request-target (bytes as sent) whose answer depends on nothing
else a lane request may carry; it dies when any of the facts it was made under moves: the
memory-tier copy it serves (dropped, replaced, or older than the tier's TTL), the object's
freshness, the ban table. A request the routes cannot answer goes to the lifecycle, which
may make the route again. Nothing here does I/O beyond one read of the ban signal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from proxy.policy.cache_status import fresh_hit
from proxy.store.front import FrontEntry
from proxy.store.keysignal import KeySignal

MAX_ROUTES = 65536  # per worker; a full table makes no new routes until a sweep frees some
# ... nor once its targets hold this many bytes (a client chooses them: 65,536 targets of
# 16 KiB would be 1 GiB).
MAX_TARGET_BYTES = 16 * 1024 * 1024


class Route:
    """One request-target's answer: the head without Age (and Cache-Status), the body, and the
    facts that bound its validity."""

    __slots__ = (
        "bans",
        "body",
        "entry",
        "expires",
        "head",
        "initial_age",
        "key",
        "lifetime",
        "memory_until",
        "response_time",
        "rowid",
        "signal",
        "slot",
        "tail",
        "tail_age",
        "tail_ttl",
    )

    def __init__(self, entry: FrontEntry, head: bytes, expires: float, bans: object,
                 memory_until: float) -> None:
        facts = entry.facts
        self.key = entry.key
        self.entry = entry
        self.head = head
        self.body = entry.body
        self.expires = expires
        self.memory_until = memory_until  # time.monotonic(): the memory copy's own end
        self.bans = bans
        self.initial_age = facts.initial_age_seconds
        self.response_time = facts.response_time
        self.lifetime = facts.lifetime_seconds
        self.rowid = entry.rowid
        self.slot = entry.slot
        self.signal = entry.signal
        self.tail_age = -1  # the whole-second Age and ttl `tail` was built for
        self.tail_ttl = 0
        self.tail = b""


class Routes:
    def __init__(self, cache_name: str, cache_status: bool, memory_ttl: float,
                 bans: Callable[[], object], clock: Callable[[], float],
                 signals: KeySignal | None = None) -> None:
        self._signals = signals  # per-key change signals: a changed key's routes die
        self._cache_name = cache_name
        self._cache_status = cache_status
        self._ttl = memory_ttl
        self._bans = bans
        self._clock = clock
        self._by_target: dict[bytes, Route] = {}
        self._by_key: dict[str, set[bytes]] = {}  # the targets routed to each key
        self._bytes = 0  # of the targets in _by_target

    def __len__(self) -> int:
        return len(self._by_target)

    @property
    def target_bytes(self) -> int:
        return self._bytes

    def targets_of(self, key: str) -> frozenset[bytes]:
        """The targets routed to `key` (for the tests: the index must match the table)."""
        return frozenset(self._by_key.get(key, ()))

    def add(self, target: bytes, entry: FrontEntry, head: bytes, loaded_at: float,
            bans: object) -> None:
        """The lifecycle answered `target` with `entry`'s pre-built bytes (`head`), judged
        unbanned in the ban table `bans`: route the same target there while the entry's
        copy, its freshness and that table hold."""
        if target not in self._by_target and (
                len(self._by_target) >= MAX_ROUTES
                or self._bytes + len(target) > MAX_TARGET_BYTES):
            return
        if b"#" in target:
            return  # a fragment: clients never send one, and each spelling would be a route
        facts = entry.facts
        fresh_until = facts.response_time + facts.lifetime_seconds - facts.initial_age_seconds
        expires = min(fresh_until, loaded_at + self._ttl)
        if not math.isfinite(expires) or expires <= self._clock() or (
                entry.loaded_mono + self._ttl <= time.monotonic()):
            return
        old = self._by_target.get(target)
        if old is not None:
            self._forget(target, old)
        self._by_target[target] = Route(entry, head, expires, bans,
                                        entry.loaded_mono + self._ttl)
        self._by_key.setdefault(entry.key, set()).add(target)
        self._bytes += len(target)

    def _forget(self, target: bytes, route: Route) -> None:
        """Take `target` out of both indexes (its key's set goes when it empties)."""
        del self._by_target[target]
        self._bytes -= len(target)
        targets = self._by_key.get(route.key)
        if targets is not None:
            targets.discard(target)
            if not targets:
                del self._by_key[route.key]

    def drop_key(self, key: str) -> None:
        """The memory tier dropped or replaced `key`: no route may serve its old copy."""
        for target in self._by_key.pop(key, ()):
            route = self._by_target.pop(target, None)
            if route is not None:
                self._bytes -= len(target)

    def clear(self) -> None:
        self._by_target.clear()
        self._by_key.clear()
        self._bytes = 0

    def sweep(self) -> int:
        """Forget expired routes (they would be refused anyway); the count removed."""
        now = self._clock()
        dead = [(target, route) for target, route in self._by_target.items()
                if route.expires <= now]
        for target, route in dead:
            self._forget(target, route)
        return len(dead)

    def answer(self, target: bytes, now: float) -> Route | None:
        """The route for `target` if it may answer now (its `tail` then carries this second's
        Age and Cache-Status lines), else None (the request goes to the lifecycle)."""
        route = self._by_target.get(target)
        if route is None:
            return None
        # The memory copy's TTL runs on the monotonic clock, as the tier's own does: a wall
        # clock stepped back must not keep a copy the tier has let go.
        signals = self._signals
        if now >= route.expires or time.monotonic() >= route.memory_until or (
                self._bans() is not route.bans) or (
                signals is not None and signals.read(route.slot) != route.signal):
            self._forget(target, route)
            return None
        age = route.initial_age + (now - route.response_time if now > route.response_time
                                   else 0.0)
        whole = int(age)  # age >= 0: the same as math.floor
        ttl = math.floor(route.lifetime - age)
        if whole != route.tail_age or ttl != route.tail_ttl:
            route.tail = self._tail(route.lifetime - age, whole)
            route.tail_age = whole
            route.tail_ttl = ttl
        return route

    def _tail(self, ttl: float, age: int) -> bytes:
        tail = b"Age: %d\r\n\r\n" % age
        if self._cache_status:  # ASCII by construction (sf-token or sf-string)
            member = fresh_hit(self._cache_name, ttl)
            tail = b"Cache-Status: " + member.encode() + b"\r\n" + tail
        return tail
