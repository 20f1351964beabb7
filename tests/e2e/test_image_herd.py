"""One conversion for a herd: 50 concurrent cold requests for a preset over 2 workers make one
origin fetch of the original and one conversion."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_collapsing import fetch_many
from tests.e2e.test_workers import access_pids, origin_gets, put
from tests.integration.test_image_conversions import jpeg, size_of

IMAGES = ('[admin]\ntoken = "herd-admin-token-0123456789"\n'
          '[images]\npool_workers = 1\n'
          '[images.presets.thumb]\nwidth = 64\nheight = 64\nfit = "cover"\n')


def conversions(proxy: Running) -> float:
    with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("mediaproxy_image_conversions_total{")
               and 'outcome="ok"' in line)


def test_50_cold_requests_for_a_conversion_over_2_workers_convert_once(
        tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/herd/photo.jpg", jpeg(), **{"Content-Type": "image/jpeg"})
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=IMAGES)
    try:
        results = asyncio.run(fetch_many(proxy.url + "/herd/photo.jpg?preset=thumb", 50))
        assert [s for s, _, _ in results] == [200] * 50
        assert len({b for _, _, b in results}) == 1
        assert size_of(results[0][2]) == (64, 64)
        statuses = sorted(x for _, x, _ in results)
        assert statuses.count("MISS") == 1 and statuses.count("HIT") == 49, statuses
        assert origin_gets(origin_process, "/herd/photo.jpg") == 1
        assert conversions(proxy) == 1.0
        assert len(access_pids(proxy, "HIT")) == 2, "waiters in both workers"
        # `mediaproxy purge --preset/--format`: the conversion is made again, once.
        assert purge(tmp_path, "--preset", "thumb", "--format", "jpeg").returncode == 0
        again = asyncio.run(fetch_many(proxy.url + "/herd/photo.jpg?preset=thumb", 1))
        assert again[0][:2] == (200, "MISS")
        assert conversions(proxy) == 2.0
        assert origin_gets(origin_process, "/herd/photo.jpg") == 1
        refused = purge(tmp_path, "--preset", "thumb", "--url", "/herd/photo.jpg")
        assert refused.returncode == 2 and b"--preset" in refused.stderr
    finally:
        assert stop(proxy.proc) == 0


def purge(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "proxy", "purge", "--config",
                           str(tmp_path / "proxy.toml"), *args], capture_output=True, timeout=60)
