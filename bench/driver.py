"""`make bench`: mediaproxy vs nginx proxy_cache vs Varnish, one server at a time.

Per round and server: start it fresh (empty cache), warm and sha256-verify every corpus object
through it, then run small hits (wrk -t1 and wrk -t<BENCH_WRK_THREADS>), large hits (lean
MSG_TRUNC client), the cold herd (throttled origin), sampling the server's process-tree RSS
during the last two; stop it. Rounds alternate the server order. Then the sections of their
own: worker scaling (bench/scaling.py), the Zipf memory-tier load (bench/zipf.py) and purge
under load (bench/purgetest.py). Medians (per round values in the appendix) are written as
markdown to bench/results/<UTC timestamp>.md and bench/results/latest.md and printed.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime

from .clients import BenchError, run_herd, run_lean, run_wrk, tool_version, warm_and_verify
from .corpus import Corpus, build_corpus
from .procs import install_cleanup, kill_strays, stop_all
from .proctree import RssSampler, tree_cpu_seconds
from .purgetest import not_run_section, run_purge_test
from .report import Results, build_metrics, render_report, small_key
from .scaling import run_scaling, scaling_metrics
from .servers import HOST, SERVER_CLASSES, CacheServer, Mediaproxy, Origin
from .settings import RESULTS_DIR, WORK_DIR, Settings
from .zipf import METRICS as ZIPF_METRICS
from .zipf import run_zipf

log = logging.getLogger("bench")


def run_small(server: CacheServer, corpus: Corpus, settings: Settings, results: Results) -> None:
    for obj in corpus.small:
        url = f"http://{HOST}:{server.port}{obj.path}"
        for threads, conns in settings.wrk_shapes:
            cpu0 = tree_cpu_seconds(server.root_pid)
            wrk = run_wrk(url, conns, threads, settings.duration)
            cpu_us = (tree_cpu_seconds(server.root_pid) - cpu0) / max(wrk.requests, 1) * 1e6
            log.info(
                "%s %s hits (wrk -t%d -c%d): %.0f req/s, p50 %.2f ms, p99 %.2f ms, "
                "%.1f µs CPU/req, %d errors",
                server.name,
                obj.label,
                threads,
                conns,
                wrk.rps,
                wrk.p50_ms,
                wrk.p99_ms,
                cpu_us,
                wrk.errors,
            )
            prefix = small_key(obj.label, threads)
            results.add(server.name, f"{prefix}.rps", wrk.rps)
            results.add(server.name, f"{prefix}.p50", wrk.p50_ms)
            results.add(server.name, f"{prefix}.p99", wrk.p99_ms)
            results.add(server.name, f"{prefix}.cpu_us", cpu_us)
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
        run_scaling(origin, corpus, settings, results)
        run_zipf(origin, corpus.root, settings, results)
        mediaproxy = next((s for s in servers if isinstance(s, Mediaproxy)), None)
        if settings.purge and mediaproxy is not None:
            run_purge_test(mediaproxy, corpus, origin, settings, results)
        else:
            results.extra_sections += not_run_section(settings, mediaproxy is not None)
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
        + " then ".join(f"wrk `-t{t} -c{c} --latency`" for t, c in settings.wrk_shapes)
        + " on each small object (one wrk thread is the fair shape on a small machine: a "
        "second thread takes a core from the server under test); a lean client "
        f"({settings.large_conns} keep-alive connections, "
        "`recv(MSG_TRUNC)`, body bytes counted up to the deadline) on the large object; "
        f"{settings.herd_clients} threads released by a barrier on a cold URL, each hashing "
        "its body. Only one server runs at a time; round order alternates.",
        "Server CPU = utime+stime of the whole process tree from /proc over the test. RSS "
        "sampled every 100 ms over the tree (page cache is not RSS).",
        "The herd client hashes every body (sha256), which costs client CPU on the shared "
        "cores; herd times include that for every server alike.",
    ]
    labels = [o.label for o in corpus.small]
    metrics = build_metrics(labels, settings.wrk_shapes, corpus.large.label, settings.herd_clients)
    text = render_report(
        title="mediaproxy benchmark",
        preamble=preamble,
        results=results,
        metrics=metrics,
        setup_notes=setup_notes,
        appendix_metrics=scaling_metrics(settings, labels) + ZIPF_METRICS,
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
