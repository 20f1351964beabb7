"""Real conversions with libvips: sizes, formats, orientation, metadata, limits; and the
process pool: refusals, a hung conversion timed out, a crashed one replaced.

Images are generated here with pyvips itself. Direct calls to `convert` run in this process
(fast); pool tests spawn real processes.
"""

import asyncio
import os
import signal
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pyvips

from proxy.errors import ConversionCrashed, ConversionTimeout, ImageRefused
from proxy.imageconfig import INPUT_FORMATS, ImagesConfig
from proxy.images import convert as conversion
from proxy.images.pool import ConversionPool
from proxy.images.spec import Limits, Spec
from tests.unit import images_hooks

LIMITS = Limits(1 << 22, 10_000_000, 1 << 22, 10, frozenset({"jpeg", "png", "webp", "gif",
                                                              "avif"}))
conversion.setup(frozenset(INPUT_FORMATS))  # every loader our checks read back is allowed


def rgb(width: int, height: int) -> pyvips.Image:
    x = pyvips.Image.xyz(width, height)
    image = (x[0] * 255 / width).bandjoin([x[1] * 255 / height, x[0] * 0 + 90]).cast("uchar")
    return image.copy(interpretation="srgb")


def photo(orientation: int = 1) -> bytes:
    """400x300 JPEG with an EXIF orientation, EXIF and XMP-free text fields, and a P3 profile."""
    image = rgb(400, 300).icc_transform("p3", input_profile="srgb", embedded=False).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "Someone (Someone, ASCII, 8)")
    return bytes(image.write_to_buffer(".jpg", Q=90))


def png_alpha() -> bytes:
    return bytes(rgb(200, 100).bandjoin(128).write_to_buffer(".png"))


def animated_gif(frames: int = 5) -> bytes:
    pages = [rgb(120, 80) * (0.5 + i / 10) for i in range(frames)]
    strip = pyvips.Image.arrayjoin([p.cast("uchar") for p in pages], across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 80)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    return bytes(strip.write_to_buffer(".gif"))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header claiming 10 gigapixels, with a few bytes of (zero) data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND",
                                                                                         b"")


def load(data: bytes) -> pyvips.Image:
    animatable = data.startswith((b"GIF8", b"RIFF"))  # GIF, WebP: read every frame
    return pyvips.Image.new_from_buffer(data, "", **({"n": -1} if animatable else {}))


def spec(width: int, height: int, fit: str = "inside", fmt: str = "jpeg") -> Spec:
    return Spec(width, height, fit, fmt, 80)


@pytest.mark.parametrize(
    ("fit", "box", "size"),
    [("cover", (160, 160), (160, 160)), ("inside", (100, 100), (100, 75)),
     ("inside", (0, 60), (80, 60)), ("contain", (100, 100), (100, 100)),
     ("inside", (4000, 4000), (400, 300))],  # never enlarged
)
def test_sizes(fit: str, box: tuple[int, int], size: tuple[int, int]) -> None:
    out = conversion.convert(photo(), spec(*box, fit=fit), LIMITS)
    assert out.body is not None
    image = load(out.body)
    assert (image.width, image.height) == (out.width, out.height) == size
    assert out.source_format == "jpeg" and out.output_bytes == len(out.body)


def test_contain_pads_with_transparency_when_the_format_has_it() -> None:
    out = conversion.convert(photo(), spec(100, 100, fit="contain", fmt="png"), LIMITS)
    assert out.body is not None
    image = load(out.body)
    assert (image.width, image.height, image.bands) == (100, 100, 4)
    assert image(50, 2)[3] == 0 and image(50, 50)[3] == 255  # band above, picture in the middle


@pytest.mark.parametrize(("fmt", "loader", "content_type"),
                         [("jpeg", "jpegload", "image/jpeg"), ("png", "pngload", "image/png"),
                          ("webp", "webpload", "image/webp"), ("avif", "heifload", "image/avif"),
                          ("gif", "gifload", "image/gif")])
def test_formats(fmt: str, loader: str, content_type: str) -> None:
    out = conversion.convert(png_alpha(), spec(50, 50, fmt=fmt), LIMITS)
    assert out.body is not None and out.content_type == content_type
    image = load(out.body)
    assert image.get("vips-loader").startswith(loader)
    assert (image.width, image.height) == (50, 25)


