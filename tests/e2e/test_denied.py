"""A request refused by access control (401/403) reports `DENIED` (a documented member of the
closed set) in `X-Cache` and the metric label, not `ERROR`, on a miss and on a hit; 2 workers."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from proxy.signing import sign_url
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import put
from tests.faults.support import http_get, wait_for

SECRET = "0123456789abcdef0123"
AUTH = f'[auth]\nkeys = "k1={SECRET}"\nprotected_prefixes = "/p/"\n'


def requests_by_status(admin_url: str) -> dict[str, float]:
    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mediaproxy_requests_total{"):
            labels, _, value = line.rpartition(" ")
            status = labels.split('cache_status="', 1)[1].split('"', 1)[0]
            found[status] = found.get(status, 0.0) + float(value)
    return found


def test_denials_are_denied_not_errors(tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/p/report.pdf", b"secret report" * 1000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=AUTH)
    try:
        answers = [http_get(proxy.url + "/p/report.pdf") for _ in range(4)]  # miss: no token
        signed = sign_url(proxy.url + "/p/report.pdf", key_id="k1", secret=SECRET,
                          ttl_seconds=60)
        assert http_get(signed).status == 200
        assert wait_for(lambda: http_get(signed).x_cache == "HIT", timeout=10)
        answers += [http_get(proxy.url + "/p/report.pdf") for _ in range(4)]  # cached now
        answers.append(http_get(proxy.url + "/p/report.pdf?exp=1&kid=k1&sig=" + "A" * 43))
        assert [a.status for a in answers] == [401] * 8 + [403]
        assert {a.x_cache for a in answers} == {"DENIED"}, "main said ERROR"
        assert wait_for(lambda: requests_by_status(proxy.admin_url).get("DENIED") == 9,
                        timeout=10), requests_by_status(proxy.admin_url)
        assert requests_by_status(proxy.admin_url).get("ERROR", 0) == 0
    finally:
        assert stop(proxy.proc) == 0
