"""Shared fixtures: the real reference origin and the real proxy, each on a real loopback port.

Nothing is mocked: the origin is `origin.app.create_app` over SQLite in tmp_path, the proxy is
`proxy.app.create_app` with its cache directory in tmp_path, and they talk HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer

from origin import app as origin_app
from proxy import config as config_mod
from proxy.app import PublicApp

ADMIN_TOKEN = "test-admin-token"
TIMEOUT = aiohttp.ClientTimeout(total=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def raw_request(port: int, text: str, timeout: float = 10.0) -> bytes:
    """Send bytes exactly as given (clients normalise URLs; attackers do not) and read the
    answer until the server closes or `timeout` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(text.encode("latin-1"))
        await writer.drain()
        data = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), timeout):
                data += chunk
                if b"\r\n\r\n" in data and b"Content-Length: " in data:
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
        except TimeoutError:
            pass
        return data
    finally:
        writer.close()


@dataclass
class Origin:
    server: TestServer
    app: web.Application
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def count(self, path: str, method: str = "GET") -> int:
        return int(self.app[origin_app.STATS_KEY].count(method=method, path=path))

    async def publish(self, path: str, body: bytes, **headers: str) -> dict[str, Any]:
        send = {"Authorization": f"Bearer {ADMIN_TOKEN}",
                **{k.replace("_", "-"): v for k, v in headers.items()}}
        async with self.session.put(self.url + path, data=body, headers=send) as r:
            assert r.status in (200, 201), await r.text()
            return dict(await r.json())

    async def admin(self, method: str, path: str, json: Any = None) -> int:
        async with self.session.request(
            method, self.url + path, json=json,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as r:
            await r.read()
            return r.status

    async def fault(self, **spec: Any) -> None:
        assert await self.admin("POST", "/_origin/faults", spec) in (200, 201, 204)


class Clock:
    """One clock for the origin's Date and the proxy's `now`, moved by tests instead of sleep."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> AsyncIterator[str]:
    """A small in-test origin: `handler` answers every GET, on a free loopback port; yields
    its base URL (no trailing slash)."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def origin(tmp_path: Path, clock: Clock) -> AsyncIterator[Origin]:
    app = origin_app.create_app(tmp_path / "origin.sqlite3", admin_token=ADMIN_TOKEN,
                                clock=clock)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield Origin(server, app, session)
    await server.close()


class ProxyTestServer(BaseTestServer):
    """Serves `runtime.make_server()` exactly as `mediaproxy serve` does (same parser limits)."""

    def __init__(self, runtime: PublicApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runtime = runtime

    async def _make_runner(self, **kwargs: Any) -> web.ServerRunner:
        return web.ServerRunner(self._runtime.make_server())


class ProxyClient(TestClient[web.BaseRequest, None]):
    """A test client on a real proxy; `runtime` is the PublicApp behind it."""

    runtime: PublicApp

    @property
    def port(self) -> int:
        """The proxy's bound port: a ProxyClient is only handed out started, so never None."""
        port = super().port
        assert port is not None, "the proxy test server is not started"
        return port


ProxyFactory = Callable[..., Awaitable[ProxyClient]]


@pytest.fixture
async def make_proxy(tmp_path: Path, origin: Origin) -> AsyncIterator[ProxyFactory]:
    """Start a proxy in front of `origin`; keyword arguments are config sections."""
    clients: list[ProxyClient] = []

    async def start(
        clock: Callable[[], float] | None = None, **sections: dict[str, Any]
    ) -> ProxyClient:
        data: dict[str, dict[str, Any]] = {
            "origin": {"url": origin.url, "read_timeout_seconds": 5.0},
            "cache": {"dir": str(tmp_path / f"cache{len(clients)}")},
            "log": {"access_log": False},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        config = config_mod.from_dict(data)
        runtime = PublicApp(config) if clock is None else PublicApp(config, clock=clock)
        await runtime.start()
        server = ProxyTestServer(runtime, host="127.0.0.1", port=free_port())
        client = ProxyClient(server, timeout=TIMEOUT)
        client.runtime = runtime
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
        await client.runtime.close()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> ProxyClient:
    return await make_proxy()


async def start_admin(proxy: ProxyClient, **client_args: Any
                      ) -> TestClient[web.Request, web.Application]:
    """The admin listener (`create_admin_app`) of a test proxy, on its own loopback port."""
    from prometheus_client import CollectorRegistry

    from proxy.admin import create_admin_app

    app = create_admin_app(proxy.runtime.config, CollectorRegistry(),
                           lambda: proxy.runtime.store)
    admin = TestClient(TestServer(app, host="127.0.0.1", port=free_port()), timeout=TIMEOUT,
                       **client_args)
    await admin.start_server()
    return admin
