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
