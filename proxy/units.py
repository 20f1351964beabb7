"""Sizes and durations as operators write them: `10GiB`, `500MB`, `64k`, `30s`, `5m`, `250ms`.

Rule: a bare number keeps its meaning (bytes, seconds); a unit is a case-insensitive suffix;
decimal (kB, MB, GB, TB: powers of 1000) and binary (KiB, MiB, GiB, TiB and k, M, G, T:
powers of 1024) sizes are both accepted. Anything else is a ValueError naming what was wrong.
"""

from __future__ import annotations

import re

_SIZES = {"": 1, "b": 1,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_DURATIONS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """`10GiB` -> 10737418240."""
    match = _NUMBER.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZES:
        raise ValueError(f"expected a size such as 1048576, 512MiB or 10GB, got {text!r}")
    value = float(match.group(1).replace("_", "")) * _SIZES[unit]
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def parse_duration(text: str) -> float:
    """`30s` -> 30.0, `5m` -> 300.0, `250ms` -> 0.25."""
    match = _NUMBER.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _DURATIONS:
        raise ValueError(f"expected a duration such as 30, 30s, 250ms, 5m or 1h, got {text!r}")
    return float(match.group(1).replace("_", "")) * _DURATIONS[unit]


def with_unit(value: object, key: str) -> object:
    """A string for a `*_bytes` / `*_seconds` key (from TOML or the environment, with or
    without a unit) -> the number; anything else unchanged."""
    if not isinstance(value, str) or not key.endswith(("_bytes", "_seconds")):
        return value
    return parse_size(value) if key.endswith("_bytes") else parse_duration(value)
