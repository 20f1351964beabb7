"""The `mediaproxy stats` screen: two scrapes of /metrics and /stats -> rates and totals.

Rule: pure (text in, text out, the clock passed in), so the screen is tested on real scrapes
without a terminal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from proxy.status import CacheStatus


@dataclass
class Snapshot:
    at: float
    counters: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> label -> v
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, metrics_text: str, stats: dict[str, Any], at: float) -> Snapshot:
        counters: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        wanted = {"mediaproxy_requests_total": "cache_status",
                  "mediaproxy_response_bytes_total": "cache_status",
                  "mediaproxy_origin_requests_total": "outcome",
                  "mediaproxy_fills_total": "outcome",
                  "mediaproxy_store_errors_total": "operation",
                  "mediaproxy_open_streams": ""}
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                if sample.name in wanted:
                    label = sample.labels.get(wanted[sample.name], "") if wanted[
                        sample.name] else ""
                    counters[sample.name][label] += sample.value
        return cls(at, {k: dict(v) for k, v in counters.items()}, stats)

    def total(self, name: str) -> float:
        return sum(self.counters.get(name, {}).values())

    def get(self, name: str, label: str) -> float:
        return self.counters.get(name, {}).get(label, 0.0)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop returns


def render(before: Snapshot, now: Snapshot, source: str) -> str:
    seconds = max(now.at - before.at, 1e-9)

    def rate(name: str, label: str | None = None) -> float:
        if label is None:
            return (now.total(name) - before.total(name)) / seconds
        return (now.get(name, label) - before.get(name, label)) / seconds

    requests = "mediaproxy_requests_total"
    served = now.total(requests) - before.total(requests)
    hits = sum(now.get(requests, s) - before.get(requests, s) for s in ("HIT", "REVALIDATED"))
    window = f"{hits / served:.1%}" if served else "-"
    overall = now.stats.get("hit_ratio")
    lines = [
        f"mediaproxy stats  {source}  (rates over {seconds:.1f} s)",
        "",
        f"hit ratio      {window} now, {overall:.1%} since start" if overall is not None
        else f"hit ratio      {window} now, - since start",
        f"requests/s     {rate(requests):10.1f}   total {now.total(requests):,.0f}",
    ]
    for status in CacheStatus:
        total = now.get(requests, status.value)
        if total:
            lines.append(f"  {status.value:<12} {rate(requests, status.value):10.1f}   "
                         f"total {total:,.0f}")
    origin = "mediaproxy_origin_requests_total"
    lines.append(f"origin fetch/s {rate(origin):10.1f}   "
                 + "  ".join(f"{o} {now.get(origin, o):,.0f}" for o in ("ok", "error", "timeout")))
    sent = "mediaproxy_response_bytes_total"
    lines.append(f"bytes out/s    {_bytes(rate(sent)):>10}   total {_bytes(now.total(sent))}")
    fills = "mediaproxy_fills_total"
    lines.append(f"fills          {now.stats.get('fills_in_progress', 0)} running   "
                 + "  ".join(f"{o} {v:,.0f}" for o, v in sorted(
                     now.counters.get(fills, {}).items()) if v))
    lines.append(f"open streams   {now.total('mediaproxy_open_streams'):,.0f}")
    lines.append(f"store          {now.stats.get('entries', 0):,} entries, "
                 f"{_bytes(now.stats.get('bytes', 0))} of "
                 f"{_bytes(now.stats.get('max_size_bytes', 0))}")
    lines.append(f"superseded     {now.stats.get('superseded_files', 0):,} files, "
                 f"{_bytes(now.stats.get('superseded_bytes', 0))} held for open streams")
    bans = now.stats.get("active_bans", [])
    lines.append(f"bans sweeping  {len(bans)}"
                 + ("" if not bans else "   " + ", ".join(
                     f"{b['kind']} {b['value'] or '*'}" for b in bans[:5])))
    errors = now.total("mediaproxy_store_errors_total")
    lines.append(f"store errors   {errors:,.0f}")
    return "\n".join(lines)
