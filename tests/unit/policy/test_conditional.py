import pytest

from proxy.policy.conditional import Precondition, Validators, evaluate
from proxy.policy.headers import ETag

LM = 1_700_000_000.0
LM_TEXT = "Tue, 14 Nov 2023 22:13:20 GMT"
EARLIER = "Tue, 14 Nov 2023 22:13:19 GMT"
STORED = Validators(ETag('"v1"', False), LM)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", [], Precondition.PROCEED),
        ("GET", [("If-None-Match", '"v1"')], Precondition.NOT_MODIFIED),
        ("GET", [("If-None-Match", 'W/"v1"')], Precondition.NOT_MODIFIED),  # weak comparison
        ("HEAD", [("If-None-Match", '"x", "v1"')], Precondition.NOT_MODIFIED),
        ("GET", [("If-None-Match", "*")], Precondition.NOT_MODIFIED),
        ("GET", [("If-None-Match", '"v2"')], Precondition.PROCEED),
        # If-None-Match present: If-Modified-Since is ignored (RFC 9110 §13.1.3)
        ("GET", [("If-None-Match", '"v2"'), ("If-Modified-Since", LM_TEXT)], Precondition.PROCEED),
        ("GET", [("If-Modified-Since", LM_TEXT)], Precondition.NOT_MODIFIED),
        ("GET", [("If-Modified-Since", EARLIER)], Precondition.PROCEED),
        ("GET", [("If-Modified-Since", "garbage")], Precondition.PROCEED),
        ("GET", [("If-Match", '"v1"')], Precondition.PROCEED),
        ("GET", [("If-Match", 'W/"v1"')], Precondition.FAILED),  # strong comparison
        ("GET", [("If-Match", '"v2"')], Precondition.FAILED),
        ("GET", [("If-Match", "*")], Precondition.PROCEED),
        ("GET", [("If-Unmodified-Since", EARLIER)], Precondition.FAILED),
        ("GET", [("If-Unmodified-Since", LM_TEXT)], Precondition.PROCEED),
        # If-Match takes precedence over If-Unmodified-Since
        ("GET", [("If-Match", '"v1"'), ("If-Unmodified-Since", EARLIER)], Precondition.PROCEED),
        # If-Match fails before If-None-Match is looked at
        ("GET", [("If-Match", '"v2"'), ("If-None-Match", '"v1"')], Precondition.FAILED),
    ],
)
def test_rfc9110_precedence(method: str, headers: list[tuple[str, str]],
                            expected: Precondition) -> None:
    assert evaluate(method, headers, STORED) is expected


def test_without_stored_validators_dates_are_ignored() -> None:
    none = Validators(None, None)
    assert evaluate("GET", [("If-Modified-Since", LM_TEXT)], none) is Precondition.PROCEED
    assert evaluate("GET", [("If-Match", '"v1"')], none) is Precondition.FAILED


LATER = "Tue, 14 Nov 2023 22:13:21 GMT"


@pytest.mark.parametrize(
    ("method", "stored", "headers", "expected"),
    [
        # RFC 9111 §4.3.2: no Last-Modified stored -> If-Modified-Since is compared with Date.
        ("GET", [("Date", LM_TEXT)], [("If-Modified-Since", LM_TEXT)], Precondition.NOT_MODIFIED),
        ("GET", [("Date", LM_TEXT)], [("If-Modified-Since", LATER)], Precondition.NOT_MODIFIED),
        ("GET", [("Date", LM_TEXT)], [("If-Modified-Since", EARLIER)], Precondition.PROCEED),
        # Last-Modified, when stored, is what counts, whatever the Date says.
        ("GET", [("Date", LATER), ("Last-Modified", LM_TEXT)], [("If-Modified-Since", EARLIER)],
         Precondition.PROCEED),
        ("GET", [("Date", LATER), ("Last-Modified", EARLIER)], [("If-Modified-Since", EARLIER)],
         Precondition.NOT_MODIFIED),
        # Neither stored: nothing to compare with.
        ("GET", [], [("If-Modified-Since", LM_TEXT)], Precondition.PROCEED),
        ("GET", [("Date", "garbage")], [("If-Modified-Since", LM_TEXT)], Precondition.PROCEED),
        # The Date is no validator for If-Unmodified-Since: ignored without Last-Modified.
        ("GET", [("Date", LATER)], [("If-Unmodified-Since", EARLIER)], Precondition.PROCEED),
        # Unsafe methods never get a 304 from a date.
        ("POST", [("Date", LM_TEXT)], [("If-Modified-Since", LATER)], Precondition.PROCEED),
    ],
    ids=["date-equal", "date-before-ims", "date-after-ims", "lm-wins-newer", "lm-wins-older",
         "none", "bad-date", "ius-ignores-date", "post"],
)
def test_if_modified_since_falls_back_to_the_stored_date(
        method: str, stored: list[tuple[str, str]], headers: list[tuple[str, str]],
        expected: Precondition) -> None:
    assert evaluate(method, headers, Validators.from_headers(stored)) is expected
