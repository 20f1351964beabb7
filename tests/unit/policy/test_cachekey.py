import pytest

from proxy.policy.cachekey import Rejected, Target, normalise_target


@pytest.mark.parametrize(
    ("raw_path", "raw_query", "key"),
    [
        ("/media/a.png", "", "/media/a.png"),
        ("/media/%7Euser/a.png", "", "/media/~user/a.png"),  # unreserved decoded
        ("/media/a%2a.png", "", "/media/a%2A.png"),  # hex upper-cased
        ("/media/a b.png", "", "/media/a%20b.png"),  # raw space encoded
        ("/media/é.png", "", "/media/%C3%A9.png"),
        ("/a", "x=1&y=2", "/a?x=1&y=2"),
        ("/a", "y=2&x=1", "/a?y=2&x=1"),  # order kept: different keys
        ("/a", "", "/a"),
        ("/a//b", "", "/a/b"),  # folded, as nginx merge_slashes
    ],
)
def test_normalisation(raw_path: str, raw_query: str, key: str) -> None:
    target = normalise_target(raw_path, raw_query)
    assert isinstance(target, Target)
    assert target.key == key


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        ("/a/../b", "path_traversal"),
        ("/a/./b", "path_traversal"),
        ("/a/%2e%2e/b", "path_traversal"),
        ("/a/%2E./b", "path_traversal"),
        ("/a%2F..%2Fb", "bad_path"),
        ("/a%5c..%5cb", "bad_path"),
        ("/a\\..\\b", "bad_path"),
        ("/a%00b", "bad_path"),
        ("/a%zzb", "bad_path"),
        ("/a%2", "bad_path"),
        ("a/b", "bad_path"),
        ("/a\x01", "bad_path"),
    ],
)
def test_rejections(raw_path: str, reason: str) -> None:
    result = normalise_target(raw_path, "")
    assert result == Rejected(400, reason)


def test_double_encoding_is_not_decoded_twice() -> None:
    target = normalise_target("/a/%252e%252e/b", "")
    assert isinstance(target, Target)
    assert target.path == "/a/%252e%252e/b"


def test_too_long() -> None:
    assert normalise_target("/" + "a" * 9000, "", max_length=8192) == Rejected(414, "uri_too_long")


def test_token_parameters_are_stripped_case_insensitively() -> None:
    target = normalise_target(
        "/v/seg1.ts", "exp=1&SIG=abc&q=1&kid=k", strip_params=frozenset({"exp", "sig", "kid"})
    )
    assert isinstance(target, Target)
    assert target.key == "/v/seg1.ts?q=1"


def test_bad_query_escape_rejected() -> None:
    assert normalise_target("/a", "x=%zz") == Rejected(400, "bad_query")


def test_vary_variants() -> None:
    from proxy.policy.vary import base_key, variant

    a = variant(("accept", "accept-encoding"), [("Accept", "image/avif, image/webp"),
                                                ("Accept-Encoding", "gzip")])
    b = variant(("accept-encoding", "accept"), [("accept", "image/avif,image/webp"),
                                                ("ACCEPT-ENCODING", " gzip ")])
    assert a == b  # order of names, case, whitespace normalised
    assert variant(("accept",), []) != variant(("accept",), [("Accept", "")])  # absent != empty
    assert base_key("/a.jpg\x1faccept=x") == "/a.jpg"
    target = Target("/a.jpg", "q=1", "accept=x")
    assert target.url_key == "/a.jpg?q=1" and target.key.startswith("/a.jpg?q=1\x1f")


def test_repeated_slashes_are_folded() -> None:
    from proxy.policy.cachekey import Target, normalise_target

    for raw in ("//vault/doc.pdf", "///vault//doc.pdf", "/vault//doc.pdf", "/vault/doc.pdf"):
        assert normalise_target(raw) == Target("/vault/doc.pdf", "")
    assert normalise_target("//a/", "x=1") == Target("/a/", "x=1")


def test_undecodable_text_is_rejected() -> None:
    from proxy.policy.cachekey import Rejected, normalise_target

    assert isinstance(normalise_target("/a\udcff"), Rejected)
    assert isinstance(normalise_target("/a", "q=\ud800"), Rejected)


def test_dot_segments_with_path_parameters_are_traversals() -> None:
    from proxy.policy.cachekey import Rejected, normalise_target

    for raw in ("/x/..;/vault/a", "/x/%2e%2e;/vault/a", "/x/..;jsessionid=1/a", "/a/.;x/b"):
        assert normalise_target(raw) == Rejected(400, "path_traversal"), raw
    assert not isinstance(normalise_target("/a/..b;c/d"), Rejected)
