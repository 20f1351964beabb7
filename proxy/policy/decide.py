"""The cache's two decisions, as values: what to do with a request, what to do with a response.

Rule: `on_request` chooses Serve / Revalidate / Fetch from the stored response and the clock
value it is given; `storable` says whether an origin response may be kept (RFC 9111 §3).
The handler performs the I/O each value names and closes its match with `assert_never`.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy.freshness import (
    HEURISTIC_STATUSES,
    Heuristic,
    StoredResponse,
    current_age,
    explicit_lifetime,
    has_validator,
    lifetime,
)
from proxy.policy.headers import (
    Headers,
    cache_control,
    get,
    get_all,
    get_joined,
    response_cache_control,
)

DEFAULT_HEURISTIC = Heuristic()

# Status codes whose meaning we know (RFC 9111 §3: needed for `must-understand`).
UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | frozenset({302, 303, 307, 400, 403, 500, 502, 503})


@dataclass(frozen=True, slots=True)
class Serve:
    age_seconds: float


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Ask the origin holding the stored copy: conditionally when it has validators (a 304
    refreshes it), and as the stand-in should the origin fail (RFC 5861 §4). Without
    validators the request is unconditional and only the stand-in role remains."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask the origin as if nothing were stored: the copy can neither be revalidated nor
    stand in for an error."""


@dataclass(frozen=True, slots=True)
class ServeStale:
    """Stale, but within stale-while-revalidate: serve now, refresh once in the background."""

    age_seconds: float


RequestDecision = Serve | Revalidate | Fetch | ServeStale


@dataclass(frozen=True, slots=True)
class Facts:
    """What `on_request` needs of a stored response, parsed once per stored response."""

    lifetime_seconds: float
    initial_age_seconds: float  # corrected initial age (RFC 9111 §4.2.3)
    response_time: float
    validator: bool
    must_revalidate_always: bool  # unqualified no-cache, or soft-purged
    recheck_seconds: float | None = None  # protected objects: revalidate at least this often
    no_stale: bool = False  # must-revalidate, proxy-revalidate or s-maxage: never serve stale
    stale_while_revalidate_seconds: float = 0.0
    stale_if_error_seconds: float = 0.0

    def staleness(self, now: float) -> float:
        return self.age(now) - self.lifetime_seconds
    def age(self, now: float) -> float:
        return self.initial_age_seconds + max(0.0, now - self.response_time)


def facts(
    stored: StoredResponse,
    heuristic: Heuristic = DEFAULT_HEURISTIC,
    recheck_seconds: float | None = None,
    lifetime_override: float | None = None,
    grace_seconds: float = 0.0,
) -> Facts:
    """`lifetime_override` is a configured lifetime (like nginx proxy_cache_valid) that
    replaces the origin's; `grace_seconds` is the configured stale-if-error floor."""
    response_cc = response_cache_control(stored.headers)
    computed = lifetime(stored.status, stored.headers, stored.response_time, heuristic)
    return Facts(
        lifetime_seconds=computed if lifetime_override is None else lifetime_override,
        initial_age_seconds=current_age(stored, stored.response_time),
        response_time=stored.response_time,
        validator=has_validator(stored.headers),
        must_revalidate_always=stored.invalidated or (
            response_cc.no_cache and not response_cc.arg("no-cache")),  # RFC 9111 §5.2.2.4
        recheck_seconds=recheck_seconds,
        # RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10: no stale answers for these (s-maxage
        # implies proxy-revalidate for a shared cache).
        no_stale=response_cc.must_revalidate or response_cc.proxy_revalidate
        or response_cc.has("s-maxage") or response_cc.no_cache,
        stale_while_revalidate_seconds=float(response_cc.seconds("stale-while-revalidate") or 0),
        stale_if_error_seconds=max(float(response_cc.seconds("stale-if-error") or 0),
                                   grace_seconds),  # RFC 5861 §4
    )


def on_request(
    stored: StoredResponse,
    request: Headers,
    now: float,
    heuristic: Heuristic = DEFAULT_HEURISTIC,
) -> RequestDecision:
    """What to do with a request for which `stored` matched (RFC 9111 §4)."""
    return on_request_facts(facts(stored, heuristic), request, now)


def on_request_facts(known: Facts, request: Headers, now: float) -> RequestDecision:
    age = known.age(now)
    fresh_for = known.lifetime_seconds - age
    if known.must_revalidate_always:
        return _ask(known, request, now)
    if known.recheck_seconds is not None and now - known.response_time > known.recheck_seconds:
        # Access to a protected object is re-confirmed with the origin even while fresh, so a
        # revocation there takes effect within this time without a purge.
        return _ask(known, request, now)
    if get(request, "cache-control") is None:
        return Serve(age) if fresh_for > 0 else _when_stale(known, request, now)
    request_cc = cache_control(request)  # Pragma is deliberately ignored (RFC 9111 §5.4)
    if request_cc.no_cache:
        return _ask(known, request, now)  # RFC 9111 §5.2.1.4
    request_max_age = request_cc.seconds("max-age")
    if request_max_age is not None and age > request_max_age:
        return _ask(known, request, now)  # RFC 9111 §5.2.1.1
    min_fresh = request_cc.seconds("min-fresh")
    if min_fresh is not None and fresh_for < min_fresh:
        return _ask(known, request, now)  # RFC 9111 §5.2.1.3
    if fresh_for > 0:
        return Serve(age)
    return _when_stale(known, request, now, request_cc.no_cache)


def _when_stale(known: Facts, request: Headers, now: float, request_no_cache: bool = False
                ) -> RequestDecision:
    age = known.age(now)
    window = known.stale_while_revalidate_seconds
    if (window > 0 and known.validator and not known.no_stale and not request_no_cache
            and age - known.lifetime_seconds <= window):
        return ServeStale(age)  # RFC 5861 §3
    return _ask(known, request, now)


