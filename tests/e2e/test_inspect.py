"""Metrics, /stats, cache inspection and the live stats view on a real 2-worker proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ROOT, Running, start_proxy, stop
from tests.e2e.test_workers import get, put


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def admin_json(proxy: Running, path: str) -> Any:
    return json.loads(fetch(proxy.admin_url + path))


def cli(proxy: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
    config = Path(proxy.log_path or "").with_suffix(".toml")
    return subprocess.run([sys.executable, "-m", "proxy", *args, "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_metrics_exist_from_zero_with_process_and_build_info(
        tmp_path: Path, origin_process: Running) -> None:
    from proxy.version import version

    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        text = fetch(proxy.admin_url + "/metrics")
        for series in ('mediaproxy_requests_total{cache_status="HIT",method="GET"} 0.0',
                       'mediaproxy_requests_total{cache_status="MISS",method="GET"} 0.0',
                       'mediaproxy_store_errors_total{operation="lookup"} 0.0',
                       'mediaproxy_origin_requests_total{outcome="error"} 0.0',
                       'mediaproxy_fills_total{outcome="committed"} 0.0',
                       f'mediaproxy_build_info{{version="{version()}"}} 1.0'):
            assert series in text, series
        assert "process_cpu_seconds_total" in text and "python_info" in text
        stats = admin_json(proxy, "/stats")
        assert all(isinstance(v, int) for v in stats["requests"].values())
    finally:
        assert stop(proxy.proc) == 0


def test_entries_entry_and_the_inspect_command(tmp_path: Path, origin_process: Running) -> None:
    for i in range(3):
        put(origin_process, f"/i/x/{i}.bin", b"x" * (1000 + i), **{"X-Media-Cache-Control":
                                                                    "max-age=600"})
    put(origin_process, "/i/y.bin", b"y" * 10)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        for path in ("/i/x/0.bin", "/i/x/1.bin", "/i/x/2.bin", "/i/y.bin"):
            get(proxy.url + path)
        deadline = time.monotonic() + 10
        while admin_json(proxy, "/stats")["entries"] < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        listed = admin_json(proxy, "/entries?prefix=/i/x/&limit=2")
        assert [e["key"] for e in listed["entries"]] == ["/i/x/0.bin", "/i/x/1.bin"]
        assert listed["truncated"] is True
        first = listed["entries"][0]
        assert first["size_bytes"] == 1000 and first["etag"] and first["revision"] == "1"
        assert 0 < first["fresh_for_seconds"] <= 600 and first["soft_purged"] is False
        one = admin_json(proxy, "/entry?" + urllib.parse.urlencode({"url": "/i/y.bin"}))
        (variant,) = one["variants"]
        assert variant["status"] == 200 and variant["state"] == "fresh"
        assert ["Content-Length", "10"] in variant["headers"]
        missing = admin_json(proxy, "/entry?url=/i/nothing")
        assert missing["variants"] == []
        shown = cli(proxy, "inspect", "--prefix", "/i/x/", "--limit", "10")
        assert shown.returncode == 0, shown.stderr
        assert "/i/x/2.bin" in shown.stdout and "3 entries" in shown.stdout
        detail = cli(proxy, "inspect", "--url", "/i/y.bin")
        assert "stored status 200" in detail.stdout and "Content-Length: 10" in detail.stdout
    finally:
        assert stop(proxy.proc) == 0


def test_the_stats_view_shows_rates_and_totals(tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/i/s.bin", b"s" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        for _ in range(5):
            get(proxy.url + "/i/s.bin")
        shown = cli(proxy, "stats", "--once", "--interval", "0.2")
        assert shown.returncode == 0, shown.stderr
        assert "hit ratio" in shown.stdout and "requests/s" in shown.stdout
        assert "total 5" in shown.stdout  # five requests so far, over both workers
        assert "bans sweeping  0" in shown.stdout
    finally:
        assert stop(proxy.proc) == 0


def test_admin_commands_report_an_unreachable_listener_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import free_port

    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nadmin_listen = "127.0.0.1:{free_port()}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
    for args in (["stats", "--once"], ["inspect", "--prefix", "/"]):
        result = subprocess.run([sys.executable, "-m", "proxy", *args, "--config", str(config)],
                                cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
        assert result.returncode == 1 and "cannot reach the admin listener" in result.stderr
