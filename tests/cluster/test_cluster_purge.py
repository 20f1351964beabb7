"""Three real nodes (subprocesses, each its own cache dir) behind one origin, sharing a real
redis-server: a purge on one reaches all, a node that was down catches up at start, and a Redis
outage degrades to local purges that are published when Redis is back."""

from __future__ import annotations

import functools
import json
import urllib.request
from pathlib import Path

from tests.cluster.conftest import (
    RedisServer,
    applied,
    cluster_status,
    live,
    prime,
    purge,
    put,
    start_node,
    until,
    x_cache,
)
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Running, stop

NAMES = ("node-a", "node-b", "node-c")


def start_three(tmp_path: Path, origin: Running, redis: RedisServer,
                paths: list[str]) -> list[Running]:
    """Publish `paths`, start the three nodes and cache every path on each of them."""
    for path in paths:
        put(origin, path, path.encode() * 100)
    # node-c runs a supervisor and two workers: the cluster lives in the supervisor there.
    nodes = [start_node(tmp_path, origin, redis, name, workers=2 if name == "node-c" else 1)
             for name in NAMES]
    try:
        until(lambda: live(nodes[0]) == set(NAMES), "node-a sees three live nodes")
        prime(nodes, paths)
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def connected(node: Running) -> bool:
    return bool(cluster_status(node)["connected"])


def missed(node: Running, path: str) -> bool:
    return x_cache(node, path) == "MISS"


def stop_all(nodes: list[Running]) -> None:
    for node in nodes:
        stop(node.proc)


def test_prefix_purge_with_wait_reaches_every_node(tmp_path: Path, origin_process: Running,
                                                   redis_server: RedisServer) -> None:
    paths = ["/c/p/a.bin", "/c/p/b.bin", "/c/keep.bin"]
    nodes = start_three(tmp_path, origin_process, redis_server, paths)
    try:
        answer = purge(nodes[0], prefix="/c/p/", wait=True)
        assert answer["kind"] == "prefix" and answer["value"] == "/c/p/"
        assert [n["node"] for n in answer["nodes"]] == list(NAMES)  # the local node first
        assert applied(answer) == dict.fromkeys(NAMES, True)
        for node in nodes:
            assert x_cache(node, "/c/p/a.bin") == "MISS"
            assert x_cache(node, "/c/p/b.bin") == "MISS"
            assert x_cache(node, "/c/keep.bin") == "HIT"
        # The PURGE method on node-c's public port (a worker there) goes through its admin
        # listener, so it reaches the cluster as POST /purge does.
        request = urllib.request.Request(
            nodes[2].url + "/c/keep.bin", method="PURGE",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Purge-Wait": "true"})
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        assert answer["kind"] == "exact" and answer["value"] == "/c/keep.bin"
        assert applied(answer) == dict.fromkeys(NAMES, True)
        for node in nodes:
            assert x_cache(node, "/c/keep.bin") == "MISS"
    finally:
        stop_all(nodes)


def test_a_node_that_was_down_applies_the_missed_purge_at_start(
        tmp_path: Path, origin_process: Running, redis_server: RedisServer) -> None:
    paths = ["/r/x.bin", "/r/keep.bin"]
    nodes = start_three(tmp_path, origin_process, redis_server, paths)
    try:
        assert stop(nodes[2].proc) == 0
        until(lambda: live(nodes[0]) == {"node-a", "node-b"}, "node-c no longer live")

        answer = purge(nodes[0], url="/r/x.bin", wait=True)
        assert applied(answer) == {"node-a": True, "node-b": True, "node-c": False}
        assert {n["node"]: n.get("error") for n in answer["nodes"]}["node-c"] == "not live"
        assert x_cache(nodes[1], "/r/x.bin") == "MISS"

        # Same name, same cache dir: it finds the ban in Redis before its workers serve.
        nodes[2] = start_node(tmp_path, origin_process, redis_server, "node-c", workers=2)
        assert x_cache(nodes[2], "/r/x.bin") == "MISS"
        assert x_cache(nodes[2], "/r/keep.bin") == "HIT"
        until(lambda: live(nodes[0]) == set(NAMES), "node-c live again")
        again = purge(nodes[0], url="/r/keep.bin", wait=True)
        assert applied(again) == dict.fromkeys(NAMES, True)
    finally:
        stop_all(nodes)


def test_redis_outage_purges_locally_and_recovers(tmp_path: Path, origin_process: Running,
                                                  redis_server: RedisServer) -> None:
    paths = ["/o/x.bin", "/o/y.bin", "/o/keep.bin"]
    nodes = start_three(tmp_path, origin_process, redis_server, paths)
    try:
        redis_server.stop()

        answer = purge(nodes[0], url="/o/x.bin", wait=True)
        assert answer["published"] is False
        assert answer["nodes"][0] == {"node": "node-a", "applied": True}
        assert {n["node"]: (n["applied"], n.get("error")) for n in answer["nodes"][1:]} == {
            "node-b": (False, "redis unreachable"), "node-c": (False, "redis unreachable")}
        assert x_cache(nodes[0], "/o/x.bin") == "MISS"
        for node in nodes[1:]:
            assert x_cache(node, "/o/x.bin") == "HIT"  # not reached, still serving
        for node in nodes:
            assert x_cache(node, "/o/keep.bin") == "HIT"
            assert cluster_status(node)["connected"] is False

        redis_server.start()
        for node in nodes:
            until(functools.partial(connected, node), f"{node.url} reconnected")
        until(lambda: live(nodes[0]) == set(NAMES), "three live nodes again")
        # The purge made during the outage was queued on node-a and published on reconnect.
        for node in nodes[1:]:
            until(functools.partial(missed, node, "/o/x.bin"),
                  f"{node.url} applied the purge made while Redis was down")

        later = purge(nodes[0], url="/o/y.bin", wait=True)
        assert applied(later) == dict.fromkeys(NAMES, True)
        for node in nodes:
            assert x_cache(node, "/o/y.bin") == "MISS"
            assert x_cache(node, "/o/keep.bin") == "HIT"
    finally:
        stop_all(nodes)
