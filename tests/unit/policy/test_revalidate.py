"""policy/revalidate.py: conditional fields, and what a 304 may change in a stored response."""

from __future__ import annotations

from proxy.policy.revalidate import conditional_fields, merge_304, per_client_names

STORED = (("Content-Type", "image/jpeg"), ("Content-Length", "10"), ("ETag", '"a"'),
          ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Cache-Control", "max-age=60"))


def test_conditional_fields() -> None:
    assert conditional_fields(STORED) == [
        ("If-None-Match", '"a"'), ("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT")]
    assert conditional_fields([("Content-Type", "x")]) == []


def test_a_304_updates_fields_but_not_framing() -> None:
    merged = merge_304(STORED, [("Cache-Control", "max-age=600"), ("Content-Length", "0"),
                                ("X-New", "1")])
    assert ("Cache-Control", "max-age=600") in merged.stored
    assert ("Cache-Control", "max-age=60") not in merged.stored
    assert ("Content-Length", "10") in merged.stored and ("X-New", "1") in merged.stored
    assert merged.client_only == ()


def test_set_cookie_on_a_304_is_for_its_client_only() -> None:
    merged = merge_304(STORED, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                ("set-cookie2", "c=3"), ("ETag", '"a"')])
    assert not any(k.lower().startswith("set-cookie") for k, _ in merged.stored)
    assert merged.client_only == (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                  ("set-cookie2", "c=3"))


def test_fields_named_by_private_or_no_cache_stay_with_their_client() -> None:
    fresh = [("Cache-Control", 'max-age=60, private="X-User", no-cache="x-token, X-Cart"'),
             ("X-User", "alice"), ("X-Token", "t"), ("X-Cart", "3"), ("X-Shared", "s")]
    merged = merge_304((*STORED, ("X-User", "stale-bob")), fresh)
    names = {k.lower() for k, _ in merged.stored}
    assert {"x-user", "x-token", "x-cart"}.isdisjoint(names) and "x-shared" in names
    assert {k for k, _ in merged.client_only} == {"X-User", "X-Token", "X-Cart"}


def test_the_stored_responses_own_qualifiers_count_too() -> None:
    stored = (*STORED[:4], ("Cache-Control", 'no-cache="X-Secret"'), ("X-Secret", "old"))
    merged = merge_304(stored, [("X-Secret", "new")])
    assert merged.client_only == (("X-Secret", "new"),)
    assert all(k != "X-Secret" for k, _ in merged.stored)


def test_per_client_names() -> None:
    assert per_client_names([]) == frozenset({"set-cookie", "set-cookie2"})
    assert "x-b" in per_client_names([("Cache-Control", 'no-cache="X-B"')])


def test_a_full_response_keeps_its_qualified_fields_out_of_the_store() -> None:
    from proxy.policy.revalidate import for_storage

    response = [("Cache-Control", 'max-age=60, no-cache="X-User"'), ("X-User", "alice"),
                ("ETag", '"a"')]
    split = for_storage(response)
    assert ("X-User", "alice") not in split.stored and split.client_only == (("X-User", "alice"),)
    plain = [("Cache-Control", "max-age=60"), ("ETag", '"a"')]
    assert for_storage(plain).stored == tuple(plain) and for_storage(plain).client_only == ()
