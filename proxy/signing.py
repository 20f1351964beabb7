"""Signing URLs for origin applications: `from proxy.signing import sign_url`.

Rule: a thin, stable wrapper over `policy.tokens.sign` that takes a TTL and a URL (or path),
keeps any existing query, and normalises the path exactly as the proxy will before verifying.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

from proxy.policy import cachekey, tokens


def sign_url(
    url: str,
    *,
    key_id: str,
    secret: str | bytes,
    ttl_seconds: int,
    prefix: bool = False,
    ip: str | None = None,
    now: float | None = None,
) -> str:
    """`url` with the token parameters appended. With `prefix`, the token covers every path
    under the URL's path (which must end with "/"), e.g. all segments of an HLS rendition."""
    parts = urlsplit(url)
    target = cachekey.normalise_target(parts.path or "/", "")
    if isinstance(target, cachekey.Rejected):
        raise ValueError(f"cannot sign {parts.path!r}: {target.reason}")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    query = tokens.sign(target.path, key_id=key_id, secret=key, expires=expires, prefix=prefix,
                        ip=ip)
    full_query = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, target.path, full_query, ""))
