"""policy/groups.py: HTTP Cache Groups (RFC 9875) as purge tags."""

from __future__ import annotations

import pytest

from proxy.policy import groups
from proxy.policy.bans import Ban, BanIndex, BanKind, parse_tags, response_tags


@pytest.mark.parametrize(("lines", "expected"), [
    (['"scripts", "styles"'], ("scripts", "styles")),
    (['"a"', '"b", "a"'], ("a", "b")),  # lines join; duplicates once
    (['"with space", "x";p=1'], ("with space", "x")),  # parameters ignored (§2)
    (['"ok", token'], ()),  # not a List of Strings: ignored whole
    (['"unterminated'], ()),
    ([], ()),
    ([""], ()),
    ([f'"{"g" * 128}", "{"h" * 129}"'], ("g" * 128,)),  # an overlong one is skipped, not cut
])
def test_parse_groups(lines: list[str], expected: tuple[str, ...]) -> None:
    assert groups.parse_groups(lines) == expected


def test_at_least_128_groups_of_128_characters() -> None:
    names = [f"{i:03d}" + "x" * 125 for i in range(200)]
    field = ", ".join(f'"{n}"' for n in names)
    found = groups.parse_groups([field])
    assert len(found) == groups.MAX_GROUPS >= 128
    assert found == tuple(names[:groups.MAX_GROUPS])
    assert all(len(g) == 128 for g in found)


@pytest.mark.parametrize(("method", "status", "expected"), [
    ("POST", 200, ("news", "home")),
    ("PUT", 204, ("news", "home")),
    ("DELETE", 303, ("news", "home")),
    ("PATCH", 200, ("news", "home")),
    ("PROPPATCH", 207, ("news", "home")),  # any method not known safe is unsafe
    ("post", 200, ("news", "home")),
    # §3: MUST be ignored on responses to safe methods.
    ("GET", 200, ()), ("HEAD", 200, ()), ("OPTIONS", 200, ()), ("TRACE", 200, ()),
    # Like the URL invalidation of RFC 9111 §4.4: only a non-error answer invalidates.
    ("POST", 404, ()), ("POST", 500, ()),
])
def test_invalidation_only_on_unsafe_non_error_responses(
        method: str, status: int, expected: tuple[str, ...]) -> None:
    headers = [("Cache-Group-Invalidation", '"news", "home"')]
    assert groups.invalidated_groups(method, status, headers) == expected
    assert groups.invalidation_tags(method, status, headers) == tuple(
        groups.tag(g) for g in expected)


def test_group_tags_never_collide_with_surrogate_keys() -> None:
    # Whatever an origin puts in Surrogate-Key, no tag of it contains a space; every group
    # tag does, so "group news" the group and "group"/"news" the surrogate keys stay apart.
    assert parse_tags(["group news", "group\tnews"]) == ("group", "news")
    assert groups.tag("news") == "group news"
    assert " " in groups.tag("") and all(" " not in t for t in parse_tags(["a b c"]))


def test_response_tags_carry_groups_beside_surrogate_keys() -> None:
    headers = [("Surrogate-Key", "news a"), ("Cache-Groups", '"news", "front page"')]
    assert response_tags(headers) == ("news", "a", "group news", "group front page")
    assert response_tags([("Cache-Groups", "bad, list")]) == ()


def test_a_group_ban_hides_only_its_group() -> None:
    ban = Ban(1, BanKind.TAG, groups.tag("news"), created=100.0, soft=False)
    index = BanIndex.build([ban])
    in_group = response_tags([("Cache-Groups", '"news"')])
    keyed = response_tags([("Surrogate-Key", "news")])
    assert index.match("/a", in_group, 50.0) == ban
    assert index.match("/b", keyed, 50.0) is None  # a Surrogate-Key "news" is another thing
    assert index.match("/a", in_group, 150.0) is None  # stored after the ban
