"""Load generators and checks: wrk (small hits), the lean client, the herd client, fetch+verify."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import CorpusObject
from .settings import REPO

log = logging.getLogger(__name__)

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


class BenchError(Exception):
    """A test could not produce a valid figure."""


# ---------------------------------------------------------------- fetch and verify


@dataclass(frozen=True)
class Fetch:
    status: int
    sha256: str
    body_bytes: int
    x_cache: str


def fetch(host: str, port: int, path: str, timeout: float = 120.0) -> Fetch:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "bench-verify"})
        resp = conn.getresponse()
        digest = hashlib.sha256()
        size = 0
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := resp.readinto(buf):
            digest.update(view[:n])
            size += n
        return Fetch(resp.status, digest.hexdigest(), size, resp.getheader("X-Cache", ""))
    finally:
        conn.close()


def _describe(got: Fetch, obj: CorpusObject) -> str:
    return (
        f"status {got.status}, {got.body_bytes} bytes, sha256 {got.sha256[:12]}… "
        f"(want 200, {obj.size} bytes, {obj.sha256[:12]}…)"
    )


def _correct(got: Fetch, obj: CorpusObject) -> bool:
    return got.status == 200 and got.sha256 == obj.sha256 and got.body_bytes == obj.size


def warm_and_verify(
    host: str, port: int, objects: tuple[CorpusObject, ...], attempts: int = 5
) -> list[str]:
    """Warm every object (first GET, normally a MISS) and verify it until a GET is a correct
    X-Cache HIT. Every body is checked against the corpus sha256.

    Returns warnings: a wrong body on any GET, a HIT that took more than one further GET
    (e.g. a fill committed after the response, or per-worker caches). Raises BenchError if no
    correct body comes back within `attempts` verify GETs (a correct body that never becomes
    a HIT is only a warning: the hit tests then measure whatever the server does).
    """
    warnings: list[str] = []
    for obj in objects:
        got = fetch(host, port, obj.path)
        if not _correct(got, obj):
            warnings.append(f"warm GET {obj.path} (X-Cache {got.x_cache!r}): {_describe(got, obj)}")
        correct = hit = False
        tries = 0
        for tries in range(1, attempts + 1):
            got = fetch(host, port, obj.path)
            if not _correct(got, obj):
                warnings.append(f"verify GET {obj.path} #{tries}: {_describe(got, obj)}")
            else:
                correct = True
                if "HIT" in got.x_cache.upper():
                    hit = True
                    break
            time.sleep(0.2)
        if not correct:
            raise BenchError(f"no correct body for {obj.path} in {attempts} verify GETs")
        if not hit:
            warnings.append(f"{obj.path}: no X-Cache HIT after {attempts} GETs")
        elif tries > 1:
            warnings.append(f"{obj.path}: X-Cache HIT only at verify GET #{tries}")
        log.info("verified %s (%s) sha256 %s…", obj.path, obj.label, obj.sha256[:12])
    return warnings


# ---------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx responses


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot parse wrk output:\n{output}")
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        requests=int(total.group(1)),
        errors=errors,
    )


def wrk_command(
    url: str, conns: int, threads: int, duration: float, script: Path | None = None
) -> list[str]:
    """wrk's argv; `script`: a Lua script (e.g. one choosing each request's path)."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        *(["-s", str(script)] if script is not None else []),
        url,
    ]


def run_wrk(
    url: str, conns: int, threads: int, duration: float, script: Path | None = None
) -> WrkResult:
    cmd = wrk_command(url, conns, threads, duration, script)
    log.debug("running %s", " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


# ---------------------------------------------------------------- lean and herd clients


def _run_module(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"bench.{module}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if out.returncode != 0:
        raise BenchError(f"bench.{module} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@dataclass(frozen=True)
class LeanResult:
    mb_per_s: float
    body_bytes: int
    responses: int
    errors: int
    first_error: str


def run_lean(host: str, port: int, path: str, conns: int, duration: float) -> LeanResult:
    raw = _run_module(
        "lean",
        [
            "--host",
            host,
            "--port",
            str(port),
            "--path",
            path,
            "--conns",
            str(conns),
            "--duration",
            str(duration),
        ],
        timeout=duration + 120,
    )
    conns_raw = raw["connections"]
    assert isinstance(conns_raw, list)
    first_error = next((c["error"] for c in conns_raw if c.get("error")), "")
    return LeanResult(
        mb_per_s=float(raw["mb_per_s"]),
        body_bytes=int(raw["body_bytes"]),
        responses=int(raw["responses"]),
        errors=int(raw["errors"]),
        first_error=str(first_error),
    )


@dataclass(frozen=True)
class HerdResult:
    clients: int
    ok_bodies: int  # 200 with the expected sha256
    distinct_sha: int
    ttfb_min: float
    ttfb_p50: float
    ttfb_max: float
    total_p50: float
    total_max: float
    wall: float
    x_cache: dict[str, int]
    first_error: str


def run_herd(host: str, port: int, obj: CorpusObject, clients: int, timeout: float) -> HerdResult:
    raw = _run_module(
        "herd",
        [
            "--host",
            host,
            "--port",
            str(port),
            "--path",
            obj.path,
            "--clients",
            str(clients),
            "--timeout",
            str(timeout),
        ],
        timeout=timeout + 60,
    )
    rows = raw["clients"]
    assert isinstance(rows, list)
    done = [r for r in rows if not r["error"]]
    if not done:
        raise BenchError(f"no herd client finished: {rows[0]['error'] if rows else 'none ran'}")
    ttfbs = sorted(float(r["ttfb"]) for r in done)
    totals = sorted(float(r["total"]) for r in done)
    x_cache: dict[str, int] = {}
    for r in done:
        x_cache[r["x_cache"] or "-"] = x_cache.get(r["x_cache"] or "-", 0) + 1
    return HerdResult(
        clients=len(rows),
        ok_bodies=sum(1 for r in done if r["status"] == 200 and r["sha256"] == obj.sha256),
        distinct_sha=len({r["sha256"] for r in done}),
        ttfb_min=ttfbs[0],
        ttfb_p50=statistics.median(ttfbs),
        ttfb_max=ttfbs[-1],
        total_p50=statistics.median(totals),
        total_max=totals[-1],
        wall=float(raw["wall"]),
        x_cache=x_cache,
        first_error=next((str(r["error"]) for r in rows if r["error"]), ""),
    )


def tool_version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


__all__ = [
    "BenchError",
    "Fetch",
    "HerdResult",
    "LeanResult",
    "WrkResult",
    "fetch",
    "parse_wrk",
    "run_herd",
    "run_lean",
    "run_wrk",
    "tool_version",
    "warm_and_verify",
    "wrk_command",
]
