"""Conformance gaps of #18 end to end, through the real proxy, against an origin that sends
exactly the bytes each case needs (no validators, an Age, a body beyond its Content-Length),
with the origin's Date and the proxy's clock on one injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest

from tests.conftest import Clock, ProxyFactory
from tests.integration.scripted_origin import Script, ScriptedOrigin
from tests.integration.test_proxy import settled


@pytest.fixture
async def scripted(clock: Clock) -> AsyncIterator[ScriptedOrigin]:
    origin = ScriptedOrigin(clock)
    await origin.start()
    yield origin
    await origin.close()


async def test_if_modified_since_is_compared_with_the_stored_date_without_last_modified(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock) -> None:
    date = formatdate(clock(), usegmt=True)
    scripted.scripts["/ims"] = Script(200, [("Cache-Control", "max-age=600"), ("Date", date)],
                                      b"dated body")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    r = await proxy.get("/ims")
    assert (r.status, await r.read()) == (200, b"dated body")
    await settled(proxy)
    r = await proxy.get("/ims", headers={"If-Modified-Since": date})
    assert (r.status, r.headers["X-Cache"]) == (304, "HIT")
    earlier = formatdate(clock() - 10, usegmt=True)
    r = await proxy.get("/ims", headers={"If-Modified-Since": earlier})
    assert (r.status, await r.read()) == (200, b"dated body")
    assert scripted.count("/ims") == 1


async def test_accept_language_variants_are_shared_across_case_and_weight_spelling(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock) -> None:
    scripted.scripts["/lang"] = Script(
        200, [("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")], b"english")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    r = await proxy.get("/lang", headers={"Accept-Language": "en-US, fr;q=0.8"})
    assert (r.headers["X-Cache"], await r.read()) == ("MISS", b"english")
    await settled(proxy)
    for same in ("EN-us, FR;q=0.80", "fr;q=0.8, en-us;q=1.0"):
        r = await proxy.get("/lang", headers={"Accept-Language": same})
        assert (r.headers["X-Cache"], await r.read()) == ("HIT", b"english"), same
    assert scripted.count("/lang") == 1
    # Equal weights in another order: an origin may choose the first, so it is asked.
    r = await proxy.get("/lang", headers={"Accept-Language": "fr, en-US"})
    assert r.headers["X-Cache"] == "MISS"
    assert scripted.count("/lang") == 2


@pytest.mark.parametrize(("cache_control", "grace"), [
    ("max-age=60, stale-if-error=600", 0.0),  # the response's stale-if-error
    ("max-age=60", 3600.0),  # the configured grace
])
async def test_stale_if_error_serves_a_copy_without_validators(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock,
        cache_control: str, grace: float) -> None:
    scripted.scripts["/sie"] = Script(200, [("Cache-Control", cache_control)], b"old body")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url},
                             cache={"stale_if_error_seconds": grace})
    await (await proxy.get("/sie")).read()
    await settled(proxy)
    clock.offset += 120
    scripted.scripts["/sie"] = Script(503, [], b"down")
    r = await proxy.get("/sie")
    assert (r.status, r.headers["X-Cache"], await r.read()) == (200, "STALE", b"old body")
    # The origin was asked unconditionally (there is nothing to revalidate with).
    last = scripted.requests("/sie")[-1]
    assert last.get("if-none-match") is None and last.get("if-modified-since") is None
    # Back up: the new answer replaces the copy.
    scripted.scripts["/sie"] = Script(200, [("Cache-Control", cache_control)], b"new body")
    r = await proxy.get("/sie")
    assert (r.status, r.headers["X-Cache"], await r.read()) == (200, "EXPIRED", b"new body")


async def test_a_response_stale_on_arrival_is_stored_only_with_a_validator(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock) -> None:
    scripted.scripts["/aged"] = Script(200, [("Cache-Control", "max-age=60"), ("Age", "100")],
                                       b"aged")
    scripted.scripts["/aged-etag"] = Script(
        200, [("Cache-Control", "max-age=60"), ("Age", "100"), ("ETag", '"v1"')], b"aged")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    for path in ("/aged", "/aged-etag"):
        r = await proxy.get(path)
        assert (r.status, await r.read()) == (200, b"aged")
    await settled(proxy)
    assert proxy.runtime.store is not None
    assert proxy.runtime.store.lookup("/aged") is None, "useless: never stored"
    r = await proxy.get("/aged")
    assert r.headers["X-Cache"] != "HIT" and scripted.count("/aged") == 2
    # With a validator it is kept and revalidated.
    r = await proxy.get("/aged-etag")
    assert await r.read() == b"aged"
    assert scripted.count("/aged-etag") == 2
    assert scripted.requests("/aged-etag")[-1].get("if-none-match") == '"v1"'


async def test_bytes_beyond_content_length_after_the_body_are_dropped_with_the_connection(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock) -> None:
    """RFC 9112 §6.3: the declared bytes are the message; what follows on the connection is
    not a response, so the connection is not reused. Here the extra bytes arrive after the
    body (a later read): the client gets the declared bytes, the entry is stored, and the
    origin connection they came on is closed by the proxy, not reused for the next request."""
    gate = asyncio.Event()
    scripted.scripts["/long"] = Script(200, [("Cache-Control", "max-age=600")], b"declared",
                                       tail=b"EXTRA BYTES\r\n", tail_gate=gate)
    scripted.scripts["/next"] = Script(200, [("Cache-Control", "max-age=600")], b"next")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    r = await proxy.get("/long")
    assert (r.status, await r.read()) == (200, b"declared")
    await settled(proxy)
    gate.set()
    await asyncio.wait_for(scripted.closed[0].wait(), 10)  # the proxy hung up on them
    r = await proxy.get("/next")
    assert (r.status, await r.read()) == (200, b"next")
    r = await proxy.get("/long")
    assert (r.headers["X-Cache"], await r.read()) == ("HIT", b"declared")


async def test_bytes_beyond_content_length_in_the_same_read_fail_the_response(
        make_proxy: ProxyFactory, scripted: ScriptedOrigin, clock: Clock) -> None:
    """The limit the README documents: when the extra bytes arrive in the same read as the
    end of the body, aiohttp's C parser parses them as the next response, fails, and drops
    the response it had completed: the proxy answers 502 (never a truncated or padded body),
    and the next request is answered normally."""
    scripted.scripts["/long"] = Script(200, [("Cache-Control", "max-age=600")], b"declared",
                                       tail=b"EXTRA BYTES\r\n")
    scripted.scripts["/next"] = Script(200, [("Cache-Control", "max-age=600")], b"next")
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    r = await proxy.get("/long")
    assert r.status == 502
    r = await proxy.get("/next")
    assert (r.status, await r.read()) == (200, b"next")
