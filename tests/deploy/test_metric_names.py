"""Every mediaproxy_* name in the Grafana dashboard and the alert rules is one a real node
exposes: two real nodes (real origin, real Redis) are started, a purge goes through one, and
both /metrics pages are scraped. The new node metrics are checked for their values too."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster.conftest import RedisServer, prime, purge, put, start_node, until
from tests.deploy.conftest import DEPLOY
from tests.e2e.conftest import Running, stop

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mediaproxy.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
# A metric name, not part of a recording rule's name (instance:mediaproxy_hit_ratio:rate5m).
NAME = re.compile(r"(?<![:\w])mediaproxy_[a-z_]+(?![:\w])")
SAMPLE = re.compile(r"^(mediaproxy_[a-z_]+)(\{[^}]*\})? (\S+)$")
TYPE = re.compile(r"^# TYPE (mediaproxy_[a-z_]+) (\w+)$")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def metrics_text(node: Running) -> str:
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=30) as r:
        return r.read().decode()


def scrape(node: Running) -> dict[str, float]:
    """`name{labels}` -> value for every mediaproxy_* sample."""
    samples = {}
    for line in metrics_text(node).splitlines():
        match = SAMPLE.match(line)
        if match:
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


def exposed_names(node: Running) -> set[str]:
    """Every series name the node's families declare (a labelled counter nobody has
    incremented yet has a TYPE line and no sample)."""
    names = set()
    for line in metrics_text(node).splitlines():
        match = TYPE.match(line)
        if match:  # the text format names a counter family with its _total already
            base = match[1].removesuffix("_total")
            names.update(base + suffix for suffix in SUFFIXES[match[2]])
    return names


def dashboard_exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def referenced_names() -> set[str]:
    return set(NAME.findall(ALERTS.read_text())) | {
        name for expr in dashboard_exprs() for name in NAME.findall(expr)}


def test_dashboard_and_alerts_use_only_exposed_names(
        tmp_path: Path, origin_process: Running, redis_server: RedisServer) -> None:
    put(origin_process, "/media/deploy/a.bin", b"a" * 1000)
    nodes = [start_node(tmp_path, origin_process, redis_server, name) for name in ("a", "b")]
    try:
        until(lambda: all(scrape(n).get("mediaproxy_cluster_live_nodes") == 2 for n in nodes),
              "both nodes see two live nodes")
        prime(nodes, ["/media/deploy/a.bin"])
        answer = purge(nodes[0], prefix="/media/deploy/", wait=True)
        assert all(n["applied"] for n in answer["nodes"]), answer
        a, b = scrape(nodes[0]), scrape(nodes[1])
        missing = referenced_names() - (exposed_names(nodes[0]) & exposed_names(nodes[1]))
        assert not missing, f"not exposed by a node: {sorted(missing)}"

        assert a['mediaproxy_purges_total{kind="prefix",source="admin"}'] == 1
        assert a['mediaproxy_purges_total{kind="prefix",source="cluster"}'] == 0
        assert b['mediaproxy_purges_total{kind="prefix",source="cluster"}'] == 1
        assert b['mediaproxy_purges_total{kind="prefix",source="admin"}'] == 0
        newest = "mediaproxy_cluster_newest_purge_timestamp_seconds"
        assert a[newest] == b[newest] > 0  # the alert's "lag" is 0 on both
        for samples in (a, b):
            assert samples["mediaproxy_ready"] == 1
            assert samples["mediaproxy_cluster_connected"] == 1
            assert samples["mediaproxy_cluster_purges_pending"] == 0
            assert samples["mediaproxy_store_max_size_bytes"] == 10 * 1024**3
            assert samples['mediaproxy_requests_total{cache_status="HIT",method="GET"}'] >= 1
    finally:
        for node in nodes:
            stop(node.proc)


def test_dashboard_covers_each_topic_per_node() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("hit ratio", "cache status", "origin", "errors", "bytes", "latency",
                  "open streams", "superseded", "budget", "purges", "sweep", "auth denials"):
        assert topic in titles, topic
    exprs = dashboard_exprs()
    assert exprs and all('instance=~"$instance"' in e for e in exprs)
    assert all("sum(" not in e.replace(" ", "") or "by (instance" in e for e in exprs)
