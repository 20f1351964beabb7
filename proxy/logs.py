"""Logging set-up: human text in development, one JSON object per line in production, or NCSA
`combined` access lines for existing log tooling.

Rule: request lines carry the cache key (token parameters already stripped), never the raw
query string, so secrets in signed URLs never reach the logs; a key longer than
MAX_LOGGED_KEY is cut (and says so). Times are ISO 8601 with the UTC offset.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from proxy.config import LogConfig

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
MAX_LOGGED_KEY = 2048
MAX_LOGGED_FIELD = 512  # user agent, referer
ACCESS_LOGGER = "mediaproxy.access"  # the logger of every access line


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and key != "combined":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class CombinedFormatter(TextFormatter):
    """Access lines as NCSA combined (+ cache status and duration); other lines as text."""

    def format(self, record: logging.LogRecord) -> str:
        combined = getattr(record, "combined", None)
        return combined if isinstance(combined, str) else super().format(record)


def configure(config: LogConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    elif config.format == "combined":
        handler.setFormatter(CombinedFormatter(text))
    else:
        handler.setFormatter(TextFormatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, key, status, cache status, bytes, duration, remote."""

    def log(self, request: BaseRequest, response: StreamResponse, time_: float) -> None:
        from proxy.deliver import BYTES_KEY
        from proxy.exchange import KEY_KEY, STATUS_KEY

        status = request.get(STATUS_KEY)
        headers = request.headers
        log_access(
            self.logger, method=request.method, key=request.get(KEY_KEY, request.path),
            status=response.status, cache_status=status.value if status is not None else None,
            body_bytes=request.get(BYTES_KEY, response.body_length), seconds=time_,
            remote=request.remote,
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            host=headers.get("Host"), user_agent=headers.get("User-Agent", ""),
            referer=headers.get("Referer", ""))


def log_access(logger: logging.Logger | logging.LoggerAdapter[logging.Logger], *, method: str,
               key: str, status: int, cache_status: str | None, body_bytes: int,
               seconds: float, remote: str | None, protocol: str, host: str | None,
               user_agent: str, referer: str) -> None:
    """The access line of one request (aiohttp's handler and the lane both write it here)."""
    key = clip(key, MAX_LOGGED_KEY)
    user_agent = clip(user_agent, MAX_LOGGED_FIELD)
    referer = clip(referer, MAX_LOGGED_FIELD)
    shown_status = cache_status or "-"
    duration_ms = round(seconds * 1000, 3)
    end = time.time()
    combined = (
        f'{remote or "-"} - - [{time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(end))}] '
        f'"{method} {_quote(key)} {protocol}" {status} {body_bytes} '
        f'"{_quote(referer) or "-"}" "{_quote(user_agent) or "-"}" {shown_status} '
        f"{seconds:.3f}")
    logger.info(
        "%s %s %s %s %sB %.1fms %s", method, key, status, shown_status,
        body_bytes, duration_ms, remote or "-",
        extra={
            "method": method,
            "key": key,
            "status": status,
            "cache_status": cache_status,
            "body_bytes": body_bytes,
            "duration_ms": duration_ms,
            "remote": remote,
            "host": host,
            "protocol": protocol,
            "user_agent": user_agent or None,
            "referer": referer or None,
            "pid": os.getpid(),
            "ts_end": iso_time(end),
            "combined": combined,
        },
    )
