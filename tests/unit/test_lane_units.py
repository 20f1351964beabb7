"""The lane's pure parts: routes (validity, the per-second tail) and the metric tally."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from proxy.lane.routes import MAX_ROUTES, MAX_TARGET_BYTES, Routes
from proxy.lane.tally import Tally
from proxy.metrics import Metrics
from proxy.policy.cache_status import CacheOutcome, member
from proxy.policy.decide import Facts
from proxy.policy.freshness import StoredResponse
from proxy.status import CacheStatus
from proxy.store.front import FrontCache, FrontEntry
from proxy.store.keysignal import KeySignal, slot_of

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Bans:
    def __init__(self) -> None:
        self.index = object()

    def __call__(self) -> object:
        return self.index


def entry(key: str = "/a", lifetime: float = 100.0, initial_age: float = 0.0,
          response_time: float = T0) -> FrontEntry:
    meta = StoredResponse(200, (("Content-Type", "image/png"),), response_time, response_time, 3)
    facts = Facts(lifetime_seconds=lifetime, initial_age_seconds=initial_age,
                  response_time=response_time, validator=True, must_revalidate_always=False)
    return FrontEntry(key, "f", 1, meta, facts, b"abc", (), b"HEAD\r\n", loaded_at=T0,
                      loaded_mono=time.monotonic())


def routes(clock: Clock, bans: Bans, ttl: float = 1.0, cache_status: bool = True) -> Routes:
    return Routes("mediaproxy", cache_status, ttl, bans, clock)


def test_a_route_answers_with_age_and_cache_status_as_the_lifecycle_writes_them() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans)
    table.add(b"/a", entry(initial_age=3.0), b"HEAD\r\n", T0, bans())
    clock.now = T0 + 0.5
    route = table.answer(b"/a", clock.now)
    assert route is not None and route.body == b"abc" and route.head == b"HEAD\r\n"
    cache_status = member("mediaproxy", CacheOutcome(CacheStatus.HIT, ttl=100 - 3.5))
    assert route.tail == f"Cache-Status: {cache_status}\r\nAge: 3\r\n\r\n".encode()


def test_the_tail_follows_the_clock_and_can_leave_cache_status_out() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0, cache_status=False)
    table.add(b"/a", entry(lifetime=100.0), b"H", T0, bans())
    for offset, age in ((0.2, 0), (0.99, 0), (1.0, 1), (7.3, 7)):
        clock.now = T0 + offset
        route = table.answer(b"/a", clock.now)
        assert route is not None and route.tail == b"Age: %d\r\n\r\n" % age


def test_a_fractional_lifetime_moves_the_ttl_on_its_own_second() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0)
    table.add(b"/a", entry(lifetime=10.5), b"H", T0, bans())
    for offset in (0.1, 0.4, 0.6, 0.9, 1.2, 1.5, 1.7):
        clock.now = T0 + offset
        route = table.answer(b"/a", clock.now)
        assert route is not None
        ttl = math.floor(10.5 - offset)
        assert f"ttl={ttl}\r\n".encode() in route.tail, (offset, route.tail)


@pytest.mark.parametrize(("lifetime", "ttl", "offset", "alive"), [
    (100.0, 1.0, 0.99, True),
    (100.0, 1.0, 1.0, False),  # the memory copy's TTL
    (0.5, 1.0, 0.49, True),
    (0.5, 1.0, 0.5, False),  # freshness
])
def test_a_route_lives_no_longer_than_its_copy_and_its_freshness(
        lifetime: float, ttl: float, offset: float, alive: bool) -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=ttl)
    table.add(b"/a", entry(lifetime=lifetime), b"H", T0, bans())
    clock.now = T0 + offset
    assert (table.answer(b"/a", clock.now) is not None) is alive


def test_an_initial_age_shortens_the_route() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0)
    table.add(b"/a", entry(lifetime=10.0, initial_age=9.5), b"H", T0, bans())
    clock.now = T0 + 0.6
    assert table.answer(b"/a", clock.now) is None


def test_stale_or_infinite_entries_make_no_route() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans)
    table.add(b"/a", entry(lifetime=0.0), b"H", T0, bans())
    table.add(b"/b", entry(lifetime=math.inf), b"H", T0 - 5, bans())  # copy older than the TTL
    assert len(table) == 0


def test_a_moved_ban_table_ends_every_route() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0)
    table.add(b"/a", entry(), b"H", T0, bans())
    assert table.answer(b"/a", clock.now) is not None
    bans.index = object()
    assert table.answer(b"/a", clock.now) is None
    assert table.answer(b"/a", clock.now) is None  # gone, not just refused


def test_dropping_the_memory_copy_ends_every_route_to_it() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0)
    front = FrontCache(1 << 20, 1 << 16, 60.0)
    front.on_drop = table.drop_key
    first = entry("/a")
    front.put(first)
    table.add(b"/a", first, b"H", T0, bans())
    table.add(b"/a?x", first, b"H", T0, bans())
    table.add(b"/b", entry("/b"), b"H", T0, bans())
    front.drop("/a")
    assert table.answer(b"/a", clock.now) is None and table.answer(b"/a?x", clock.now) is None
    assert table.answer(b"/b", clock.now) is not None
    table.add(b"/a", first, b"H", T0, bans())
    front.put(first)
    front.put(entry("/a"))  # replaced by a newer copy: routes to the old one die too
    assert table.answer(b"/a", clock.now) is None


def test_sweep_forgets_expired_routes_and_the_table_is_bounded() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=1.0)
    table.add(b"/a", entry("/a"), b"H", T0, bans())
    clock.now = T0 + 0.5
    table.add(b"/b", entry("/b"), b"H", T0 + 0.5, bans())
    clock.now = T0 + 1.2
    assert table.sweep() == 1 and len(table) == 1
    for index in range(MAX_ROUTES + 10):
        table.add(b"/many/%d" % index, entry(f"/many/{index}"), b"H", clock.now, bans())
    assert len(table) == MAX_ROUTES


def test_the_tally_adds_up_to_what_per_request_updates_make() -> None:
    batched, single = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    tally = Tally()
    answers = [(3, 4096, 0.00002), (1, 65536, 0.0007), (2, 10, 0.02)]
    for count, size, seconds in answers:
        tally.add(count, size * count, seconds)
        for _ in range(count):
            single.observe_request(CacheStatus.HIT, "GET", size, seconds)
    assert tally.flush(batched) == 6
    assert tally.flush(batched) == 0  # flushed once
    for name, labels in (
            ("mediaproxy_requests_total", {"cache_status": "HIT", "method": "GET"}),
            ("mediaproxy_response_bytes_total", {"cache_status": "HIT"}),
            ("mediaproxy_request_duration_seconds_count", {"cache_status": "HIT"}),
            ("mediaproxy_request_duration_seconds_sum", {"cache_status": "HIT"})):
        assert batched.registry.get_sample_value(name, labels) == pytest.approx(
            single.registry.get_sample_value(name, labels)), name
    for bound in ("0.0005", "0.001", "0.025", "+Inf"):
        labels = {"cache_status": "HIT", "le": bound}
        name = "mediaproxy_request_duration_seconds_bucket"
        assert batched.registry.get_sample_value(name, labels) == single.registry.get_sample_value(
            name, labels), bound
    assert batched.registry.get_sample_value("mediaproxy_lane_hits_total") == 6


def test_the_key_index_forgets_what_the_table_forgets() -> None:
    """Routes dropped when refused (expired, bans moved) leave the per-key index too, so
    neither grows with targets a client makes up (it was a list, scanned per add)."""
    clock, bans = Clock(), Bans()
    table = routes(clock, bans)
    for round_ in range(3):
        for i in range(50):
            table.add(f"/a?{round_}-{i}".encode(), entry(), b"HEAD\r\n", clock.now, bans())
        assert len(table.targets_of("/a")) == len(table) == 50
        bans.index = object()
        for i in range(50):  # answered after the ban table moved: refused, forgotten
            assert table.answer(f"/a?{round_}-{i}".encode(), clock.now) is None
        assert table.targets_of("/a") == frozenset() and len(table) == 0
        assert table.target_bytes == 0
    table.add(b"/a", entry(), b"HEAD\r\n", clock.now, bans())
    clock.now += 2
    assert table.answer(b"/a", clock.now) is None  # expired
    assert table.targets_of("/a") == frozenset() and table.target_bytes == 0


def test_the_table_is_bounded_by_its_targets_bytes_and_makes_no_fragment_routes() -> None:
    clock, bans = Clock(), Bans()
    table = routes(clock, bans)
    table.add(b"/a#x", entry(), b"HEAD\r\n", clock.now, bans())
    assert len(table) == 0
    target = b"/a?" + b"q" * (16 * 1024)
    count = MAX_TARGET_BYTES // len(target)
    for i in range(count + 10):
        table.add(target + str(i).encode(), entry(), b"HEAD\r\n", clock.now, bans())
    assert len(table) <= count and table.target_bytes <= MAX_TARGET_BYTES
    table.drop_key("/a")
    assert len(table) == 0 and table.target_bytes == 0
    table.add(target, entry(), b"HEAD\r\n", clock.now, bans())  # room again
    assert len(table) == 1


def test_a_route_is_bound_to_the_ban_table_it_was_judged_in() -> None:
    """A purge landing between the lifecycle's check and the route's making must not slip
    under the route: the route keeps the table it was judged in, not whatever is current."""
    clock, bans = Clock(), Bans()
    table = routes(clock, bans, ttl=60.0)
    judged_in = bans()
    bans.index = object()  # another process purged meanwhile
    table.add(b"/a", entry(), b"H", T0, judged_in)
    assert table.answer(b"/a", clock.now) is None


def test_a_moved_key_signal_ends_the_route(tmp_path: Path) -> None:
    """Another process replaced, refreshed or deleted the key: its routes die at once."""
    clock, bans = Clock(), Bans()
    signals = KeySignal(tmp_path / "keys")
    table = Routes("mediaproxy", True, 60.0, bans, clock, signals)
    slot = slot_of("/a")
    table.add(b"/a", replace(entry("/a"), slot=slot, signal=signals.read(slot)), b"H", T0,
              bans())
    assert table.answer(b"/a", clock.now) is not None
    KeySignal(tmp_path / "keys").bump("/a")  # as another process's commit does
    assert table.answer(b"/a", clock.now) is None
