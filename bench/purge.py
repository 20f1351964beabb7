"""Purge under load (mediaproxy only, BENCH_PURGE=1).

Loads the cache with `purge_entries` small entries, `purge_prefix_entries` of them under /p/
(offline, bench/bulkload.py), then measures 4 KiB hit latency (wrk) before and while
`POST /purge {"prefix": "/p/"}` runs on the admin port, the purge call's own latency, and how
long the background sweep takes until the ban is retired.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.store.claims import LOCK_DIR, lock_held
from proxy.store.index import ORPHAN_MIN_AGE_SECONDS

from .bulkload import LoadError, LoadResult, Template, bulk_load, check_store
from .clients import BenchError, WrkResult, parse_wrk, run_wrk, wrk_command
from .servers import Mediaproxy, Origin
from .settings import WORK_DIR

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PURGE_PREFIX = "/p/"
NOT_AVAILABLE = "n/a (admin purge API not available)"


@dataclass(frozen=True)
class PurgeCall:
    status: int | None  # None: no connection / no HTTP answer
    seconds: float
    body: str


def purge_call(admin_port: int, token: str, prefix: str, timeout: float = 300.0) -> PurgeCall:
    payload = json.dumps({"prefix": prefix}).encode()
    conn = http.client.HTTPConnection(HOST, admin_port, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request(
            "POST",
            "/purge",
            body=payload,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        body = resp.read(4096).decode("utf-8", "replace")
        return PurgeCall(resp.status, time.perf_counter() - start, body)
    except (OSError, http.client.HTTPException) as exc:
        return PurgeCall(None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def purge_api_unavailable(admin_port: int, token: str) -> str | None:
    """NOT_AVAILABLE if the endpoint answers 404 or cannot be reached, an error text if it
    refuses us otherwise, None if it works (probed with a prefix that matches nothing)."""
    probe = purge_call(admin_port, token, "/__bench_probe_nothing__/", timeout=30)
    if probe.status is None or probe.status == 404:
        log.info("purge probe: %s", probe.body or probe.status)
        return NOT_AVAILABLE
    if probe.status >= 400:
        return f"purge API answered {probe.status}: {probe.body[:200]}"
    return None


# ------------------------------------------------------------------------------------------
# The entries are bulk-loaded offline (bench/bulkload.py) while mediaproxy is stopped: filling
# 1M entries through the proxy (an origin request and a commit each) runs at ~1-2k/s.
# ------------------------------------------------------------------------------------------


def entry_path(i: int, prefix_end: int) -> str:
    """Entry i: /p/<i> below prefix_end (the purged prefix), /k/<i> from there on."""
    return f"{PURGE_PREFIX}{i}" if i < prefix_end else f"/k/{i}"


@dataclass(frozen=True)
class Entries:
    """The purge test's keys and what the origin answers for them (one template a prefix)."""

    total: int
    prefix_end: int
    purged: Template  # the origin's answer for /p/<i>
    kept: Template  # ... and for /k/<i>

    @classmethod
    def from_origin(cls, origin_url: str, total: int, prefix_end: int) -> Entries:
        return cls(total, prefix_end, Template.fetch(origin_url, f"{PURGE_PREFIX}0"),
                   Template.fetch(origin_url, "/k/0"))

    def template(self, path: str) -> Template:
        return self.purged if path.startswith(PURGE_PREFIX) else self.kept

    def items(self, first: int, last: int) -> Iterator[tuple[str, Template]]:
        for i in range(first, last):
            path = entry_path(i, self.prefix_end)
            yield path, self.template(path)

    def samples(self) -> list[str]:
        """A few keys to check, at the ends and in the middle of both ranges."""
        picks = {0, 5, self.prefix_end - 1, self.prefix_end, self.total // 2, self.total - 1}
        return [entry_path(i, self.prefix_end) for i in sorted(picks) if 0 <= i < self.total]


def load_entries(cache_dir: Path, entries: Entries, first: int, last: int,
                 expected_total: int) -> LoadResult:
    """Bulk-load keys [first, last) into the cache of a stopped mediaproxy, then open it as
    mediaproxy does and check it holds `expected_total` entries and the samples' bodies."""
    result = bulk_load(cache_dir, entries.items(first, last),
                       max_size_bytes=Mediaproxy.MAX_SIZE_BYTES)
    samples = [(path, entries.template(path)) for path in entries.samples()]
    try:
        check_store(cache_dir, expected_total, samples, max_size_bytes=Mediaproxy.MAX_SIZE_BYTES)
    except LoadError as exc:
        raise BenchError(f"bulk load check failed: {exc}") from exc
    return result


def check_cache_status(port: int, origin: Origin, entries: Entries,
                       expect: dict[str, str]) -> None:
    """GET each path through the proxy: the template's body and the expected X-Cache (HIT or
    MISS), and an origin request for every MISS and none for a HIT (origin access log)."""
    before = origin.request_counts()
    for path, want in expect.items():
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body, status, x_cache = resp.read(), resp.status, resp.getheader("X-Cache", "")
        finally:
            conn.close()
        if status != 200 or body != entries.template(path).body or x_cache != want:
            raise BenchError(f"self-check GET {path}: status {status}, X-Cache {x_cache!r}, "
                             f"body {body[:40]!r} (want 200, {want}, "
                             f"{entries.template(path).body!r})")
    time.sleep(0.5)  # nginx logs a request when it completes
    after = origin.request_counts()
    for path, want in expect.items():
        sent = after[path] - before[path]
        if sent != (1 if want == "MISS" else 0):
            raise BenchError(f"self-check GET {path}: X-Cache {want} but {sent} origin requests")
    log.info("self-check ok: %s", ", ".join(f"{p} {w}" for p, w in expect.items()))


def admin_stats(admin_port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, admin_port, timeout=60)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"GET /stats: {resp.status} {body[:200]!r}")
    stats: dict[str, Any] = json.loads(body)
    return stats


