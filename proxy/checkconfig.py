"""`mediaproxy check-config`: validate, probe what start-up would need, summarise.

Rule: read-only towards a running server (no lock taken, nothing bound), never a traceback;
secrets (admin token, signing secrets, passwords in URLs) are masked in the summary. A problem
is one line naming the key, exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from proxy import config as config_mod
from proxy import listen
from proxy.config import Config
from proxy.errors import ConfigError

MASK = "********"


def mask(section: str, key: str, value: object) -> object:
    if not isinstance(value, str) or not value:
        return value
    if (section, key) == ("admin", "token"):
        return MASK
    if (section, key) == ("auth", "keys"):
        return ",".join(f"{kid.partition('=')[0]}={MASK}" for kid in value.split(","))
    if key.endswith("_url") and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))
    return value


def check_cache_dir(directory: str) -> None:
    path = Path(directory)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"cache.dir: {directory} exists and is not a directory")
        probe = path / f".check-config-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cache.dir: cannot write in {directory}: "
                              f"{exc.strerror or exc}") from None
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cache.dir: {directory} does not exist and cannot be created "
                          f"({parent} is not writable)")


def summary(config: Config) -> list[str]:
    lines = []
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        lines.append(f"[{section.name}]")
        for key in dataclasses.fields(values):
            if (section.name, key.name) == ("images", "presets"):
                continue  # nested tables, shown below
            value = mask(section.name, key.name, getattr(values, key.name))
            text = json.dumps(value) if isinstance(value, str | bool) else str(value)
            lines.append(f"  {key.name} = {text}")
    for name, table in config.images.tables()["presets"].items():
        lines.append(f"[images.presets.{name}]")
        lines += [f"  {key} = {json.dumps(value)}" for key, value in table.items()]
    return lines


def check(path: str | None, out: Callable[[str], None]) -> int:
    config = config_mod.load(path)
    listen.resolve(config.server.listen, "server.listen")
    listen.resolve(config.server.admin_listen, "server.admin_listen")
    check_cache_dir(config.cache.dir)
    out(f"# {path or 'built-in defaults'} (+ MEDIAPROXY_* environment): valid")
    for line in summary(config):
        out(line)
    out(f"ok: listen {config.server.listen}, admin {config.server.admin_listen}, "
        f"cache {config.cache.dir} (writable), {config.server.workers} worker(s)")
    return 0
