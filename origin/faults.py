"""Injected faults for tests: real slowness, throttling, truncation and error statuses on reads.

Rule: a fault applies to GET and HEAD of paths under its prefix (the longest matching prefix
wins) and is real behaviour on the socket, never a mock; rules are validated on the way in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

_FIELDS = (
    "path_prefix",
    "delay_seconds",
    "rate_bytes_per_second",
    "truncate_after_bytes",
    "status",
    "count",
)


@dataclass(frozen=True, slots=True)
class Fault:
    path_prefix: str
    delay_seconds: float = 0.0  # before the response headers
    rate_bytes_per_second: int | None = None  # throttles the body
    truncate_after_bytes: int | None = None  # closes the connection after this many body bytes
    status: int | None = None  # answer this status instead of the item
    count: int | None = None  # matching requests left; None: until cleared

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _number(obj: dict[str, object], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _integer(
    obj: dict[str, object], key: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{key} must be {bound}")
    return value


def parse_fault(obj: object) -> Fault:
    """Validate one rule as posted to /_origin/faults; ValueError carries the client's message.

    {"path_prefix": "/x/", "delay_seconds": 2.0, "rate_bytes_per_second": 1000000,
    "truncate_after_bytes": 1000, "status": 503, "count": 1}: path_prefix and at least one
    effect are required; count expires the rule after that many matching requests.
    """
    if not isinstance(obj, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    prefix = obj.get("path_prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError("path_prefix must be a string starting with '/'")
    delay = _number(obj, "delay_seconds")
    if delay is not None and not 0 <= delay <= 3600:
        raise ValueError("delay_seconds must be between 0 and 3600")
    fault = Fault(
        path_prefix=prefix,
        delay_seconds=delay or 0.0,
        rate_bytes_per_second=_integer(obj, "rate_bytes_per_second", minimum=1),
        truncate_after_bytes=_integer(obj, "truncate_after_bytes", minimum=0),
        status=_integer(obj, "status", minimum=200, maximum=599),
        count=_integer(obj, "count", minimum=1),
    )
    if (
        not fault.delay_seconds
        and fault.rate_bytes_per_second is None
        and fault.truncate_after_bytes is None
        and fault.status is None
    ):
        raise ValueError(
            "a fault needs one of delay_seconds, rate_bytes_per_second, truncate_after_bytes,"
            " status"
        )
    return fault


class FaultRules:
    """The active faults, one per path prefix. Lives on the event loop; not thread-safe."""

    def __init__(self) -> None:
        self._rules: dict[str, Fault] = {}

    def add(self, fault: Fault) -> None:
        """Add a rule, replacing any rule with the same prefix."""
        self._rules[fault.path_prefix] = fault

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[Fault]:
        return sorted(self._rules.values(), key=lambda f: f.path_prefix)

    def match(self, path: str) -> Fault | None:
        """The fault for one request to `path`; counts it against the rule's `count`."""
        matching = [f for f in self._rules.values() if path.startswith(f.path_prefix)]
        if not matching:
            return None
        fault = max(matching, key=lambda f: len(f.path_prefix))
        if fault.count is not None:
            if fault.count <= 1:
                del self._rules[fault.path_prefix]
            else:
                self._rules[fault.path_prefix] = replace(fault, count=fault.count - 1)
        return fault
