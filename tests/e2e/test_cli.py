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


def clean_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
    return {**env, **extra}


def test_both_commands_have_version() -> None:
    from proxy.version import version

    assert run("--version").stdout.strip() == f"mediaproxy {version()}"
    origin = subprocess.run([sys.executable, "-m", "origin", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert origin.stdout.strip() == f"mediaproxy-origin {version()}"


def test_help_is_written_for_users() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "SUPPRESS" not in result.stdout and "worker" not in result.stdout
    assert "Rule:" not in result.stdout  # not the module docstring
    for command in ("serve", "check-config", "purge", "inspect", "stats", "sign", "demo"):
        assert command in result.stdout
    assert "MEDIAPROXY_CONFIG" in result.stdout


def test_check_config_summarises_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[admin]\ntoken = "a-very-secret-admin-token"\n'
                    '[auth]\nkeys = "k1=0123456789abcdef0123"\n'
                    '[cluster]\nredis_url = "redis://user:hunter2hunter2@redis:6379/0"\n'
                    f'[cache]\ndir = "{tmp_path / "cache"}"\nmax_size_bytes = "2GiB"\n')
    result = run("check-config", "--config", str(path), env=clean_env())
    assert result.returncode == 0, result.stderr
    for secret in ("a-very-secret-admin-token", "0123456789abcdef0123", "hunter2hunter2"):
        assert secret not in result.stdout
    assert 'keys = "k1=********"' in result.stdout
    assert "max_size_bytes = 2147483648" in result.stdout
    assert "(writable)" in result.stdout


@pytest.mark.parametrize(("setup", "message"), [
    ("dir", "is a directory"),
    ("latin1", "not UTF-8"),
    ("cache_is_file", "cache.dir:"),
])
def test_check_config_problems_are_one_line(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "c.toml"
    if setup == "dir":
        path.mkdir()
    elif setup == "latin1":
        path.write_bytes(b'[server]\nvia = "caf\xe9"\n')
    else:
        (tmp_path / "file").write_text("")
        path.write_text(f'[cache]\ndir = "{tmp_path / "file"}"\n')
    result = run("check-config", "--config", str(path), env=clean_env())
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_misspelt_environment_variable_is_an_error() -> None:
    result = run("check-config", env=clean_env(MEDIAPROXY_CACHE_DIRR="/x"))
    assert result.returncode == 2 and "MEDIAPROXY_CACHE_DIRR" in result.stderr


def test_every_subcommand_reads_mediaproxy_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[auth]\nkeys = "env=0123456789abcdef0123"\n[server]\n'
                    'listen = "127.0.0.1:9999"\n')
    result = run("sign", "/media/a.pdf", env=clean_env(MEDIAPROXY_CONFIG=str(path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("http://127.0.0.1:9999/media/a.pdf?") and "kid=env" in (
        result.stdout)
    relative = run("sign", "media/a.pdf", env=clean_env(MEDIAPROXY_CONFIG=str(path)))
    assert relative.returncode == 2 and "must start with '/'" in relative.stderr


def test_cluster_mode_without_redis_says_what_to_install(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from proxy import config
    from proxy.errors import ConfigError

    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"mediaproxy\[cluster\]"):
        config.from_dict({"cluster": {"redis_url": "redis://127.0.0.1:6379/0"}})


def test_the_demo_tour_prints_a_working_signed_url_and_real_programs() -> None:
    import io
    from contextlib import redirect_stdout

    from proxy import demo
    from proxy.policy.tokens import parse_keys

    config = demo.demo_config(None)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        demo.print_tour(config, "http://127.0.0.1:8090", config.admin.token, None)
    text = buffer.getvalue()
    assert "sig=" in text and demo.PROTECTED_PATH in text
    assert f"http://{config.server.admin_listen}/console/" in text
    assert ".venv/bin" not in text or (ROOT / ".venv/bin").exists()
    origin_cli = demo.program("mediaproxy-origin")
    assert Path(origin_cli).exists() or origin_cli == "mediaproxy-origin"
    assert isinstance(parse_keys(config.auth.keys), dict)
