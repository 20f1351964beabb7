"""Signed URLs: HMAC-SHA256 over a canonical string of scope, path, expiry and optional client
network, selected by a key id so keys rotate without downtime.

Rule: verification is a pure function of the query parameters, the normalised path, the client
address, `now` and the configured keys; it never raises. Every failure is a `Denied` value with
a machine-readable reason that says what is wrong with the token, never what would fix it.

Canonical string (UTF-8), fields joined by "\\n":

    mediaproxy-url-v1
    <kid>
    <exp>              expiry, integer POSIX seconds
    <scope>            "path" (exactly this path) or "prefix" (every path starting with it)
    <path>             the normalised path, percent-encoded as in the URL (no query)
    <ip>               the client address or network it is bound to, or "" when unbound

sig = base64url(HMAC-SHA256(secret, canonical)) without "=" padding. Query parameters:
`exp`, `kid`, `sig`, and optionally `prefix` (the signed path prefix; scope "prefix") and `ip`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

VERSION = "mediaproxy-url-v1"
PARAMS = frozenset({"exp", "kid", "sig", "prefix", "ip"})
MAX_VALUE_LENGTH = 1024
SIG_LENGTH = 43  # base64url of 32 bytes, unpadded


class Reason(enum.Enum):
    MISSING = "token_missing"  # 401
    MALFORMED = "token_malformed"
    DUPLICATE = "token_duplicate_parameter"
    UNKNOWN_KEY = "token_unknown_key"
    BAD_SIGNATURE = "token_bad_signature"
    EXPIRED = "token_expired"
    WRONG_PATH = "token_wrong_path"
    WRONG_IP = "token_wrong_ip"

    @property
    def status(self) -> int:
        return 401 if self is Reason.MISSING else 403


@dataclass(frozen=True, slots=True)
class Allowed:
    key_id: str
    expires: int


@dataclass(frozen=True, slots=True)
class Denied:
    reason: Reason


Verdict = Allowed | Denied


def canonical(key_id: str, expires: int, scope: str, path: str, ip: str) -> bytes:
    return "\n".join((VERSION, key_id, str(expires), scope, path, ip)).encode("utf-8")


def signature(secret: bytes, message: bytes) -> str:
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(
    path: str,
    *,
    key_id: str,
    secret: bytes,
    expires: int,
    prefix: bool = False,
    ip: str | None = None,
) -> str:
    """The query string (without "?") that authorises `path` (or every path under it when
    `prefix`) until `expires`, optionally only for `ip` (an address or a network)."""
    if prefix and not path.endswith("/"):
        raise ValueError("a prefix token must cover a directory: end the path with '/'")
    bound = "" if ip is None else str(ipaddress.ip_network(ip, strict=False)) if "/" in ip \
        else str(ipaddress.ip_address(ip))
    scope = "prefix" if prefix else "path"
    sig = signature(secret, canonical(key_id, expires, scope, path, bound))
    fields = [("exp", str(expires)), ("kid", key_id)]
    if prefix:
        fields.append(("prefix", path))
    if bound:
        fields.append(("ip", bound))
    fields.append(("sig", sig))
    return "&".join(f"{name}={quote(value, safe='/:')}" for name, value in fields)


def token_fields(query: str) -> list[tuple[str, str]]:
    """The token parameters of a raw query string, decoded, in order (duplicates kept)."""
    found: list[tuple[str, str]] = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name in PARAMS:
            found.append((name, unquote(value) if len(value) <= MAX_VALUE_LENGTH * 3 else value))
    return found


def verify(
    fields: Sequence[tuple[str, str]],
    path: str,
    client_ip: str | None,
    now: float,
    keys: Mapping[str, bytes],
    skew_seconds: float = 30.0,
) -> Verdict:
    if not fields:
        return Denied(Reason.MISSING)
    values: dict[str, str] = {}
    for name, value in fields:
        if name in values:
            return Denied(Reason.DUPLICATE)  # parameter pollution: never pick one
        if len(value) > MAX_VALUE_LENGTH:
            return Denied(Reason.MALFORMED)
        values[name] = value
    exp_text, key_id, sig = values.get("exp"), values.get("kid"), values.get("sig")
    if exp_text is None or key_id is None or sig is None:
        return Denied(Reason.MALFORMED)
    if not (exp_text.isascii() and exp_text.isdigit() and len(exp_text) <= 12):
        return Denied(Reason.MALFORMED)
    if len(sig) != SIG_LENGTH:
        return Denied(Reason.BAD_SIGNATURE)
    secret = keys.get(key_id)
    if secret is None:
        return Denied(Reason.UNKNOWN_KEY)
    prefix = values.get("prefix")
    scope, signed_path = ("prefix", prefix) if prefix is not None else ("path", path)
    ip = values.get("ip", "")
    expected = signature(secret, canonical(key_id, int(exp_text), scope, signed_path, ip))
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii", "replace")):
        return Denied(Reason.BAD_SIGNATURE)
    # From here on the token is genuine: the remaining reasons say how it does not apply.
    if now > int(exp_text) + skew_seconds:
        return Denied(Reason.EXPIRED)
    if prefix is not None and (not prefix.endswith("/") or not path.startswith(prefix)):
        return Denied(Reason.WRONG_PATH)
    if ip and not _ip_matches(client_ip, ip):
        return Denied(Reason.WRONG_IP)
    return Allowed(key_id, int(exp_text))


def _ip_matches(client_ip: str | None, bound: str) -> bool:
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
        return address in ipaddress.ip_network(bound, strict=False)
    except ValueError:
        return False


def parse_keys(text: str) -> dict[str, bytes] | str:
    """`kid=secret,kid2=secret2` -> keys, or an error text. Secrets are used as UTF-8 bytes."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key_id, sep, secret = item.partition("=")
        key_id = key_id.strip()
        if not sep or not key_id or not secret:
            return f"expected kid=secret, got {item.split('=')[0]!r}=..."
        if len(secret) < 16:
            return f"key {key_id!r}: secret shorter than 16 characters"
        if not all(c.isalnum() or c in "-_." for c in key_id):
            return f"key id {key_id!r}: use letters, digits, '-', '_', '.'"
        keys[key_id] = secret.encode("utf-8")
    return keys