def _ask(known: Facts, request: Headers, now: float) -> Revalidate | Fetch:
    """The stored copy may not be used as it is: ask the origin, holding on to the copy when
    it has validators (a 304 refreshes it) or when it may stand in should the origin fail
    (RFC 5861 §4: stale-if-error, or the configured grace, needs no validator); else fetch
    as if nothing were stored."""
    if known.validator or usable_on_error(known, request, now):
        return Revalidate()
    return Fetch()


def usable_on_error(known: Facts, request: Headers, now: float) -> bool:
    """May the stale copy answer when the origin is down, times out or answers 5xx?
    (RFC 5861 §4 stale-if-error, from the response, the request, or the configured grace.)"""
    if known.no_stale:
        return False
    allowance = known.stale_if_error_seconds
    requested = cache_control(request).seconds("stale-if-error")
    if requested is not None:
        allowance = max(allowance, float(requested))
    return allowance > 0 and known.staleness(now) <= allowance


@dataclass(frozen=True, slots=True)
class StaleOnError:
    """The origin failed (no answer, or 5xx) and the stale copy may stand in (RFC 5861 §4)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The origin gave no answer and nothing may stand in: the error goes to the client."""


@dataclass(frozen=True, slots=True)
class Refresh:
    """A 304 to our conditional request: the stored body stays, its fields are updated."""


@dataclass(frozen=True, slots=True)
class Gone:
    """404/410 for something we hold: drop it everywhere, then treat the answer as new."""


@dataclass(frozen=True, slots=True)
class NewAnswer:
    """A full answer: stored (`storable`) or relayed."""


OriginDecision = StaleOnError | Failed | Refresh | Gone | NewAnswer


def on_origin(status: int | None, stale: Facts | None, request: Headers, now: float
              ) -> OriginDecision:
    """What to do with the origin's answer (`status`; None when there was none) to a fill or
    a revalidation of `stale` (the facts of the copy we hold, or None)."""
    if stale is not None and (status is None or status >= 500) and usable_on_error(
            stale, request, now):
        return StaleOnError()
    if status is None:
        return Failed()
    if stale is not None and status == 304:
        return Refresh()
    if stale is not None and status in (404, 410):
        return Gone()
    return NewAnswer()


def storable(
    method: str,
    status: int,
    request: Headers,
    response: Headers,
    response_time: float,
    lifetime_override: float | None = None,
) -> bool:
    """May a shared cache store this response (RFC 9111 §3)? Also refuses what we choose not
    to keep: a response that sets a cookie (it is never given to another client) and one
    with no validator that is not fresh on arrival (it could never be reused). Its age on
    arrival is known here only from its Age and Date (the request time is taken as the
    response time): a lower bound, so nothing fresh is ever refused."""
    # RFC 9111 §3: any final status may be stored, except 206 (we keep whole bodies only) and
    # 304; with must-understand, only statuses we understand, and no-store is then overridden.
    if method != "GET" or not 200 <= status <= 599 or status in (206, 304):
        return False
    response_cc = response_cache_control(response)
    request_cc = cache_control(request)
    if response_cc.has("must-understand"):
        if status not in UNDERSTOOD_STATUSES:
            return False
    elif response_cc.no_store:
        return False
    if request_cc.no_store:
        return False
    if response_cc.private:
        return False  # RFC 9111 §5.2.2.7: shared caches must not store
    if get(request, "authorization") is not None and not (
        response_cc.public or response_cc.must_revalidate or response_cc.has("s-maxage")
    ):
        return False  # RFC 9111 §3.5
    if get(response, "set-cookie") is not None:
        return False
    vary = get_joined(response, "vary")
    if vary is not None and any(v.strip() == "*" for v in vary.split(",")):
        return False  # RFC 9111 §4.1: Vary: * never matches
    # Stale on arrival (its Age, or its Date behind ours, is past its lifetime) and without a
    # validator: it could never be reused, not even revalidated, so it is not stored.
    arrival_age = current_age(
        StoredResponse(status, tuple(response), response_time, response_time, 0), response_time)
    if lifetime_override is not None:  # configured: the rule rules
        return lifetime_override > arrival_age or has_validator(response)
    explicit = explicit_lifetime(response, response_time)
    if explicit is None and status not in HEURISTIC_STATUSES and not response_cc.public:
        return False
    fresh = lifetime(status, response, response_time) > arrival_age
    return fresh or has_validator(response)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def invalidated_by(method: str, status: int, request_path: str, response: Headers,
                   origin_authority: str) -> tuple[str, ...]:
    """Paths (with query) a successful unsafe request invalidates (RFC 9111 §4.4): its target
    and the same-origin Location / Content-Location URLs. Other methods and errors: none."""
    if method in SAFE_METHODS or not 200 <= status < 400:  # any other method is unsafe
        return ()
    found = [request_path]
    for name in ("location", "content-location"):
        value = get(response, name)
        if value is None:
            continue
        value = value.strip()
        if value.startswith("/") and not value.startswith("//"):
            found.append(value.split("#", 1)[0])
        else:
            _scheme, sep, rest = value.partition("://")
            authority, slash, path = rest.partition("/")
            if sep and slash and authority.lower() == origin_authority.lower():
                found.append("/" + path.split("#", 1)[0])
    return tuple(dict.fromkeys(found))


def vary_names(response: Headers) -> tuple[str, ...]:
    """Lower-cased, sorted request header names selected by Vary."""
    names = {
        name.strip().lower() for value in get_all(response, "vary") for name in value.split(",")
    }
    names.discard("")
    return tuple(sorted(names))
