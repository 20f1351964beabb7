"""A real `redis-server` per test (free loopback port, no persistence) and proxy nodes that
share it, each a `mediaproxy serve` subprocess with its own cache directory.

Without `redis-server` on PATH these tests are skipped (`make redis-server` installs it), unless
MEDIAPROXY_TEST_REQUIRE_REDIS is set (CI), where they fail instead.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, free_port
from tests.e2e.conftest import Running, origin_process, start_proxy, stop

__all__ = ["origin_process"]  # the e2e fixture, used here too

REDIS_SERVER = shutil.which("redis-server")
WAIT_SECONDS = 30.0  # bound on every "until" below; never an assertion threshold


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        until(self.ping, f"redis-server on port {self.port} answers PING")

    def ping(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        message = "redis-server is not on PATH (make redis-server installs it)"
        if os.environ.get("MEDIAPROXY_TEST_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def start_node(tmp_path: Path, origin: Running, redis: RedisServer, name: str,
               workers: int = 1, cache_extra: str = "") -> Running:
    """A node named `name` with its own cache dir (tmp_path/name/cache), joined to `redis`."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    extra = (f'[admin]\ntoken = "{ADMIN_TOKEN}"\nnode_name = "{name}"\n'
             f'[cluster]\nredis_url = "{redis.url}"\nheartbeat_seconds = 0.3\n'
             f"node_ttl_seconds = 1.5\nwait_timeout_seconds = 10\n")
    return start_proxy(directory, origin.url, workers=workers, name=name, extra=extra,
                       cache_extra=cache_extra)


def admin_json(node: Running, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        node.admin_url + path, data=data, method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as r:
        return json.loads(r.read())


def purge(node: Running, **body: Any) -> dict[str, Any]:
    answer: dict[str, Any] = admin_json(node, "/purge", body)
    return answer


def cluster_status(node: Running) -> dict[str, Any]:
    status: dict[str, Any] = admin_json(node, "/stats")["cluster"]
    return status


def x_cache(node: Running, path: str) -> str:
    with urllib.request.urlopen(node.url + path, timeout=WAIT_SECONDS) as r:
        r.read()
        return str(r.headers["X-Cache"])


def is_hit(node: Running, path: str) -> bool:
    return x_cache(node, path) == "HIT"


def prime(nodes: list[Running], paths: list[str]) -> None:
    """Fetch every path through every node until each answers HIT (the fill has committed)."""
    for node in nodes:
        for path in paths:
            until(functools.partial(is_hit, node, path), f"{path} cached on {node.url}")


def applied(answer: dict[str, Any]) -> dict[str, bool]:
    return {n["node"]: n["applied"] for n in answer["nodes"]}


def put(origin: Running, path: str, body: bytes) -> None:
    request = urllib.request.Request(origin.url + path, data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as r:
        assert r.status in (200, 201)


def live(node: Running) -> set[str]:
    try:
        return set(cluster_status(node)["live_nodes"])
    except (OSError, urllib.error.URLError):
        return set()
