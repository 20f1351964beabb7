"""The lane's metrics: its answers counted in plain integers, added to the Prometheus series
in one update per series per flush (the app flushes every second and at close), instead of
three locked updates per hit.

Rule: after a flush the series read exactly what per-request updates would have made of the
same answers (same labels, same histogram buckets); between flushes they lag by at most the
flush period.
"""

from __future__ import annotations

import bisect
from typing import Any

from proxy.metrics import DURATION_BUCKETS, Metrics
from proxy.status import CacheStatus

_BOUNDS = tuple(float(b) for b in DURATION_BUCKETS)


class Tally:
    __slots__ = ("body_bytes", "buckets", "hits", "seconds")

    def __init__(self) -> None:
        self.hits = 0  # GETs answered (the lane answers nothing else)
        self.body_bytes = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BOUNDS) + 1)  # the last one: above every bound (+Inf)

    def add(self, count: int, body_bytes: int, seconds_each: float) -> None:
        """Answers written together (one read from the client), each taking `seconds_each`."""
        self.hits += count
        self.body_bytes += body_bytes
        self.seconds += seconds_each * count
        self.buckets[bisect.bisect_left(_BOUNDS, seconds_each)] += count

    def flush(self, metrics: Metrics) -> int:
        """Add what was counted to `metrics`; the number of answers flushed."""
        total = self.hits
        if not total:
            return 0
        status = CacheStatus.HIT.value
        metrics.requests.labels(status, "GET").inc(total)
        metrics.lane_hits.inc(total)
        metrics.memory_hits.inc(total)
        if self.body_bytes:
            metrics.response_bytes.labels(status).inc(self.body_bytes)
        observe_many(metrics.duration.labels(status), self.buckets, self.seconds)
        self.hits = 0
        self.body_bytes = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BOUNDS) + 1)
        return total


def observe_many(child: Any, buckets: list[int], seconds: float) -> None:
    """Observations already sorted into `buckets` (prometheus_client's Histogram has no
    batch call: its per-bucket values are added to directly, the same values `observe`
    adds to; an unknown layout falls back to one `observe` per answer)."""
    values = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    bounds = getattr(child, "_upper_bounds", None)
    if values is None or total is None or bounds is None or len(values) != len(buckets) or (
            [float(b) for b in bounds[:-1]] != list(_BOUNDS)):
        count = sum(buckets)
        for _ in range(count):
            child.observe(seconds / count)
        return
    total.inc(seconds)
    for index, count in enumerate(buckets):
        if count:
            values[index].inc(count)
