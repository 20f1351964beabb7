"""Zipf load over a catalogue larger than mediaproxy's memory tier (mediaproxy; nginx for ratios).

Per server: start it once (mediaproxy with a small `cache.memory_bytes`), GET every catalogue
object once so it is in the disk cache, verify a seeded sample (right body, X-Cache HIT), then
per round replay the seeded Zipf sequence with wrk (`-t1`, keep-alive, Lua script) and measure
req/s, latency and server CPU per request; for mediaproxy also the memory-tier hit ratio and
the lane's share from its admin /metrics (counter deltas over the load).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .bulkload import LoadError, Template, bulk_load, check_store
from .clients import BenchError, run_wrk
from .proctree import tree_cpu_seconds
from .purge import wait_start_up_scan
from .report import Metric, Results, num, ratio_text
from .servers import HOST, CacheServer, Mediaproxy, NginxCache, Origin
from .settings import WORK_DIR, Settings
from .zipfload import (
    Catalogue,
    build_catalogue,
    lua_script,
    origin_entries,
    read_counters,
    top_share,
    verify_sample,
    warm_catalogue,
    write_sequence,
    zipf_cumulative,
)

log = logging.getLogger("bench")

TITLE = "## Memory tier under a Zipf load (small objects, catalogue > memory tier)"
FLUSH_WAIT = 1.5  # mediaproxy's workers flush their metrics every second
MIB = 1 << 20

try:  # the memory tier's per-entry bookkeeping allowance, for the static-ideal estimate
    from proxy.store.front import ENTRY_OVERHEAD_BYTES
except ImportError:  # pragma: no cover - an older checkout
    ENTRY_OVERHEAD_BYTES = 1024


def _pct(value: float) -> str:
    return f"{value:.1%}"


METRICS = [
    Metric("zipf.rps", "Zipf", "req/s", num(0)),
    Metric("zipf.cpu_us", "Zipf", "server CPU per request (µs)", num(1)),
    Metric("zipf.p50", "Zipf", "p50 latency (ms)", num(2)),
    Metric("zipf.p99", "Zipf", "p99 latency (ms)", num(2)),
    Metric("zipf.errors", "Zipf", "errors (socket + non-2xx)", num(0), "max"),
    Metric("zipf.hit_ratio", "Zipf", "GET hits, any tier (/metrics)", _pct, "min"),
    Metric("zipf.memory_ratio", "Zipf", "memory-tier hit ratio", _pct),
    Metric("zipf.lane_share", "Zipf", "lane share (lane hits ÷ GETs)", _pct),
]


def _measure(
    server: CacheServer, url: str, script: Path, settings: Settings, results: Results
) -> None:
    """One replay of the sequence against a warmed server."""
    mediaproxy = server if isinstance(server, Mediaproxy) else None
    before = read_counters(HOST, mediaproxy.admin_port) if mediaproxy else None
    cpu0 = tree_cpu_seconds(server.root_pid)
    wrk = run_wrk(url, settings.small_conns, 1, settings.duration, script)
    cpu_us = (tree_cpu_seconds(server.root_pid) - cpu0) / max(wrk.requests, 1) * 1e6
    results.add(server.name, "zipf.rps", wrk.rps)
    results.add(server.name, "zipf.cpu_us", cpu_us)
    results.add(server.name, "zipf.p50", wrk.p50_ms)
    results.add(server.name, "zipf.p99", wrk.p99_ms)
    results.add(server.name, "zipf.errors", wrk.errors)
    shares = ""
    if mediaproxy is not None and before is not None:
        time.sleep(FLUSH_WAIT)
        after = read_counters(HOST, mediaproxy.admin_port)
        gets = after.get_requests - before.get_requests
        if gets <= 0:
            raise BenchError("mediaproxy's /metrics counted no GET during the Zipf load")
        results.add(server.name, "zipf.hit_ratio", (after.get_hits - before.get_hits) / gets)
        memory = (after.memory_hits - before.memory_hits) / gets
        lane = (after.lane_hits - before.lane_hits) / gets
        results.add(server.name, "zipf.memory_ratio", memory)
        results.add(server.name, "zipf.lane_share", lane)
        shares = f", memory tier {memory:.1%}, lane {lane:.1%} of {gets:.0f} GETs"
        if abs(gets - wrk.requests) > 0.02 * wrk.requests + settings.small_conns:
            results.warnings.append(
                f"Zipf: mediaproxy counted {gets:.0f} GETs, wrk {wrk.requests} requests"
            )
    log.info(
        "%s Zipf: %.0f req/s, %.1f µs CPU/req, p99 %.2f ms, %d errors%s",
        server.name,
        wrk.rps,
        cpu_us,
        wrk.p99_ms,
        wrk.errors,
        shares,
    )


def _start_filled(
    server: CacheServer, catalogue: Catalogue, settings: Settings, results: Results
) -> str:
    """Start the server with every catalogue object in its disk cache; says how it got there."""
    if isinstance(server, Mediaproxy) and settings.zipf_fill == "bulk":
        cache = server.fresh_cache()
        load = bulk_load(
            cache,
            origin_entries(server.origin.url, catalogue),
            max_size_bytes=Mediaproxy.MAX_SIZE_BYTES,
            batch=10_000,
        )
        picks = sorted({0, catalogue.objects // 2, catalogue.objects - 1})
        samples = [
            (catalogue.path(i), Template.fetch(server.origin.url, catalogue.path(i))) for i in picks
        ]
        try:
            check_store(cache, catalogue.objects, samples, max_size_bytes=Mediaproxy.MAX_SIZE_BYTES)
        except LoadError as exc:
            raise BenchError(f"Zipf bulk load check failed: {exc}") from exc
        started = time.monotonic()
        server.start(keep_cache=True)
        wait_start_up_scan(server.cache_dir, started)
        return f"bulk-loaded offline: {load.rate:,.0f} entries/s ({load.seconds:.1f} s)"
    server.start()
    warm = warm_catalogue(HOST, server.port, catalogue)
    log.info(
        "%s: Zipf catalogue warmed in %.1f s, %d errors", server.name, warm.seconds, warm.errors
    )
    if warm.errors:
        results.warnings.append(
            f"{server.name} Zipf warm-up: {warm.errors} errors, first: {warm.first_error}"
        )
    rate = catalogue.objects / warm.seconds
    return f"GET through it: {rate:,.0f} objects/s ({warm.seconds:.1f} s)"


def _run_server(
    server: CacheServer,
    catalogue: Catalogue,
    settings: Settings,
    results: Results,
    warms: dict[str, str],
) -> None:
    script = WORK_DIR / "zipf" / "replay.lua"
    try:
        warms[server.name] = _start_filled(server, catalogue, settings, results)
        not_hits = verify_sample(HOST, server.port, catalogue, settings.zipf_seed)
        if not_hits:
            results.warnings.append(
                f"{server.name} Zipf: {not_hits} of 50 sampled objects "
                "were not X-Cache HITs after the warm-up"
            )
        time.sleep(FLUSH_WAIT)  # the warm-up's counts reach /metrics before the first reading
        for _ in range(settings.rounds):
            _measure(server, f"http://{HOST}:{server.port}/", script, settings, results)
    finally:
        server.stop()


def run_zipf(origin: Origin, corpus_root: Path, settings: Settings, results: Results) -> None:
    """Run the section for nginx (ratios) and mediaproxy and append it to the report."""
    if not settings.zipf:
        results.extra_sections += [TITLE, "", "not run (`BENCH_ZIPF=0`).", ""]
        return
    if "mediaproxy" not in settings.only or "mediaproxy" in results.skipped:
        results.extra_sections += [TITLE, "", "not run: mediaproxy does not run.", ""]
        return
    catalogue = build_catalogue(corpus_root, settings.zipf_objects, settings.zipf_object_kib << 10)
    cumulative = zipf_cumulative(catalogue.objects, settings.zipf_s)
    work = WORK_DIR / "zipf"
    work.mkdir(parents=True, exist_ok=True)
    write_sequence(work / "sequence.txt", cumulative, settings.zipf_seed)
    (work / "replay.lua").write_text(lua_script(work / "sequence.txt", catalogue.objects))
    memory_bytes = settings.zipf_memory_mib * MIB
    servers: list[CacheServer] = []
    if "nginx" in settings.only and "nginx" not in results.skipped:
        servers.append(NginxCache(origin, settings))
    servers.append(Mediaproxy(origin, settings, memory_bytes=memory_bytes))
    warms: dict[str, str] = {}
    failed: list[str] = []
    for server in servers:
        log.info("=== Zipf: %s ===", server.name)
        try:
            _run_server(server, catalogue, settings, results, warms)
        except (BenchError, RuntimeError, OSError) as exc:
            log.error("Zipf %s failed: %s", server.name, exc)
            failed.append(f"{server.name}: {exc}")
    fit = memory_bytes // (catalogue.object_bytes + ENTRY_OVERHEAD_BYTES)
    results.extra_sections += render_zipf(
        results,
        settings,
        catalogue,
        [s.name for s in servers],
        top_share(cumulative, fit),
        fit,
        warms,
        failed,
    )


def render_zipf(
    results: Results,
    settings: Settings,
    catalogue: Catalogue,
    names: list[str],
    ideal: float,
    fit: int,
    warms: dict[str, str],
    failed: list[str],
) -> list[str]:
    lines = [
        TITLE,
        "",
        f"Catalogue: {catalogue.objects:,} objects of {catalogue.object_bytes >> 10} KiB "
        f"({catalogue.total_bytes / MIB:,.0f} MiB) from the origin; mediaproxy with "
        f"`cache.memory_bytes = {settings.zipf_memory_mib * MIB}` ({settings.zipf_memory_mib} "
        "MiB per worker, 2 workers, memory TTL at its default). Every object is put in the "
        "disk cache first: through nginx by one GET each (8 keep-alive connections); "
        + (
            "into mediaproxy's cache directory by bench/bulkload.py while it is stopped (the "
            "origin's own answer per object, the rows and files that many fills leave; a fill "
            "through mediaproxy costs ~4-5 ms of its CPU here, minutes for the catalogue; "
            "`BENCH_ZIPF_FILL=http` fills through it instead), then its start-up orphan scan "
            "is waited out"
            if settings.zipf_fill == "bulk"
            else "through mediaproxy the same way (`BENCH_ZIPF_FILL=http`)"
        )
        + ". A seeded sample of 50 is then verified (sha256, X-Cache HIT), and wrk `-t1 "
        f"-c{settings.small_conns}` replays a seeded Zipf sequence (s = {settings.zipf_s:g}, "
        f"seed {settings.zipf_seed}) for {settings.duration:g} s, {settings.rounds} time(s) "
        "on the same warmed server (medians). Ratios from mediaproxy's admin /metrics: "
        'counter deltas over the load ÷ `mediaproxy_requests_total{method="GET"}`.',
        "",
        f"Static ideal for the memory tier: {ideal:.1%} of requests go to the {fit:,} most "
        f"popular objects, as many as fit in one worker's tier ({catalogue.object_bytes} + "
        f"{ENTRY_OVERHEAD_BYTES} bytes each); each worker has its own tier and copies expire "
        "after `cache.memory_ttl_seconds`.",
        "",
        "| Metric | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for metric in METRICS:
        base = results.value("nginx", metric) if "nginx" in names else None
        cells = []
        for name in names:
            value = results.value(name, metric)
            if value is None:
                cells.append("—")
            elif name == "nginx" or metric.key in {"zipf.errors"} or metric.fmt is _pct:
                cells.append(metric.fmt(value))
            else:
                cells.append(metric.fmt(value) + ratio_text(value, base))
        lines.append(f"| {metric.label} | " + " | ".join(cells) + " |")
    lines.append(
        "| disk cache filled | " + " | ".join(warms.get(name, "—") for name in names) + " |"
    )
    if failed:
        lines += ["", "Failed:", "", *[f"- {f}" for f in failed]]
    return [*lines, ""]
