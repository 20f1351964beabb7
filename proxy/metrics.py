"""Every Prometheus metric, created on an injected CollectorRegistry (never the global one).

Rule: label values come only from closed sets (CacheStatus, method labels, fixed outcomes);
never a URL, token or client address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.policy.bans import BanKind
from proxy.status import CacheStatus, method_label
from proxy.store.fill import FillOutcome

# The store operations counted in mediaproxy_store_errors_total (created at zero).
STORE_OPERATIONS = ("lookup", "bans", "claim", "fill_create", "fill", "access_flush",
                    "ban_sweep", "cull", "reap", "tmp_sweep", "orphan_scan", "stream_audit")
# Outcomes of image conversions (mediaproxy_image_conversions_total), and the formats made.
CONVERSION_OUTCOMES = ("ok", "not_allowed", "over_limits", "timeout", "crashed", "failed")
CONVERSION_FORMATS = ("avif", "webp", "jpeg", "png", "gif")

if TYPE_CHECKING:  # redis is imported only when [cluster] redis_url is set
    from proxy.cluster import Gauges

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "mediaproxy_requests", "Requests answered, by cache status and method.",
            ["cache_status", "method"], registry=registry,
        )
        self.response_bytes = Counter(
            "mediaproxy_response_bytes", "Body bytes sent to clients, by cache status.",
            ["cache_status"], registry=registry,
        )
        self.duration = Histogram(
            "mediaproxy_request_duration_seconds",
            "Time from request to the last body byte handed to the kernel.",
            ["cache_status"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.memory_hits = Counter(
            "mediaproxy_memory_hits",
            "Hits answered from a worker's memory tier (the lane's included), without a "
            "disk lookup; the rest of mediaproxy_requests_total{cache_status=\"HIT\"} read "
            "the disk index.",
            registry=registry,
        )
        self.lane_hits = Counter(
            "mediaproxy_lane_hits",
            "Hits answered by the lane (pre-serialised memory-tier answers in front of the "
            "request pipeline); they are counted in mediaproxy_requests_total too.",
            registry=registry,
        )
        self.origin_requests = Counter(
            "mediaproxy_origin_requests",
            "Requests sent to the origin, by outcome (ok, error, timeout).",
            ["outcome"], registry=registry,
        )
        self.fills = Counter(
            "mediaproxy_fills",
            "Origin bodies streamed into the store, by outcome "
            "(committed, incomplete, origin_error, store_error, purged, abandoned, mismatch, "
            "no_room).",
            ["outcome"], registry=registry,
        )
        self.store_errors = Counter(
            "mediaproxy_store_errors", "Cache directory operations that failed, by operation.",
            ["operation"], registry=registry,
        )
        self._children: dict[tuple[CacheStatus, str], tuple[Any, Any, Any]] = {}
        self.open_streams = Gauge(
            "mediaproxy_open_streams", "Responses currently streaming a body from the cache.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.aborted_streams = Counter(
            "mediaproxy_aborted_streams",
            "Streams cut because their object was purged, deleted or revoked (strict mode).",
            registry=registry,
        )
        self.auth_denied = Counter(
            "mediaproxy_auth_denied", "Requests refused by token or access checks, by reason.",
            ["reason"], registry=registry,
        )
        self.auth_callouts = Counter(
            "mediaproxy_auth_callouts",
            "Auth callout answers (allow, deny, failed), from the endpoint or remembered.",
            ["outcome", "source"], registry=registry,
        )
        self.auth_callout_duration = Histogram(
            "mediaproxy_auth_callout_duration_seconds",
            "Time the auth callout endpoint took to answer (or to fail).",
            buckets=DURATION_BUCKETS, registry=registry,
        )
        for status in CacheStatus:
            self.response_bytes.labels(status.value)
            for method in ("GET", "HEAD"):
                # Every series an alert names exists from zero, in every worker.
                self.requests.labels(status.value, method)
        for operation in STORE_OPERATIONS:
            self.store_errors.labels(operation)
        for outcome in ("ok", "error", "timeout"):
            self.origin_requests.labels(outcome)
        for fill_outcome in FillOutcome:
            self.fills.labels(fill_outcome.value)

    def init_images(self, presets: Iterable[str]) -> None:
        """Conversion series, created from zero for every configured preset (and free_form):
        labels come only from the configuration and the closed sets above. Called again (a
        reload keeps the registry), it only adds the series of new presets."""
        if hasattr(self, "conversions"):
            self._image_series(presets)
            return
        self.conversions = Counter(
            "mediaproxy_image_conversions",
            "Image conversions, by preset, output format and outcome (ok, not_allowed, "
            "over_limits, timeout, crashed, failed).",
            ["preset", "format", "outcome"], registry=self.registry,
        )
        self.conversion_duration = Histogram(
            "mediaproxy_image_conversion_duration_seconds",
            "Time a conversion process took (queueing excluded), by output format.",
            ["format"], buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.conversion_source_bytes = Counter(
            "mediaproxy_image_conversion_source_bytes",
            "Bytes of originals handed to conversions, by preset.",
            ["preset"], registry=self.registry,
        )
        self.conversion_output_bytes = Counter(
            "mediaproxy_image_conversion_output_bytes",
            "Bytes of images produced, by preset and format.",
            ["preset", "format"], registry=self.registry,
        )
        self.conversion_queue = Gauge(
            "mediaproxy_image_conversion_queue",
            "Conversions waiting for a free conversion process.",
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.conversion_busy = Gauge(
            "mediaproxy_image_conversions_running",
            "Conversions running in the conversion processes.",
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.image_presets: frozenset[str] = frozenset()
        self._image_series(presets)

    def _image_series(self, presets: Iterable[str]) -> None:
        self.image_presets = self.image_presets | frozenset(presets) | {"free_form"}
        for fmt in CONVERSION_FORMATS:
            self.conversion_duration.labels(fmt)
            for preset in self.image_presets:
                self.conversion_output_bytes.labels(preset, fmt)
                for outcome in CONVERSION_OUTCOMES:
                    self.conversions.labels(preset, fmt, outcome)
        for preset in self.image_presets:
            self.conversion_source_bytes.labels(preset)

    def observe_conversion(self, preset: str, fmt: str, outcome: str, seconds: float,
                           source_bytes: int, output_bytes: int) -> None:
        if preset not in self.image_presets or fmt not in CONVERSION_FORMATS or (
                outcome not in CONVERSION_OUTCOMES):
            raise ValueError(f"conversion labels outside their sets: {preset} {fmt} {outcome}")
        self.conversions.labels(preset, fmt, outcome).inc()
        if outcome in ("ok", "over_limits", "timeout", "crashed", "failed"):
            self.conversion_duration.labels(fmt).observe(seconds)
        if source_bytes:
            self.conversion_source_bytes.labels(preset).inc(source_bytes)
        if output_bytes:
            self.conversion_output_bytes.labels(preset, fmt).inc(output_bytes)

    def observe_request(
        self, status: CacheStatus, method: str, body_bytes: int, seconds: float
    ) -> None:
        children = self._children.get((status, method))
        if children is None:
            # `.labels()` costs a lock and a dict build per call: resolve each pair once.
            children = (self.requests.labels(status.value, method_label(method)),
                        self.response_bytes.labels(status.value),
                        self.duration.labels(status.value))
            if len(self._children) < 256:  # methods are client-chosen: bound the memo
                self._children[(status, method)] = children
        requests, response_bytes, duration = children
        requests.inc()
        if body_bytes:
            response_bytes.inc(body_bytes)
        duration.observe(seconds)


PURGE_KINDS = ("url", "prefix", "tag", "all")
PURGE_SOURCES = ("admin", "cluster")


def purge_kind_label(kind: BanKind, value: str) -> str:
    """A purge's kind as purge answers and the `kind` label name it (closed: PURGE_KINDS)."""
    if kind is BanKind.PREFIX:
        return "prefix" if value else "all"
    return "url" if kind is BanKind.EXACT else "tag"


