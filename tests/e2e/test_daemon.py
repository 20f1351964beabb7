"""The daemon's life as an operator sees it: SIGHUP reloads, bad reloads are refused, start-up
failures are one line and an exit status, one instance per cache directory, logs of it all.
Real `mediaproxy serve` processes and signals; every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import ROOT, Running, start_proxy, stop
from tests.e2e.test_workers import get, put, worker_pids


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def events(proxy: Running) -> list[dict[str, object]]:
    found = []
    for line in proxy.log_lines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "event" in entry:
            found.append(entry)
    return found


def event_names(proxy: Running) -> list[object]:
    return [e["event"] for e in events(proxy)]


def edit(proxy: Running, old: str, new: str) -> Path:
    path = Path(proxy.log_path or "").with_suffix(".toml")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def ready(proxy: Running) -> bool:
    try:
        with urllib.request.urlopen(proxy.admin_url + "/readyz", timeout=10) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def via(proxy: Running, path: str) -> str:
    return get(proxy.url + path)[1]["Via"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_onto_new_settings_and_old_workers_drain(
        tmp_path: Path, origin_process: Running, workers: int) -> None:
    put(origin_process, "/r/a.bin", b"a" * 1000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers)
    try:
        assert via(proxy, "/r/a.bin").endswith("1.1 mediaproxy")
        before = worker_pids(proxy.proc.pid) if workers > 1 else set()
        edit(proxy, f"workers = {workers}\n", f'workers = {workers}\nvia = "edge-7"\n')
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for("new requests see the new Via",
                 lambda: all(via(proxy, "/r/a.bin").endswith("1.1 edge-7") for _ in range(6)))
        assert proxy.proc.poll() is None  # the supervisor survived its SIGHUP
        if workers > 1:
            wait_for("old workers drained", lambda: not (worker_pids(proxy.proc.pid) & before))
            assert len(worker_pids(proxy.proc.pid)) == workers
        with urllib.request.urlopen(proxy.admin_url + "/readyz", timeout=10) as r:
            assert r.status == 200  # the admin listener is still there
        reload = [e for e in events(proxy) if e["event"] == "reload"]
        assert reload and reload[0]["changed"] == ["server.via"]
        assert "drain" in event_names(proxy)
    finally:
        assert stop(proxy.proc) == 0


def test_a_reload_can_change_the_worker_count(tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/r/n.bin", b"n" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        edit(proxy, "workers = 2\n", "workers = 3\n")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for("three workers", lambda: len(worker_pids(proxy.proc.pid)) == 3)
        assert get(proxy.url + "/r/n.bin")[2] == b"n" * 100
    finally:
        assert stop(proxy.proc) == 0


def test_an_invalid_reload_keeps_the_old_config_and_says_why(
        tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/r/b.bin", b"b" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        before = worker_pids(proxy.proc.pid)
        edit(proxy, "workers = 2\n", 'workers = 2\nvia = "never"\nbogus = 1\n')
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for("the refusal is logged", lambda: "reload_failed" in event_names(proxy))
        failed = next(e for e in events(proxy) if e["event"] == "reload_failed")
        assert "server.bogus: unknown key" in str(failed["error"])
        assert worker_pids(proxy.proc.pid) == before
        assert via(proxy, "/r/b.bin").endswith("1.1 mediaproxy")
    finally:
        assert stop(proxy.proc) == 0


def test_restart_only_settings_are_kept_and_named(tmp_path: Path,
                                                  origin_process: Running) -> None:
    proxy = start_proxy(tmp_path, origin_process.url, workers=1)
    try:
        edit(proxy, f'dir = "{tmp_path / "cache"}"', f'dir = "{tmp_path / "elsewhere"}"')
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for("the reload is logged", lambda: "reload" in event_names(proxy))
        restart = [e for e in events(proxy) if e["event"] == "reload_needs_restart"]
        assert restart and restart[0]["keys"] == ["cache.dir"]
        assert not (tmp_path / "elsewhere").exists()
    finally:
        assert stop(proxy.proc) == 0


def test_workers_run_the_validated_config_not_the_file(tmp_path: Path,
                                                       origin_process: Running) -> None:
    """A restarted worker gets the supervisor's configuration: a broken edit on disk (not
    reloaded) changes nothing, and the replacement serves."""
    put(origin_process, "/r/c.bin", b"c" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        edit(proxy, "workers = 2\n", "workers = 2\nbogus = 1\n")
        victim = min(worker_pids(proxy.proc.pid))
        os.kill(victim, signal.SIGKILL)
        wait_for("a replacement", lambda: len(worker_pids(proxy.proc.pid) - {victim}) == 2)
        wait_for("the replacement listening", lambda: ready(proxy))
        for _ in range(6):
            assert get(proxy.url + "/r/c.bin")[2] == b"c" * 100
    finally:
        assert stop(proxy.proc) == 0


def test_workers_that_keep_dying_make_the_supervisor_give_up(
        tmp_path: Path, origin_process: Running) -> None:
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while proxy.proc.poll() is None and time.monotonic() < deadline:
        try:
            for pid in worker_pids(proxy.proc.pid) - killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    assert stop(proxy.proc) == 1
    assert "give_up" in event_names(proxy)
    assert 5 <= len(killed) <= 8  # workers that were already serving are not failed starts


def test_start_and_stop_are_logged_with_two_workers(tmp_path: Path,
                                                    origin_process: Running) -> None:
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    assert stop(proxy.proc) == 0
    names = event_names(proxy)
    for name in ("start", "ready", "stop", "drain", "stopped"):
        assert name in names, names
    start = next(e for e in events(proxy) if e["event"] == "start")
    assert start["workers"] == 2 and start["cache_dir"] == str(tmp_path / "cache")
    assert start["version"] and start["max_size_bytes"] == 10 * 1024**3


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 30,
            program: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
    return subprocess.run([*(program or [sys.executable, "-m", "proxy"]), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_a_second_instance_on_the_same_cache_dir_is_refused(
        tmp_path: Path, origin_process: Running) -> None:
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        other = tmp_path / "other.toml"
        other.write_text(f'[server]\nlisten = "127.0.0.1:{free_port()}"\n'
                         f'admin_listen = "127.0.0.1:{free_port()}"\n'
                         f'[cache]\ndir = "{tmp_path / "cache"}"\n')
        result = run_cli("serve", "--config", str(other))
        assert result.returncode == 1
        assert f"pid {proxy.proc.pid}" in result.stderr and "in use" in result.stderr
        assert "Traceback" not in result.stderr
        checked = run_cli("check-config", "--config", str(other))  # works beside a server
        assert checked.returncode == 0, checked.stderr
    finally:
        assert stop(proxy.proc) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, workers: int) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "p.toml"
        config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n'
                          f'admin_listen = "127.0.0.1:{free_port()}"\nworkers = {workers}\n'
                          f'[cache]\ndir = "{tmp_path / "cache"}"\n')
        result = run_cli("serve", "--config", str(config))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "Traceback" not in result.stderr


@pytest.mark.parametrize(("server", "message"), [
    ('listen = "no-such-host.invalid:8080"', "server.listen: cannot resolve host"),
    ('listen = "127.0.0.1:{p}"\nadmin_listen = "127.0.0.1:{p}"',
     "server.admin_listen: must differ from server.listen"),
])
def test_bad_listen_addresses_exit_2(tmp_path: Path, server: str, message: str) -> None:
    config = tmp_path / "p.toml"
    config.write_text("[server]\n" + server.format(p=free_port()) + "\nworkers = 2\n"
                      f'[cache]\ndir = "{tmp_path / "cache"}"\n')
    for command in ("serve", "check-config"):
        result = run_cli(command, "--config", str(config))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_workers_cannot_pick_up_another_distributions_proxy_module(
        tmp_path: Path, origin_process: Running) -> None:
    """A `proxy` package of someone else's earlier on the path of a worker (here: in the
    working directory, which `python -m` puts first) must not be what the worker runs."""
    fake = tmp_path / "proxy"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('the wrong proxy package')\n")
    (fake / "__main__.py").write_text("raise SystemExit('the wrong proxy package')\n")
    put(origin_process, "/r/f.bin", b"f" * 100)
    port, admin = free_port(), free_port()
    config = tmp_path / "f.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = '
                      f'"127.0.0.1:{admin}"\nworkers = 2\n[origin]\nurl = "{origin_process.url}"\n'
                      f'[cache]\ndir = "{tmp_path / "cache"}"\n')
    entry_point = Path(sys.executable).parent / "mediaproxy"
    log_path = tmp_path / "f.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(entry_point), "serve", "--config", str(config)],
                                cwd=tmp_path, stderr=log_file)
    try:
        from tests.e2e.conftest import wait_ready

        wait_ready(f"http://127.0.0.1:{admin}/readyz", proc)
        assert get(f"http://127.0.0.1:{port}/r/f.bin")[2] == b"f" * 100
        assert "the wrong proxy package" not in log_path.read_text()
    finally:
        assert stop(proc) == 0


def test_a_reload_with_image_presets_and_one_worker_keeps_serving(
        tmp_path: Path, origin_process: Running) -> None:
    """The shipped demo configuration (one process, image presets): a reload re-creates the
    conversion metrics on the registry the process keeps; it must not take the process down."""
    put(origin_process, "/r/p.bin", b"p" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=1,
                        extra="[images.presets.thumb]\nwidth = 64\nheight = 64\n")
    try:
        for _ in range(2):
            edit(proxy, "workers = 1\n", "workers = 1\n")  # no change: a plain reload
            proxy.proc.send_signal(signal.SIGHUP)
            wait_for("the reload", lambda: sum(
                e["event"] == "reload" for e in events(proxy)) >= 1)
            assert proxy.proc.poll() is None
            assert get(proxy.url + "/r/p.bin")[2] == b"p" * 100
        with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=10) as r:
            series = (b"mediaproxy_image_conversions_total"
                      b'{format="webp",outcome="ok",preset="thumb"}')
            assert series in r.read()
    finally:
        assert stop(proxy.proc) == 0
