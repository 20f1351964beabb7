"""Request counts for tests: by (method, path) and by response status, in memory.

Rule: every request that reaches the application is counted once on arrival, whatever its
outcome (304, HEAD, admin calls, injected faults), and its status once when it is known.
"""

from __future__ import annotations

from collections import Counter


class RequestStats:
    def __init__(self) -> None:
        self._requests: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[int] = Counter()

    def record_request(self, method: str, path: str) -> None:
        self._requests[(method, path)] += 1

    def record_status(self, status: int) -> None:
        self._statuses[status] += 1

    def count(self, *, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally only those with this method and/or path."""
        return sum(
            n
            for (m, p), n in self._requests.items()
            if (method is None or m == method) and (path is None or p == path)
        )

    def status_count(self, status: int) -> int:
        return self._statuses[status]

    def reset(self) -> None:
        self._requests.clear()
        self._statuses.clear()

    def as_json(self) -> dict[str, object]:
        return {
            "total": sum(self._requests.values()),
            "requests": [
                {"method": m, "path": p, "count": n} for (m, p), n in sorted(self._requests.items())
            ],
            "statuses": {str(s): n for s, n in sorted(self._statuses.items())},
        }
