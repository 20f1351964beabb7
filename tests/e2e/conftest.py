"""Processes as users run them: `python -m origin serve` and `python -m proxy serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    admin_url: str = ""
    log_path: Path | None = None

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines() if self.log_path else []


@pytest.fixture
def origin_process(tmp_path: Path) -> Iterator[Running]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "origin", "serve", "--db", str(tmp_path / "origin.sqlite3"),
         "--host", "127.0.0.1", "--port", str(port), "--admin-token", ADMIN_TOKEN],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_origin/stats", proc)
        yield Running(proc, url)
    finally:
        stop(proc)


def start_proxy(tmp_path: Path, origin_url: str, *, workers: int, name: str = "proxy",
                extra: str = "", cache_extra: str = "", log_format: str = "json",
                server_extra: str = "") -> Running:
    port, admin = free_port(), free_port()
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
        f"workers = {workers}\n{server_extra}"
        f'[origin]\nurl = "{origin_url}"\n'
        f'[cache]\ndir = "{tmp_path / "cache"}"\n{cache_extra}'
        f'[log]\nformat = "{log_format}"\n{extra}'
    )
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--config", str(config)],
                                cwd=ROOT, stderr=log_file, env=dict(os.environ))
    running = Running(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", log_path)
    wait_ready(running.admin_url + "/readyz", proc)
    return running


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until /readyz says 200: every worker is listening and the cache dir is usable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout} s")
