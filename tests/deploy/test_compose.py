"""deploy/compose.yaml validates against the Compose Specification's JSON schema (vendored in
schema/, Apache-2.0) and wires what the README promises: origin, two nodes sharing purges
through Redis, Prometheus scraping both, Grafana provisioned, a TLS front trusted exactly."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT

SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"
COMPOSE = DEPLOY / "compose.yaml"
NODES = ("mediaproxy-a", "mediaproxy-b")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_valid_against_the_compose_schema() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator().iter_errors(compose())]
    assert not errors, errors


@pytest.mark.parametrize("mistake", ["port", "key"])
def test_schema_would_catch_a_mistake(mistake: str) -> None:
    data = copy.deepcopy(compose())
    if mistake == "port":
        data["services"]["front"]["ports"] = [{"published": "8443", "tagret": 443}]
    else:
        data["services"]["redis"]["imagee"] = "redis"
    assert list(validator().iter_errors(data))


def test_files_it_mounts_and_builds_exist() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_nodes_share_purges_through_redis_and_trust_exactly_the_front() -> None:
    services = compose()["services"]
    front_ip = services["front"]["networks"]["edge"]["ipv4_address"]
    for node in NODES:
        env = services[node]["environment"]
        assert env["MEDIAPROXY_CLUSTER_REDIS_URL"] == "redis://redis:6379/0"
        assert env["MEDIAPROXY_ADMIN_NODE_NAME"] == node
        assert env["MEDIAPROXY_SERVER_TRUSTED_PROXIES"] == f"{front_ip}/32"
        assert env["MEDIAPROXY_ORIGIN_URL"] == "http://origin:8090"
        assert any(v.endswith(":/var/cache/mediaproxy") for v in services[node]["volumes"])
    assert "--seed" in services["origin"]["command"]
    assert services["origin"]["entrypoint"] == ["mediaproxy-origin"]
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    for node in NODES:
        assert f"server {node}:8080" in nginx
    assert "http2 on;" in nginx and "listen 443 ssl;" in nginx


def test_prometheus_scrapes_both_admin_listeners_and_grafana_is_provisioned() -> None:
    services = compose()["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets == {f"{node}:8081" for node in NODES}
    assert config["rule_files"] == ["alerts.yml"]
    mounts = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/mediaproxy.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("conf", ["deploy/nginx-tls-front.conf", "deploy/compose/nginx.conf"])
def test_tls_fronts_set_the_client_address_rather_than_append(conf: str) -> None:
    text = re.sub(r"#.*", "", (ROOT / conf).read_text())
    directives = re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+);", text, re.MULTILINE)
    headers = dict(directives)
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Real-IP"] == "$remote_addr"
    assert len(directives) == len(headers)  # each header set once
    assert "$proxy_add_x_forwarded_for" not in text


def test_each_node_config_is_valid_and_believes_only_the_front() -> None:
    """The environment a node gets, applied to the image's config file as the proxy loads it:
    valid, and the front's address is the one trusted proxy (its X-Forwarded-For is read)."""
    import ipaddress

    from proxy import config as config_mod

    services = compose()["services"]
    front_ip = services["front"]["networks"]["edge"]["ipv4_address"]
    for node in NODES:
        env = {k: str(v) for k, v in services[node]["environment"].items()
               if k.startswith("MEDIAPROXY_")}
        env = {k: v.replace("${MEDIAPROXY_ADMIN_TOKEN:-compose-demo-admin-token}",
                            "compose-demo-admin-token") for k, v in env.items()}
        loaded = config_mod.load(DEPLOY / "container.toml", env=env)
        networks = [ipaddress.ip_network(n) for n in loaded.server.trusted_networks()]
        assert networks == [ipaddress.ip_network(f"{front_ip}/32")], node
