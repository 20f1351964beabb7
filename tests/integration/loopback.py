"""A raw asyncio server on a free loopback port: what the test origins that read requests byte
for byte share (their fields `port` and `_server`, and their own `_serve`)."""

from __future__ import annotations

import asyncio


class LoopbackServer:
    port: int
    _server: asyncio.Server | None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
