"""Integrity fields (RFC 9530): which digest an origin response promises for its body, and the
`Repr-Digest` we send on answers from the cache.

Rule: `Repr-Digest` is over the selected representation's data, `Content-Digest` over the
message content (§2, §3): both are the bytes we store only for a full 200 to a GET (not a
206, 304, HEAD or 204), where content and representation data are the same bytes (we never
decode a Content-Encoding: the stored bytes are the encoded representation). Both fields are
Dictionaries of Byte Sequences keyed by algorithm; we verify sha-256 and sha-512 (the
"Active" algorithms of the registry, §5) and ignore the others, as §2 and §3 allow ("MAY
ignore", and insecure md5, sha, crc32c, adler, unixsum, unixcksum must not be relied on).
Every check given must match: a field that names the same algorithm twice with other bytes
can never be satisfied, and that is the origin's to fix. A field that is not a Dictionary,
or whose digest has the wrong length for its algorithm, makes the body unverifiable
(`Unsupported`): the caller stores as it would without a digest and says why in its log.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.policy.headers import Headers, get_all
from proxy.policy.sfv import Item, parse_dictionary, serialize_bytes

REPR_DIGEST = "repr-digest"
CONTENT_DIGEST = "content-digest"

# Algorithm -> digest length in bytes; preference order for `Expected.algorithms`.
SUPPORTED = {"sha-256": 32, "sha-512": 64}
_HASHLIB = {"sha-256": "sha256", "sha-512": "sha512"}


@dataclass(frozen=True, slots=True)
class NoDigest:
    """The origin promised nothing we can check (no field, or only unknown algorithms)."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A digest field we cannot use: malformed, or a value of the wrong length."""

    reason: str


@dataclass(frozen=True, slots=True)
class Expected:
    """The body must hash to every (algorithm, digest) pair here."""

    checks: tuple[tuple[str, bytes], ...]

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The hashes the fill must compute (sha-256 first: it is the one we always store)."""
        names = {name for name, _ in self.checks}
        return tuple(name for name in SUPPORTED if name in names)

    def matches(self, computed: Mapping[str, bytes]) -> bool:
        """Do the digests of the body (algorithm -> bytes) satisfy every check?"""
        return all(name in computed and hmac.compare_digest(computed[name], value)
                   for name, value in self.checks)


DigestCheck = NoDigest | Unsupported | Expected


def applies(method: str, status: int, ranged: bool = False) -> bool:
    """Is the stored body the representation data and the content (a full 200 to a GET)?"""
    return method == "GET" and status == 200 and not ranged


def expected(method: str, status: int, headers: Headers) -> DigestCheck:
    """What the origin's Repr-Digest and Content-Digest promise for the body it sends."""
    if not applies(method, status):
        return NoDigest()
    checks: dict[tuple[str, bytes], None] = {}
    for name in (REPR_DIGEST, CONTENT_DIGEST):
        lines = get_all(headers, name)
        if not lines:
            continue
        found = parse_dictionary(lines)
        if found is None:
            return Unsupported(f"{name} is not a structured dictionary")
        for algorithm, member in found.items():
            if algorithm not in SUPPORTED:
                continue  # unknown or insecure: ignored (RFC 9530 §2, §5)
            if not isinstance(member, Item) or not isinstance(member.value, bytes):
                return Unsupported(f"{name} {algorithm} is not a byte sequence")
            if len(member.value) != SUPPORTED[algorithm]:
                return Unsupported(f"{name} {algorithm} has {len(member.value)} bytes")
            checks.setdefault((algorithm, member.value), None)
    return Expected(tuple(checks)) if checks else NoDigest()


def hasher(algorithm: str) -> hashlib._Hash:
    """A new hash object for a supported algorithm name (`sha-256`, `sha-512`)."""
    return hashlib.new(_HASHLIB[algorithm])


def repr_digest(sha256: bytes) -> str:
    """The `Repr-Digest` value of a stored body's sha-256: `sha-256=:<base64>:`."""
    return "sha-256=" + serialize_bytes(sha256)
