"""An origin on a raw socket that answers each path with exactly the bytes a test scripts.

The reference origin always adds validators and framing of its own; conformance edge cases
need an answer without ETag or Last-Modified, an Age, a body longer than its Content-Length,
or bytes that arrive only when the test says so. Each `Script` is one answer: status, fields
(a `Date` from the shared clock is added unless the script has one), body, and optionally
`tail` bytes written after the body, at once or only once `tail_gate` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from tests.integration.loopback import LoopbackServer


@dataclass
class Script:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    tail: bytes = b""  # written after the body, beyond its Content-Length
    tail_gate: asyncio.Event | None = None  # the tail waits for this (None: same write)


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class ScriptedOrigin(LoopbackServer):
    clock: Callable[[], float]
    scripts: dict[str, Script] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    closed: list[asyncio.Event] = field(default_factory=list)  # one per connection, set on EOF
    port: int = 0
    _server: asyncio.Server | None = None

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        self.closed.append(closed)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [(k, v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
                seen = Seen(method, target.split("?", 1)[0], headers)
                length = seen.get("content-length")
                if length:
                    await reader.readexactly(int(length))
                self.seen.append(seen)
                script = self.scripts.get(seen.path, Script(404, [], b"not scripted"))
                fields = list(script.headers)
                if not any(k.lower() == "date" for k, _ in fields):
                    fields.append(("Date", formatdate(self.clock(), usegmt=True)))
                if not any(k.lower() == "content-length" for k, _ in fields):
                    fields.append(("Content-Length", str(len(script.body))))
                out = f"HTTP/1.1 {script.status} Scripted\r\n".encode() + b"".join(
                    f"{k}: {v}\r\n".encode("latin-1") for k, v in fields) + b"\r\n"
                if method != "HEAD" and script.status not in (204, 304):
                    out += script.body
                    if script.tail and script.tail_gate is None:
                        out += script.tail
                writer.write(out)
                await writer.drain()
                if script.tail and script.tail_gate is not None:
                    await script.tail_gate.wait()
                    writer.write(script.tail)
                    await writer.drain()
        finally:
            closed.set()
            writer.close()
