"""The one aiohttp ClientSession to the origin: timeouts, header hygiene, error translation.

Rule: aiohttp.ClientError and timeouts end here, translated into OriginError (502) or
OriginTimeout (504); callers never see a library exception. It never touches the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from proxy.config import OriginConfig
from proxy.errors import OriginError, OriginTimeout
from proxy.policy.headers import end_to_end


@dataclass(slots=True)
class OriginResponse:
    status: int
    headers: list[tuple[str, str]]  # end-to-end fields only
    content_length: int | None
    _response: aiohttp.ClientResponse
    chunk_bytes: int

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, translated: a broken or silent origin raises OriginError/OriginTimeout."""
        try:
            async for chunk in self._response.content.iter_chunked(self.chunk_bytes):
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise OriginTimeout(f"origin body timed out: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise OriginError(f"origin body broke: {exc.__class__.__name__}") from exc

    async def read_all(self, limit: int) -> bytes:
        body = bytearray()
        async for chunk in self.iter_chunks():
            body += chunk
            if len(body) > limit:
                raise OriginError("origin body larger than expected")
        return bytes(body)

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        """Drop the connection (used when abandoning a body midway)."""
        self._response.close()


class OriginClient:
    def __init__(self, config: OriginConfig, *, chunk_bytes: int = 256 * 1024,
                 keep_fields: frozenset[str] = frozenset()) -> None:
        self.config = config
        # Response fields a `Connection` field may not strip (the access policy): dropping
        # them would turn a protected object public.
        self.keep_fields = keep_fields
        self.base = URL(config.url.rstrip("/"))
        self.chunk_bytes = chunk_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, ttl_dns_cache=60, enable_cleanup_closed=True,
            keepalive_timeout=self.config.keepalive_seconds,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout_seconds,
                sock_read=self.config.read_timeout_seconds,
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, path: str, query: str) -> URL:
        # The path is already normalised and percent-encoded: keep it verbatim.
        raw = str(self.base) + path + ("?" + query if query else "")
        return URL(raw, encoded=True)

    async def request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Collection[tuple[str, str]],
        *,
        data: Any = None,
    ) -> OriginResponse:
        """Send a request; returns once the response headers are in."""
        if self._session is None:
            raise OriginError("origin client not started")
        send_headers = [
            (k, v)
            for k, v in end_to_end(headers)
            if k.lower() != "host" or self.config.forward_host  # else aiohttp sets the origin's
        ]
        # A pooled connection the origin closed while idle fails before any response byte;
        # a GET or HEAD (no body) is then safe to send once more on a fresh connection.
        attempts = 2 if method in ("GET", "HEAD") and data is None else 1
        try:
            for attempt in range(attempts):
                try:
                    response = await self._session.request(
                        method,
                        self.url_for(path, query),
                        headers=CIMultiDict(send_headers),
                        data=data,
                        allow_redirects=False,
                        compress=None,
                        chunked=None,
                    )
                    break
                except aiohttp.ServerDisconnectedError:
                    if attempt + 1 == attempts:
                        raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise OriginTimeout("origin did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise OriginError(f"origin unreachable: {exc.os_error.strerror or exc}") from exc
        except aiohttp.ClientError as exc:
            raise OriginError(f"origin request failed: {exc.__class__.__name__}") from exc
        response_headers = end_to_end(list(response.headers.items()), self.keep_fields)
        return OriginResponse(
            status=response.status,
            headers=response_headers,
            content_length=response.content_length,
            _response=response,
            chunk_bytes=self.chunk_bytes,
        )
