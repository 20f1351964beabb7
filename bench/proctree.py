"""Process-tree accounting from /proc: RSS sampling (every 100 ms) and CPU time."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rfind(")") + 2 :].split()


def parent_map() -> dict[int, int]:
    """pid -> ppid for every process currently visible in /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents[int(entry)] = int(fields[1])
    return parents


def tree_pids(root: int) -> list[int]:
    """The root and all of its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_map().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found or not os.path.exists(f"/proc/{pid}"):
            continue
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of the tree (including reaped children's time) in seconds."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class RssPeak:
    tree_bytes: int  # peak of the summed RSS of the whole tree
    process_bytes: int  # largest RSS of a single process
    samples: int


class RssSampler:
    """Samples the summed RSS of a process tree every `interval` seconds in a thread.

    The tree's membership is refreshed every `rescan` seconds (a full /proc scan costs more
    than reading a few statm files).
    """

    def __init__(self, root: int, interval: float = 0.1, rescan: float = 1.0) -> None:
        self._root = root
        self._interval = interval
        self._rescan = rescan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._peak_tree = 0
        self._peak_proc = 0
        self._samples = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> RssPeak:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.result()

    def result(self) -> RssPeak:
        return RssPeak(self._peak_tree, self._peak_proc, self._samples)

    def _run(self) -> None:
        pids = tree_pids(self._root)
        next_scan = time.monotonic() + self._rescan
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                pids = tree_pids(self._root)
                next_scan = now + self._rescan
            total = 0
            for pid in pids:
                rss = rss_bytes(pid)
                if rss is None:
                    continue
                total += rss
                self._peak_proc = max(self._peak_proc, rss)
            self._peak_tree = max(self._peak_tree, total)
            self._samples += 1
            self._stop.wait(self._interval)
