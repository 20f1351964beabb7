"""GET and HEAD: headers, conditionals (304/412), ranges (206/416/If-Range), 404, 405, stats."""

from __future__ import annotations

import re
from email.utils import formatdate
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

import origin.bodies
from origin.app import STATS_KEY, create_app
from origin.conditional import parse_http_date
from tests.origin.origin_testing import (
    ADMIN,
    ADMIN_TOKEN,
    TIMEOUT,
    Client,
    body_of,
    publish,
    sha256,
)

BODY = body_of(5000)


async def test_publish_then_get_serves_bytes_and_headers(client: Client) -> None:
    result = await publish(client, "/media/a.bin", BODY, {"Content-Type": "video/mp4"})
    assert result["revision"] == 1 and result["size"] == len(BODY)
    assert result["sha256"] == sha256(BODY)
    assert re.fullmatch(r'"r1-[0-9a-f]{16}"', result["etag"])
    assert result["etag"] == f'"r1-{sha256(BODY)[:16]}"'

    async with client.get("/media/a.bin") as resp:
        assert resp.status == 200
        assert sha256(await resp.read()) == sha256(BODY)
        h = resp.headers
        assert h["Content-Length"] == str(len(BODY))
        assert h["Content-Type"] == "video/mp4"
        assert h["ETag"] == result["etag"]
        assert parse_http_date(h["Last-Modified"]) is not None
        assert h["Accept-Ranges"] == "bytes"
        assert h["Cache-Control"] == "max-age=60"
        assert h["X-Media-Access"] == "public"
        assert h["X-Media-Revision"] == "1"
        assert h["X-Content-SHA256"] == sha256(BODY)
        assert "Date" in h


async def test_new_revision_changes_etag_and_answers_200(client: Client) -> None:
    first = await publish(client, "/a", BODY)
    async with client.put("/a", data=b"second", headers=ADMIN) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert second["revision"] == 2 and second["etag"] != first["etag"]
    async with client.get("/a") as resp:
        assert await resp.read() == b"second"
        assert resp.headers["X-Media-Revision"] == "2"


async def test_paths_with_spaces_are_stored_decoded(client: Client) -> None:
    await publish(client, "/media/a%20b.txt", b"spaced")
    async with client.get("/media/a%20b.txt") as resp:
        assert await resp.read() == b"spaced"


async def test_head_sends_headers_without_body(client: Client) -> None:
    result = await publish(client, "/a", BODY)
    async with client.head("/a") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(BODY))
        assert resp.headers["ETag"] == result["etag"]
        assert resp.headers["X-Media-Access"] == "public"
        assert await resp.read() == b""


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"], ids=str)
async def test_304_by_etag_carries_validators_and_access(
    client: Client, if_none_match: str
) -> None:
    result = await publish(client, "/p", BODY, {"X-Media-Access": "protected"})
    header = if_none_match.format(etag=result["etag"])
    async with client.get("/p", headers={"If-None-Match": header}) as resp:
        assert resp.status == 304
        assert await resp.read() == b""
        h = resp.headers
        assert h["ETag"] == result["etag"]
        assert h["X-Media-Access"] == "protected"
        assert h["X-Media-Revision"] == "1"
        assert h["Cache-Control"] == "max-age=60"
        assert "Last-Modified" in h and "Date" in h


async def test_if_none_match_other_etag_gets_200(client: Client) -> None:
    await publish(client, "/a", BODY)
    async with client.get("/a", headers={"If-None-Match": '"r0-0000000000000000"'}) as resp:
        assert resp.status == 200


async def test_304_by_date(client: Client) -> None:
    await publish(client, "/a", BODY, {"X-Media-Access": "protected"})
    async with client.head("/a") as resp:
        last_modified = resp.headers["Last-Modified"]
    async with client.get("/a", headers={"If-Modified-Since": last_modified}) as resp:
        assert resp.status == 304
        assert resp.headers["X-Media-Access"] == "protected"
        assert resp.headers["Last-Modified"] == last_modified
    stamp = parse_http_date(last_modified)
    assert stamp is not None
    earlier = formatdate(stamp - 10, usegmt=True)
    async with client.get("/a", headers={"If-Modified-Since": earlier}) as resp:
        assert resp.status == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    headers = {"If-Modified-Since": last_modified, "If-None-Match": '"nope"'}
    async with client.get("/a", headers=headers) as resp:
        assert resp.status == 200


async def test_412_preconditions(client: Client) -> None:
    result = await publish(client, "/a", BODY)
    async with client.get("/a", headers={"If-Match": '"r9-0000000000000000"'}) as resp:
        assert resp.status == 412
        assert resp.headers["ETag"] == result["etag"]
    async with client.get("/a", headers={"If-Match": result["etag"]}) as resp:
        assert resp.status == 200
    async with client.get("/a", headers={"If-Match": "W/" + result["etag"]}) as resp:
        assert resp.status == 412  # If-Match compares strongly
    old = formatdate(86400, usegmt=True)
    async with client.get("/a", headers={"If-Unmodified-Since": old}) as resp:
        assert resp.status == 412


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=4990-", 4990, 4999),
        ("bytes=-7", 4993, 4999),
        ("bytes=100-999999", 100, 4999),
        ("BYTES = 5-5", 5, 5),
    ],
)
async def test_single_range_206(client: Client, range_header: str, start: int, end: int) -> None:
    await publish(client, "/a", BODY)
    async with client.get("/a", headers={"Range": range_header}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(BODY)}"
        assert resp.headers["Content-Length"] == str(end - start + 1)
        assert await resp.read() == BODY[start : end + 1]


