"""Request target -> normalised target and readable cache key (no hashing: prefix purge is a range).

Rule: two URIs that RFC 3986 §6.2.2 calls equivalent get one key, and so do paths that differ
only by repeated slashes (folded, as nginx `merge_slashes` does); anything that could be read
as a traversal by some origin (dot segments, encoded `/` or `\\`, control bytes) is rejected,
never "resolved", so a key can never name something the origin would serve under another path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = "0123456789ABCDEFabcdef"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 §3.3 pchar minus pct-encoded, plus "/": may appear raw in a normalised path.
_PATH_RAW = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_RAW = _PATH_RAW | frozenset("?")
_FORBIDDEN_DECODED = frozenset({0x2F, 0x5C})  # encoded "/" and "\": ambiguous at origins


@dataclass(frozen=True, slots=True)
class Target:
    path: str  # normalised, percent-encoded: what the origin is asked for
    query: str  # normalised, without token parameters; "" when none
    variant: str = ""  # the Vary variant this request selects, "" when the URL does not vary

    @property
    def url_key(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    @property
    def key(self) -> str:
        """The cache key text: the URL key, plus the variant when the resource varies."""
        return self.url_key + ("\x1f" + self.variant if self.variant else "")


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int  # 400 or 414
    reason: str


def _normalise_component(raw: str, allowed_raw: frozenset[str], *, in_path: bool) -> str | None:
    """Percent-encoding normalisation; None when the component is malformed or forbidden."""
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == "%":
            if i + 3 > n:
                return None
            h1, h2 = raw[i + 1], raw[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                return None
            byte = int(h1 + h2, 16)
            if byte < 0x20 or byte == 0x7F:
                return None  # control bytes have no business in a media URL
            if in_path and byte in _FORBIDDEN_DECODED:
                return None
            decoded = chr(byte)
            # RFC 3986 §6.2.2.2: decode unreserved characters; §6.2.2.1: upper-case the rest.
            out.append(decoded if decoded in _UNRESERVED else "%" + (h1 + h2).upper())
            i += 3
            continue
        code = ord(ch)
        if code < 0x20 or code == 0x7F or (in_path and ch == "\\"):
            return None
        if ch in allowed_raw:
            out.append(ch)
        else:
            # Raw spaces, quotes and non-ASCII are equivalent to their encoded form.
            try:
                encoded = ch.encode("utf-8")
            except UnicodeEncodeError:
                return None  # a lone surrogate (undecodable bytes): no URL names it
            out.extend(f"%{b:02X}" for b in encoded)
        i += 1
    return "".join(out)


def _query_name(pair: str) -> str:
    name = pair.split("=", 1)[0]
    return name.replace("+", " ").lower()


# Already normal: only characters that stay as they are, no "%", no dot segments. Most media
# URLs look like this, and skip the character-by-character pass.
# (A dot before `.`, `/` or `;` may start a dot segment, `.;x` included: the slow path judges.)
_PLAIN_PATH = re.compile(r"/(?:[A-Za-z0-9\-_~!$&'()*+,;=:@/]|\.(?=[^./;]))*")
_SLASHES = re.compile(r"/{2,}")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~!$'()*+,;:@/?=&]*")


def normalise_target(
    raw_path: str,
    raw_query: str = "",
    *,
    strip_params: frozenset[str] = frozenset(),
    max_length: int = 8192,
) -> Target | Rejected:
    """Normalise the request target; `strip_params` are removed from the query (token fields)."""
    if len(raw_path) + len(raw_query) > max_length:
        return Rejected(414, "uri_too_long")
    if not strip_params and _PLAIN_PATH.fullmatch(raw_path) and "//" not in raw_path and (
            not raw_query or _PLAIN_QUERY.fullmatch(raw_query)) and "&&" not in raw_query and (
            not raw_query.startswith("&") and not raw_query.endswith("&")):
        return Target(raw_path, raw_query)
    if not raw_path.startswith("/"):
        return Rejected(400, "bad_path")
    path = _normalise_component(raw_path, _PATH_RAW, in_path=True)
    if path is None:
        return Rejected(400, "bad_path")
    for segment in path.split("/"):
        # `..;x` is `..` to every origin that drops path parameters (servlet containers):
        # judged with its parameters removed, so `/x/..;/vault/a` is a traversal too.
        if segment.split(";", 1)[0] in (".", ".."):
            return Rejected(400, "path_traversal")
    # Empty segments are folded as nginx (`merge_slashes`) and most origins do, so `//vault/x`
    # is the `/vault/x` the access rules, the key and the origin all see.
    path = _SLASHES.sub("/", path)
    query = ""
    if raw_query:
        kept: list[str] = []
        for pair in raw_query.split("&"):
            if not pair:
                continue
            normalised = _normalise_component(pair, _QUERY_RAW, in_path=False)
            if normalised is None:
                return Rejected(400, "bad_query")
            if _query_name(normalised) in strip_params:
                continue
            kept.append(normalised)
        query = "&".join(kept)
    return Target(path, query)


def prefix_range(prefix: str) -> tuple[str, str]:
    """[start, end) of keys beginning with `prefix` in text order, for range deletes."""
    return prefix, prefix + "\U0010ffff"