def wait_start_up_scan(cache_dir: Path, started: float, timeout: float = 900.0) -> float:
    """Wait for mediaproxy's start-up orphan scan to end (`started`: time.monotonic() before
    it was started); returns the seconds waited.

    ORPHAN_MIN_AGE_SECONDS + 1 s after start, one worker checks every body file for an owner
    row in one pass (about a minute for 1M entries), holding the `orphan-scan` job lock
    throughout; the maintenance ticks then hold it briefly for 2 of the 256 directories each.
    A proxy filled through its front door met that pass with an empty cache, so the figures
    are taken after it: once the lock has been seen held for 2 s in a row and then free."""
    lock = cache_dir / LOCK_DIR / "jobs" / "orphan-scan.lock"
    begin = time.monotonic()
    time.sleep(max(0.0, started + ORPHAN_MIN_AGE_SECONDS + 1.0 - time.monotonic()))
    held_since: float | None = None
    long_hold = False
    while time.monotonic() - begin < timeout:
        now = time.monotonic()
        if lock_held(lock):
            held_since = now if held_since is None else held_since
            long_hold = long_hold or now - held_since >= 2.0
        elif long_hold or now - started > ORPHAN_MIN_AGE_SECONDS + 10.0:
            break  # the pass ended (or was too short to be seen)
        else:
            held_since = None
        time.sleep(0.1)
    else:
        raise BenchError(f"mediaproxy's start-up orphan scan still running after {timeout:.0f} s")
    waited = time.monotonic() - begin
    log.info("start-up orphan scan over after %.1f s", waited)
    return waited


SWEEP_BUDGET_SECONDS = 900.0  # the "during" wrk run ends when the sweep does, or at this


def wait_sweep_done(admin_port: int, timeout: float = 900.0) -> float:
    """Poll /stats until no ban is active (swept and retired); returns the seconds waited."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        if not admin_stats(admin_port)["active_bans"]:
            return time.monotonic() - begin
        time.sleep(0.5)
    raise BenchError(f"purge sweep not finished after {timeout:.0f} s")


# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeRound:
    call: PurgeCall
    sent: float  # time.monotonic() when the purge call was sent
    sweep_seconds: float  # from the call until the ban was swept and retired
    before: WrkResult
    during: WrkResult


def purge_round(
    port: int, admin_port: int, token: str, hit_path: str, duration: float, conns: int, threads: int
) -> PurgeRound:
    """wrk `duration` s before the purge; then wrk from just before the purge call until the
    sweep is done (the ban retired) and at least `duration` s have passed, so "during" covers
    the whole sweep (wrk prints its summary on SIGINT)."""
    url = f"http://{HOST}:{port}{hit_path}"
    before = run_wrk(url, conns, threads, duration)
    cmd = wrk_command(url, conns, threads, SWEEP_BUDGET_SECONDS)
    out_path = WORK_DIR / "purge" / "during.out"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(min(1.0, duration / 4))
            sent = time.monotonic()
            call = purge_call(admin_port, token, PURGE_PREFIX)
            log.info(
                "purge %s: status %s in %.3f s: %s",
                PURGE_PREFIX,
                call.status,
                call.seconds,
                call.body[:200],
            )
            swept = float("nan")
            if call.status is not None and call.status < 400:
                wait_sweep_done(admin_port, timeout=SWEEP_BUDGET_SECONDS - 30)
                swept = time.monotonic() - sent
            time.sleep(max(0.0, sent + duration - time.monotonic()))
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        during = parse_wrk(out.read())
    if call.status is None or call.status >= 400:
        raise BenchError(f"purge failed: status {call.status}: {call.body[:300]}")
    return PurgeRound(call, sent, swept, before, during)
