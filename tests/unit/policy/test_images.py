"""Conversion requests, format negotiation, keys and purge selectors (pure)."""

import json

import pytest

from proxy.imageconfig import Preset
from proxy.policy import imageformat, imagekey
from proxy.policy.images import (
    FREE_FORM,
    ImageRefusal,
    ImageRequest,
    params,
    parse_request,
    sign_free_form,
)
from proxy.policy.vary import base_key

PRESETS = (Preset("thumb", 320, 240, "cover", "auto", 75, (1.0, 2.0)),
           Preset("large", 1600, 0, "inside", "webp", 80, (1.0,)))
KEYS = {"k1": b"0123456789abcdef-secret"}


def parse(query: str, *, free: bool = False, path: str = "/photos/a.jpg"
          ) -> ImageRequest | ImageRefusal | None:
    return parse_request(query, path, presets=PRESETS, allow_free_form=free, keys=KEYS)


def test_preset_and_dpr() -> None:
    assert parse("preset=thumb") == ImageRequest("thumb", 320, 240, "cover", "auto", 75, 1.0)
    assert parse("v=3&preset=thumb&dpr=2") == ImageRequest("thumb", 640, 480, "cover", "auto",
                                                           75, 2.0)
    assert parse("preset=large&dpr=1") == ImageRequest("large", 1600, 0, "inside", "webp", 80)


@pytest.mark.parametrize("query", ["", "v=3", "w=100", "w=100&h=20&isig=x"])
def test_not_a_conversion(query: str) -> None:
    # Free-form off: w, h, ... stay ordinary query parameters of the original.
    assert parse(query) is None


def test_feature_off_leaves_every_parameter_alone() -> None:
    assert parse_request("preset=thumb", "/a.jpg", presets=(), allow_free_form=False,
                         keys=KEYS) is None


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("preset=nope", 400, "unknown_preset"),
        ("preset=thumb&preset=large", 400, "duplicate_parameter"),
        ("preset=thumb&dpr=3", 400, "dpr_not_offered"),
        ("preset=thumb&dpr=-2", 400, "dpr_not_offered"),
        ("preset=thumb&dpr=2x", 400, "dpr_not_offered"),
        ("preset=large&dpr=2", 400, "dpr_not_offered"),
        ("dpr=2", 400, "dpr_without_preset"),
    ],
)
def test_preset_refusals(query: str, status: int, reason: str) -> None:
    refusal = parse(query)
    assert isinstance(refusal, ImageRefusal)
    assert (refusal.status, refusal.reason) == (status, reason)
    assert json.loads(refusal.json_body())["error"] == reason


def test_free_form_signed_covers_every_parameter() -> None:
    query = sign_free_form("/photos/a.jpg", width=200, height=100, fit="cover", fmt="webp",
                           quality=60, key_id="k1", secret=KEYS["k1"])
    assert parse(query, free=True) == ImageRequest(FREE_FORM, 200, 100, "cover", "webp", 60)
    # Another path, or any parameter changed, breaks the signature.
    other = parse(query, free=True, path="/photos/b.jpg")
    assert isinstance(other, ImageRefusal) and other.reason == "image_bad_signature"
    for changed in (query.replace("w=200", "w=201"), query.replace("fmt=webp", "fmt=png"),
                    query.replace("q=60", "q=61")):
        refusal = parse(changed, free=True)
        assert isinstance(refusal, ImageRefusal)
        assert (refusal.status, refusal.reason) == (403, "image_bad_signature")


def test_free_form_defaults_are_signed_too() -> None:
    query = sign_free_form("/a.png", width=50, key_id="k1", secret=KEYS["k1"])
    assert query.startswith("w=50&fit=inside&fmt=auto&q=80&")
    assert parse(query, free=True, path="/a.png") == ImageRequest(FREE_FORM, 50, 0, "inside",
                                                                   "auto", 80)


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("w=100", 403, "image_signature_missing"),
        ("w=100&ikid=nope&isig=x", 403, "image_unknown_key"),
        ("w=100&ikid=k1&isig=short", 403, "image_bad_signature"),
        ("w=0", 400, "bad_parameter"),
        ("w=99999", 400, "bad_parameter"),
        ("w=1e3", 400, "bad_parameter"),
        ("w=10&fit=stretch", 400, "bad_parameter"),
        ("w=10&fmt=bmp", 400, "bad_parameter"),
        ("w=10&fit=cover", 400, "bad_parameter"),
        ("q=50", 400, "bad_parameter"),
        ("preset=thumb&w=10", 400, "mixed_parameters"),
    ],
)
def test_free_form_refusals(query: str, status: int, reason: str) -> None:
    refusal = parse(query, free=True)
    assert isinstance(refusal, ImageRefusal)
    assert (refusal.status, refusal.reason) == (status, reason)


def test_params_to_strip_from_the_source_key() -> None:
    assert params(False) == {"preset", "dpr"}
    assert params(True) >= {"preset", "dpr", "w", "h", "fit", "fmt", "q", "ikid", "isig"}


