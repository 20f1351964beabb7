import pytest

from proxy.policy.decide import Fetch, Revalidate, Serve, on_request, storable, vary_names
from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import format_http_date

T = 1_700_000_000.0
VALIDATED = [("ETag", '"1"'), ("Date", format_http_date(T))]


def stored(*fields: tuple[str, str]) -> StoredResponse:
    return StoredResponse(200, tuple(fields), T, T, 10)


@pytest.mark.parametrize(
    ("fields", "req", "now", "expected"),
    [
        ([("Cache-Control", "max-age=60"), *VALIDATED], [], T + 10, Serve(10)),
        ([("Cache-Control", "max-age=60"), *VALIDATED], [], T + 61, Revalidate()),
        ([("Cache-Control", "max-age=60")], [], T + 61, Fetch()),  # no validator
        ([("Cache-Control", "no-cache, max-age=60"), *VALIDATED], [], T, Revalidate()),
        # qualified no-cache="field" does not force revalidation of the whole response
        ([("Cache-Control", 'no-cache="set-cookie", max-age=60'), *VALIDATED], [], T, Serve(0)),
        ([("Cache-Control", "max-age=60"), *VALIDATED], [("Cache-Control", "no-cache")], T,
         Revalidate()),
        # Pragma from the client is ignored (RFC 9111 §5.4)
        ([("Cache-Control", "max-age=60"), *VALIDATED], [("Pragma", "no-cache")], T, Serve(0)),
        ([("Cache-Control", "max-age=60"), *VALIDATED], [("Cache-Control", "max-age=5")],
         T + 10, Revalidate()),
        ([("Cache-Control", "max-age=60"), *VALIDATED], [("Cache-Control", "min-fresh=55")],
         T + 10, Revalidate()),
        ([("Cache-Control", "max-age=60"), *VALIDATED],
         [("Cache-Control", "nothing-to-see-here")], T + 10, Serve(10)),
        ([("Cache-Control", "max-age=0"), *VALIDATED], [], T, Revalidate()),
    ],
)
def test_on_request(fields: list[tuple[str, str]], req: list[tuple[str, str]], now: float,
                    expected: object) -> None:
    assert on_request(stored(*fields), req, now) == expected


