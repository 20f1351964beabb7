"""Worker scaling: small hits at 1, 2, 4 … worker processes (nginx and mediaproxy).

For each worker count and server: start it fresh with that many workers, warm and verify the
small objects, then wrk `-t1 -c<BENCH_SMALL_CONNS>` on each. Reported per worker count: req/s,
server CPU per request and p99, side by side with ratios to nginx at the same count, and each
server's CPU per request relative to its smallest worker count (it should not grow).
"""

from __future__ import annotations

import logging
import os

from .clients import BenchError, run_wrk, warm_and_verify
from .corpus import Corpus
from .proctree import tree_cpu_seconds
from .report import Metric, Results, num, ratio_text
from .servers import HOST, SERVER_CLASSES, Origin
from .settings import Settings

log = logging.getLogger("bench")

TITLE = "## Scaling with workers (small hits, wrk -t1)"
SERVERS = ("nginx", "mediaproxy")  # Varnish has no comparable worker-process count
VARNISH_NOTE = (
    "Varnish is not in this section: it runs one child process whose thread pools grow on "
    "demand, so it has no worker-process count to set alike."
)


def _key(workers: int, label: str, what: str) -> str:
    return f"scale.w{workers}.{label}.{what}"


def scaling_metrics(settings: Settings, labels: list[str]) -> list[Metric]:
    """The section's figures, for the per-round appendix."""
    metrics: list[Metric] = []
    for workers in settings.scaling_workers:
        for label in labels:
            section = f"Scaling {label}, workers = {workers}"
            metrics += [
                Metric(_key(workers, label, "rps"), section, "req/s", num(0)),
                Metric(_key(workers, label, "cpu_us"), section, "server CPU/req (µs)", num(1)),
                Metric(_key(workers, label, "p99"), section, "p99 (ms)", num(2)),
                Metric(_key(workers, label, "errors"), section, "errors", num(0), "max"),
            ]
    return metrics


def _measure(
    name: str, workers: int, origin: Origin, corpus: Corpus, settings: Settings, results: Results
) -> None:
    server = SERVER_CLASSES[name](origin, settings, workers=workers)
    server.start()
    try:
        for warning in warm_and_verify(HOST, server.port, corpus.small):
            results.warnings.append(f"{name} ({workers} workers): {warning}")
        for obj in corpus.small:
            url = f"http://{HOST}:{server.port}{obj.path}"
            cpu0 = tree_cpu_seconds(server.root_pid)
            wrk = run_wrk(url, settings.small_conns, 1, settings.duration)
            cpu_us = (tree_cpu_seconds(server.root_pid) - cpu0) / max(wrk.requests, 1) * 1e6
            log.info(
                "%s %d workers %s: %.0f req/s, %.1f µs CPU/req, p99 %.2f ms, %d errors",
                name,
                workers,
                obj.label,
                wrk.rps,
                cpu_us,
                wrk.p99_ms,
                wrk.errors,
            )
            results.add(name, _key(workers, obj.label, "rps"), wrk.rps)
            results.add(name, _key(workers, obj.label, "cpu_us"), cpu_us)
            results.add(name, _key(workers, obj.label, "p99"), wrk.p99_ms)
            results.add(name, _key(workers, obj.label, "errors"), wrk.errors)
    finally:
        server.stop()


def run_scaling(origin: Origin, corpus: Corpus, settings: Settings, results: Results) -> None:
    """Run the section (settings.rounds rounds, server order alternating) and append it."""
    if not settings.scaling:
        results.extra_sections += [TITLE, "", "not run (`BENCH_SCALING=0`).", ""]
        return
    names = [n for n in SERVERS if n in settings.only and n not in results.skipped]
    if not names:
        results.extra_sections += [TITLE, "", "not run: neither nginx nor mediaproxy runs.", ""]
        return
    failed: list[str] = []
    step = 0
    for rnd in range(1, settings.rounds + 1):
        for workers in settings.scaling_workers:
            step += 1
            for name in names if step % 2 else list(reversed(names)):
                log.info(
                    "=== scaling round %d/%d: %s, %d workers ===",
                    rnd,
                    settings.rounds,
                    name,
                    workers,
                )
                try:
                    _measure(name, workers, origin, corpus, settings, results)
                except (BenchError, RuntimeError, OSError) as exc:
                    log.error("scaling %s %d workers failed: %s", name, workers, exc)
                    failed.append(f"{name}, {workers} workers, round {rnd}: {exc}")
    results.extra_sections += render_scaling(
        results, settings, names, [o.label for o in corpus.small], failed
    )


def _cell(results: Results, server: str, metric: Metric, base: float | None) -> str:
    value = results.value(server, metric)
    if value is None:
        return "—"
    return metric.fmt(value) + ("" if server == "nginx" else ratio_text(value, base))


def render_scaling(
    results: Results, settings: Settings, names: list[str], labels: list[str], failed: list[str]
) -> list[str]:
    cores = os.cpu_count() or 1
    over = [w for w in settings.scaling_workers if w > cores]
    lines = [
        TITLE,
        "",
        f"Each server started fresh per worker count (nginx `worker_processes N`, mediaproxy "
        f"`workers = N`), small objects warmed and verified, then wrk `-t1 "
        f"-c{settings.small_conns}` for {settings.duration:g} s on each; {settings.rounds} "
        "round(s), medians. (N.NNx) = ÷ nginx at the same worker count. " + VARNISH_NOTE,
    ]
    if over:
        lines[-1] += (
            f" This machine has {cores} cores: {', '.join(map(str, over))} workers "
            "oversubscribe them (and share them with wrk)."
        )
    head = ["Object", "Workers"]
    for what in ("req/s", "server CPU/req (µs)", "p99 (ms)"):
        head += [f"{what} {name}" for name in names]
    lines += ["", "| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    by_key = {m.key: m for m in scaling_metrics(settings, labels)}
    for label in labels:
        for workers in settings.scaling_workers:
            cells = [label, str(workers)]
            for what in ("rps", "cpu_us", "p99"):
                metric = by_key[_key(workers, label, what)]
                base = results.value("nginx", metric) if "nginx" in names else None
                cells += [_cell(results, name, metric, base) for name in names]
            lines.append("| " + " | ".join(cells) + " |")
    first = settings.scaling_workers[0]
    lines += [
        "",
        f"Server CPU per request relative to {first} worker{'s' if first > 1 else ''} "
        "(should stay near 1.00):",
        "",
        "| Object | Server | " + " | ".join(f"{w} w" for w in settings.scaling_workers) + " |",
        "|---|---|" + "---:|" * len(settings.scaling_workers),
    ]
    for label in labels:
        for name in names:
            base = results.value(name, by_key[_key(first, label, "cpu_us")])
            cells = []
            for workers in settings.scaling_workers:
                value = results.value(name, by_key[_key(workers, label, "cpu_us")])
                cells.append("—" if value is None or not base else f"{value / base:.2f}")
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    errors = [
        f"{name} {workers} w {label}: {value:.0f}"
        for name in names
        for workers in settings.scaling_workers
        for label in labels
        if (value := results.value(name, by_key[_key(workers, label, "errors")]) or 0)
    ]
    if errors:
        lines += ["", "Errors (socket + non-2xx, worst round): " + "; ".join(errors) + "."]
    if failed:
        lines += ["", "Failed runs:", "", *[f"- {f}" for f in failed]]
    return [*lines, ""]
