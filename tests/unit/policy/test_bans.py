from proxy.policy.bans import Ban, BanIndex, BanKind, parse_tags

T = 1000.0


def ban(i: int, kind: BanKind, value: str, soft: bool = False, created: float = T) -> Ban:
    return Ban(i, kind, value, created, soft)


def test_prefix_exact_tag_and_all() -> None:
    index = BanIndex.build([
        ban(1, BanKind.PREFIX, "/media/campaign/"),
        ban(2, BanKind.EXACT, "/a.png"),
        ban(3, BanKind.TAG, "product-7"),
    ])
    assert index.match("/media/campaign/x.mp4", (), T - 1) == index.by_length[16][
        "/media/campaign/"][0]
    assert index.match("/media/campaig", (), T - 1) is None
    assert index.match("/media/other/x", (), T - 1) is None
    assert index.match("/a.png", (), T - 1) is not None
    assert index.match("/a.png?x=1", (), T - 1) is None  # exact means exact
    assert index.match("/z", ("a", "product-7"), T - 1) is not None
    everything = BanIndex.build([ban(4, BanKind.PREFIX, "")])
    assert everything.match("/anything", (), T) is not None


def test_entries_fetched_after_the_ban_are_untouched() -> None:
    index = BanIndex.build([ban(1, BanKind.PREFIX, "/m/")])
    assert index.match("/m/x", (), T + 0.001) is None
    assert index.match("/m/x", (), T) is not None


def test_hard_wins_over_soft() -> None:
    index = BanIndex.build([ban(1, BanKind.PREFIX, "/m/", soft=True),
                            ban(2, BanKind.PREFIX, "/m/x", soft=False)])
    found = index.match("/m/x/y", (), T - 5)
    assert found is not None and not found.soft
    only_soft = index.match("/m/z", (), T - 5)
    assert only_soft is not None and only_soft.soft


def test_empty_index_is_free() -> None:
    assert BanIndex.build([]).match("/x", ("t",), 0) is None


def test_many_bans_on_one_lookup() -> None:
    index = BanIndex.build(ban(i, BanKind.PREFIX, f"/p{i}/") for i in range(1000))
    assert index.match("/p999/file", (), T - 1) is not None
    assert index.match("/q/file", (), T - 1) is None


def test_parse_tags() -> None:
    assert parse_tags(["a b  c", "b,d", "x" * 300]) == ("a", "b", "c", "d")
