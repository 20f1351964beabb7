import pytest

from proxy.policy.headers import ETag
from proxy.policy.ranges import Full, Partial, Unsatisfiable, select

ETAG = ETag('"v1"', False)
LM = 1_700_000_000.0
LM_TEXT = "Tue, 14 Nov 2023 22:13:20 GMT"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Full()),
        ("bytes=0-9", Partial(0, 9)),
        ("bytes=10-", Partial(10, 99)),
        ("bytes=-10", Partial(90, 99)),
        ("bytes=-1000", Partial(0, 99)),
        ("bytes=90-1000", Partial(90, 99)),
        ("bytes=99-99", Partial(99, 99)),
        ("bytes=100-", Unsatisfiable()),
        ("bytes=100-200", Unsatisfiable()),
        ("bytes=-0", Unsatisfiable()),
        ("bytes=5-2", Full()),  # invalid: ignored
        ("bytes=a-b", Full()),
        ("bytes=0-1,5-6", Full()),  # several ranges: ignored, full 200
        ("items=0-1", Full()),
        ("bytes 0-1", Full()),
        ("bytes=" + "0-," * 1000, Full()),  # hostile list: bounded, ignored
        ("bytes=½-3", Full()),
    ],
)
def test_select(header: str | None, expected: object) -> None:
    assert select("GET", header, None, 100, ETAG, LM) == expected


def test_range_only_for_get() -> None:
    assert select("HEAD", "bytes=0-1", None, 100, ETAG, LM) == Full()


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        ('"v1"', Partial(0, 1)),
        ('"v2"', Full()),
        ('W/"v1"', Full()),  # weak validators never satisfy If-Range
        (LM_TEXT, Partial(0, 1)),
        ("Tue, 14 Nov 2023 22:13:21 GMT", Full()),
        ("garbage", Full()),
    ],
)
def test_if_range(if_range: str, expected: object) -> None:
    assert select("GET", "bytes=0-1", if_range, 100, ETAG, LM) == expected


def test_empty_body_any_range_unsatisfiable() -> None:
    assert select("GET", "bytes=0-", None, 0, ETAG, LM) == Unsatisfiable()
    assert select("GET", "bytes=-5", None, 0, ETAG, LM) == Unsatisfiable()


def test_content_range_text() -> None:
    assert Partial(0, 9).content_range(100) == "bytes 0-9/100"
    assert Unsatisfiable().content_range(100) == "bytes */100"
