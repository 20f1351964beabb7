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


def _num(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:,.{digits}f}"


def _mib(v: float) -> str:
    return f"{v / MIB:,.0f} MiB"


def build_metrics(small_labels: list[str], large_label: str, herd_clients: int) -> list[Metric]:
    metrics: list[Metric] = []
    for label in small_labels:
        section = f"Small hits {label}"
        metrics += [
            Metric(f"small.{label}.rps", section, "req/s", _num(0)),
            Metric(f"small.{label}.p50", section, "p50 latency (ms)", _num(2)),
            Metric(f"small.{label}.p99", section, "p99 latency (ms)", _num(2)),
            Metric(f"small.{label}.cpu_us", section, "server CPU per request (µs)", _num(1)),
            Metric(f"small.{label}.errors", section, "errors (socket + non-2xx)", _num(0), "max"),
        ]
    section = f"Large hits {large_label}"
    metrics += [
        Metric("large.mbps", section, "throughput (MB/s)", _num(0)),
        Metric("large.cpu_s_per_gb", section, "server CPU per GB (s)", _num(3)),
        Metric("large.rss_tree", section, "peak RSS, process tree", _mib, "max"),
        Metric("large.rss_proc", section, "peak RSS, largest process", _mib, "max"),
        Metric("large.errors", section, "errors", _num(0), "max"),
    ]
    section = f"Cold herd ({herd_clients} clients)"
    metrics += [
        Metric("herd.origin_requests", section, "origin requests", _num(0), "max"),
        Metric("herd.ttfb_min", section, "TTFB min (s)", _num(3)),
        Metric("herd.ttfb_p50", section, "TTFB p50 (s)", _num(3)),
        Metric("herd.ttfb_max", section, "TTFB max (s)", _num(3)),
        Metric("herd.total", section, "total time, all bodies (s)", _num(2)),
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


def _ratio(value: float, base: float | None) -> str:
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
                cells.append(metric.fmt(value) + _ratio(value, base))
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
) -> str:
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
    parts += ["", "## Per-round values", "", render_rounds(results, metrics), ""]
    return "\n".join(parts)
