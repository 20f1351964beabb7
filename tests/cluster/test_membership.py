"""`proxy.cluster.Cluster` in-process against a real redis-server: answers without waiting,
a live node that never acknowledges, malformed messages, idempotent catch-up, store failures
retried. Stores are recording stand-ins; the three-node stories are in test_cluster_purge.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
import redis.asyncio as aioredis

from proxy.cluster import Cluster, NodeState
from proxy.config import ClusterConfig
from proxy.errors import StoreError
from proxy.policy.bans import Ban, BanKind
from proxy.store.index import Store
from tests.cluster.conftest import WAIT_SECONDS, RedisServer


class RecordingStore:
    def __init__(self) -> None:
        self.bans: list[Ban] = []
        self.failing = False

    def add_ban(self, kind: BanKind, value: str, *, soft: bool, now: float) -> Ban:
        if self.failing:
            raise StoreError("disk on fire")
        ban = Ban(len(self.bans) + 1, kind, value, now, soft)
        self.bans.append(ban)
        return ban


Make = Callable[..., Awaitable[tuple[Cluster, RecordingStore]]]


@pytest.fixture
async def make_cluster(redis_server: RedisServer) -> AsyncIterator[Make]:
    started: list[Cluster] = []

    async def make(name: str, store: RecordingStore | None = None
                   ) -> tuple[Cluster, RecordingStore]:
        store = store or RecordingStore()
        config = ClusterConfig(redis_url=redis_server.url, heartbeat_seconds=0.1,
                               node_ttl_seconds=1.0, wait_timeout_seconds=WAIT_SECONDS)
        cluster = Cluster(config, name, lambda: cast(Store, store))
        await cluster.start()
        started.append(cluster)
        return cluster, store

    yield make
    for cluster in started:
        await cluster.close()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


def ban(value: str, created: float | None = None) -> Ban:
    return Ban(1, BanKind.PREFIX, value, time.time() if created is None else created, False)


async def test_without_wait_other_live_nodes_are_pending(make_cluster: Make) -> None:
    a, _ = await make_cluster("a")
    _, b_store = await make_cluster("b")
    assert await a.live_nodes() == {"a", "b"}
    published = await a.publish(ban("/p/"))
    states = await a.report(published, wait=False)
    assert states[0] == NodeState("a", applied=True)
    assert states[1].node == "b"  # pending, or applied already if b was quick
    assert states[1].pending or states[1].applied
    await eventually(lambda: len(b_store.bans) == 1, "b applied the purge")
    assert (b_store.bans[0].kind, b_store.bans[0].value) == (BanKind.PREFIX, "/p/")


async def test_a_live_node_that_never_acknowledges_is_reported(
        make_cluster: Make, redis_server: RedisServer) -> None:
    a, _ = await make_cluster("a")
    async with aioredis.Redis.from_url(redis_server.url) as r:
        # A heartbeat without a node behind it: live, but nobody applies anything.
        await r.set(a.node_key("ghost"), "{}", ex=60)
        await r.hset(a.nodes_key, "ghost", "9e18")
    published = await a.publish(ban("/g/"))
    states = await a.report(published, wait=True, timeout_seconds=0.3)
    assert states == [NodeState("a", applied=True),
                      NodeState("ghost", applied=False,
                                error="no acknowledgement within 0.3 s")]


async def test_malformed_messages_are_ignored(make_cluster: Make,
                                              redis_server: RedisServer) -> None:
    a, _ = await make_cluster("a")
    _, b_store = await make_cluster("b")
    async with aioredis.Redis.from_url(redis_server.url) as r:
        for junk in ("not json", "[]", json.dumps({"id": "x", "kind": "nope"}),
                     json.dumps({"id": "y", "origin_node": "z", "kind": "prefix",
                                 "value": 5, "soft": False, "created": 1.0})):
            await r.publish(a.channel, junk)
    states = await a.report(await a.publish(ban("/ok/")), wait=True)
    assert [s.applied for s in states] == [True, True]
    assert [x.value for x in b_store.bans] == ["/ok/"]


async def test_catch_up_applies_each_missed_purge_once_with_its_own_time(
        make_cluster: Make) -> None:
    a, _ = await make_cluster("a")
    await a.publish(ban("/one/", created=1000.0))
    await a.publish(ban("/two/", created=2000.0))
    # ban_ttl is an hour: bans created at 1000.0 and 2000.0 (1970) are trimmed as published.
    recent = await a.publish(Ban(3, BanKind.TAG, "t7", a.clock() - 5, True))
    store = RecordingStore()
    b, _ = await make_cluster("b", store)
    assert [(x.kind, x.value, x.created, x.soft) for x in store.bans] == [
        (BanKind.TAG, "t7", recent.purge.created, True)]
    await b.close()
    await make_cluster("b", store)  # same node name: Redis remembers what it applied
    assert len(store.bans) == 1


async def test_a_store_failure_is_retried_and_then_acknowledged(make_cluster: Make) -> None:
    a, _ = await make_cluster("a")
    store = RecordingStore()
    store.failing = True
    await make_cluster("b", store)
    published = await a.publish(ban("/f/"))
    states = await a.report(published, wait=True, timeout_seconds=0.3)
    assert states[1] == NodeState("b", applied=False, error="no acknowledgement within 0.3 s")
    store.failing = False
    acks = await a.wait_for_acks(published.purge.id, WAIT_SECONDS)
    assert acks.applied == {"a", "b"} and not acks.missing
    assert [x.value for x in store.bans] == ["/f/"]

