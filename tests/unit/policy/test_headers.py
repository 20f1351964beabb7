from proxy.policy import headers as h


def test_cache_control_parsing_is_case_insensitive_and_keeps_unknown() -> None:
    cc = h.parse_cache_control(['Max-Age=60, no-cache="set-cookie", foo', "S-MAXAGE=5"])
    assert cc.seconds("max-age") == 60
    assert cc.seconds("s-maxage") == 5
    assert cc.arg("no-cache") == "set-cookie"
    assert cc.has("foo")
    assert not cc.no_store


def test_quoted_commas_do_not_split() -> None:
    cc = h.parse_cache_control(['private="a, b", max-age=3'])
    assert cc.arg("private") == "a, b"
    assert cc.seconds("max-age") == 3


def test_malformed_delta_seconds_reads_as_zero() -> None:
    cc = h.parse_cache_control(["max-age=abc"])
    assert cc.seconds("max-age") == 0
    assert h.parse_cache_control(["max-age=-1"]).seconds("max-age") == 0


def test_huge_delta_is_capped() -> None:
    assert h.parse_delta_seconds("99999999999999999999") == h.MAX_DELTA_SECONDS


def test_http_date_three_formats() -> None:
    expected = 784111777.0
    assert h.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert h.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert h.parse_http_date("Sun Nov  6 08:49:37 1994") == expected
    assert h.format_http_date(expected) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_bad_dates_are_none() -> None:
    for bad in ["", "yesterday", "0", "Sun, 99 Nov 1994 08:49:37 GMT", "x" * 100, None]:
        assert h.parse_http_date(bad) is None


def test_hop_by_hop_and_connection_named_fields_are_dropped() -> None:
    fields = [
        ("Connection", "close, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("X-Secret", "1"),
        ("Proxy-Authorization", "Basic x"),
        ("Content-Type", "image/png"),
        ("X-Custom", "kept"),
    ]
    assert h.end_to_end(fields) == [("Content-Type", "image/png"), ("X-Custom", "kept")]


def test_etag_lists() -> None:
    assert h.parse_etag_list("*") == h.ANY
    tags = h.parse_etag_list('"a", W/"b", bogus')
    assert tags == [h.ETag('"a"', False), h.ETag('"b"', True)]
    assert h.parse_etag('W/"x"') == h.ETag('"x"', True)
    assert h.parse_etag("noquotes") is None


def test_strong_and_weak_comparison() -> None:
    a, weak_a = h.ETag('"1"', False), h.ETag('"1"', True)
    assert h.strong_match(a, a)
    assert not h.strong_match(a, weak_a)
    assert h.weak_match(a, weak_a)


def test_only_the_three_http_date_forms_exactly() -> None:
    for bad in ["Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 2050 02:01:18 +1000",
                "Thu, 18 Aug 50 02:01:18 GMT", "Thu 18 Aug 2050 02:01:18 GMT",
                "Thu, 18 Aug 2050  02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT",
                "Thu, 18 Aug 2050 02.01.18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT",
                "Xyz, 18 Aug 2050 02:01:18 GMT"]:
        assert h.parse_http_date(bad) is None, bad
    assert h.parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT") == 2544400878.0


def test_targeted_cache_control_overrides() -> None:
    fields = [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")]
    cc = h.response_cache_control(fields)
    assert cc.seconds("max-age") == 60 and not cc.no_store
    assert h.response_cache_control([("Cache-Control", "private")]).private


def test_age_lists_use_the_first_value() -> None:
    assert h.parse_age("7200, 0") == 7200
    assert h.parse_age("abc") is None



def test_invalid_cdn_cache_control_is_ignored_entirely() -> None:
    for bad in ['max-age="60"', "max-age=6.5", "max-age=60, no-store=5", "Max-Age=60",
                "max-age=60,,", "max-age=a b"]:
        fields = [("Cache-Control", "max-age=5"), ("CDN-Cache-Control", bad)]
        assert h.response_cache_control(fields).seconds("max-age") == 5, bad
    ok = [("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age=60;x=1, no-cache")]
    assert h.response_cache_control(ok).seconds("max-age") == 60


def test_wrong_case_names_in_dates_are_tolerated() -> None:
    assert h.parse_http_date("THU, 18 AUG 2050 02:01:18 GMT") == 2544400878.0
    assert h.parse_http_date("thu, 18 aug 2050 02:01:18 gmt") == 2544400878.0
