"""deploy/k8s: every manifest validates (strict: unknown fields fail) against the Kubernetes
API schemas that kubernetes-validate ships (offline), and has what the issue asks of it."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.conftest import DEPLOY, load_yaml_documents

K8S = DEPLOY / "k8s"
VERSION = "1.30"


def resources() -> list[dict[str, Any]]:
    kustomization = load_yaml_documents(K8S / "kustomization.yaml")[0]
    return [doc for name in kustomization["resources"]
            for doc in load_yaml_documents(K8S / name)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] == kind]


def test_every_manifest_listed_and_valid() -> None:
    listed = set(load_yaml_documents(K8S / "kustomization.yaml")[0]["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for doc in resources():
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_validation_would_catch_a_mistake() -> None:
    broken = copy.deepcopy(by_kind("StatefulSet")[0])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_statefulset_cache_volume_probes_and_trusted_front() -> None:
    (sts,) = by_kind("StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "cache"
    pod = sts["spec"]["template"]["spec"]
    proxy = next(c for c in pod["containers"] if c["name"] == "mediaproxy")
    assert {"name": "cache", "mountPath": "/var/cache/mediaproxy"} in proxy["volumeMounts"]
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {"name": "admin", "containerPort": 8081} in proxy["ports"]
    env = {e["name"]: e for e in proxy["env"]}
    # The TLS front runs in the pod and reaches the proxy over loopback: trust exactly it.
    assert env["MEDIAPROXY_SERVER_TRUSTED_PROXIES"]["value"] == "127.0.0.1/32"
    config = by_kind("ConfigMap")[0]["data"]
    assert 'listen = "127.0.0.1:8080"' in config["mediaproxy.toml"]
    assert "proxy_pass http://127.0.0.1:8080;" in config["nginx.conf"]
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config["nginx.conf"]
    assert 'redis_url = "redis://mediaproxy-redis:6379/0"' in config["mediaproxy.toml"]
    assert [s["metadata"]["name"] for s in by_kind("Service")] == [
        "mediaproxy-redis", "mediaproxy-origin", "mediaproxy", "mediaproxy-nodes"]
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
