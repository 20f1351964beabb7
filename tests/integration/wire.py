"""A raw keep-alive connection for tests: bytes out exactly as given, answers read back one by
one by their own framing (Content-Length; none for HEAD, 204 and 304)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    head: bytes  # status line and fields, without the blank line
    body: bytes

    def field(self, name: str) -> str | None:
        prefix = name.lower().encode() + b":"
        for line in self.head.split(b"\r\n")[1:]:
            if line.lower().startswith(prefix):
                return line[len(prefix):].strip().decode("latin-1")
        return None

    def fields(self) -> list[tuple[str, str]]:
        out = []
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            out.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return out


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode("latin-1") if isinstance(data, str) else data)
        await self.writer.drain()

    async def answer(self, head_only: bool = False, timeout: float = 10.0) -> Answer:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        answer = Answer(status, head[:-4], b"")
        length = answer.field("Content-Length")
        if not head_only and status not in (204, 304) and length is not None:
            answer.body = await asyncio.wait_for(self.reader.readexactly(int(length)), timeout)
        return answer

    async def get(self, path: str, extra: str = "", timeout: float = 10.0) -> Answer:
        await self.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n")
        return await self.answer(timeout=timeout)

    async def closed(self, timeout: float) -> bool:
        """True when the server closes the connection within `timeout` (reading nothing)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), timeout) == b""
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
