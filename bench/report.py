"""Collecting figures per server and round, and rendering the markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

MIB = 1 << 20


@dataclass(frozen=True)
class Metric:
    key: str
    section: str
    label: str
    fmt: Callable[[float], str]
    aggregate: str = "median"  # median | max | min over rounds


def num(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:,.{digits}f}"


def _mib(v: float) -> str:
    return f"{v / MIB:,.0f} MiB"


def small_key(label: str, threads: int) -> str:
    """Results key prefix of a small-hit run (object label, wrk threads)."""
    return f"small.{label}.t{threads}"


def build_metrics(
    small_labels: list[str],
    wrk_shapes: tuple[tuple[int, int], ...],
    large_label: str,
    herd_clients: int,
) -> list[Metric]:
    metrics: list[Metric] = []
    for label in small_labels:
        for threads, conns in wrk_shapes:
            section = f"Small hits {label}, wrk -t{threads} -c{conns}"
            key = small_key(label, threads)
            metrics += [
                Metric(f"{key}.rps", section, "req/s", num(0)),
                Metric(f"{key}.p50", section, "p50 latency (ms)", num(2)),
                Metric(f"{key}.p99", section, "p99 latency (ms)", num(2)),
                Metric(f"{key}.cpu_us", section, "server CPU per request (µs)", num(1)),
                Metric(f"{key}.errors", section, "errors (socket + non-2xx)", num(0), "max"),
            ]
    section = f"Large hits {large_label}"
    metrics += [
        Metric("large.mbps", section, "throughput (MB/s)", num(0)),
        Metric("large.cpu_s_per_gb", section, "server CPU per GB (s)", num(3)),
        Metric("large.rss_tree", section, "peak RSS, process tree", _mib, "max"),
        Metric("large.rss_proc", section, "peak RSS, largest process", _mib, "max"),
        Metric("large.errors", section, "errors", num(0), "max"),
    ]
    section = f"Cold herd ({herd_clients} clients)"
    metrics += [
        Metric("herd.origin_requests", section, "origin requests", num(0), "max"),
        Metric("herd.ttfb_min", section, "TTFB min (s)", num(3)),
        Metric("herd.ttfb_p50", section, "TTFB p50 (s)", num(3)),
        Metric("herd.ttfb_max", section, "TTFB max (s)", num(3)),
        Metric("herd.total", section, "total time, all bodies (s)", num(2)),
        Metric(
            "herd.ok_bodies",
            section,
            "bodies with the right sha256",
            lambda v: f"{v:.0f}/{herd_clients}",
            "min",
        ),
        Metric("herd.rss_tree", section, "peak RSS, process tree", _mib, "max"),
        Metric("herd.rss_proc", section, "peak RSS, largest process", _mib, "max"),
    ]
    return metrics


@dataclass
class Results:
    servers: list[str]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # server -> why it did not run
    failures: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra_sections: list[str] = field(default_factory=list)

    def add(self, server: str, key: str, value: float) -> None:
        self.values.setdefault(server, {}).setdefault(key, []).append(value)

    def fail(self, server: str, message: str) -> None:
        self.failures.setdefault(server, []).append(message)

    def value(self, server: str, metric: Metric) -> float | None:
        samples = self.values.get(server, {}).get(metric.key)
        if not samples:
            return None
        if metric.aggregate == "max":
            return max(samples)
        if metric.aggregate == "min":
            return min(samples)
        return float(statistics.median(samples))


def ratio_text(value: float, base: float | None) -> str:
    """Value ÷ base as ' (N.NNx)', or '' without a base."""
    if base is None or base == 0:
        return ""
    return f" ({value / base:.2f}x)"


def render_table(results: Results, metrics: list[Metric]) -> str:
    header = "| Test | Metric | " + " | ".join(results.servers) + " |"
    rule = "|---|---|" + "---:|" * len(results.servers)
    rows = [header, rule]
    for metric in metrics:
        base = results.value("nginx", metric) if "nginx" in results.servers else None
        cells = []
        for server in results.servers:
            if server in results.skipped:
                cells.append("skipped")
                continue
            value = results.value(server, metric)
            if value is None:
                cells.append("—")
            elif server == "nginx" or metric.key == "herd.ok_bodies":
                cells.append(metric.fmt(value))
            else:
                cells.append(metric.fmt(value) + ratio_text(value, base))
        rows.append(f"| {metric.section} | {metric.label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def render_rounds(results: Results, metrics: list[Metric]) -> str:
    rows = ["| Server | Metric | Per round |", "|---|---|---|"]
    for server in results.servers:
        for metric in metrics:
            samples = results.values.get(server, {}).get(metric.key)
            if samples:
                shown = ", ".join(metric.fmt(v) for v in samples)
                rows.append(f"| {server} | {metric.section}: {metric.label} | {shown} |")
    return "\n".join(rows)


def render_report(
    *,
    title: str,
    preamble: list[str],
    results: Results,
    metrics: list[Metric],
    setup_notes: list[str],
    appendix_metrics: list[Metric] | None = None,
) -> str:
    """The report; `appendix_metrics` (figures of the extra sections) join the per-round
    appendix only."""
    parts = [f"# {title}", "", *preamble, "", render_table(results, metrics), ""]
    parts += results.extra_sections
    if results.skipped:
        parts += ["## Skipped", ""]
        parts += [f"- {server}: {why}" for server, why in results.skipped.items()]
        parts.append("")
    if results.failures:
        parts += ["## Failures", ""]
        for server, messages in results.failures.items():
            parts += [f"- {server}: {message}" for message in messages]
        parts.append("")
    if results.warnings:
        parts += ["## Warnings", ""]
        parts += [f"- {w}" for w in results.warnings]
        parts.append("")
    parts += ["## Setup", ""]
    parts += [f"- {note}" for note in setup_notes]
    appendix = render_rounds(results, metrics + (appendix_metrics or []))
    parts += ["", "## Per-round values", "", appendix, ""]
    return "\n".join(parts)
