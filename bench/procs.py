"""Starting and stopping server processes, with cleanup of strays from earlier runs."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .proctree import tree_pids
from .settings import PIDS_DIR, WORK_DIR

log = logging.getLogger(__name__)

_RUNNING: list[ManagedProcess] = []


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_tree(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class ManagedProcess:
    """A server started in its own session (process group), logged to a file.

    Its pid is written to bench/work/pids/<name>.pid so that a later run can kill it if this
    run died without cleaning up.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.stop_signal = stop_signal
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        PIDS_DIR.mkdir(parents=True, exist_ok=True)
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        (PIDS_DIR / f"{self.name}.pid").write_text(f"{self._proc.pid}\n")
        _RUNNING.append(self)
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            pids = tree_pids(proc.pid)
            log.info("stopping %s (pid %d, %d processes)", self.name, proc.pid, len(pids))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
            # Anything left in the group or the tree (workers, varnish child) is killed outright.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            _kill_tree([p for p in pids if p != proc.pid], signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        (PIDS_DIR / f"{self.name}.pid").unlink(missing_ok=True)
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._proc = None


def stop_all() -> None:
    for proc in reversed(list(_RUNNING)):
        try:
            proc.stop()
        except Exception:  # cleanup must go on for the others
            log.exception("failed to stop %s", proc.name)


def kill_strays() -> None:
    """Kill servers a previous (crashed) run left behind.

    Only processes recorded in bench/work/pids/ whose command line still mentions bench/work/
    are touched, with their process group and descendants; then any process whose command line
    mentions bench/work/ (nginx masters, varnishd, mediaproxy started with configs there).
    """
    marker = str(WORK_DIR)
    victims: set[int] = set()
    if PIDS_DIR.is_dir():
        for pidfile in PIDS_DIR.glob("*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                pidfile.unlink(missing_ok=True)
                continue
            if marker in _cmdline(pid):
                log.warning("killing stray %s (pid %d) from an earlier run", pidfile.stem, pid)
                victims.update(tree_pids(pid))
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and marker in _cmdline(int(entry)):
            cmd = _cmdline(int(entry))
            if any(word in cmd for word in ("nginx", "varnishd", "mediaproxy")):
                log.warning("killing stray process %s: %s", entry, cmd[:200])
                victims.update(tree_pids(int(entry)))
    _kill_tree(sorted(victims), signal.SIGKILL)


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Stop every started server on normal exit, Ctrl-C, SIGTERM and SIGHUP."""
    atexit.register(stop_all)
    # Ctrl-C -> KeyboardInterrupt even if SIGINT was inherited as ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)


def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status of a GET, or None if no HTTP answer could be had."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_http(
    proc: ManagedProcess,
    host: str,
    port: int,
    path: str,
    *,
    timeout: float,
    want: int | None = None,
) -> None:
    """Wait until a GET gets an HTTP answer (of status `want` if given) or fail."""
    deadline = time.monotonic() + timeout
    last: int | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with status {proc.returncode()} during start-up:\n"
                f"{proc.log_tail()}"
            )
        last = http_status(host, port, path, timeout=1.0)
        if last is not None and (want is None or last == want):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{proc.name} not ready after {timeout:.0f} s (GET {path} on port {port}: {last}):\n"
        f"{proc.log_tail()}"
    )
