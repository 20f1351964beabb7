"""Logging set-up: human text in development, one JSON object per line in production.

Rule: request lines carry the cache key (token parameters already stripped), never the raw
query string, so secrets in signed URLs never reach the logs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from proxy.config import LogConfig

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(config: LogConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, key, status, bytes, cache status, duration."""

    def log(self, request: BaseRequest, response: StreamResponse, time_: float) -> None:
        from proxy.deliver import BYTES_KEY
        from proxy.handler import KEY_KEY, STATUS_KEY

        status = request.get(STATUS_KEY)
        self.logger.info(
            "%s %s %s %s",
            request.method,
            request.get(KEY_KEY, request.path),
            response.status,
            status.value if status is not None else "-",
            extra={
                "method": request.method,
                "key": request.get(KEY_KEY, request.path),
                "status": response.status,
                "cache_status": status.value if status is not None else None,
                "body_bytes": request.get(BYTES_KEY, response.body_length),
                "duration_ms": round(time_ * 1000, 3),
                "remote": request.remote,
                "pid": os.getpid(),
                "ts_end": round(time.time(), 3),
            },
        )
