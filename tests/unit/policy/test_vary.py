"""policy/vary.py: variant names."""

from __future__ import annotations

import pytest

from proxy.policy.vary import variant


def test_only_http_whitespace_is_folded() -> None:
    assert variant(["accept-language"], [("Accept-Language", " fr ,  de\tch ")]) == (
        "accept-language=fr,de ch")
    # U+00A0 is part of the value the origin sees: never folded into another variant's name.
    assert variant(["accept-language"], [("Accept-Language", "fr\xa0")]) != (
        variant(["accept-language"], [("Accept-Language", "fr")]))


def test_absent_and_empty_are_distinct() -> None:
    assert variant(["foo"], []) == "foo!"
    assert variant(["foo"], [("Foo", "")]) == "foo="


def test_names_of_a_variant() -> None:
    from proxy.policy.vary import names_of

    assert names_of("") == ()
    name = variant(["accept", "foo"], [("Accept", "image/webp")])
    assert names_of(name) == ("accept", "foo")


@pytest.mark.parametrize(("first", "second", "same"), [
    # Case: language ranges and content codings are case-insensitive.
    ("en-US, de", "EN-us, DE", True),
    ("gzip, br", "GZip, BR", True),
    # Weights written differently but equal; q=1 is the default.
    ("en;q=1.0, de;q=0.50", "en, de;q=0.5", True),
    ("en;Q=0.8", "en;q=0.800", True),
    # Ordered by weight: the same preferences in another order.
    ("de;q=0.5, en", "en, de;q=0.5", True),
    ("da, en-gb;q=0.8, en;q=0.7", "en;q=0.7, da, en-gb;q=0.8", True),
    # Equal weights keep the client's order: many origins choose the first (RFC 4647 lookup,
    # Django, Rails), so these may be answered differently and stay two variants.
    ("en, de", "de, en", False),
    ("en;q=0.5, de;q=0.5", "de;q=0.5, en;q=0.5", False),
    # Different weights or a refusal (q=0) are different requests.
    ("en, de;q=0.5", "en, de;q=0.6", False),
    ("en, de;q=0", "en, de", False),
    # Not a plain weighted token list: only whitespace is normalised, nothing merged.
    ("en;q=abc", "en", False),
    ("en;q=2", "en", False),
    ("en;q=0.5;x=1", "en;q=0.5", False),
])
@pytest.mark.parametrize("name", ["accept-language", "accept-encoding"])
def test_weighted_fields_are_normalised_by_case_weight_and_weight_order(
        name: str, first: str, second: str, same: bool) -> None:
    assert (variant([name], [(name, first)]) == variant([name], [(name, second)])) is same


def test_other_fields_keep_their_case_and_order() -> None:
    assert variant(["accept"], [("Accept", "image/WEBP")]) != variant(
        ["accept"], [("Accept", "image/webp")])
    assert variant(["foo"], [("Foo", "a, b")]) != variant(["foo"], [("Foo", "b, a")])


def test_a_weighted_variant_name_is_readable() -> None:
    assert variant(["accept-language"], [("Accept-Language", "de;q=0.50, EN-us")]) == (
        "accept-language=en-us,de;q=0.5")
