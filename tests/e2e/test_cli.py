"""The `mediaproxy` command: bad configuration stops start-up with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=env)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[cache]\nmax_size_bytes = -1\n", "cache.max_size_bytes: must be >= 1048576"),
        ("[cache]\nsize = 1\n", "cache.size: unknown key"),
        ("[server]\nlisten = 8080\n", "server.listen: expected a string"),
        ("[server\n", "invalid TOML"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = run("serve", "--config", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_env_override_is_named(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, MEDIAPROXY_SERVER_WORKERS="lots")
    result = run("check-config", env=env)
    assert result.returncode == 2 and "MEDIAPROXY_SERVER_WORKERS" in result.stderr


def test_check_config_accepts_the_shipped_file() -> None:
    result = run("check-config", "--config", "config/mediaproxy.toml")
    assert result.returncode == 0, result.stderr
