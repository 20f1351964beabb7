"""The reference origin's auth endpoint for the proxy's callout, and its session admin API."""

from __future__ import annotations

from tests.origin.origin_testing import ADMIN, Client


async def test_auth_answers_like_auth_request(client: Client) -> None:
    async with client.put("/_origin/sessions/s1", json={"prefixes": ["/a/"]},
                          headers=ADMIN) as resp:
        assert resp.status == 200
    uri = {"X-Original-URI": "/a/x.jpg?w=1"}
    cases = [({}, 401), ({"Cookie": "session=s1"}, 204), ({"Cookie": "session=s2"}, 403),
             ({"Authorization": "Bearer s1"}, 204)]
    for headers, status in cases:
        async with client.get("/_origin/auth", headers={**uri, **headers}) as resp:
            assert resp.status == status, headers
    async with client.get("/_origin/auth", headers={"X-Original-URI": "/b/x.jpg",
                                                    "Cookie": "session=s1"}) as resp:
        assert resp.status == 403
    async with client.get("/_origin/auth", headers={"Cookie": "session=s1"}) as resp:
        assert resp.status == 400
    async with client.delete("/_origin/sessions/s1", headers=ADMIN) as resp:
        assert resp.status == 204
    async with client.get("/_origin/auth", headers={**uri, "Cookie": "session=s1"}) as resp:
        assert resp.status == 403


async def test_session_admin_is_guarded_and_validated(client: Client) -> None:
    async with client.put("/_origin/sessions/s1", json={"prefixes": ["/a/"]}) as resp:
        assert resp.status == 401
    for body in ({"prefixes": "/a/"}, {"prefixes": ["a/"]}, [1]):
        async with client.put("/_origin/sessions/s1", json=body, headers=ADMIN) as resp:
            assert resp.status == 400
    async with client.put("/_origin/sessions/s1", data=b"{", headers=ADMIN) as resp:
        assert resp.status == 400
    async with client.put("/_origin/sessions/bad.id", json={"prefixes": []},
                          headers=ADMIN) as resp:
        assert resp.status == 400
