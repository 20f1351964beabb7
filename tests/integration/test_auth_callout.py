"""The auth callout through the real proxy and the reference origin's /_origin/auth: sessions
allowed and denied, remembered answers, failing closed, and shared cache fills."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import ADMIN_TOKEN, Clock, Origin, ProxyFactory, free_port
from tests.integration.test_access_control import AUTH, signed
from tests.integration.test_proxy import settled

BODY = os.urandom(30_000)
AUTH_PATH = "/_origin/auth"
CALLOUT: dict[str, Any] = {**AUTH, "callout_url": AUTH_PATH, "callout_cookie": "session"}


async def grant(origin: Origin, session: str, *prefixes: str) -> None:
    assert await origin.admin("PUT", f"/_origin/sessions/{session}",
                              {"prefixes": list(prefixes)}) == 200


async def revoke(origin: Origin, session: str) -> None:
    assert await origin.admin("DELETE", f"/_origin/sessions/{session}") == 204


def cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"theme=dark; session={session}"}


@pytest.fixture
async def site(origin: Origin, make_proxy: ProxyFactory, clock: Clock) -> Any:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    await origin.publish("/pub/logo.png", BODY)
    await grant(origin, "alice", "/members/")
    await grant(origin, "bob", "/other/")
    return await make_proxy(clock=clock, auth=CALLOUT, admin={"token": ADMIN_TOKEN})


async def test_allowed_session_gets_the_object_from_one_shared_cache_entry(
    origin: Origin, site: Any
) -> None:
    r = await site.get("/members/talk.mp4", headers=cookie("alice"))
    assert (r.status, r.headers["X-Cache"]) == (200, "MISS") and await r.read() == BODY
    await settled(site)
    await grant(origin, "carol", "/members/")
    r = await site.get("/members/talk.mp4", headers={"Authorization": "Bearer carol"})
    # Stored although the request carried Authorization: the fill sent no credentials, so
    # RFC 9111 §3.5 did not forbid storing, and one copy serves every allowed session.
    assert (r.status, r.headers["X-Cache"]) == (200, "HIT") and await r.read() == BODY
    assert origin.count("/members/talk.mp4") == 1
    assert origin.count(AUTH_PATH) == 2


async def test_allow_is_remembered_per_session_and_item(origin: Origin, site: Any) -> None:
    for theme in ("dark", "light", "dark"):  # other cookies do not split the session
        r = await site.get("/members/talk.mp4",
                           headers={"Cookie": f"theme={theme}; session=alice"})
        assert r.status == 200
    assert origin.count(AUTH_PATH) == 1


async def test_denied_session_and_missing_credentials(origin: Origin, site: Any) -> None:
    for _ in range(2):
        r = await site.get("/members/talk.mp4", headers=cookie("bob"))
        assert r.status == 403 and await r.json() == {"error": "session_denied"}
    assert origin.count(AUTH_PATH) == 1  # the deny was remembered
    r = await site.get("/members/talk.mp4", headers={"Cookie": "theme=dark"})
    assert r.status == 401 and await r.json() == {"error": "token_missing"}
    r = await site.get("/members/talk.mp4", headers=cookie("mallory"))
    assert r.status == 403
    assert origin.count(AUTH_PATH) == 2  # no session cookie: the endpoint was not asked
    r = await site.head("/members/talk.mp4", headers=cookie("bob"))
    assert r.status == 403


async def test_public_objects_and_tokens_never_call_out(origin: Origin, site: Any) -> None:
    r = await site.get("/pub/logo.png", headers=cookie("bob"))
    assert r.status == 200
    r = await site.get(signed("/members/talk.mp4"), headers=cookie("bob"))
    assert r.status == 200 and await r.read() == BODY
    assert origin.count(AUTH_PATH) == 0


async def test_revocation_takes_effect_when_the_remembered_allow_expires(
    origin: Origin, site: Any, clock: Clock
) -> None:
    assert (await site.get("/members/talk.mp4", headers=cookie("alice"))).status == 200
    await revoke(origin, "alice")
    assert (await site.get("/members/talk.mp4", headers=cookie("alice"))).status == 200
    clock.offset += CALLOUT.get("callout_allow_seconds", 30.0) + 1
    r = await site.get("/members/talk.mp4", headers=cookie("alice"))
    assert r.status == 403 and await r.json() == {"error": "session_denied"}


async def test_a_purge_forgets_remembered_answers(origin: Origin, site: Any) -> None:
    assert (await site.get("/members/talk.mp4", headers=cookie("alice"))).status == 200
    await revoke(origin, "alice")
    r = await site.request("PURGE", "/members/talk.mp4",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status == 200
    r = await site.get("/members/talk.mp4", headers=cookie("alice"))
    assert r.status == 403


async def test_concurrent_requests_share_one_callout(origin: Origin, site: Any) -> None:
    await origin.fault(path_prefix=AUTH_PATH, delay_seconds=0.3)
    answers = await asyncio.gather(*(site.get("/members/talk.mp4", headers=cookie("alice"))
                                     for _ in range(10)))
    assert [r.status for r in answers] == [200] * 10
    assert origin.count(AUTH_PATH) == 1


@pytest.mark.parametrize("failure_status", [503, 403])
async def test_unreachable_endpoint_fails_closed(origin: Origin, make_proxy: ProxyFactory,
                                                 failure_status: int) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    proxy = await make_proxy(auth={**CALLOUT, "callout_url": f"http://127.0.0.1:{free_port()}/a",
                                   "callout_failure_status": failure_status})
    for _ in range(2):  # failures are not remembered: each request asks again
        r = await proxy.get("/members/talk.mp4", headers=cookie("alice"))
        assert r.status == failure_status and await r.json() == {"error": "auth_unavailable"}
        assert BODY not in await r.read()
    assert (await proxy.get(signed("/members/talk.mp4"))).status == 200  # tokens still work


async def test_failing_and_slow_endpoints_fail_closed_then_recover(
    origin: Origin, make_proxy: ProxyFactory
) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    await grant(origin, "alice", "/members/")
    proxy = await make_proxy(auth={**CALLOUT, "callout_timeout_seconds": 0.5})
    await origin.fault(path_prefix=AUTH_PATH, status=500, count=1)
    r = await proxy.get("/members/talk.mp4", headers=cookie("alice"))
    assert r.status == 503 and await r.json() == {"error": "auth_unavailable"}
    await origin.fault(path_prefix=AUTH_PATH, delay_seconds=2.0, count=1)
    r = await proxy.get("/members/talk.mp4", headers=cookie("alice"))
    assert r.status == 503
    r = await proxy.get("/members/talk.mp4", headers=cookie("alice"))
    assert r.status == 200 and await r.read() == BODY


# -- found in review: each of these failed before its fix --------------------------------------

async def endpoint(handler: Any) -> TestServer:
    app = web.Application()
    app.router.add_get("/auth", handler)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    return server


# 1. The remembered answer ignores X-Original-Method (and X-Forwarded-For), which the
#    endpoint is sent and may judge on: a HEAD allow is reused for a GET.
async def test_head_allow_is_not_reused_for_get(origin: Origin, make_proxy: ProxyFactory
                                                ) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")

    async def head_only(request: web.Request) -> web.Response:
        return web.Response(status=204 if request.headers["X-Original-Method"] == "HEAD"
                            else 403)

    server = await endpoint(head_only)
    try:
        proxy = await make_proxy(auth={**CALLOUT, "callout_url": str(server.make_url("/auth"))},
                                 admin={"token": ADMIN_TOKEN})
        r = await proxy.head("/members/talk.mp4", headers={"Cookie": "session=alice"})
        assert r.status == 200
        r = await proxy.get("/members/talk.mp4", headers={"Cookie": "session=alice"})
        assert r.status == 403, "GET served on the strength of a HEAD-only allow"
    finally:
        await server.close()


# 2. A purge does not clear an answer that was in flight when the purge happened: it is
#    stored after forget() and then served for callout_allow_seconds.
async def test_answer_in_flight_during_a_purge_is_not_remembered(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    granted = {"alice": True}

    async def slow(request: web.Request) -> web.Response:
        allowed = granted["alice"]  # decided on arrival, answered late
        await asyncio.sleep(0.5)
        return web.Response(status=204 if allowed else 403)

    server = await endpoint(slow)
    try:
        proxy = await make_proxy(auth={**CALLOUT, "callout_url": str(server.make_url("/auth"))},
                                 admin={"token": ADMIN_TOKEN})
        alice = {"Cookie": "session=alice"}
        first = asyncio.ensure_future(proxy.get("/members/talk.mp4", headers=alice))
        await asyncio.sleep(0.1)
        granted["alice"] = False  # revoked at the site...
        r = await proxy.request("PURGE", "/members/talk.mp4",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status == 200  # ...and purged, which README says clears remembered answers
        # another session's request after the purge runs _forget_answers_after_purge
        await proxy.get("/members/talk.mp4", headers={"Cookie": "session=bob"})
        assert (await first).status == 200  # fine: asked before the revocation
        r = await proxy.get("/members/talk.mp4", headers=alice)
        assert r.status == 403, "pre-purge allow remembered after the purge"
    finally:
        await server.close()


# 4. README: "cache fills carry no Cookie or Authorization, so one cached copy serves every
#    allowed session". But storable() is judged on the client's headers, so a miss by an
#    Authorization (Bearer) session is not stored and the key becomes hit-for-pass.
async def test_bearer_session_fill_is_shared(origin: Origin, make_proxy: ProxyFactory,
                                             clock: Clock) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    for s in ("alice", "carol"):
        assert await origin.admin("PUT", f"/_origin/sessions/{s}",
                                  {"prefixes": ["/members/"]}) == 200
    proxy = await make_proxy(clock=clock, auth=CALLOUT)
    r = await proxy.get("/members/talk.mp4", headers={"Authorization": "Bearer carol"})
    assert r.status == 200 and await r.read() == BODY
    await settled(proxy)
    r = await proxy.get("/members/talk.mp4", headers={"Cookie": "session=alice"})
    assert r.status == 200 and await r.read() == BODY
    assert r.headers["X-Cache"] == "HIT", r.headers["X-Cache"]
    assert origin.count("/members/talk.mp4") == 1



# 6. With `Vary: Cookie` (or Authorization) on a protected object, the fill carries no Cookie,
#    yet the entry is keyed by the client's Cookie: the session secret is written to disk in
#    the cache index/claim files, and every session gets its own copy.
async def test_session_secret_not_written_to_the_cache(tmp_path: Any, make_proxy: ProxyFactory
                                                       ) -> None:
    seen: list[str | None] = []

    async def media(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.Response(body=BODY, headers={"Cache-Control": "max-age=60", "Vary": "Cookie",
                                                "X-Media-Access": "protected", "ETag": '"1"'})

    async def allow(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/auth", allow)
    app.router.add_get("/members/{x}", media)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        proxy = await make_proxy(origin={"url": str(server.make_url(""))},
                                 auth={**CALLOUT, "callout_url": "/auth"})
        secret = "S3cr3tS3ssion0123456789"
        r = await proxy.get("/members/a.mp4", headers={"Cookie": f"session={secret}"})
        assert r.status == 200 and await r.read() == BODY
        await settled(proxy)
        assert seen == [None]  # the fill carried no cookie...
        leaked = [p for p in tmp_path.rglob("*") if p.is_file()
                  and secret.encode() in p.read_bytes()]
        assert leaked == [], leaked  # ...but the secret is in the cache directory
    finally:
        await server.close()


# 7. A session-authorised answer leaves mediaproxy with the origin's shared-cacheable
#    Cache-Control (README: "As a CDN origin ... the origin's Cache-Control flow[s] through"),
#    on a URL that is the same for every user: a CDN in front serves it to anyone.
async def test_session_granted_answer_is_not_shared_cacheable(origin: Origin, make_proxy:
                                                              ProxyFactory) -> None:
    await origin.publish("/members/talk.mp4", BODY, X_Media_Access="protected")
    assert await origin.admin("PUT", "/_origin/sessions/alice",
                              {"prefixes": ["/members/"]}) == 200
    proxy = await make_proxy(auth=CALLOUT)
    r = await proxy.get("/members/talk.mp4", headers={"Cookie": "session=alice"})
    assert r.status == 200
    cc = r.headers.get("Cache-Control", "")
    assert "private" in cc or "no-store" in cc, cc


# 8. _serve_fill awaits the callout before it attaches as a reader of the fill it started:
#    with a callout slower than 0.5 s, _run_fill sees readers == 0 and abandons a large fill
#    ("every client left"); the allowed client then retries from scratch (second origin fetch).
#    A small fill instead completes meanwhile -> FillClosed -> re-lookup -> the filling request
#    is labelled HIT (why test_allowed_session_gets_the_object_from_one_shared_cache_entry
#    is flaky).
async def test_slow_callout_does_not_abandon_the_fill_it_waits_for(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    big = os.urandom(4_000_000)
    await origin.publish("/members/big.mp4", big, X_Media_Access="protected")
    assert await origin.admin("PUT", "/_origin/sessions/alice",
                              {"prefixes": ["/members/"]}) == 200
    await origin.fault(path_prefix="/members/", rate_bytes_per_second=2_000_000)
    await origin.fault(path_prefix="/_origin/auth", delay_seconds=1.0)
    proxy = await make_proxy(auth=CALLOUT, cache={"fill_abandon_bytes": 1_000_000})
    r = await proxy.get("/members/big.mp4", headers={"Cookie": "session=alice"})
    assert r.status == 200 and await r.read() == big
    assert origin.count("/members/big.mp4") == 1, origin.count("/members/big.mp4")