class StoreCollector(Collector):
    """Store size, budget, entries and bans not yet swept, read from the index at scrape time
    (shared by all workers)."""

    def __init__(
        self,
        volume: Callable[[], int],
        entries: Callable[[], int],
        superseded: Callable[[], tuple[int, int]],
        budget: Callable[[], int],
        active_bans: Callable[[], int],
    ) -> None:
        self._volume = volume
        self._entries = entries
        self._superseded = superseded
        self._budget = budget
        self._active_bans = active_bans

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            volume, entries = self._volume(), self._entries()
            superseded_files, superseded_bytes = self._superseded()
            budget, active_bans = self._budget(), self._active_bans()
        except Exception:  # a broken cache dir must not break /metrics
            return
        yield GaugeMetricFamily(
            "mediaproxy_store_size_bytes", "Bytes used by the cache (index and bodies).", volume
        )
        yield GaugeMetricFamily(
            "mediaproxy_store_max_size_bytes",
            "The size budget (cache.max_size_bytes) that size plus superseded bytes are kept to.",
            budget,
        )
        yield GaugeMetricFamily(
            "mediaproxy_bans_active",
            "Purges recorded whose sweep has not finished yet (they retire when it has).",
            active_bans,
        )
        yield GaugeMetricFamily("mediaproxy_store_entries", "Entries in the cache index.", entries)
        yield GaugeMetricFamily(
            "mediaproxy_superseded_files",
            "Replaced, purged or evicted bodies kept in the graveyard for open streams.",
            superseded_files,
        )
        yield GaugeMetricFamily(
            "mediaproxy_superseded_bytes", "Bytes of the superseded bodies held open.",
            superseded_bytes,
        )


