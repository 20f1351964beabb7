"""An HTTP origin (aiohttp, on a real loopback port) whose answer per path is a function of the
request, and which records what it was sent: for tests of what a shared cache must never mix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Any]


class Scripted:
    """An origin whose answer per path is a function of the request; records what it got."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""

    def count(self, path: str, method: str | None = None) -> int:
        return sum(1 for m, p, _ in self.seen if p == path and method in (None, m))

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for _, p, h in self.seen if p == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, {k.lower(): v for k, v in
                                                         request.headers.items()}))
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(body=b"body of " + request.path.encode(),
                                headers={"Cache-Control": "max-age=60", "ETag": '"x"'})
        answer = route(request)
        response: web.StreamResponse = (await answer if asyncio.iscoroutine(answer)
                                        else answer)
        return response