def test_exif_orientation_applied_metadata_stripped_icc_kept() -> None:
    source = load(photo(orientation=6))
    assert source.get("orientation") == 6 and source.get_typeof("icc-profile-data")
    out = conversion.convert(photo(orientation=6), spec(200, 200), LIMITS)
    assert out.body is not None
    image = load(out.body)
    assert (image.width, image.height) == (150, 200)  # turned upright: portrait
    fields = set(image.get_fields())
    assert not {f for f in fields if f.startswith(("exif", "xmp", "iptc"))}
    assert "orientation" not in fields or image.get("orientation") == 1
    assert bytes(image.get("icc-profile-data")) == bytes(source.get("icc-profile-data"))


def test_animation_kept_in_webp_cropped_per_frame() -> None:
    out = conversion.convert(animated_gif(), spec(40, 40, fit="cover", fmt="webp"), LIMITS)
    assert out.body is not None and out.frames == 5
    image = load(out.body)
    assert image.get("n-pages") == 5 and image.get("page-height") == 40
    assert (image.width, image.height) == (40, 200)
    first = conversion.convert(animated_gif(), spec(40, 40, fit="cover", fmt="png"), LIMITS)
    assert first.frames == 1 and (first.width, first.height) == (40, 40)


@pytest.mark.parametrize(
    ("source", "limits", "status", "reason"),
    [
        (png_bomb(), LIMITS, 422, "too_many_pixels"),
        (animated_gif(12), LIMITS, 422, "too_many_frames"),
        (b"<html>not an image</html>", LIMITS, 415, "not_an_allowed_image"),
        (bytes(rgb(20, 20).write_to_buffer(".tif")), LIMITS, 415, "not_an_allowed_image"),
        (photo(), Limits(1000, 10**7, 1 << 22, 10, LIMITS.allowed_formats), 422,
         "source_too_large"),
        (photo(), Limits(1 << 22, 10**7, 100, 10, LIMITS.allowed_formats), 422,
         "output_too_large"),
        (photo(), Limits(1 << 22, 100 * 100, 1 << 22, 10, LIMITS.allowed_formats), 422,
         "too_many_pixels"),
    ],
    ids=["bomb", "frames", "not_image", "tiff_not_allowed", "source_bytes", "output_bytes",
         "pixels"],
)
def test_refusals(source: bytes, limits: Limits, status: int, reason: str) -> None:
    with pytest.raises(conversion.Refusal) as refused:
        conversion.convert(source, spec(100, 100), limits)
    assert (refused.value.status, refused.value.reason) == (status, reason)


# -- the pool --------------------------------------------------------------------------------


@pytest.fixture
async def pool() -> AsyncIterator[ConversionPool]:
    config = ImagesConfig(pool_workers=2, timeout_seconds=60.0)  # real work never times out
    async with ConversionPool(config, initializer=images_hooks.install) as started:
        yield started


