from proxy.policy.access import Access, AccessRules

RULES = AccessRules.build(["/premium/", "/media/private/"], ["/premium/trailers/"])


def test_longest_prefix_wins() -> None:
    assert RULES.by_rule("/premium/film.mp4") is Access.PROTECTED
    assert RULES.by_rule("/premium/trailers/t.mp4") is Access.PUBLIC
    assert RULES.by_rule("/media/a.png") is None


def test_origin_header_when_no_rule() -> None:
    assert RULES.for_object("/m/a", [("X-Media-Access", "protected")]) is Access.PROTECTED
    assert RULES.for_object("/m/a", [("x-media-access", " Protected ")]) is Access.PROTECTED
    assert RULES.for_object("/m/a", [("X-Media-Access", "public")]) is Access.PUBLIC
    assert RULES.for_object("/m/a", []) is Access.PUBLIC


def test_rules_override_the_origin() -> None:
    assert RULES.for_object("/premium/trailers/t", [("X-Media-Access", "protected")]) is (
        Access.PUBLIC)
    assert RULES.for_object("/premium/x", [("X-Media-Access", "public")]) is Access.PROTECTED


def test_the_origin_header_fails_closed() -> None:
    def access(*values: str) -> Access:
        return RULES.for_object("/m/a", [("X-Media-Access", v) for v in values])

    assert access("public", "protected") is Access.PROTECTED
    assert access("protected", "public") is Access.PROTECTED
    assert access("public, protected") is Access.PROTECTED
    assert access("") is Access.PROTECTED
    assert access("members-only") is Access.PROTECTED
    assert access(" PUBLIC ", "public") is Access.PUBLIC


def test_protected_prefixes_cover_folded_spellings() -> None:
    for path in ("/premium;x/film.mp4", "/PREMIUM/film.mp4", "/Premium;jsessionid=1/f",
                 "/media/private;a/x", "/Media/Private/x"):
        assert RULES.by_rule(path) is Access.PROTECTED, path
    # The public exception is still the longest match on the folded spelling.
    assert RULES.by_rule("/premium/trailers/t.mp4") is Access.PUBLIC
    assert RULES.by_rule("/Premium/Trailers/t.mp4") is not Access.PROTECTED
    assert RULES.by_rule("/premiums/a") is None and RULES.by_rule("/media/a;b") is None
