"""Sample images for conversion presets, generated with libvips when pyvips is installed.

Rule: the same bytes on every run with a given libvips (fixed pixels, no clock, no random
seed of libvips'); each sample exercises one conversion case: a JPEG photo whose EXIF says
"rotate 90°" (stored landscape, shown portrait), a PNG with alpha, a WebP, an animated GIF.
Without pyvips (the [images] extra) there are none, and the rest of the seed is unchanged.
"""

from __future__ import annotations

import importlib.util
from typing import Any

CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                 ".gif": "image/gif"}


def available() -> bool:
    return importlib.util.find_spec("pyvips") is not None


def images() -> dict[str, bytes]:
    """path -> bytes; {} without pyvips."""
    if not available():
        return {}
    import pyvips

    from origin.seed import photo_rows  # (seed imports this module)

    def photo(width: int, height: int) -> Any:
        data = b"".join(photo_rows(width, height))
        return pyvips.Image.new_from_memory(data, width, height, 3, "uchar").copy(
            interpretation="srgb")

    rotated = photo(1200, 800).copy()
    rotated.set_type(pyvips.GValue.gint_type, "orientation", 6)  # EXIF: show turned 90° right
    rotated.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "mediaproxy seed (x, ASCII)")
    x = pyvips.Image.xyz(400, 400)
    distance = ((x[0] - 200) ** 2 + (x[1] - 200) ** 2) ** 0.5
    disc = (distance < 180).ifthenelse(255, 0)
    logo = (x[0] * 255 / 400).bandjoin([x[1] * 255 / 400, x[0] * 0 + 200, disc]).cast(
        "uchar").copy(interpretation="srgb")
    stripes = (x[0] * 255 / 400).bandjoin([x[1] * 255 / 400, 255 - x[0] * 255 / 400]).cast(
        "uchar").copy(interpretation="srgb").crop(0, 0, 160, 120)
    frames = [stripes.embed(i * 16 - 160, 0, 160, 120, extend="repeat") for i in range(10)]
    animation = pyvips.Image.arrayjoin(frames, across=1).copy()
    animation.set_type(pyvips.GValue.gint_type, "page-height", 120)
    animation.set_type(pyvips.GValue.array_int_type, "delay", [80] * 10)
    return {
        "/media/images/photo-rotated.jpg": bytes(rotated.write_to_buffer(".jpg", Q=85)),
        "/media/images/logo-alpha.png": bytes(logo.write_to_buffer(".png")),
        "/media/images/landscape.webp": bytes(photo(800, 600).write_to_buffer(".webp", Q=80)),
        "/media/images/animated.gif": bytes(animation.write_to_buffer(".gif", effort=1)),
    }


def content_type(path: str) -> str:
    return CONTENT_TYPES[path[path.rindex("."):]]
