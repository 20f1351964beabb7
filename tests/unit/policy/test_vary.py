"""policy/vary.py: variant names."""

from __future__ import annotations

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
