"""policy/digest.py: which digest an origin promises (RFC 9530) and the one we send."""

from __future__ import annotations

import base64
import hashlib

import pytest

from proxy.policy import digest
from proxy.policy.digest import Expected, NoDigest, Unsupported

BODY = b"hello world"
S256 = hashlib.sha256(BODY).digest()
S512 = hashlib.sha512(BODY).digest()
OTHER = hashlib.sha256(b"other").digest()


def sf(value: bytes) -> str:
    return ":" + base64.b64encode(value).decode() + ":"


@pytest.mark.parametrize(("method", "status", "headers", "expected"), [
    ("GET", 200, [("Repr-Digest", f"sha-256={sf(S256)}")], Expected((("sha-256", S256),))),
    ("GET", 200, [("Content-Digest", f"sha-512={sf(S512)}")], Expected((("sha-512", S512),))),
    # Both fields, both algorithms: every check must hold; one value given twice counts once.
    ("GET", 200, [("Repr-Digest", f"sha-256={sf(S256)}, sha-512={sf(S512)}"),
                  ("Content-Digest", f"sha-256={sf(S256)}")],
     Expected((("sha-256", S256), ("sha-512", S512)))),
    # Unknown and insecure algorithms are ignored (RFC 9530 §2, §5).
    ("GET", 200, [("Repr-Digest", "md5=:XrY7u+Ae7tCTyyK7j1rNww==:, sha=:AAAA:")], NoDigest()),
    ("GET", 200, [("Repr-Digest", f"md5=:AAAA:, sha-256={sf(S256)}")],
     Expected((("sha-256", S256),))),
    ("GET", 200, [], NoDigest()),
    # Not the whole representation as content: nothing to check against the stored bytes.
    ("GET", 206, [("Repr-Digest", f"sha-256={sf(S256)}")], NoDigest()),
    ("HEAD", 200, [("Repr-Digest", f"sha-256={sf(S256)}")], NoDigest()),
    ("GET", 304, [("Repr-Digest", f"sha-256={sf(S256)}")], NoDigest()),
    # Unusable fields.
    ("GET", 200, [("Repr-Digest", "sha-256=abc")], Unsupported("repr-digest sha-256 is not a "
                                                               "byte sequence")),
    ("GET", 200, [("Repr-Digest", "sha-256=:AAAA:")], Unsupported("repr-digest sha-256 has "
                                                                  "3 bytes")),
    ("GET", 200, [("Content-Digest", "not a dictionary")],
     Unsupported("content-digest is not a structured dictionary")),
])
def test_expected(method: str, status: int, headers: list[tuple[str, str]],
                  expected: object) -> None:
    assert digest.expected(method, status, headers) == expected


@pytest.mark.parametrize(("checks", "computed", "ok"), [
    ((("sha-256", S256),), {"sha-256": S256}, True),
    ((("sha-256", S256),), {"sha-256": OTHER}, False),
    ((("sha-256", S256),), {}, False),  # not computed: never a match
    ((("sha-256", S256), ("sha-512", S512)), {"sha-256": S256, "sha-512": S512}, True),
    ((("sha-256", S256), ("sha-512", S512)), {"sha-256": S256}, False),
    ((("sha-256", S256), ("sha-256", OTHER)), {"sha-256": S256}, False),  # contradictory
])
def test_matches(checks: tuple[tuple[str, bytes], ...], computed: dict[str, bytes],
                 ok: bool) -> None:
    assert Expected(checks).matches(computed) is ok


def test_algorithms_to_compute_put_sha256_first() -> None:
    assert Expected((("sha-512", S512), ("sha-256", S256))).algorithms == ("sha-256", "sha-512")


def test_hasher_and_field() -> None:
    h = digest.hasher("sha-256")
    h.update(BODY)
    assert h.digest() == S256
    assert digest.hasher("sha-512").name == "sha512"
    field = digest.repr_digest(S256)
    assert field == "sha-256=" + sf(S256)
    assert digest.expected("GET", 200, [("Repr-Digest", field)]) == Expected((("sha-256", S256),))
