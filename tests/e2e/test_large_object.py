"""A 1 GB object through the proxy (miss, then hit) never makes a process large: bodies are
streamed through the disk, never buffered."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Running, start_proxy, stop

SIZE = 1024**3
BLOCK = os.urandom(1 << 20)
RSS_LIMIT = 150 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return


def upload(origin: Running, path: str, file: Path) -> None:
    parts = urlsplit(origin.url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    with open(file, "rb") as body:
        conn.request("PUT", path, body=body, headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Length": str(SIZE),
            "Content-Type": "video/mp4"})
        assert conn.getresponse().status in (200, 201)
    conn.close()


def download(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    digest, total = hashlib.sha256(), 0
    while chunk := response.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    conn.close()
    return response.headers["X-Cache"], digest.hexdigest(), total


def test_one_gigabyte_miss_then_hit_keeps_rss_small(tmp_path: Path,
                                                    origin_process: Running) -> None:
    source = tmp_path / "big.bin"
    expected = hashlib.sha256()
    with open(source, "wb") as fh:
        for _ in range(SIZE // len(BLOCK)):
            fh.write(BLOCK)
            expected.update(BLOCK)
    upload(origin_process, "/big/movie.mp4", source)
    source.unlink()
    proxy = start_proxy(tmp_path, origin_process.url, workers=1)
    sampler = RssSampler(proxy.proc.pid)
    sampler.start()
    try:
        assert download(proxy.url + "/big/movie.mp4") == ("MISS", expected.hexdigest(), SIZE)
        assert download(proxy.url + "/big/movie.mp4") == ("HIT", expected.hexdigest(), SIZE)
    finally:
        sampler.done.set()
        sampler.join()
        assert stop(proxy.proc) == 0
    assert 0 < sampler.peak < RSS_LIMIT, f"proxy peak RSS {sampler.peak / 2**20:.0f} MiB"
