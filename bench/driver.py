"""`make bench`: mediaproxy vs nginx proxy_cache vs Varnish, one server at a time.

Per round and server: start it fresh (empty cache), warm and sha256-verify every corpus object
through it, then run small hits (wrk), large hits (lean MSG_TRUNC client), the cold herd
(throttled origin), sampling the server's process-tree RSS during the last two; stop it.
Rounds alternate the server order. Medians (per round values in the appendix) are written as a
markdown table to bench/results/<UTC timestamp>.md and bench/results/latest.md and printed.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime

from .clients import BenchError, run_herd, run_lean, run_wrk, tool_version, warm_and_verify
from .corpus import Corpus, build_corpus
from .procs import install_cleanup, kill_strays, stop_all
from .proctree import RssSampler, tree_cpu_seconds
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
from .report import Results, build_metrics, render_report
from .servers import HOST, SERVER_CLASSES, CacheServer, Mediaproxy, Origin
from .settings import RESULTS_DIR, WORK_DIR, Settings

log = logging.getLogger("bench")


def run_small(server: CacheServer, corpus: Corpus, settings: Settings, results: Results) -> None:
    for obj in corpus.small:
        url = f"http://{HOST}:{server.port}{obj.path}"
        cpu0 = tree_cpu_seconds(server.root_pid)
        wrk = run_wrk(url, settings.small_conns, settings.wrk_threads, settings.duration)
        cpu = tree_cpu_seconds(server.root_pid) - cpu0
        log.info(
            "%s %s hits: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %.1f µs CPU/req, %d errors",
            server.name,
            obj.label,
            wrk.rps,
            wrk.p50_ms,
            wrk.p99_ms,
            cpu / max(wrk.requests, 1) * 1e6,
            wrk.errors,
        )
        prefix = f"small.{obj.label}"
        results.add(server.name, f"{prefix}.rps", wrk.rps)
        results.add(server.name, f"{prefix}.p50", wrk.p50_ms)
        results.add(server.name, f"{prefix}.p99", wrk.p99_ms)
        results.add(server.name, f"{prefix}.cpu_us", cpu / max(wrk.requests, 1) * 1e6)
        results.add(server.name, f"{prefix}.errors", wrk.errors)


def run_large(server: CacheServer, corpus: Corpus, settings: Settings, results: Results) -> None:
    with RssSampler(server.root_pid) as sampler:
        cpu0 = tree_cpu_seconds(server.root_pid)
        lean = run_lean(
            HOST, server.port, corpus.large.path, settings.large_conns, settings.duration
        )
        cpu = tree_cpu_seconds(server.root_pid) - cpu0
    peak = sampler.result()
    gb = lean.body_bytes / 1e9
    log.info(
        "%s large hits: %.0f MB/s, %.3f s CPU/GB, %d responses, %d errors %s; peak RSS %.0f MiB",
        server.name,
        lean.mb_per_s,
        cpu / gb if gb else 0.0,
        lean.responses,
        lean.errors,
        lean.first_error,
        peak.tree_bytes / (1 << 20),
    )
    results.add(server.name, "large.mbps", lean.mb_per_s)
    if gb:
        results.add(server.name, "large.cpu_s_per_gb", cpu / gb)
    results.add(server.name, "large.rss_tree", peak.tree_bytes)
    results.add(server.name, "large.rss_proc", peak.process_bytes)
    results.add(server.name, "large.errors", lean.errors)
    if lean.errors:
        results.warnings.append(f"{server.name} large hits: {lean.first_error}")


def run_herd_test(
    server: CacheServer,
    corpus: Corpus,
    origin: Origin,
    settings: Settings,
    results: Results,
    tag: str,
) -> None:
    cold = corpus.cold_object(tag)
    before = origin.request_counts()[cold.path]
    fill_seconds = cold.size / settings.herd_rate
    with RssSampler(server.root_pid) as sampler:
        herd = run_herd(
            HOST, server.port, cold, settings.herd_clients, timeout=60 + 4 * fill_seconds
        )
    peak = sampler.result()
    time.sleep(0.5)  # nginx logs a request when it completes
    origin_requests = origin.request_counts()[cold.path] - before
    log.info(
        "%s herd: %d origin requests, TTFB %.3f/%.3f/%.3f s, total %.2f s, %d/%d bodies ok, "
        "X-Cache %s%s",
        server.name,
        origin_requests,
        herd.ttfb_min,
        herd.ttfb_p50,
        herd.ttfb_max,
        herd.wall,
        herd.ok_bodies,
        herd.clients,
        herd.x_cache,
        f", first error: {herd.first_error}" if herd.first_error else "",
    )
    results.add(server.name, "herd.origin_requests", origin_requests)
    results.add(server.name, "herd.ttfb_min", herd.ttfb_min)
    results.add(server.name, "herd.ttfb_p50", herd.ttfb_p50)
    results.add(server.name, "herd.ttfb_max", herd.ttfb_max)
    results.add(server.name, "herd.total", herd.wall)
    results.add(server.name, "herd.ok_bodies", herd.ok_bodies)
    results.add(server.name, "herd.rss_tree", peak.tree_bytes)
    results.add(server.name, "herd.rss_proc", peak.process_bytes)
    if herd.ok_bodies != herd.clients or herd.distinct_sha != 1:
        results.warnings.append(
            f"{server.name} herd ({tag}): {herd.ok_bodies}/{herd.clients} correct bodies, "
            f"{herd.distinct_sha} distinct sha256; first error: {herd.first_error or 'none'}"
        )


def run_server_round(
    server: CacheServer,
    corpus: Corpus,
    origin: Origin,
    settings: Settings,
    results: Results,
    tag: str,
) -> None:
    server.start()
    try:
        for warning in warm_and_verify(HOST, server.port, corpus.objects):
            results.warnings.append(f"{server.name}: {warning}")
        run_small(server, corpus, settings, results)
        run_large(server, corpus, settings, results)
        run_herd_test(server, corpus, origin, settings, results, tag)
    finally:
        server.stop()


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
    title = "## Purge under load (mediaproxy only)"
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
            "hits \"during\" run from just before the call until the sweep is done.",
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


def machine_summary() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, {platform.system()} "
        f"{platform.release()}, load average at start {load}"
    )


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings.from_env()
    install_cleanup()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    kill_strays()
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    machine = machine_summary()

    corpus = build_corpus(WORK_DIR / "corpus", settings.large_mib)
    origin = Origin(corpus.root, settings)
    servers: list[CacheServer] = []
    results = Results(servers=list(settings.only))
    for name in settings.only:
        server = SERVER_CLASSES[name](origin, settings)
        why_not = server.available()
        if why_not:
            log.warning("skipping %s: %s", name, why_not)
            results.skipped[name] = why_not
        else:
            servers.append(server)
    if not servers:
        log.error("no server to benchmark")
        return 1

    try:
        origin.start()
        for rnd in range(1, settings.rounds + 1):
            order = servers if rnd % 2 else list(reversed(servers))
            for server in order:
                log.info("=== round %d/%d: %s ===", rnd, settings.rounds, server.name)
                try:
                    run_server_round(
                        server, corpus, origin, settings, results, f"{run_id}-{server.name}-r{rnd}"
                    )
                except (BenchError, RuntimeError, OSError) as exc:
                    log.error("%s round %d failed: %s", server.name, rnd, exc)
                    results.fail(server.name, f"round {rnd}: {exc}")
        mediaproxy = next((s for s in servers if isinstance(s, Mediaproxy)), None)
        if settings.purge:
            if mediaproxy is None:
                results.extra_sections += [
                    "## Purge under load (mediaproxy only)",
                    "",
                    "not run: mediaproxy not running",
                    "",
                ]
            else:
                run_purge_test(mediaproxy, corpus, origin, settings, results)
        else:
            results.extra_sections += [
                "## Purge under load (mediaproxy only)",
                "",
                "not run (set `BENCH_PURGE=1`; fills "
                f"{settings.purge_entries:,} entries first). Without the admin API it reports "
                f"`{NOT_AVAILABLE}`.",
                "",
            ]
    finally:
        stop_all()

    versions = {
        "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        "varnish": tool_version(["varnishd", "-V"], r"varnish-(\S+)"),
        "wrk": tool_version(["wrk", "-v"], r"wrk (\S+)"),
    }
    if "mediaproxy" in settings.only and "mediaproxy" not in results.skipped:
        versions["mediaproxy"] = next(s.version() for s in servers if isinstance(s, Mediaproxy))
    defaults = (
        settings.duration == 15
        and settings.large_mib == 256
        and settings.herd_clients == 50
        and settings.herd_rate == 50_000_000
        and settings.rounds >= 2
    )
    preamble = [
        f"Run {started.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        + ("" if defaults else " — **reduced/non-default settings**")
        + f": {settings.rounds} round(s), medians shown (errors, origin requests and RSS: "
        f"worst round); {settings.duration:g} s per load test; large object "
        f"{settings.large_mib} MiB; herd {settings.herd_clients} clients, origin at "
        f"{settings.herd_rate / 1e6:g} MB/s.",
        "",
        f"Machine: {machine}. Clients run on the same cores as the servers.",
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f", Python {platform.python_version()}.",
        "",
        "(N.NNx) = the server's figure ÷ nginx's figure from this run. Higher is better for req/s "
        "and MB/s; lower is better for latency, CPU, RSS, origin requests and times. "
        "MB = 10⁶ bytes.",
    ]
    setup_notes = [
        "Origin: nginx static file server on loopback (sendfile, `tcp_nopush off`), "
        "`Cache-Control: public, max-age=86400` on every object; `/slow/` (the herd's cold "
        f"objects) throttled with `limit_rate {settings.herd_rate}`. Origin requests are "
        "counted from its access log.",
        *[s.describe() for s in servers],
        "Each server is started fresh (empty cache) for each round, warmed and verified by "
        "sha256 for every object (second GET must be an X-Cache HIT), then: "
        f"wrk `-t{settings.wrk_threads} -c{settings.small_conns} --latency` on each small "
        f"object; a lean client ({settings.large_conns} keep-alive connections, "
        "`recv(MSG_TRUNC)`, body bytes counted up to the deadline) on the large object; "
        f"{settings.herd_clients} threads released by a barrier on a cold URL, each hashing "
        "its body. Only one server runs at a time; round order alternates.",
        "Server CPU = utime+stime of the whole process tree from /proc over the test. RSS "
        "sampled every 100 ms over the tree (page cache is not RSS).",
        "The herd client hashes every body (sha256), which costs client CPU on the shared "
        "cores; herd times include that for every server alike.",
    ]
    metrics = build_metrics(
        [o.label for o in corpus.small], corpus.large.label, settings.herd_clients
    )
    text = render_report(
        title="mediaproxy benchmark",
        preamble=preamble,
        results=results,
        metrics=metrics,
        setup_notes=setup_notes,
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{run_id}.md"
    out.write_text(text)
    (RESULTS_DIR / "latest.md").write_text(text)
    print(text)
    log.info("wrote %s and %s", out, RESULTS_DIR / "latest.md")
    return 0 if not results.failures else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        logging.getLogger("bench").error("interrupted")
        sys.exit(130)
