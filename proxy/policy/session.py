"""The auth callout's pure half: which credentials a request carries, the session they name,
and what the endpoint's status means.

Rule: the credentials forwarded to the endpoint are exactly the ones the session id is derived
from, so a remembered answer can never be reused for a request the endpoint would judge on
other fields. Answers follow nginx's `auth_request`: 2xx allows, 401 and 403 deny, anything
else (and no answer) is a failure, which the caller turns into a refusal: it fails closed.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable

from proxy.policy.headers import Headers, get_all


class Outcome(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    FAILED = "failed"


def cookie_value(cookie_headers: Iterable[str], name: str) -> str | None:
    """The first value of cookie `name` across Cookie fields (RFC 6265 §5.4 syntax: pairs
    separated by ';'); None when absent or empty."""
    for header in cookie_headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value or None
    return None


def credentials(request: Headers, forward: Iterable[str], cookie_name: str = ""
                ) -> tuple[tuple[str, str], ...]:
    """The fields to send to the endpoint, in a fixed order: each configured header the
    request has (several values joined); with `cookie_name`, the Cookie field is reduced to
    that one cookie, so unrelated cookies neither reach the endpoint nor split the session."""
    found: list[tuple[str, str]] = []
    for name in forward:
        values = get_all(request, name)
        if not values:
            continue
        if name.lower() == "cookie" and cookie_name:
            value = cookie_value(values, cookie_name)
            if value is not None:
                found.append(("Cookie", f"{cookie_name}={value}"))
            continue
        joined = "; ".join(values) if name.lower() == "cookie" else ", ".join(values)
        if joined.strip():
            found.append((name, joined))
    return tuple(found)


def session_id(fields: tuple[tuple[str, str], ...]) -> str:
    """A digest naming the session: what is remembered is keyed by it, never by the secret."""
    digest = hashlib.sha256()
    for name, value in fields:
        digest.update(name.lower().encode("utf-8", "surrogateescape") + b"\0")
        digest.update(value.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def interpret(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.ALLOW
    if status in (401, 403):
        return Outcome.DENY
    return Outcome.FAILED


_SHARED_ONLY = frozenset({"public", "s-maxage", "proxy-revalidate"})


def private_cache_control(values: Iterable[str]) -> str:
    """Cache-Control for an answer granted by session: `private` added and what addresses
    shared caches removed, so a CDN in front never serves it to other users (the URL is the
    same for everyone, unlike a signed URL's)."""
    kept = ["private"]
    for value in values:
        for directive in value.split(","):
            directive = directive.strip()
            name = directive.partition("=")[0].strip().lower()
            if directive and name not in _SHARED_ONLY and name != "private":
                kept.append(directive)
    return ", ".join(kept)
