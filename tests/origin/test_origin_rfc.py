"""The pure RFC 9110 decisions: preconditions, Range, If-Range and HTTP dates, as tables."""

from __future__ import annotations

import pytest

from origin.conditional import Outcome, evaluate, format_http_date, parse_http_date
from origin.ranges import FullBody, Partial, Selection, Unsatisfiable, parse_range, select

ETAG = '"r3-1a2b3c4d5e6f7a8b"'
LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
LM_DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = "Sun, 06 Nov 1994 08:49:38 GMT"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (LM_DATE, LM),
        ("Sunday, 06-Nov-94 08:49:37 GMT", LM),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", LM),  # asctime
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_http_date(value: str, expected: int | None) -> None:
    assert parse_http_date(value) == expected


def test_format_http_date() -> None:
    assert format_http_date(LM) == LM_DATE


@pytest.mark.parametrize(
    ("method", "headers", "outcome"),
    [
        ("GET", {}, Outcome.PROCEED),
        ("GET", {"If-None-Match": ETAG}, Outcome.NOT_MODIFIED),
        ("HEAD", {"If-None-Match": f"W/{ETAG}"}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": f'"a", {ETAG}'}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": "*"}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": '"other"'}, Outcome.PROCEED),
        ("DELETE", {"If-None-Match": ETAG}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Match": ETAG}, Outcome.PROCEED),
        ("GET", {"If-Match": "*"}, Outcome.PROCEED),
        ("GET", {"If-Match": f"W/{ETAG}"}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Match": '"other"'}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Unmodified-Since": EARLIER}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Unmodified-Since": LM_DATE}, Outcome.PROCEED),
        ("GET", {"If-Unmodified-Since": "garbage"}, Outcome.PROCEED),
        # If-Match present: If-Unmodified-Since is not evaluated.
        ("GET", {"If-Match": ETAG, "If-Unmodified-Since": EARLIER}, Outcome.PROCEED),
        ("GET", {"If-Modified-Since": LM_DATE}, Outcome.NOT_MODIFIED),
        ("GET", {"If-Modified-Since": LATER}, Outcome.NOT_MODIFIED),
        ("GET", {"If-Modified-Since": EARLIER}, Outcome.PROCEED),
        ("GET", {"If-Modified-Since": "garbage"}, Outcome.PROCEED),
        ("POST", {"If-Modified-Since": LM_DATE}, Outcome.PROCEED),
        # If-None-Match present: If-Modified-Since is not evaluated.
        ("GET", {"If-None-Match": '"x"', "If-Modified-Since": LM_DATE}, Outcome.PROCEED),
        # 412 from If-Match comes before 304 from If-None-Match.
        ("GET", {"If-Match": '"x"', "If-None-Match": ETAG}, Outcome.PRECONDITION_FAILED),
    ],
)
def test_evaluate(method: str, headers: dict[str, str], outcome: Outcome) -> None:
    assert evaluate(method, headers, etag=ETAG, last_modified=LM) is outcome


@pytest.mark.parametrize(
    ("value", "selection"),
    [
        ("bytes=0-0", Partial(0, 0)),
        ("bytes=0-", Partial(0, 99)),
        ("bytes=10-19", Partial(10, 19)),
        ("bytes=90-500", Partial(90, 99)),
        ("bytes=-10", Partial(90, 99)),
        ("bytes=-500", Partial(0, 99)),
        ("Bytes=1-2", Partial(1, 2)),
        ("bytes=1-2,", Partial(1, 2)),  # empty list elements are allowed
        ("bytes=100-", Unsatisfiable()),
        ("bytes=100-200", Unsatisfiable()),
        ("bytes=-0", Unsatisfiable()),
        ("bytes=0-1,3-4", FullBody()),
        ("bytes=5-1", FullBody()),
        ("bytes=a-b", FullBody()),
        ("bytes=1 - 2", FullBody()),
        ("bytes=-", FullBody()),
        ("pages=1-2", FullBody()),
        ("bytes", FullBody()),
        ("bytes=" + "9" * 40 + "-", FullBody()),
    ],
)
def test_parse_range(value: str, selection: Selection) -> None:
    assert parse_range(value, 100) == selection


def test_parse_range_on_empty_body() -> None:
    assert parse_range("bytes=0-", 0) == Unsatisfiable()
    assert parse_range("bytes=-5", 0) == Unsatisfiable()


@pytest.mark.parametrize(
    ("if_range", "selection"),
    [
        (None, Partial(0, 9)),
        (ETAG, Partial(0, 9)),
        (f"W/{ETAG}", FullBody()),
        ('"r2-1a2b3c4d5e6f7a8b"', FullBody()),
        (LM_DATE, Partial(0, 9)),
        (LATER, FullBody()),  # only an exact date match counts
        ("nonsense", FullBody()),
    ],
)
def test_if_range(if_range: str | None, selection: Selection) -> None:
    result = select(
        range_header="bytes=0-9", if_range=if_range, size_bytes=100, etag=ETAG, last_modified=LM
    )
    assert result == selection


def test_if_range_without_range_is_ignored() -> None:
    result = select(range_header=None, if_range=ETAG, size_bytes=100, etag=ETAG, last_modified=LM)
    assert result == FullBody()