class BuildInfo(Collector):
    """mediaproxy_build_info{version} 1, from whichever process serves /metrics (not a
    multiprocess value: it must not be summed across workers)."""

    def __init__(self, version: str) -> None:
        self._version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mediaproxy_build_info",
                                   "Always 1; the running version in a label.",
                                   labels=["version"])
        family.add_metric([self._version], 1)
        yield family


def register_process_collectors(registry: CollectorRegistry) -> None:
    """process_* (CPU, memory, open fds of the process serving /metrics: the supervisor when
    workers > 1), python_info, and mediaproxy_build_info{version}."""
    from proxy.version import version

    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(BuildInfo(version()))

class NodeCollector(Collector):
    """Readiness, purges and (with `cluster.redis_url`) purge propagation, computed at scrape
    time in the process that owns the admin listener, where every purge is applied."""

    def __init__(
        self,
        problems: Callable[[], list[str]],
        purges: Mapping[str, int],
        cluster: Callable[[], Gauges] | None = None,
    ) -> None:
        self._problems = problems
        self._purges = purges  # kind label -> purges made through this admin listener
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "mediaproxy_ready", "1 while /readyz answers 200 (cache usable, workers listening).",
            0 if self._problems() else 1,
        )
        gauges = self._cluster() if self._cluster is not None else None
        purges = CounterMetricFamily(
            "mediaproxy_purges", "Purges applied to this node, by kind and by where they came "
            "from (admin: this node's admin listener or PURGE; cluster: another node).",
            labels=["kind", "source"],
        )
        for kind in PURGE_KINDS:
            purges.add_metric([kind, "admin"], self._purges.get(kind, 0))
            if gauges is not None:
                purges.add_metric([kind, "cluster"], gauges.received.get(kind, 0))
        yield purges
        if gauges is None:
            return
        yield GaugeMetricFamily(
            "mediaproxy_cluster_connected", "1 while this node's Redis session is up.",
            1 if gauges.connected else 0,
        )
        yield GaugeMetricFamily(
            "mediaproxy_cluster_live_nodes", "Nodes with a current heartbeat, as this node saw "
            "them at its last heartbeat.", gauges.live_nodes,
        )
        yield GaugeMetricFamily(
            "mediaproxy_cluster_purges_pending", "Purges received and not yet applied here, or "
            "made here and not yet published (Redis down).", gauges.pending,
        )
        if gauges.newest_applied is not None:
            yield GaugeMetricFamily(
                "mediaproxy_cluster_newest_purge_timestamp_seconds",
                "Creation time of the newest purge this node has applied; a node behind the "
                "others has missed one.", gauges.newest_applied,
            )
