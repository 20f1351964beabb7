"""The purge-under-load test's run (mediaproxy only): bulk load, rounds, its report section."""

from __future__ import annotations

import logging
import statistics
import time

from .clients import BenchError, warm_and_verify
from .corpus import Corpus
from .purge import (
    NOT_AVAILABLE,
    Entries,
    admin_stats,
    check_cache_status,
    entry_path,
    load_entries,
    purge_api_unavailable,
    purge_round,
    wait_start_up_scan,
)
from .report import Results
from .servers import HOST, Mediaproxy, Origin
from .settings import Settings

log = logging.getLogger("bench")

TITLE = "## Purge under load (mediaproxy only)"


def not_run_section(settings: Settings, mediaproxy_running: bool) -> list[str]:
    """The section when the test does not run."""
    if settings.purge and not mediaproxy_running:
        return [TITLE, "", "not run: mediaproxy not running", ""]
    return [
        TITLE,
        "",
        "not run (set `BENCH_PURGE=1`; fills "
        f"{settings.purge_entries:,} entries first). Without the admin API it reports "
        f"`{NOT_AVAILABLE}`.",
        "",
    ]


def _start_loaded(mediaproxy: Mediaproxy, corpus: Corpus, results: Results) -> None:
    """Start mediaproxy on its loaded cache, warm the hit object, wait out its start-up scan."""
    started = time.monotonic()
    mediaproxy.start(keep_cache=True)
    for warning in warm_and_verify(HOST, mediaproxy.port, corpus.small):
        results.warnings.append(f"mediaproxy (purge test): {warning}")
    wait_start_up_scan(mediaproxy.cache_dir, started)


def run_purge_test(
    mediaproxy: Mediaproxy, corpus: Corpus, origin: Origin, settings: Settings, results: Results
) -> None:
    """Purge under load (mediaproxy only); appends its own section to the report.

    The entries are bulk-loaded while mediaproxy is stopped (bench/bulkload.py) and checked
    offline and through HTTP; before each further round mediaproxy is stopped, the purged
    prefix is loaded again and mediaproxy restarted on the same cache."""
    title = TITLE
    total, prefix_end = settings.purge_entries, settings.purge_prefix_entries
    hit_path = corpus.small[0].path
    try:
        if not 0 < prefix_end < total:
            raise BenchError("BENCH_PURGE_PREFIX_ENTRIES must be below BENCH_PURGE_ENTRIES")
        mediaproxy.start()  # empty: is there a purge API at all, before loading for minutes?
        try:
            unavailable = purge_api_unavailable(mediaproxy.admin_port, settings.admin_token)
        finally:
            mediaproxy.stop()
        if unavailable is not None:
            print(f"purge under load: {unavailable}")
            results.extra_sections += [title, "", unavailable, ""]
            return
        entries = Entries.from_origin(origin.url, total, prefix_end)
        load = load_entries(mediaproxy.fresh_cache(), entries, 0, total, total)
        purged = entry_path(min(5, prefix_end - 1), prefix_end)
        kept = entry_path(total - 1, prefix_end)
        reloads: list[float] = []
        rows: list[str] = []
        medians: list[tuple[float, float, float, float]] = []
        for rnd in range(1, settings.rounds + 1):
            if rnd > 1:
                mediaproxy.stop()
                # Expected: every entry again, plus the warmed corpus objects.
                reload = load_entries(
                    mediaproxy.cache_dir, entries, 0, prefix_end, total + len(corpus.small)
                )
                reloads.append(reload.seconds)
            _start_loaded(mediaproxy, corpus, results)
            stats = admin_stats(mediaproxy.admin_port)
            log.info("mediaproxy /stats: %d entries, %d bytes", stats["entries"], stats["bytes"])
            check_cache_status(mediaproxy.port, origin, entries, {purged: "HIT", kept: "HIT"})
            pr = purge_round(
                mediaproxy.port,
                mediaproxy.admin_port,
                settings.admin_token,
                hit_path,
                settings.duration,
                settings.small_conns,
                settings.wrk_threads,
            )
            sweep = pr.sweep_seconds
            check_cache_status(mediaproxy.port, origin, entries, {purged: "MISS", kept: "HIT"})
            log.info("purge sweep of %s done (ban retired) %.1f s after the call", purged, sweep)
            rows.append(
                f"| {rnd} | {pr.call.status} | {pr.call.seconds * 1e3:,.1f} | "
                f"{pr.before.p99_ms:.2f} | {pr.during.p99_ms:.2f} | {pr.before.rps:,.0f} | "
                f"{pr.during.rps:,.0f} | {sweep:.1f} |"
            )
            medians.append((pr.call.seconds * 1e3, pr.before.p99_ms, pr.during.p99_ms, sweep))
        if len(medians) > 1:
            columns = zip(*medians, strict=True)
            call_ms, before_ms, during_ms, sweep_s = (statistics.median(col) for col in columns)
            rows.append(
                f"| median | | {call_ms:,.1f} | {before_ms:.2f} | {during_ms:.2f} | | | "
                f"{sweep_s:.1f} |"
            )
        reloaded = (
            f" Before rounds 2+ mediaproxy is stopped and the {prefix_end:,} `/p/` entries are "
            f"loaded again the same way ({statistics.median(reloads):.1f} s)."
            if reloads
            else ""
        )
        head = [
            f"{total:,} entries bulk-loaded offline, with mediaproxy stopped (bench/bulkload.py: "
            f"rows and body files as real fills leave them), in {load.seconds:.1f} s "
            f"({load.rate:,.0f} entries/s); mediaproxy then starts on that cache and its "
            f"start-up orphan scan is waited out.{reloaded} Purge of prefix `/p/` "
            f"({prefix_end:,} entries) while {settings.small_conns} connections hit {hit_path}; "
            "sweep done = from the purge call until the ban is swept and retired (`/stats`); "
            'hits "during" run from just before the call until the sweep is done.',
            "",
            "| Round | purge status | purge call (ms) | hit p99 before (ms) | hit p99 during (ms) "
            "| req/s before | req/s during | sweep done (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        results.extra_sections += [title, "", *head, *rows, ""]
    except (BenchError, RuntimeError, OSError) as exc:
        log.error("purge test failed: %s", exc)
        results.extra_sections += [title, "", f"failed: {exc}", ""]
    finally:
        mediaproxy.stop()
