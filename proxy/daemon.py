"""What a daemon owes its operator around serving: one instance per cache directory, a
reload that says what it changed, and start / reload / drain / stop in the log.

Rule: only the process that owns the listeners (the supervisor, or the single process) takes
the cache-directory lock; `check-config` and the workers never do, so a config check works
while a server runs. Settings that cannot change under a running process are kept at their
old values by a reload, which says so in the log.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
from pathlib import Path

from proxy import config as config_mod
from proxy.config import Config
from proxy.errors import ConfigError, StartupError
from proxy.version import version

log = logging.getLogger("mediaproxy")

LOCK_FILE = "mediaproxy.lock"
# (section, key) that only a restart changes: the store and the admin listener (with the
# cluster membership that lives beside it) are opened once.
RESTART_ONLY = (("cache", "dir"), ("server", "admin_listen"), ("cluster", None))


class CacheLock:
    """An flock on <cache.dir>/mediaproxy.lock, held for the life of the process (the kernel
    drops it when the process dies, so a crash never leaves the directory locked)."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot use cache directory {self.path.parent}: "
                               f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(f"cache directory {self.path.parent} is in use by another "
                               f"mediaproxy (pid {holder}); one instance per cache.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def log_start(config: Config, mode: str) -> None:
    server, cache = config.server, config.cache
    log.info("mediaproxy %s starting: listen %s, admin %s, cache %s (%d bytes), %d worker%s, "
             "origin %s", version(), server.listen, server.admin_listen, cache.dir,
             cache.max_size_bytes, server.workers, "" if server.workers == 1 else "s",
             config.origin.url,
             extra={"event": "start", "version": version(), "listen": server.listen,
                    "admin_listen": server.admin_listen, "cache_dir": cache.dir,
                    "max_size_bytes": cache.max_size_bytes, "workers": server.workers,
                    "mode": mode, "pid": os.getpid()})


def log_stop(reason: str) -> None:
    log.info("mediaproxy stopping (%s)", reason, extra={"event": "stop", "reason": reason,
                                                        "pid": os.getpid()})


def log_stopped() -> None:
    log.info("mediaproxy stopped", extra={"event": "stopped", "pid": os.getpid()})


def log_drain(what: str, count: int, timeout: float) -> None:
    log.info("draining %s: %d, up to %.0f s for open responses", what, count, timeout,
             extra={"event": "drain", "what": what, "count": count, "timeout_seconds": timeout})


def changed_keys(old: Config, new: Config) -> list[str]:
    changed = []
    for section in dataclasses.fields(old):
        a, b = getattr(old, section.name), getattr(new, section.name)
        for key in dataclasses.fields(a):
            if getattr(a, key.name) != getattr(b, key.name):
                changed.append(f"{section.name}.{key.name}")
    return changed


def reload_config(path: str | None, current: Config) -> Config | None:
    """The file read again and validated, with restart-only settings kept; None (and the
    reason in the log) when it is not valid, so the caller keeps running on `current`."""
    try:
        new = config_mod.load(path)
    except ConfigError as exc:
        log.error("reload refused, still running the previous configuration: %s", exc.message,
                  extra={"event": "reload_failed", "error": exc.message})
        return None
    kept: list[str] = []
    for section, key in RESTART_ONLY:
        old_part, new_part = getattr(current, section), getattr(new, section)
        if key is None:
            if old_part != new_part:
                kept.append(f"{section}.*")
                new = dataclasses.replace(new, **{section: old_part})
        elif getattr(old_part, key) != getattr(new_part, key):
            kept.append(f"{section}.{key}")
            new = dataclasses.replace(new, **{section: dataclasses.replace(
                new_part, **{key: getattr(old_part, key)})})
    try:
        new.validate()  # the kept values must agree with the new ones (listeners differ)
    except ConfigError as exc:
        log.error("reload refused, still running the previous configuration: %s", exc.message,
                  extra={"event": "reload_failed", "error": exc.message})
        return None
    if kept:
        log.warning("reload: %s changed but needs a restart; keeping the running value%s",
                    ", ".join(kept), "" if len(kept) == 1 else "s",
                    extra={"event": "reload_needs_restart", "keys": kept})
    return new
