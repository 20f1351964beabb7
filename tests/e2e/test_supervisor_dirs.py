"""The supervisor's metrics and readiness dirs do not outlive it: a `kill -9` skips its cleanup,
so the next supervisor removes the dirs of supervisors that no longer run (2 workers)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Running, start_proxy, stop


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def supervisor_dirs(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("mediaproxy-"))


def test_dirs_of_a_killed_supervisor_are_removed_by_the_next(
    tmp_path: Path, origin_process: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the supervisors' tempfile.gettempdir()
    first = start_proxy(tmp_path, origin_process.url, workers=2, name="first")
    workers = children(first.proc.pid)
    leftovers = supervisor_dirs(tmp)
    assert len(leftovers) == 2 and len(workers) == 2, (leftovers, workers)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    for pid in workers:  # started by this test (the supervisor's children): stopped by it
        os.kill(pid, signal.SIGKILL)
    assert supervisor_dirs(tmp) == leftovers, "kill -9 leaves them (nothing to do about that)"

    second = start_proxy(tmp_path, origin_process.url, workers=2, name="second")
    try:
        now = supervisor_dirs(tmp)
        assert not set(now) & set(leftovers), f"the killed supervisor's dirs remain: {now}"
        assert len(now) == 2
    finally:
        assert stop(second.proc) == 0
    assert supervisor_dirs(tmp) == [], "a graceful stop removes its own"
