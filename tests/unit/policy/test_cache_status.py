"""policy/cache_status.py: one Cache-Status member (RFC 9211) per outcome."""

from __future__ import annotations

import pytest

from proxy.policy.cache_status import CacheOutcome, Forward, forward_of, fresh_hit, member
from proxy.policy.outcome import CacheStatus as S
from proxy.policy.sfv import Item, Token, parse_list


@pytest.mark.parametrize(("outcome", "expected"), [
    (CacheOutcome(S.HIT, ttl=42.7), "mediaproxy; hit; ttl=42"),
    (CacheOutcome(S.HIT, collapsed=True, ttl=60),
     "mediaproxy; fwd=uri-miss; collapsed; ttl=60"),
    (CacheOutcome(S.HIT, collapsed=True, vary_miss=True, stored=True, ttl=60),
     "mediaproxy; fwd=vary-miss; stored; collapsed; ttl=60"),
    (CacheOutcome(S.UPDATING, ttl=-0.2),
     "mediaproxy; hit; ttl=-1; detail=stale-while-revalidate"),
    (CacheOutcome(S.MISS, stored=True, ttl=60, fwd_status=200),
     "mediaproxy; fwd=uri-miss; fwd-status=200; stored; ttl=60"),
    (CacheOutcome(S.MISS, vary_miss=True, stored=True, ttl=60),
     "mediaproxy; fwd=vary-miss; stored; ttl=60"),
    (CacheOutcome(S.EXPIRED, stored=True, ttl=60), "mediaproxy; fwd=stale; stored; ttl=60"),
    (CacheOutcome(S.EXPIRED, forward=Forward.REQUEST, stored=True, ttl=60),
     "mediaproxy; fwd=request; stored; ttl=60"),
    (CacheOutcome(S.REVALIDATED, ttl=60), "mediaproxy; fwd=stale; fwd-status=304; ttl=60"),
    (CacheOutcome(S.REVALIDATED, forward=Forward.REQUEST, ttl=60),
     "mediaproxy; fwd=request; fwd-status=304; ttl=60"),
    (CacheOutcome(S.STALE, fwd_status=503, ttl=-30),
     "mediaproxy; fwd=stale; fwd-status=503; ttl=-30; detail=origin-error"),
    (CacheOutcome(S.STALE, ttl=-30), "mediaproxy; fwd=stale; ttl=-30; detail=origin-error"),
    (CacheOutcome(S.PASS, forward=Forward.METHOD, fwd_status=201),
     "mediaproxy; fwd=method; fwd-status=201"),
    (CacheOutcome(S.PASS, forward=Forward.BYPASS, detail="hit-for-pass"),
     "mediaproxy; fwd=bypass; detail=hit-for-pass"),
    (CacheOutcome(S.PASS), "mediaproxy; fwd=uri-miss"),  # uncacheable: not stored
    (CacheOutcome(S.MISS, detail="store unavailable"),
     'mediaproxy; fwd=uri-miss; detail="store unavailable"'),
    (CacheOutcome(S.ERROR), None),  # made up by the proxy: no member (RFC 9211 §2)
    (CacheOutcome(S.DENIED), None),
])
def test_members(outcome: CacheOutcome, expected: str | None) -> None:
    assert member("mediaproxy", outcome) == expected
    if expected is not None:
        parsed = parse_list([expected])  # every member is a valid sf-list member
        assert parsed is not None and len(parsed) == 1


def test_every_outcome_has_a_mapping() -> None:
    for status in S:
        outcome = CacheOutcome(status)
        forward_of(outcome)  # total over the closed set: raises for a forgotten value
        made_up = status in (S.ERROR, S.DENIED)
        assert (member("c", outcome) is None) is made_up
    assert {forward_of(CacheOutcome(s)) for s in S} >= {Forward.URI_MISS, Forward.STALE, None}


def test_hit_and_fwd_are_exclusive_and_stored_only_with_fwd() -> None:
    assert member("c", CacheOutcome(S.HIT, stored=True, ttl=5)) == "c; hit; ttl=5"


def test_the_cache_name_is_a_token_or_a_string() -> None:
    assert member("edge cache", CacheOutcome(S.HIT)) == '"edge cache"; hit'


def test_ttl_is_an_sf_integer() -> None:
    assert member("c", CacheOutcome(S.HIT, ttl=1e30)) == "c; hit; ttl=999999999999999"
    assert member("c", CacheOutcome(S.HIT, ttl=float("inf"))) == "c; hit"


def test_our_member_goes_last() -> None:
    from proxy.deliver import build_headers

    fields = [("Cache-Status", "OriginCache; hit"), ("Content-Type", "a/b"),
              ("cache-status", "Edge; fwd=uri-miss")]
    out = list(build_headers(fields, S.HIT, "mediaproxy", cache_status="mediaproxy; hit").items())
    joined = ", ".join(v for k, v in out if k.lower() == "cache-status")
    parsed = parse_list([joined])
    assert parsed is not None
    assert [m.value for m in parsed if isinstance(m, Item)] == [
        Token("OriginCache"), Token("Edge"), Token("mediaproxy")]
    without = list(build_headers(fields, S.HIT, "mediaproxy").items())
    assert [v for k, v in without if k.lower() == "cache-status"] == [
        "OriginCache; hit", "Edge; fwd=uri-miss"]


def test_the_memory_tier_member_is_the_same_text() -> None:
    for name in ("mediaproxy", "edge 7"):
        for ttl in (0.0, 0.4, -0.4, 599.9, -3600.0, 1e30, float("inf")):
            assert fresh_hit(name, ttl) == member(name, CacheOutcome(S.HIT, ttl=ttl))
