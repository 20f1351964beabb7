"""The auth callout's pure half: credentials, session digests, and the endpoint's answers."""

from __future__ import annotations

import pytest

from proxy.policy.session import (
    Outcome,
    cookie_value,
    credentials,
    interpret,
    private_cache_control,
    session_id,
)

FORWARD = ("Cookie", "Authorization")


def test_only_configured_fields_are_forwarded_in_a_fixed_order() -> None:
    request = [("Authorization", "Bearer t"), ("X-Other", "1"), ("cookie", "session=abc")]
    assert credentials(request, FORWARD) == (("Cookie", "session=abc"),
                                             ("Authorization", "Bearer t"))
    assert credentials([("X-Other", "1")], FORWARD) == ()
    assert credentials([("Cookie", "  ")], FORWARD) == ()


def test_several_cookie_fields_are_joined_with_semicolons() -> None:
    request = [("Cookie", "a=1"), ("Cookie", "b=2")]
    assert credentials(request, ("Cookie",)) == (("Cookie", "a=1; b=2"),)


def test_named_cookie_reduces_the_field_to_that_cookie() -> None:
    request = [("Cookie", "theme=dark; session=abc; _ga=123")]
    assert credentials(request, FORWARD, "session") == (("Cookie", "session=abc"),)
    other = [("Cookie", "session=abc; theme=light")]
    assert session_id(credentials(request, FORWARD, "session")) == session_id(
        credentials(other, FORWARD, "session"))
    assert credentials([("Cookie", "theme=dark")], FORWARD, "session") == ()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["a=1; session=xyz"], "xyz"),
        (['session="q"'], "q"),
        (["sessionx=1; session=2"], "2"),
        (["session="], None),
        (["session"], None),
        (["a=1", "session=3"], "3"),
        ([" session = 4 ;"], "4"),
        ([], None),
    ],
)
def test_cookie_value(headers: list[str], expected: str | None) -> None:
    assert cookie_value(headers, "session") == expected


def test_session_id_separates_sessions_and_hides_the_secret() -> None:
    a = session_id((("Cookie", "session=abc"),))
    assert a == session_id((("cookie", "session=abc"),))  # field names are case-insensitive
    assert a != session_id((("Cookie", "session=abd"),))
    assert a != session_id((("Authorization", "session=abc"),))
    assert "abc" not in a and len(a) == 64
    # No ambiguity from concatenation: ("ab", "c") is not ("a", "bc").
    assert session_id((("A", "b"), ("C", "d"))) != session_id((("A", "b\0c"), ("", "d")))


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.ALLOW), (204, Outcome.ALLOW), (401, Outcome.DENY), (403, Outcome.DENY),
     (404, Outcome.FAILED), (302, Outcome.FAILED), (500, Outcome.FAILED),
     (503, Outcome.FAILED), (100, Outcome.FAILED)],
)
def test_statuses_follow_auth_request(status: int, outcome: Outcome) -> None:
    assert interpret(status) is outcome


def test_session_id_is_injective_on_values() -> None:
    assert session_id((("Cookie", "session=a\u20ac"),)) != session_id(
        (("Cookie", "session=a?"),))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["public, max-age=60"], "private, max-age=60"),
        (["max-age=60, s-maxage=600", "proxy-revalidate"], "private, max-age=60"),
        ([], "private"),
        (["private, no-cache"], "private, no-cache"),
        (["S-MAXAGE=5, immutable"], "private, immutable"),
    ],
)
def test_private_cache_control(values: list[str], expected: str) -> None:
    assert private_cache_control(values) == expected
