"""srcset helper: preset URLs per DPR, access tokens that verify, signed free-form URLs."""

from urllib.parse import urlsplit

from proxy.imageconfig import Preset
from proxy.images.rate import RemakeBudget
from proxy.policy import tokens
from proxy.policy.images import FREE_FORM, ImageRequest, parse_request
from proxy.srcset import free_form_url, preset_url, srcset

THUMB = Preset("thumb", 320, 320, "cover", "auto", 75, (1.0, 2.0, 3.0))
SECRET = b"0123456789abcdef-secret"


def test_preset_urls_keep_the_query() -> None:
    assert preset_url("/a.jpg", "thumb") == "/a.jpg?preset=thumb"
    assert preset_url("/a.jpg?v=2", "thumb", 2.0) == "/a.jpg?v=2&preset=thumb&dpr=2"


def test_srcset_x_and_w() -> None:
    assert srcset("/a.jpg", THUMB) == ("/a.jpg?preset=thumb 1x, /a.jpg?preset=thumb&dpr=2 2x, "
                                       "/a.jpg?preset=thumb&dpr=3 3x")
    assert srcset("/a.jpg", THUMB, descriptor="w").endswith("&dpr=3 960w")


def test_signed_srcset_tokens_verify_and_presets_parse() -> None:
    now = 1_700_000_000.0
    value = srcset("https://cdn.example/p/a.jpg", THUMB, key_id="k", secret=SECRET, now=now)
    for entry in value.split(", "):
        url, _, size = entry.rpartition(" ")
        parts = urlsplit(url)
        verdict = tokens.verify(tokens.token_fields(parts.query), parts.path, None, now,
                                {"k": SECRET})
        assert isinstance(verdict, tokens.Allowed), entry
        request = parse_request(parts.query, parts.path, presets=(THUMB,),
                                allow_free_form=False, keys={})
        assert isinstance(request, ImageRequest)
        assert f"{request.dpr:g}x" == size


def test_free_form_url_verifies() -> None:
    url = free_form_url("https://cdn.example/p/a.jpg", width=200, fit="inside", fmt="webp",
                        key_id="k", secret=SECRET)
    parts = urlsplit(url)
    assert parts.netloc == "cdn.example"
    assert parse_request(parts.query, parts.path, presets=(), allow_free_form=True,
                         keys={"k": SECRET}) == ImageRequest(FREE_FORM, 200, 0, "inside",
                                                             "webp", 80)


def test_remake_budget_paces_remakes() -> None:
    now = [0.0]
    budget = RemakeBudget(2.0, clock=lambda: now[0])
    assert [budget.try_take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert [budget.try_take() for _ in range(2)] == [True, False]
    now[0] = 100.0
    assert sum(budget.try_take() for _ in range(10)) == 2  # never more than the burst


def test_free_form_url_from_a_path_or_an_absolute_url() -> None:
    from proxy.srcset import free_form_url

    for url, start in (("/media/a.jpg", "/media/a.jpg?"),
                       ("https://cdn.example/media/a.jpg", "https://cdn.example/media/a.jpg?")):
        signed = free_form_url(url, width=200, key_id="k1", secret="0123456789abcdef0123")
        assert signed.startswith(start) and signed.count("/media/a.jpg") == 1
