"""What travels between nodes (a `Purge`) and what a purge answer reports (`NodeState`).

Rule: values only, no I/O; a message that is not one of ours decodes to None, never raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from proxy.policy.bans import BanKind

UNREACHABLE = "redis unreachable"
NOT_LIVE = "not live"


@dataclass(frozen=True, slots=True)
class Purge:
    """A purge as it travels between nodes; `created` is the origin node's ban time."""

    id: str
    origin_node: str
    kind: BanKind
    value: str
    soft: bool
    created: float

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "origin_node": self.origin_node,
                           "kind": self.kind.value, "value": self.value, "soft": self.soft,
                           "created": self.created}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Purge | None:
        """A purge message -> Purge, or None when it is not one of ours."""
        try:
            data = json.loads(text)
            purge = cls(id=data["id"], origin_node=data["origin_node"],
                        kind=BanKind(data["kind"]), value=data["value"], soft=data["soft"],
                        created=float(data["created"]))
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(purge.id, str) and purge.id and isinstance(purge.origin_node, str)
                and isinstance(purge.value, str) and isinstance(purge.soft, bool)
                and math.isfinite(purge.created)):
            return None
        return purge


@dataclass(frozen=True, slots=True)
class Published:
    purge: Purge
    reached: bool  # False: Redis was unreachable; queued for when it is back


@dataclass(frozen=True, slots=True)
class Acks:
    """Who has applied one purge: `missing` are live nodes that have not (yet)."""

    applied: frozenset[str]
    missing: frozenset[str]
    not_live: frozenset[str]  # known nodes without a heartbeat; they catch up when they start


@dataclass(frozen=True, slots=True)
class NodeState:
    """One line of a purge answer's `"nodes"`."""

    node: str
    applied: bool
    error: str | None = None  # "redis unreachable", "not live", "no acknowledgement within ..."
    pending: bool = False  # published, not waited for ("wait": false)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "applied": self.applied}
        if self.error is not None:
            out["error"] = self.error
        if self.pending:
            out["pending"] = True
        return out


@dataclass(frozen=True, slots=True)
class Gauges:
    """This node's view of purge propagation, for /metrics (no Redis round trip)."""

    connected: bool
    live_nodes: int
    pending: int  # received and not yet applied, or made and not yet published
    newest_applied: float | None  # `created` of the newest purge applied here (own or not)
    received: dict[str, int]  # purges from other nodes applied here, by kind label
