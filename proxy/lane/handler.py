"""The connection protocol: aiohttp's RequestHandler, with a lane in front of it that answers
reads of routed memory-tier hits straight from the parser's callbacks.

Rule: the lane answers a read from the client only when all of it is complete requests it
can answer (GET, HTTP/1.1, keep-alive, no field that could change the answer or the framing,
a live route) and aiohttp's handler is idle at a message boundary; anything else (a partial
head, a request it cannot answer, a parser complaint, a client that is not reading) is
handed to aiohttp unchanged, which answers it as if the lane did not exist. Every byte is
parsed by llhttp (httptools) in strict mode; once a connection carries a body, an upgrade,
or bytes httptools refuses, the lane steps aside for the rest of that connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httptools
from aiohttp import web_protocol

if TYPE_CHECKING:
    from proxy.lane.lane import Lane
    from proxy.lane.routes import Route

# A field in any of these makes the request one for the lifecycle (conditionals and ranges
# shape the answer, Cache-Control can refuse the stored copy, the rest frame a body or
# change the protocol).
_REFUSED = frozenset((
    b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer",
    b"cache-control", b"range", b"if-range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"http2-settings",
    b"sec-websocket-key1",  # aiohttp refuses the old WebSocket handshake (400)
))
_FRAMING = frozenset((b"content-length", b"transfer-encoding"))
# aiohttp refuses a request repeating one of these (400): so does the lane, by not answering.
_SINGLETONS = {name: 1 << bit for bit, name in enumerate((
    b"content-location", b"content-range", b"content-type", b"etag", b"host",
    b"max-forwards", b"server", b"user-agent"))}
_HOST_BIT = _SINGLETONS[b"host"]
MAX_HEADERS = 128  # aiohttp's request parser limit
MAX_ANSWER_BYTES = 1 << 20  # more per read (a pipelining client) goes through aiohttp's drain


class LaneParse:
    """One connection's httptools parser and what it learned of the requests in one read."""

    __slots__ = (
        "found",
        "headers",
        "heads",
        "in_message",
        "lane",
        "log_items",
        "logged",
        "off",
        "parser",
        "passed",
        "refused",
        "seen",
        "url",
    )

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.parser = httptools.HttpRequestParser(self)
        self.off = False  # the lane has stepped aside for the rest of the connection
        self.in_message = False
        self.url = b""
        self.refused = False
        self.seen = 0  # singleton fields seen (bits)
        self.headers = 0
        self.found: list[Route | None] = []
        self.heads = 0  # request heads completed by the parser, on this connection
        self.passed = 0  # of them, handed to aiohttp
        # With the access log on: the fields it names, per request of this read.
        self.logged: list[tuple[bytes, bytes]] | None = [] if lane.logs else None
        self.log_items: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.url = b""
        self.refused = False
        self.seen = 0
        self.headers = 0
        if self.logged is not None:
            self.logged = []

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.lane.max_line:
            self.refused = True  # aiohttp answers 414/400; nothing more is kept here
            return
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lane = self.lane
        self.headers += 1
        # aiohttp counts a field's name and value together against max_field_size (for
        # some fields only: refusing them all is the lifecycle's answer either way).
        if len(name) + len(value) > lane.max_field or b"\x00" in value:
            self.refused = True
            return
        name = name.lower()
        if name in _REFUSED:
            self.refused = True
            if name in _FRAMING:
                self.off = True  # a body may follow: only aiohttp frames this connection
        elif name == b"connection" and value.strip().lower() != b"keep-alive":
            self.refused = True
        bit = _SINGLETONS.get(name)
        if bit is not None:
            if self.seen & bit:
                self.refused = True
            self.seen |= bit
        if self.logged is not None and name in lane.logs:
            self.logged.append((name, value))

    def on_headers_complete(self) -> None:
        self.heads += 1

    def on_body(self, body: bytes) -> None:
        self.off = True

    def on_message_complete(self) -> None:
        self.in_message = False
        parser = self.parser
        method = parser.get_method()
        route = None
        if (not self.refused and (method == b"GET") and self.seen & _HOST_BIT
                and self.headers <= MAX_HEADERS and parser.get_http_version() == "1.1"
                and parser.should_keep_alive()):
            route = self.lane.routes.answer(self.url, self.lane.clock())
        self.found.append(route)
        if self.logged is not None:
            self.log_items.append((self.url, self.logged))


class LaneHandler(web_protocol.RequestHandler):
    """aiohttp's handler for one connection, with the lane in `data_received`."""

    __slots__ = ("_lane_parse",)

    def __init__(self, manager: Any, *, lane: Lane, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._lane_parse = LaneParse(lane)

    def lane_heads(self) -> int:
        """Request heads this connection has delivered so far (lane answers included)."""
        return self._lane_parse.heads

    def data_received(self, data: bytes) -> None:
        state = self._lane_parse
        if state.off:
            super().data_received(data)
            return
        waiter = self._waiter
        # aiohttp waits for a request, has parsed every head it was given and nothing more.
        idle = (not state.in_message and waiter is not None and not waiter.done()
                and not self._messages and state.passed == self._request_count
                and not self._paused and not self._force_close and not self._close)
        heads = state.heads
        started = time.perf_counter()
        try:
            state.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            state.off = True
        found = state.found
        answered = bool(idle and found and not state.off and not state.in_message and (
            None not in found) and self._lane_answer(found, started))
        # What this read's requests left (one entry each, and the fields the access line
        # names) goes now: a connection paused on a client that does not read would keep
        # it (a 256 KiB read of small requests made ~3 MiB of them, per connection).
        found.clear()
        state.log_items.clear()
        if answered:
            return  # answered here: aiohttp never sees these heads
        state.passed += state.heads - heads
        super().data_received(data)

    def _lane_answer(self, found: list[Route | None], started: float) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        lane = self._lane_parse.lane
        parts: list[bytes] = []
        body_bytes = 0
        for route in found:
            assert route is not None
            parts += (route.head, route.tail, route.body)
            body_bytes += len(route.body)
        if body_bytes > MAX_ANSWER_BYTES:
            return False
        transport.write(b"".join(parts))  # one send for the whole read
        loop = self._loop
        self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = loop.call_at(self._next_keepalive_close_time,
                                                  self._process_keepalive)
        lane.answered(self, found, self._lane_parse.log_items, body_bytes, started)
        return True
