"""policy/sfv.py: the Structured Field Values (RFC 9651) we parse and write."""

from __future__ import annotations

import pytest

from proxy.policy.sfv import (
    InnerList,
    Item,
    Token,
    parse_dictionary,
    parse_list,
    serialize_string,
    serialize_token_or_string,
    string_list,
)


@pytest.mark.parametrize(("lines", "expected"), [
    (['"a", "b c"'], [Item("a"), Item("b c")]),
    (['"a"', '"b"'], [Item("a"), Item("b")]),  # lines join as one list (§4.2)
    (["tok;q=0.5, 42, -1.25, ?0, :aGk=:"],
     [Item(Token("tok"), (("q", 0.5),)), Item(42), Item(-1.25), Item(False), Item(b"hi")]),
    (['("x" y);p, "z"'], [InnerList((Item("x"), Item(Token("y"))), (("p", True),)), Item("z")]),
    (['"esc\\"aped\\\\"'], [Item('esc"aped\\')]),
    ([":aGk:"], [Item(b"hi")]),  # missing padding tolerated (§4.2.7)
    ([""], []),
])
def test_lists_parse(lines: list[str], expected: list[object]) -> None:
    assert parse_list(lines) == expected


@pytest.mark.parametrize("text", [
    '"a",', '"a" "b"', '"unterminated', '"bad \\n escape"', '"\x7f"', "1234567890123456",
    ":not base64!:", "?2", "a;Q=1", '"a",,"b"', "(a b", "1.23456",
])
def test_invalid_lists_fail_whole(text: str) -> None:
    assert parse_list([text]) is None


def test_dictionaries() -> None:
    assert parse_dictionary(["sha-256=:aGk=:, md5=:AA==:"]) == {
        "sha-256": Item(b"hi"), "md5": Item(b"\x00")}
    assert parse_dictionary(["a=1, a=2"]) == {"a": Item(2)}  # the last one wins
    assert parse_dictionary(["flag;x=1"]) == {"flag": Item(True, (("x", 1),))}
    assert parse_dictionary(["A=1"]) is None  # keys are lower case
    assert parse_dictionary(["a=1,"]) is None


def test_string_lists() -> None:
    assert string_list(['"a";p=1, "b"']) == ["a", "b"]  # parameters ignored
    assert string_list(['"a", b']) is None  # a token is not a string
    assert string_list(['("a")']) is None


def test_serialising() -> None:
    assert serialize_string('a "b" \\ c\xe9') == '"a \\"b\\" \\\\ c?"'
    assert serialize_token_or_string("mediaproxy") == "mediaproxy"
    assert serialize_token_or_string("edge/1.2:x") == "edge/1.2:x"
    assert serialize_token_or_string("my cache") == '"my cache"'
    assert serialize_token_or_string("1cache") == '"1cache"'
