"""Console sign-in: sessions kept in this process's memory, and throttled sign-in attempts.

Rule: a session is a random token (`secrets.token_urlsafe`) in an `HttpOnly`, `SameSite=Strict`
cookie; the server keeps only its SHA-256, with its own random CSRF token, an idle and an
absolute expiry, and a fingerprint of the admin token it was opened with, so changing
`admin.token` (and reloading) signs everyone out. The admin listener is one process (the single
process or the supervisor), so memory is the whole truth; a restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "mediaproxy_console"
IDLE_SECONDS = 30 * 60.0
MAX_AGE_SECONDS = 12 * 3600.0
MAX_SESSIONS = 1000  # the oldest is dropped beyond this
FAILURE_DELAY_SECONDS = 0.5  # every refused token waits this long before its answer
MAX_FAILURES = 5  # refused tokens from one address within FAILURE_WINDOW_SECONDS ...
FAILURE_WINDOW_SECONDS = 15 * 60.0
LOCKOUT_SECONDS = 60.0  # ... lock that address out this long
MAX_TRACKED_ADDRESSES = 4096


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a submitted admin token (an empty one never matches)."""
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


@dataclass(slots=True)
class Session:
    csrf: str
    opened: float
    seen: float
    fingerprint: bytes  # of the admin token it was opened with

    def csrf_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: OrderedDict[bytes, Session] = OrderedDict()

    def open(self, admin_token: str) -> tuple[str, Session]:
        """A new session: (the cookie value, the session)."""
        self._expire()
        now = self._clock()
        cookie = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), now, now, _digest(admin_token))
        self._open[_digest(cookie)] = session
        while len(self._open) > MAX_SESSIONS:
            self._open.popitem(last=False)
        return cookie, session

    def get(self, cookie: str | None, admin_token: str) -> Session | None:
        """The live session for a cookie, its idle timer restarted; None when unknown, expired
        or opened with another admin token."""
        if not cookie or not admin_token:
            return None
        key = _digest(cookie)
        session = self._open.get(key)
        if session is None:
            return None
        now = self._clock()
        if (now - session.seen > IDLE_SECONDS or now - session.opened > MAX_AGE_SECONDS
                or not hmac.compare_digest(session.fingerprint, _digest(admin_token))):
            del self._open[key]
            return None
        session.seen = now
        return session

    def close(self, cookie: str | None) -> None:
        if cookie:
            self._open.pop(_digest(cookie), None)

    def __len__(self) -> int:
        return len(self._open)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._open.items()
                    if now - s.seen > IDLE_SECONDS or now - s.opened > MAX_AGE_SECONDS]:
            del self._open[key]


class Throttle:
    """Refused sign-ins per client address: after MAX_FAILURES within the window, the address
    is locked out for LOCKOUT_SECONDS (a right token is refused too while locked)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        # Sign-ins being checked now, per address: counted before their body is read, so
        # parallel connections cannot all pass the check before the first failure lands.
        self._in_flight: dict[str, int] = {}

    def begin(self, address: str) -> bool:
        """Reserve one attempt for `address` (False: as many are already in flight as the
        lockout allows failures); pair with `end`."""
        now = self._clock()
        recent = [t for t in self._failures.get(address, []) if now - t < FAILURE_WINDOW_SECONDS]
        in_flight = self._in_flight.get(address, 0)
        if len(recent) + in_flight >= MAX_FAILURES:
            return False
        self._in_flight[address] = in_flight + 1
        return True

    def end(self, address: str) -> None:
        left = self._in_flight.get(address, 0) - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)

    def locked_for(self, address: str) -> float:
        """Seconds this address stays locked out (0: it may try)."""
        until = self._locked.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked[address]
            return 0.0
        return left

    def failed(self, address: str) -> None:
        now = self._clock()
        recent = [t for t in self._failures.pop(address, []) if now - t < FAILURE_WINDOW_SECONDS]
        recent.append(now)
        if len(recent) >= MAX_FAILURES:
            self._locked[address] = now + LOCKOUT_SECONDS
            recent = []
        self._failures[address] = recent
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)
        if len(self._locked) > MAX_TRACKED_ADDRESSES:
            for key in [k for k, t in self._locked.items() if t <= now]:
                del self._locked[key]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
