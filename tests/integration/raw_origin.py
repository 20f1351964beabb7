"""An origin on a raw socket that records the exact bytes it receives and parses them strictly.

A client library (aiohttp's server included) would tolerate or tidy away what a smuggling
attack depends on; this one reads request heads byte for byte, frames bodies only by the
rules of RFC 9112 §6, and records as a violation anything that is not a well-framed request:
a GET or HEAD carrying framing fields, a request line that is not `METHOD /path HTTP/1.1`,
both Content-Length and Transfer-Encoding, a bad chunk. Every answer is a 200 whose body names
the request it answers (method, path and a counter), cacheable for a minute.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from tests.integration.loopback import LoopbackServer

_REQUEST_LINE = re.compile(rb"[A-Z][A-Z-]{0,19} /[\x21-\x7e]* HTTP/1\.1")


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class RawOrigin(LoopbackServer):
    requests: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    port: int = 0
    extra_headers: dict[str, list[str]] = field(default_factory=dict)  # path -> header lines
    _server: asyncio.Server | None = None

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.raw += head
                request = self._parse(head)
                if request is None:
                    return  # recorded as a violation; the connection cannot be trusted
                body = await self._body(request, reader)
                if body is None:
                    return
                request.body = body
                self.requests.append(request)
                answer = f"{request.method} {request.path} #{len(self.requests)}".encode()
                extra = "".join(f"{line}\r\n" for line in self.extra_headers.get(request.path,
                                                                                  []))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Cache-Control: max-age=60\r\nETag: \"e%d\"\r\n%sContent-Length: %d\r\n\r\n"
                    % (len(self.requests), extra.encode(), len(answer))
                    + (b"" if request.method == "HEAD" else answer))
                await writer.drain()
        finally:
            writer.close()

    def _parse(self, head: bytes) -> Received | None:
        lines = head[:-4].split(b"\r\n")
        if not _REQUEST_LINE.fullmatch(lines[0]):
            self.violations.append(f"bad request line {lines[0][:80]!r}")
            return None
        method, path, _ = lines[0].decode("latin-1").split(" ")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                self.violations.append(f"bad header line {line[:80]!r}")
                return None
            headers.append((name, value.strip()))
        return Received(method, path, headers, b"")

    async def _body(self, request: Received, reader: asyncio.StreamReader) -> bytes | None:
        lengths = [v for k, v in request.headers if k.lower() == "content-length"]
        codings = [v for k, v in request.headers if k.lower() == "transfer-encoding"]
        if request.method in ("GET", "HEAD") and (lengths or codings):
            self.violations.append(f"{request.method} {request.path} carries framing fields")
        if lengths and codings:
            self.violations.append("both Content-Length and Transfer-Encoding")
            return None
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            self.violations.append(f"bad Content-Length {lengths}")
            return None
        try:
            if codings:
                if [c.lower() for c in codings] != ["chunked"]:
                    self.violations.append(f"Transfer-Encoding {codings}")
                    return None
                return await self._chunked(reader)
            if lengths:
                return await reader.readexactly(int(lengths[0]))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self.violations.append(f"body of {request.path} broke: {exc!r}")
            return None
        return b""

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return body
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
