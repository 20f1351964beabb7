"""policy/forward.py: what the origin is sent, and who the client is."""

from __future__ import annotations

import pytest

from proxy.policy.forward import (
    RealIp,
    carries_body,
    in_networks,
    origin_request_fields,
    parse_networks,
    unkeyed,
)


@pytest.mark.parametrize(("fields", "expected"), [
    ([], False),
    ([("Content-Length", "0")], False),
    ([("Content-Length", " 0 ")], False),
    ([("Content-Length", "1")], True),
    ([("content-length", "00")], True),  # not exactly zero: refused, never guessed
    ([("Transfer-Encoding", "chunked")], True),
    ([("Transfer-Encoding", "")], True),
    ([("Content-Length", "0"), ("Content-Length", "5")], True),
])
def test_carries_body(fields: list[tuple[str, str]], expected: bool) -> None:
    assert carries_body(fields) is expected


@pytest.mark.parametrize("name", [
    "x-forwarded-host", "x-forwarded-proto", "x-forwarded-scheme", "x-forwarded-port",
    "x-forwarded-prefix", "x-forwarded-ssl", "x-forwarded-anything", "x-original-host",
    "x-original-url", "x-rewrite-url", "x-host", "forwarded", "x-url-scheme",
    "front-end-https", "x-http-method-override", "x-http-method", "x-method-override",
])
def test_unkeyed_family(name: str) -> None:
    assert unkeyed(name)


@pytest.mark.parametrize("name", ["accept", "accept-encoding", "foo", "user-agent", "range"])
def test_ordinary_fields_are_forwarded(name: str) -> None:
    assert not unkeyed(name)


def test_origin_fields_are_framed_by_the_proxy() -> None:
    fields = [("Host", "h"), ("Content-Length", "40"), ("Transfer-Encoding", "chunked"),
              ("Expect", "100-continue"), ("Connection", "close, X-Drop"), ("X-Drop", "1"),
              ("Accept", "image/webp"), ("X-Forwarded-Host", "evil"), ("Via", "1.0 front"),
              ("X-Forwarded-For", "6.6.6.6"), ("If-None-Match", '"a"'), ("Cookie", "s=1")]
    sent = origin_request_fields(fields, peer="192.0.2.1", peer_trusted=False, via="mp",
                                 strip=frozenset({"if-none-match", "cookie"}))
    assert sent == [("Host", "h"), ("Accept", "image/webp"), ("Via", "1.0 front, 1.1 mp"),
                    ("X-Forwarded-For", "192.0.2.1")]


def test_a_trusted_peer_keeps_the_chain_and_the_body_length_is_ours() -> None:
    fields = [("X-Forwarded-For", "203.0.113.9"), ("Content-Length", "999")]
    sent = origin_request_fields(fields, peer="127.0.0.1", peer_trusted=True, via="mp",
                                 body_length=12)
    assert ("X-Forwarded-For", "203.0.113.9, 127.0.0.1") in sent
    assert [v for k, v in sent if k == "Content-Length"] == ["12"]


TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1/32", "::1/128"])


@pytest.mark.parametrize(("peer", "fields", "client"), [
    ("192.0.2.7", [("X-Forwarded-For", "1.2.3.4")], "192.0.2.7"),  # untrusted peer
    ("127.0.0.1", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4"),
    ("127.0.0.1", [("X-Forwarded-For", "9.9.9.9, 1.2.3.4")], "1.2.3.4"),  # spoof on the left
    ("127.0.0.1", [("X-Forwarded-For", "1.2.3.4, 10.0.0.5")], "1.2.3.4"),  # two fronts
    ("127.0.0.1", [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "10.1.1.1")],
     "1.2.3.4"),
    ("127.0.0.1", [("X-Forwarded-For", "garbage, 1.2.3.4")], "1.2.3.4"),
    ("127.0.0.1", [("X-Forwarded-For", "1.2.3.4, garbage")], "127.0.0.1"),
    ("127.0.0.1", [], "127.0.0.1"),
    ("::1", [("X-Forwarded-For", "2001:db8::5")], "2001:db8::5"),
])
def test_real_ip_from_x_forwarded_for(peer: str, fields: list[tuple[str, str]],
                                      client: str) -> None:
    assert RealIp(TRUSTED).client(peer, fields) == client


@pytest.mark.parametrize(("value", "client"), [
    ('for="[2001:db8::1]:4711";proto=https', "2001:db8::1"),
    ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
    ("for=192.0.2.60:8080", "192.0.2.60"),
    ("for=9.9.9.9, for=192.0.2.60", "192.0.2.60"),
    ("for=unknown", "127.0.0.1"),
    ("for=_hidden", "127.0.0.1"),
])
def test_real_ip_from_forwarded(value: str, client: str) -> None:
    assert RealIp(TRUSTED, "forwarded").client("127.0.0.1", [("Forwarded", value)]) == client


def test_in_networks_reads_what_it_can() -> None:
    assert in_networks("10.2.3.4", TRUSTED) and in_networks("[::1]", TRUSTED)
    assert not in_networks("not-an-ip", TRUSTED) and not in_networks(None, TRUSTED)
    assert not in_networks("10.2.3.4", ())


def test_the_token_cookie_never_reaches_the_origin() -> None:
    fields = [("Cookie", "theme=dark; mp_token=exp=1&kid=k1&sig=abc; lang=fr"),
              ("Cookie", "mp_token=x")]
    sent = origin_request_fields(fields, peer="192.0.2.1", peer_trusted=False, via="mp",
                                 token_cookie="mp_token")
    assert [v for k, v in sent if k == "Cookie"] == ["theme=dark; lang=fr"]
