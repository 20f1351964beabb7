"""Which session may read which paths: the reference origin's stand-in for a CMS's logins."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SessionGrants:
    prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def allows(self, session: str, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.prefixes.get(session, ()))