async def test_pool_converts_bytes_and_paths(pool: ConversionPool, tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(photo())
    out_path = tmp_path / "thumb.webp"
    results = await asyncio.gather(
        pool.convert(source.read_bytes(), spec(64, 64, fit="cover", fmt="avif")),
        pool.convert(source, spec(64, 64, fmt="webp"), out_path=out_path),
        *(pool.convert(png_alpha(), spec(10 + i, 10 + i, fmt="png")) for i in range(4)))
    assert results[0].body is not None and load(results[0].body).width == 64
    assert results[1].body is None and results[1].path == str(out_path)
    assert load(out_path.read_bytes()).width == 64
    assert [r.width for r in results[2:]] == [10, 11, 12, 13]
    assert pool.stats.queued == 0 and pool.stats.busy == 0 and pool.stats.converted == 6


async def test_pool_refusals_are_typed(pool: ConversionPool) -> None:
    with pytest.raises(ImageRefused) as refused:
        await pool.convert(b"GIF89a but not really", spec(10, 10))
    assert (refused.value.status, refused.value.reason) == (415, "not_an_allowed_image")
    # Loaders other than the allowed ones are blocked in the pool's processes.
    with pytest.raises(ImageRefused) as refused:
        await pool.convert(bytes(rgb(20, 20).write_to_buffer(".tif")), spec(10, 10))
    assert refused.value.status == 415
    with pytest.raises(ImageRefused) as refused:
        await pool.convert(png_bomb(), spec(10, 10))
    assert (refused.value.status, refused.value.reason) == (422, "too_many_pixels")


async def test_hung_conversion_times_out_and_pool_recovers(pool: ConversionPool) -> None:
    before = pool.pids()
    pool.timeout_seconds = 0.5  # for the one that hangs forever
    with pytest.raises(ConversionTimeout) as refused:
        await pool.convert(b"HANG", spec(10, 10))
    pool.timeout_seconds = 60.0
    assert (refused.value.status, refused.value.reason) == (422, "conversion_timeout")
    after = pool.pids()
    assert len(after) == 2 and len(set(before) & set(after)) == 1  # one replaced
    results = await asyncio.gather(*(pool.convert(png_alpha(), spec(20, 20)) for _ in range(3)))
    assert all(r.width == 20 for r in results)


async def test_crashed_conversion_is_replaced(pool: ConversionPool) -> None:
    with pytest.raises(ConversionCrashed) as refused:
        await pool.convert(b"CRASH", spec(10, 10))
    assert (refused.value.status, refused.value.reason) == (422, "conversion_crashed")
    assert (await pool.convert(png_alpha(), spec(20, 20))).width == 20
    assert pool.stats.crashes == 1 and len(pool.pids()) == 2


async def test_killed_process_mid_conversion(pool: ConversionPool, tmp_path: Path) -> None:
    config = ImagesConfig(pool_workers=1, timeout_seconds=60.0)
    marker = tmp_path / "started"
    async with ConversionPool(config, initializer=images_hooks.install) as single:
        task = asyncio.ensure_future(single.convert(b"HANG" + bytes(marker), spec(10, 10)))
        while not marker.exists():  # the job reached the process
            await asyncio.sleep(0.01)
        os.kill(single.pids()[0], signal.SIGKILL)
        with pytest.raises(ConversionCrashed):
            await task
        assert (await single.convert(png_alpha(), spec(20, 20))).width == 20


async def test_processes_that_died_idle_are_replaced_silently(pool: ConversionPool) -> None:
    for pid in pool.pids():
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0)  # nothing to wait for: the next job finds them dead
    results = await asyncio.gather(*(pool.convert(png_alpha(), spec(20, 20)) for _ in range(2)))
    assert [r.width for r in results] == [20, 20] and pool.stats.crashes == 0


async def test_metrics_by_preset_format_and_outcome() -> None:
    from prometheus_client import CollectorRegistry

    from proxy.imageconfig import Preset
    from proxy.metrics import Metrics

    registry = CollectorRegistry()
    config = ImagesConfig(presets=(Preset("thumb", 64, 64, "cover"),), pool_workers=1)
    async with ConversionPool(config, metrics=Metrics(registry)) as pool:
        def sample(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        # Every series exists from zero, for configured presets only.
        assert registry.get_sample_value("mediaproxy_image_conversions_total", {
            "preset": "thumb", "format": "avif", "outcome": "timeout"}) == 0.0
        assert registry.get_sample_value("mediaproxy_image_conversions_total", {
            "preset": "other", "format": "avif", "outcome": "ok"}) is None
        out = await pool.convert(photo(), spec(64, 64, fmt="webp"), preset="thumb")
        with pytest.raises(ImageRefused):
            await pool.convert(b"nope", spec(64, 64, fmt="webp"), preset="thumb")
        with pytest.raises(ImageRefused):
            await pool.convert(png_bomb(), spec(64, 64, fmt="png"))
    assert sample("mediaproxy_image_conversions_total", preset="thumb", format="webp",
                  outcome="ok") == 1
    assert sample("mediaproxy_image_conversions_total", preset="thumb", format="webp",
                  outcome="not_allowed") == 1
    assert sample("mediaproxy_image_conversions_total", preset="free_form", format="png",
                  outcome="over_limits") == 1
    assert sample("mediaproxy_image_conversion_output_bytes_total", preset="thumb",
                  format="webp") == out.output_bytes
    assert sample("mediaproxy_image_conversion_source_bytes_total",
                  preset="thumb") == out.source_bytes + 4
    assert sample("mediaproxy_image_conversion_duration_seconds_count", format="webp") == 1
    assert sample("mediaproxy_image_conversion_queue") == 0
    assert sample("mediaproxy_image_conversions_running") == 0
