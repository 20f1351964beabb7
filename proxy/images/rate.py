"""The pace of remakes after a soft purge: a token bucket per worker.

Rule: a soft-purged conversion is served stale while it is remade; a remake starts only when
`try_take()` grants one, so a purge of a million thumbnails costs at most
`images.max_conversions_per_second` conversions a second; refused remakes keep serving the
stale copy and are asked for again by a later request.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RemakeBudget:
    def __init__(self, per_second: float, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(1.0, per_second if burst is None else burst)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def try_take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
