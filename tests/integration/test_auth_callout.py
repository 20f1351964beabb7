"""The auth callout through the real proxy and the reference origin's /_origin/auth: sessions
allowed and denied, remembered answers, failing closed, and shared cache fills."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, Clock, Origin, ProxyFactory, free_port
from tests.integration.test_access_control import AUTH, signed
from tests.integration.test_proxy import settled

BODY = os.urandom(30_000)
AUTH_PATH = "/_origin/auth"
CALLOUT = {**AUTH, "callout_url": AUTH_PATH, "callout_cookie": "session"}


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
    return await make_proxy(clock=clock, auth=CALLOUT)


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
