"""Reading a configuration tree: a TOML file, MEDIAPROXY_<SECTION>_<KEY> environment overrides,
and the JSON hand-over to worker processes, into the frozen section dataclasses of config.py.

Rule: the dataclasses are the schema (a field's type is what its key accepts, sizes and
durations with units, units.py): an unknown section, key or MEDIAPROXY_* variable, or a value
of the wrong type, is a ConfigError naming it; the tree is validated before it is returned.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from proxy.errors import ConfigError
from proxy.units import with_unit

ENV_PREFIX = "MEDIAPROXY_"
CONFIG_ENV = "MEDIAPROXY_CONFIG"  # the configuration file every subcommand reads by default
DEFAULT_PATH = Path("/etc/mediaproxy/mediaproxy.toml")  # used when CONFIG_ENV is unset
# MEDIAPROXY_* variables that are not configuration keys: the config file's path, the
# reference origin's CLI (which shares the prefix), test switches and internal hand-offs.
ENV_NOT_KEYS = ("MEDIAPROXY_CONFIG", "MEDIAPROXY_ORIGIN_TOKEN", "MEDIAPROXY_READY_DIR",
                "MEDIAPROXY_TEST_")


class Tree(Protocol):
    """The top of a configuration: a dataclass of section dataclasses that validates itself."""

    def validate(self) -> Self: ...


T = TypeVar("T", bound=Tree)


def _coerce(value: Any, kind: Any, key: str, *, from_env: bool = False) -> Any:
    """Check a TOML value (or convert an environment string) against a field's type."""
    if kind is bool:
        if from_env:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if from_env:
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if kind is float:
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - schema bug


def _section_types(cls: type) -> dict[str, Any]:
    """The flat keys of a section; nested tables (a section's TABLES, e.g. images.presets)
    are parsed by the section itself (its `from_tables`)."""
    hints = typing.get_type_hints(cls)
    nested = getattr(cls, "TABLES", ())
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in nested}


def _with_unit(value: Any, key: str, name: str) -> Any:
    try:
        return with_unit(value, key)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _check_env_names(env: Mapping[str, str], top: Mapping[str, Any]) -> None:
    """A misspelt MEDIAPROXY_* variable is an error, like a misspelt key in the file."""
    known = {f"{ENV_PREFIX}{section}_{key}".upper()
             for section, cls in top.items() for key in _section_types(cls)}
    for name in env:
        if (name.startswith(ENV_PREFIX) and name not in known
                and not name.startswith(ENV_NOT_KEYS)):
            raise ConfigError(f"{name}: unknown environment variable (no such key; "
                              f"variables are {ENV_PREFIX}<SECTION>_<KEY>, e.g. "
                              f"{ENV_PREFIX}CACHE_DIR)")


def build(top_cls: type[T], data: Mapping[str, Any], env: Mapping[str, str]) -> T:
    sections: dict[str, Any] = {}
    top = _section_types(top_cls)
    _check_env_names(env, top)
    for section in data:
        if section not in top:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(top)})")
    for section, section_cls in top.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{section}: expected a table")
        nested = getattr(section_cls, "TABLES", ())
        values = _scalars(section, section_cls,
                          {k: v for k, v in raw.items() if k not in nested}, env)
        if nested:
            sections[section] = section_cls.from_tables(
                values, {k: v for k, v in raw.items() if k in nested})
        else:
            sections[section] = section_cls(**values)
    return top_cls(**sections).validate()


def _scalars(section: str, section_cls: type, raw: Mapping[str, Any],
             env: Mapping[str, str]) -> dict[str, Any]:
    """A section's flat keys from the file, each overridden by its MEDIAPROXY_* variable."""
    types_ = _section_types(section_cls)
    for key in raw:
        if key not in types_:
            raise ConfigError(f"{section}.{key}: unknown key (known: {', '.join(types_)})")
    values: dict[str, Any] = {}
    for key, kind in types_.items():
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if env_name in env:
            name = f"{section}.{key} (from {env_name})"
            value = _with_unit(env[env_name], key, name)
            values[key] = _coerce(value, kind, name, from_env=isinstance(value, str))
        elif key in raw:
            name = f"{section}.{key}"
            values[key] = _coerce(_with_unit(raw[key], key, name), kind, name)
    return values


def load(top_cls: type[T], path: str | Path | None, env: Mapping[str, str] | None = None
         ) -> T:
    """Read the TOML file (or only defaults when None) and apply environment overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are "
                              "UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return build(top_cls, data, env)


def default_path(env: Mapping[str, str] | None = None) -> str | None:
    """$MEDIAPROXY_CONFIG, else /etc/mediaproxy/mediaproxy.toml when it exists, else None
    (built-in defaults and the environment only)."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return env[CONFIG_ENV]
    return str(DEFAULT_PATH) if DEFAULT_PATH.exists() else None


def to_json(config: Any) -> str:
    """The validated configuration, for a worker process (which must not re-read the file)."""
    data = dataclasses.asdict(config)
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if getattr(value, "TABLES", ()):
            data[section.name].update(value.tables())  # back to their TOML shape
    return json.dumps(data)


def from_json(top_cls: type[T], text: str) -> T:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"configuration hand-over is not JSON: {exc}") from None
    return build(top_cls, data, {})

