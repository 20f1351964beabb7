"""Access logs in the three formats, and the Server field, from a real `mediaproxy serve`."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.request
from pathlib import Path

from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import put

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def request(url: str) -> dict[str, str]:
    req = urllib.request.Request(url, headers={"User-Agent": "curl/8.5 \"quoted\"",
                                               "Referer": "https://site.example/page"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return dict(r.headers)


def access_lines(proxy: Running, needle: str) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [line for line in proxy.log_lines() if needle in line]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needle!r}")


def test_json_access_lines_carry_the_request_fields(tmp_path: Path,
                                                    origin_process: Running) -> None:
    put(origin_process, "/l/a.bin", b"a" * 1234)
    proxy = start_proxy(tmp_path, origin_process.url, workers=1)
    try:
        request(proxy.url + "/l/a.bin")
        try:  # an answer of the proxy's own (the origin's Server passes through, as Varnish)
            request(proxy.url + "/l/a%2Fb")
            raise AssertionError("an encoded / must be refused")
        except urllib.error.HTTPError as refused:
            assert refused.code == 400
            assert refused.headers["Server"] == "mediaproxy"  # no Python or aiohttp version
        long_path = "/l/" + "x" * 5000
        with contextlib.suppress(urllib.error.HTTPError):
            request(proxy.url + long_path)
        entries = [json.loads(line) for line in access_lines(proxy, '"/l/a.bin"')]
        entry = next(e for e in entries if e.get("logger") == "mediaproxy.access")
        assert entry["body_bytes"] == 1234 and entry["cache_status"] == "MISS"
        assert entry["protocol"] == "HTTP/1.1" and entry["host"].startswith("127.0.0.1:")
        assert entry["user_agent"] == 'curl/8.5 "quoted"'
        assert entry["referer"] == "https://site.example/page"
        assert ISO.match(entry["ts"]) and ISO.match(entry["ts_end"])
        assert "combined" not in entry
        long_entry = json.loads(access_lines(proxy, "xxxxxxxx")[-1])
        assert len(long_entry["key"]) < 2200 and long_entry["key"].endswith("more]")
    finally:
        assert stop(proxy.proc) == 0


def test_text_and_combined_lines(tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/l/b.bin", b"b" * 321)
    text = start_proxy(tmp_path, origin_process.url, workers=1, name="text",
                       log_format="text")
    try:
        request(text.url + "/l/b.bin")
        line = access_lines(text, "/l/b.bin 200")[0]
        assert re.search(r"GET /l/b\.bin 200 MISS 321B [0-9.]+ms 127\.0\.0\.1$", line), line
    finally:
        assert stop(text.proc) == 0
    combined = start_proxy(tmp_path, origin_process.url, workers=2, name="combined",
                           log_format="combined")
    try:
        request(combined.url + "/l/b.bin")
        line = access_lines(combined, '"GET /l/b.bin HTTP/1.1"')[0]
        assert re.match(
            r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /l/b\.bin '
            r'HTTP/1\.1" 200 321 "https://site\.example/page" "curl/8\.5 \\"quoted\\"" '
            r"(HIT|MISS) \d+\.\d{3}$", line), line
    finally:
        assert stop(combined.proc) == 0
