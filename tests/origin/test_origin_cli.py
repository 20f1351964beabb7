"""`python -m origin` end to end: serve on a free port, put, GET, access, rm, then SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cli-secret"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_ORIGIN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _read_line(proc: subprocess.Popen[bytes], timeout_seconds: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_seconds):
            raise AssertionError("the origin did not report its address in time")
    return proc.stdout.readline().decode()


@pytest.fixture
def origin_url(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    stderr = (tmp_path / "origin.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "origin",
            "serve",
            "--db",
            str(tmp_path / "var" / "m.db"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        line = _read_line(proc, 20)
        assert line.startswith("mediaproxy-origin listening on http://127.0.0.1:"), line
        yield line.split()[-1], proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "origin", *args, "--url", url, "--token", TOKEN],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
        check=False,
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_put_get_rm_sigterm(
    origin_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, proc = origin_url
    payload = os.urandom(600_000)
    file = tmp_path / "clip.mp4"
    file.write_bytes(payload)

    put = _cli("put", "/cli/clip.mp4", str(file), "--access", "protected", url=url)
    assert put.returncode == 0, put.stderr
    result = json.loads(put.stdout)
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()
    assert result["content_type"] == "video/mp4" and result["access"] == "protected"

    assert _get(url + "/cli/clip.mp4") == (200, payload)

    access = _cli("access", "/cli/clip.mp4", "public", url=url)
    assert access.returncode == 0 and json.loads(access.stdout)["access"] == "public"

    # A broken upload against the real server (no handler cancellation there) stores nothing.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"PUT /cli/broken HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n" + b"x" * 1000
        )
    assert _get(url + "/cli/broken")[0] == 404

    rm = _cli("rm", "/cli/clip.mp4", url=url)
    assert rm.returncode == 0, rm.stderr
    assert _get(url + "/cli/clip.mp4")[0] == 404

    again = _cli("rm", "/cli/clip.mp4", url=url)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "404" in again.stderr

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 5


def test_client_errors_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = _cli("rm", "/x", url=f"http://127.0.0.1:{port}")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "cannot reach" in refused.stderr
    missing = _cli("put", "/x", str(tmp_path / "nope.bin"), url=f"http://127.0.0.1:{port}")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