@pytest.mark.parametrize("range_header", ["bytes=5000-", "bytes=9000-9999", "bytes=-0"])
async def test_unsatisfiable_range_416(client: Client, range_header: str) -> None:
    await publish(client, "/a", BODY)
    async with client.get("/a", headers={"Range": range_header}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{len(BODY)}"


@pytest.mark.parametrize(
    "range_header", ["bytes=0-1,5-6", "bytes=9-3", "bytes=abc", "items=0-1", "bytes 0-1"]
)
async def test_multi_or_malformed_range_gets_full_200(client: Client, range_header: str) -> None:
    await publish(client, "/a", BODY)
    async with client.get("/a", headers={"Range": range_header}) as resp:
        assert resp.status == 200
        assert await resp.read() == BODY


async def test_if_range(client: Client) -> None:
    result = await publish(client, "/a", BODY)
    async with client.head("/a") as resp:
        last_modified = resp.headers["Last-Modified"]
    cases = {
        result["etag"]: 206,
        last_modified: 206,
        '"r0-0000000000000000"': 200,
        "W/" + result["etag"]: 200,  # If-Range needs a strong match
        "Thu, 01 Jan 1970 00:00:00 GMT": 200,
    }
    for if_range, status in cases.items():
        headers = {"Range": "bytes=0-3", "If-Range": if_range}
        async with client.get("/a", headers=headers) as resp:
            assert resp.status == status, if_range
            assert await resp.read() == (BODY[:4] if status == 206 else BODY)


async def test_head_ignores_range(client: Client) -> None:
    await publish(client, "/a", BODY)
    async with client.head("/a", headers={"Range": "bytes=0-3"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(BODY))


async def test_ranges_across_segments(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(origin.bodies, "SEGMENT_BYTES", 1000)
    await publish(client, "/seg", BODY)
    async with client.get("/seg") as resp:
        assert await resp.read() == BODY
    for start, end in [(990, 1010), (0, 2999), (1999, 2000), (4000, 4999), (999, 999)]:
        async with client.get("/seg", headers={"Range": f"bytes={start}-{end}"}) as resp:
            assert resp.status == 206
            assert await resp.read() == BODY[start : end + 1]


async def test_empty_body(client: Client) -> None:
    await publish(client, "/empty", b"")
    async with client.get("/empty") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "0"
        assert await resp.read() == b""
    async with client.get("/empty", headers={"Range": "bytes=0-"}) as resp:
        assert resp.status == 416


async def test_unknown_path_404_one_line(client: Client) -> None:
    async with client.get("/missing/x.png") as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"
        text = await resp.text()
        assert text.count("\n") == 1 and "/missing/x.png" in text


async def test_other_methods_405_with_allow(client: Client) -> None:
    async with client.post("/a", data=b"x") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD"
    async with client.request("OPTIONS", "/a", headers=ADMIN) as resp:
        assert resp.status == 405
        assert "PUT" in resp.headers["Allow"]


async def test_reserved_prefix_is_not_media(client: Client) -> None:
    async with client.put("/_origin/x", data=b"x", headers=ADMIN) as resp:
        assert resp.status == 404


async def test_stats_count_every_request(client: Client) -> None:
    stats = client.app[STATS_KEY]
    await publish(client, "/a", BODY)
    async with client.get("/a") as resp:
        etag = resp.headers["ETag"]
    async with client.get("/a", headers={"If-None-Match": etag}):
        pass
    async with client.head("/a"):
        pass
    async with client.get("/nope"):
        pass
    assert stats.count(method="GET", path="/a") == 2
    assert stats.count(method="HEAD", path="/a") == 1
    assert stats.count(method="PUT", path="/a") == 1
    assert stats.count(path="/a") == 4
    assert stats.status_count(304) == 1 and stats.status_count(404) == 1

    async with client.get("/_origin/stats") as resp:
        data = await resp.json()
    assert {"method": "GET", "path": "/a", "count": 2} in data["requests"]
    assert data["statuses"]["201"] == 1
    assert data["total"] == stats.count()

    async with client.post("/_origin/stats/reset") as resp:
        assert resp.status == 401
    async with client.post("/_origin/stats/reset", headers=ADMIN) as resp:
        assert resp.status == 204
    assert stats.count(path="/a") == 0


async def test_injected_clock_drives_date_and_last_modified(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    now = [1_000_000_000.0]
    app = create_app(tmp_path / "m.db", admin_token=ADMIN_TOKEN, clock=lambda: now[0])
    client = await aiohttp_client(app, timeout=TIMEOUT)
    await publish(client, "/a", BODY)
    now[0] += 120
    async with client.get("/a") as resp:
        assert resp.headers["Last-Modified"] == formatdate(1_000_000_000, usegmt=True)
        assert resp.headers["Date"] == formatdate(1_000_000_120, usegmt=True)