@pytest.mark.parametrize(
    ("accept", "tokens"),
    [
        ([], frozenset()),
        (["*/*"], frozenset()),
        (["image/*,*/*;q=0.8"], frozenset()),
        (["image/avif,image/webp,image/apng,image/*,*/*;q=0.8"], frozenset({"avif", "webp"})),
        (["image/webp;q=0.5"], frozenset({"webp"})),
        (["IMAGE/WEBP ; Q=1"], frozenset({"webp"})),
        (["image/avif;q=0, image/webp"], frozenset({"webp"})),
        (["image/avif;q=0.000"], frozenset()),
        (["image/avif;q=abc"], frozenset()),
        (["image/avif", "image/webp;q=0"], frozenset({"avif"})),
        (["image/avif;q=1", "image/avif;q=0"], frozenset()),
    ],
)
def test_accept_reduced_to_explicit_tokens(accept: list[str], tokens: frozenset[str]) -> None:
    assert imageformat.accept_tokens(accept) == tokens


@pytest.mark.parametrize(
    ("requested", "accepted", "source", "chosen"),
    [
        ("auto", {"avif", "webp"}, "jpeg", "avif"),
        ("auto", {"webp"}, "jpeg", "webp"),
        ("auto", set(), "png", "png"),
        ("auto", set(), "gif", "gif"),
        ("auto", set(), "tiff", "jpeg"),
        ("auto", set(), None, "jpeg"),
        ("png", {"avif"}, "jpeg", "png"),
    ],
)
def test_negotiate(requested: str, accepted: set[str], source: str | None, chosen: str) -> None:
    assert imageformat.negotiate(requested, frozenset(accepted), source) == chosen
    assert imageformat.varies(requested) is (requested == "auto")


def test_content_types() -> None:
    assert imageformat.format_of_type("image/JPEG; q=1") == "jpeg"
    assert imageformat.format_of_type("text/html") is None
    assert imageformat.content_type("avif") == "image/avif"


def test_conversion_key_is_readable_and_under_its_source() -> None:
    thumb2 = ImageRequest("thumb", 640, 480, "cover", "auto", 75, 2.0)
    source = "/photos/a.jpg?v=3"
    key = imagekey.conversion_key(source + "\x1faccept-encoding=gzip", thumb2, "webp")
    assert key == "/photos/a.jpg?v=3\x1f\x1dpreset=thumb;dpr=2;fmt=webp"
    # Exact and prefix purges of the source cover it; another source never does.
    assert base_key(key) == source and key.startswith("/photos/")
    assert not key.startswith("/photos/a.jpg?v=30")
    name = imagekey.conversion_of(key)
    assert name == imagekey.ConversionName(source, "thumb", "webp")
    assert imagekey.conversion_of("/photos/a.jpg\x1faccept=x") is None
    free = ImageRequest(FREE_FORM, 10, 0, "inside", "auto", 80)
    assert imagekey.conversion_key("/a.jpg", free, "png") == (
        "/a.jpg\x1f\x1dpreset=free_form;w=10;h=0;fit=inside;q=80;fmt=png")


def test_purge_selectors_need_both_when_both_given() -> None:
    thumb = ImageRequest("thumb", 320, 240, "cover", "auto", 75)
    webp = imagekey.conversion_key("/a.jpg", thumb, "webp")
    png = imagekey.conversion_key("/a.jpg", thumb, "png")
    assert imagekey.PurgeSelector("thumb", None).matches(webp)
    assert imagekey.PurgeSelector(None, "png").matches(png)
    assert not imagekey.PurgeSelector(None, "png").matches(webp)
    assert imagekey.PurgeSelector("thumb", "webp").matches(webp)
    assert not imagekey.PurgeSelector("thumb", "webp").matches(png)
    assert not imagekey.PurgeSelector("large", "webp").matches(webp)
    assert not imagekey.PurgeSelector("thumb", None).matches("/a.jpg")
    # The same selection by tags, for the store's tag bans.
    tags = imagekey.conversion_tags(thumb, "webp")
    assert imagekey.PurgeSelector("thumb", None).tag in tags
    assert imagekey.PurgeSelector(None, "webp").tag in tags
    assert imagekey.PurgeSelector("thumb", "webp").tag in tags
    assert imagekey.PurgeSelector("thumb", "png").tag not in tags
    assert imagekey.PurgeSelector(None, "png").tag not in tags


@pytest.mark.parametrize(
    ("body", "result"),
    [
        ({"prefix": "/a"}, None),
        ({"preset": "thumb"}, imagekey.PurgeSelector("thumb", None)),
        ({"format": "png", "preset": "thumb"}, imagekey.PurgeSelector("thumb", "png")),
        ({"format": "bmp"}, "format: expected one of avif, webp, jpeg, png, gif"),
        ({"preset": 3}, "preset: expected a preset name"),
        ({"preset": "a;fmt=png"}, "preset: expected a preset name"),
    ],
)
def test_parse_purge(body: dict[str, object], result: object) -> None:
    assert imagekey.parse_purge(body) == result
