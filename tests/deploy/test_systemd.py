"""deploy/mediaproxy.service: valid for systemd, its user made by systemd itself, reloadable,
and hardened to an exposure of 3.0 or lower by `systemd-analyze security`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.conftest import DEPLOY, ROOT, tool

UNIT = DEPLOY / "mediaproxy.service"
INSTALL = "make deploy-tools (Debian package systemd)"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_exposure_is_at_most_3_0() -> None:
    analyze = tool("systemd-analyze", INSTALL)
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"exposure {match.group(1)}" in readme, "README must state the measured figure"


def test_unit_verifies_with_the_installed_entry_point(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks every directive and that ExecStart exists: point it at
    this checkout's installed `mediaproxy` instead of /opt/mediaproxy."""
    analyze = tool("systemd-analyze", INSTALL)
    venv = Path(tool("mediaproxy", "pip install -e .")).parent.parent
    unit = tmp_path / "mediaproxy.service"
    unit.write_text(UNIT.read_text().replace("/opt/mediaproxy/.venv", str(venv)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mediaproxy.service" not in result.stderr, result.stderr


def test_user_directories_and_reload() -> None:
    found = settings()
    assert found.get("DynamicUser") == ["yes"]
    assert "User" not in found  # nothing to create beforehand
    assert found.get("CacheDirectory") == ["mediaproxy"]
    assert found.get("StateDirectory") == ["mediaproxy"]
    assert found.get("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert "/var/cache/mediaproxy" in (ROOT / "config/production.example.toml").read_text()
