"""A small blocking client of a running origin's admin API, for the command line.

Rule: uploads stream from the file (http.client sends it block by block), and every failure,
from a refused connection to a 4xx, becomes one OriginClientError with a one-line message.
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlsplit

UPLOAD_BLOCK_BYTES = 256 << 10


class OriginClientError(Exception):
    pass


class OriginClient:
    def __init__(self, base_url: str, token: str | None, *, timeout_seconds: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OriginClientError(f"not an http(s) URL: {base_url!r}")
        self._base_url = base_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._timeout_seconds = timeout_seconds

    def put(
        self,
        path: str,
        file: Path,
        *,
        content_type: str,
        access: str | None = None,
        cache_control: str | None = None,
    ) -> dict[str, object]:
        headers = {"Content-Type": content_type}
        if access is not None:
            headers["X-Media-Access"] = access
        if cache_control is not None:
            headers["X-Media-Cache-Control"] = cache_control
        try:
            body = file.open("rb")
        except OSError as exc:
            raise OriginClientError(f"cannot read {file}: {exc.strerror or exc}") from exc
        with body:
            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
            return self._json(self._request("PUT", path, headers, body))

    def delete(self, path: str) -> None:
        self._request("DELETE", path, {}, None)

    def set_access(self, path: str, access: str) -> dict[str, object]:
        body = json.dumps({"access": access}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        return self._json(self._request("PATCH", path, headers, body))

    def _request(
        self, method: str, path: str, headers: dict[str, str], body: BinaryIO | bytes | None
    ) -> bytes:
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        target = self._prefix + quote(path if path.startswith("/") else "/" + path, safe="/")
        connection_type = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = connection_type(
            self._host, self._port, timeout=self._timeout_seconds, blocksize=UPLOAD_BLOCK_BYTES
        )
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise OriginClientError(f"cannot reach the origin at {self._base_url}: {exc}") from exc
        finally:
            conn.close()
        if response.status >= 400:
            raise OriginClientError(
                f"{method} {path}: {response.status} {response.reason}: {_message(data)}"
            )
        return data

    @staticmethod
    def _json(data: bytes) -> dict[str, object]:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise OriginClientError(f"the origin's answer is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise OriginClientError("the origin answered JSON that is not an object")
        return value


def _message(data: bytes) -> str:
    try:
        value = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:200]
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    return json.dumps(value)[:200]