@pytest.mark.parametrize(
    ("method", "status", "req", "response", "expected"),
    [
        ("GET", 200, [], [("Cache-Control", "max-age=60")], True),
        ("GET", 200, [], [("ETag", '"x"')], True),  # validator only: stored, revalidated
        ("GET", 200, [], [], False),  # neither freshness nor validator
        ("HEAD", 200, [], [("Cache-Control", "max-age=60")], False),
        ("POST", 200, [], [("Cache-Control", "max-age=60")], False),
        ("GET", 206, [], [("Cache-Control", "max-age=60")], False),
        ("GET", 200, [], [("Cache-Control", "no-store, max-age=60")], False),
        ("GET", 200, [("Cache-Control", "no-store")], [("Cache-Control", "max-age=60")], False),
        ("GET", 200, [], [("Cache-Control", "private, max-age=60")], False),
        ("GET", 200, [("Authorization", "Bearer x")], [("Cache-Control", "max-age=60")], False),
        ("GET", 200, [("Authorization", "Bearer x")], [("Cache-Control", "public, max-age=60")],
         True),
        ("GET", 200, [("Authorization", "Bearer x")], [("Cache-Control", "s-maxage=60")], True),
        ("GET", 200, [], [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")], False),
        ("GET", 200, [], [("Cache-Control", "max-age=60"), ("Vary", "*")], False),
        ("GET", 200, [], [("Cache-Control", "max-age=60"), ("Vary", "Accept, *")], False),
        ("GET", 302, [], [("ETag", '"x"')], False),  # not heuristically cacheable, no lifetime
        ("GET", 302, [], [("Cache-Control", "max-age=60")], True),
        ("GET", 404, [], [("Cache-Control", "max-age=60")], True),
        ("GET", 599, [], [("Cache-Control", "max-age=60")], True),  # any final status (§3)
        ("GET", 599, [], [("Cache-Control", "max-age=60, must-understand")], False),
        ("GET", 200, [], [("Cache-Control", "max-age=60, no-store, must-understand")], True),
        ("GET", 304, [], [("Cache-Control", "max-age=60")], False),
    ],
)
def test_storable(method: str, status: int, req: list[tuple[str, str]],
                  response: list[tuple[str, str]], expected: bool) -> None:
    assert storable(method, status, req, response, T) is expected


def test_vary_names_normalised() -> None:
    assert vary_names([("Vary", "Accept-Encoding, accept"), ("Vary", " Origin ")]) == (
        "accept", "accept-encoding", "origin")
    assert vary_names([]) == ()


def test_unsafe_methods_invalidate_target_and_locations() -> None:
    from proxy.policy.decide import invalidated_by

    loc = [("Location", "/items/7"), ("Content-Location", "http://origin:8090/items/7?v=2")]
    assert invalidated_by("POST", 201, "/items", loc, "origin:8090") == (
        "/items", "/items/7", "/items/7?v=2")
    assert invalidated_by("DELETE", 204, "/a", [], "o") == ("/a",)
    assert invalidated_by("PUT", 500, "/a", [], "o") == ()  # failed: nothing changed
    assert invalidated_by("GET", 200, "/a", [], "o") == ()
    other = [("Location", "http://elsewhere.example/x"), ("Location", "//evil/x")]
    assert invalidated_by("POST", 200, "/a", other, "origin:8090") == ("/a",)


def test_stale_while_revalidate_window() -> None:
    from proxy.policy.decide import ServeStale

    s = stored(("Cache-Control", "max-age=60, stale-while-revalidate=30"), *VALIDATED)
    assert on_request(s, [], T + 70) == ServeStale(70)
    assert on_request(s, [], T + 91) == Revalidate()
    assert on_request(s, [("Cache-Control", "no-cache")], T + 70) == Revalidate()
    strict = stored(("Cache-Control", "max-age=60, stale-while-revalidate=30, must-revalidate"),
                    *VALIDATED)
    assert on_request(strict, [], T + 70) == Revalidate()
    shared = stored(("Cache-Control", "s-maxage=60, stale-while-revalidate=30"), *VALIDATED)
    assert on_request(shared, [], T + 70) == Revalidate()  # s-maxage implies proxy-revalidate


def test_stale_if_error_window_and_grace() -> None:
    from proxy.policy.decide import facts, usable_on_error

    s = stored(("Cache-Control", "max-age=60, stale-if-error=100"), *VALIDATED)
    assert usable_on_error(facts(s), [], T + 150)
    assert not usable_on_error(facts(s), [], T + 161)
    plain = stored(("Cache-Control", "max-age=60"), *VALIDATED)
    assert not usable_on_error(facts(plain), [], T + 61)
    assert usable_on_error(facts(plain, grace_seconds=3600), [], T + 1000)
    assert usable_on_error(facts(plain), [("Cache-Control", "stale-if-error=500")], T + 100)
    strict = stored(("Cache-Control", "max-age=60, must-revalidate"), *VALIDATED)
    assert not usable_on_error(facts(strict, grace_seconds=3600), [], T + 61)


def test_configured_lifetime_overrides_the_origin() -> None:
    from proxy.policy.decide import facts, on_request_facts

    s = stored(("Cache-Control", "max-age=5"), *VALIDATED)
    assert on_request_facts(facts(s, lifetime_override=600), [], T + 300) == Serve(300)
    assert storable("GET", 200, [], [("ETag", '"1"')], T, lifetime_override=600)
    assert storable("GET", 200, [], [], T, lifetime_override=600)  # the rule gives freshness
    assert not storable("GET", 200, [], [("Cache-Control", "no-store")], T, lifetime_override=600)


def test_on_origin_table() -> None:
    from proxy.policy.decide import (
        Failed,
        Gone,
        NewAnswer,
        Refresh,
        StaleOnError,
        facts,
        on_origin,
    )
    from proxy.policy.freshness import Heuristic, StoredResponse

    def held(cc: str) -> object:
        meta = StoredResponse(200, (("Cache-Control", cc), ("ETag", '"a"')), 0.0, 0.0, 1)
        return facts(meta, Heuristic(0.1, 86400), None, None, 0.0)

    grace = held("max-age=10, stale-if-error=1000")
    plain = held("max-age=10")
    now = 100.0
    rows = [
        (None, grace, StaleOnError), (503, grace, StaleOnError), (500, grace, StaleOnError),
        (None, plain, Failed), (None, None, Failed), (503, plain, NewAnswer),
        (304, plain, Refresh), (304, None, NewAnswer), (404, plain, Gone), (410, plain, Gone),
        (404, None, NewAnswer), (200, plain, NewAnswer), (200, grace, NewAnswer),
    ]
    for status, stale, expected in rows:
        assert isinstance(on_origin(status, stale, (), now), expected), (status, expected)  # type: ignore[arg-type]
    # A request may ask for more grace than the response gives (RFC 5861 §4).
    assert isinstance(on_origin(None, plain, [("Cache-Control", "stale-if-error=1000")], now),
                      StaleOnError)


@pytest.mark.parametrize(("fields", "req", "grace", "now", "expected"), [
    # RFC 5861 §4: without a validator the stale copy is still held, to stand in on an error,
    # when stale-if-error (the response's, the request's) or the configured grace allows it.
    ([("Cache-Control", "max-age=60, stale-if-error=100")], [], 0.0, T + 100, Revalidate()),
    ([("Cache-Control", "max-age=60")], [("Cache-Control", "stale-if-error=100")], 0.0,
     T + 100, Revalidate()),
    ([("Cache-Control", "max-age=60")], [], 3600.0, T + 100, Revalidate()),
    # Past the allowance, or with nothing allowing it: fetched as if nothing were stored.
    ([("Cache-Control", "max-age=60, stale-if-error=100")], [], 0.0, T + 161, Fetch()),
    ([("Cache-Control", "max-age=60")], [], 0.0, T + 100, Fetch()),
    # must-revalidate forbids any stale answer, grace or not.
    ([("Cache-Control", "max-age=60, must-revalidate")], [], 3600.0, T + 100, Fetch()),
    # A request that refuses the fresh copy (no-cache) still lets it stand in on an error.
    ([("Cache-Control", "max-age=60")], [("Cache-Control", "no-cache")], 3600.0, T + 10,
     Revalidate()),
    # Fresh and usable: served whatever the grace.
    ([("Cache-Control", "max-age=60")], [], 3600.0, T + 10, Serve(10)),
])
def test_a_copy_without_validators_is_held_for_stale_if_error(
        fields: list[tuple[str, str]], req: list[tuple[str, str]], grace: float, now: float,
        expected: object) -> None:
    from proxy.policy.decide import facts, on_request_facts

    assert on_request_facts(facts(stored(*fields), grace_seconds=grace), req, now) == expected


AGO_100 = format_http_date(T - 100)


@pytest.mark.parametrize(("response", "override", "expected"), [
    # Stale on arrival by its Age, or by a Date behind ours, and no validator: not stored.
    ([("Cache-Control", "max-age=60"), ("Age", "100")], None, False),
    ([("Cache-Control", "max-age=60"), ("Date", AGO_100)], None, False),
    ([("Expires", format_http_date(T - 10)), ("Date", format_http_date(T - 5))], None, False),
    ([("Cache-Control", "max-age=60"), ("Age", "60")], None, False),  # exactly used up
    # Still fresh on arrival, or revalidatable: stored.
    ([("Cache-Control", "max-age=60"), ("Age", "59")], None, True),
    ([("Cache-Control", "max-age=60"), ("Age", "100"), ("ETag", '"1"')], None, True),
    ([("Cache-Control", "max-age=60"), ("Date", AGO_100),
      ("Last-Modified", format_http_date(T - 1000))], None, True),
    # A configured lifetime is counted from the same age.
    ([("Age", "100")], 600.0, True),
    ([("Age", "700")], 600.0, False),
    ([("Age", "700"), ("ETag", '"1"')], 600.0, True),
])
def test_stale_on_arrival_without_validator_is_not_stored(
        response: list[tuple[str, str]], override: float | None, expected: bool) -> None:
    assert storable("GET", 200, [], response, T, lifetime_override=override) is expected
