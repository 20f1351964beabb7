from proxy.policy.respond import plan

STORED = (
    ("Content-Type", "video/mp4"),
    ("Content-Length", "100"),
    ("ETag", '"v1"'),
    ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
    ("Cache-Control", "max-age=60"),
    ("Age", "999"),
    ("X-Media-Access", "public"),
)


def names(headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [k.lower() for k, _ in headers]


def test_full_hit_recomputes_framing_and_age() -> None:
    p = plan("GET", [], 200, STORED, 100, 12.7)
    assert (p.status, p.offset, p.length, p.send_body, p.content_length) == (200, 0, 100, True, 100)
    assert ("Age", "12") in p.headers
    assert "content-length" not in names(p.headers)
    assert ("Age", "999") not in p.headers
    assert ("Accept-Ranges", "bytes") in p.headers
    assert ("X-Media-Access", "public") in p.headers  # unknown fields pass through


def test_head_sends_length_but_no_body() -> None:
    p = plan("HEAD", [], 200, STORED, 100, 0)
    assert (p.status, p.send_body, p.content_length) == (200, False, 100)


def test_304_keeps_validators_and_drops_body_fields() -> None:
    p = plan("GET", [("If-None-Match", '"v1"')], 200, STORED, 100, 3)
    assert p.status == 304 and not p.send_body
    assert ("ETag", '"v1"') in p.headers
    assert "content-type" not in names(p.headers)
    assert ("Age", "3") in p.headers


def test_412() -> None:
    p = plan("GET", [("If-Match", '"nope"')], 200, STORED, 100, 0)
    assert p.status == 412 and p.content_length == 0


def test_206_and_416() -> None:
    p = plan("GET", [("Range", "bytes=10-19")], 200, STORED, 100, 0)
    assert (p.status, p.offset, p.length, p.content_length) == (206, 10, 10, 10)
    assert ("Content-Range", "bytes 10-19/100") in p.headers
    p = plan("GET", [("Range", "bytes=100-")], 200, STORED, 100, 0)
    assert p.status == 416 and ("Content-Range", "bytes */100") in p.headers


def test_unknown_size_means_no_range_and_chunked() -> None:
    p = plan("GET", [("Range", "bytes=0-1")], 200, STORED, None)
    assert (p.status, p.length, p.content_length) == (200, None, None)


def test_upstream_age_passes_on_a_miss_and_is_replaced_on_a_hit() -> None:
    assert ("Age", "999") in plan("GET", [], 200, STORED, 100).headers  # age not computed
    hit = plan("GET", [], 200, STORED, 100, 5)
    assert ("Age", "5") in hit.headers and ("Age", "999") not in hit.headers


def test_stored_content_range_kept_on_full_answers_only() -> None:
    stored = (*STORED, ("Content-Range", "bytes 0-99/100"))
    assert ("Content-Range", "bytes 0-99/100") in plan("GET", [], 200, stored, 100, 0).headers
    partial = plan("GET", [("Range", "bytes=0-9")], 200, stored, 100, 0)
    assert [v for k, v in partial.headers if k == "Content-Range"] == ["bytes 0-9/100"]


def test_non_200_stored_status_served_as_is() -> None:
    p = plan("GET", [("If-None-Match", '"v1"'), ("Range", "bytes=0-1")], 404, STORED, 100, 0)
    assert p.status == 404 and p.length == 100


def test_content_digest_only_where_the_content_is_the_stored_body() -> None:
    digests = (*STORED, ("Content-Digest", "sha-256=:AAAA:"), ("Repr-Digest", "sha-256=:AAAA:"))
    full = plan("GET", [], 200, digests, 100, 0)
    assert {"content-digest", "repr-digest"} <= set(names(full.headers))
    partial = plan("GET", [("Range", "bytes=0-9")], 200, digests, 100, 0)
    assert partial.status == 206
    assert "content-digest" not in names(partial.headers)  # over other content (RFC 9530 §2)
    assert "repr-digest" in names(partial.headers)  # the representation is the same
    not_modified = plan("GET", [("If-None-Match", '"v1"')], 200, digests, 100, 0)
    assert not_modified.status == 304 and "content-digest" not in names(not_modified.headers)
