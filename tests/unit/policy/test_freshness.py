import pytest

from proxy.policy.freshness import Heuristic, StoredResponse, current_age, lifetime
from proxy.policy.headers import format_http_date

T = 1_700_000_000.0


def hdrs(**fields: str) -> list[tuple[str, str]]:
    return [(k.replace("_", "-"), v) for k, v in fields.items()]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (hdrs(Cache_Control="max-age=60"), 60),
        (hdrs(Cache_Control="max-age=60, s-maxage=10"), 10),  # shared cache: s-maxage wins
        (hdrs(Cache_Control="max-age=60", Expires=format_http_date(T + 1000)), 60),
        (hdrs(Expires=format_http_date(T + 100), Date=format_http_date(T)), 100),
        (hdrs(Expires="0", Date=format_http_date(T)), 0),  # invalid Expires = expired
        (hdrs(Expires=format_http_date(T - 5), Date=format_http_date(T)), 0),
        (hdrs(Last_Modified=format_http_date(T - 1000), Date=format_http_date(T)), 100),  # 10 %
        (hdrs(Last_Modified=format_http_date(T - 10**7), Date=format_http_date(T)), 86400),
        (hdrs(), 0),
        (hdrs(Cache_Control="max-age=bogus"), 0),
    ],
)
def test_lifetime_precedence(fields: list[tuple[str, str]], expected: float) -> None:
    assert lifetime(200, fields, T) == expected


def test_heuristic_only_for_heuristically_cacheable_statuses() -> None:
    fields = hdrs(Last_Modified=format_http_date(T - 1000), Date=format_http_date(T))
    assert lifetime(302, fields, T) == 0
    assert lifetime(404, fields, T) == 100
    assert lifetime(200, fields, T, Heuristic(0.5, 10)) == 10


def stored(fields: list[tuple[str, str]], request_time: float = T, response_time: float = T
           ) -> StoredResponse:
    return StoredResponse(200, tuple(fields), request_time, response_time, 0)


def test_age_grows_with_residence() -> None:
    s = stored(hdrs(Date=format_http_date(T)))
    assert current_age(s, T) == 0
    assert current_age(s, T + 30) == 30


def test_received_age_is_honoured() -> None:
    s = stored(hdrs(Date=format_http_date(T), Age="50"))
    assert current_age(s, T + 10) == 60


def test_response_delay_is_added() -> None:
    s = stored(hdrs(Date=format_http_date(T), Age="5"), request_time=T - 2, response_time=T)
    assert current_age(s, T) == 7


def test_apparent_age_from_old_date() -> None:
    s = stored(hdrs(Date=format_http_date(T - 100)))
    assert current_age(s, T) == 100


def test_date_in_future_gives_no_negative_age() -> None:
    s = stored(hdrs(Date=format_http_date(T + 100)))
    assert current_age(s, T) == 0
