"""A stored response's metadata as its index row keeps it: one compact JSON object.

Rule: the row's `value` is this JSON and nothing else; decoding is strict about types (a row
that does not decode is treated as missing by its reader, never served).
"""

from __future__ import annotations

import json
from typing import Any

from proxy.policy.freshness import StoredResponse


def meta_dict(meta: StoredResponse) -> dict[str, Any]:
    return {
        "status": meta.status,
        "headers": [list(h) for h in meta.headers],
        "request_time": meta.request_time,
        "response_time": meta.response_time,
        "body_size": meta.body_size,
        "invalidated": meta.invalidated,
    }


def encode_meta(meta: StoredResponse) -> bytes:
    return json.dumps(meta_dict(meta), separators=(",", ":")).encode()


def decode_meta(raw: bytes) -> StoredResponse:
    return meta_from_dict(json.loads(raw))


def meta_from_dict(data: dict[str, Any]) -> StoredResponse:
    return StoredResponse(
        status=int(data["status"]),
        headers=tuple((str(k), str(v)) for k, v in data["headers"]),
        request_time=float(data["request_time"]),
        response_time=float(data["response_time"]),
        body_size=int(data["body_size"]),
        invalidated=bool(data.get("invalidated", False)),
    )


def invalidated(meta: StoredResponse) -> StoredResponse:
    """The same response marked stale (a soft purge): served only after revalidation."""
    return StoredResponse(meta.status, meta.headers, meta.request_time, meta.response_time,
                          meta.body_size, invalidated=True)
