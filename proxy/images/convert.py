"""One conversion, inside a pool process: sniff, check limits on the header, thumbnail with
shrink-on-load, encode.

Rule: nothing is decoded before the loader, the frame count and the pixel count have passed
the limits (read from the header alone); only allowed loaders can run at all (every other
libvips loader is blocked in this process); the output keeps the ICC profile and no other
metadata, with EXIF orientation applied to the pixels.
"""

from __future__ import annotations

import os

import pyvips

from proxy.images.spec import Converted, Limits, Spec

# libvips loader classes per input format (the loader is shared by AVIF and HEIC).
LOADER_CLASSES = {"jpeg": "VipsForeignLoadJpeg", "png": "VipsForeignLoadPng",
                  "webp": "VipsForeignLoadWebp", "gif": "VipsForeignLoadNsgif",
                  "avif": "VipsForeignLoadHeif", "heic": "VipsForeignLoadHeif",
                  "tiff": "VipsForeignLoadTiff"}
_LOADER_FORMATS = {"jpegload": "jpeg", "pngload": "png", "webpload": "webp", "gifload": "gif",
                   "tiffload": "tiff", "heifload": "heif"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                 "avif": "image/avif", "gif": "image/gif"}
ANIMATED_OUTPUTS = ("webp", "gif")
AVIF_EFFORT = 2  # 0-9: libvips' default 4 is ~3x slower for a few % of bytes
GIF_EFFORT = 1  # 1-10: libvips' default 7 quantises ~10x slower
UNBOUNDED = 10_000_000  # "no constraint" on one side of the thumbnail box


class Refusal(Exception):  # sent back to the pool as a value
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # 415 | 422
        self.reason = reason
        self.message = message


def setup(allowed_formats: frozenset[str]) -> None:
    """Process-wide: block untrusted and unlisted loaders, no operation cache across
    untrusted inputs."""
    pyvips.cache_set_max(0)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for fmt in allowed_formats:
        pyvips.operation_block_set(LOADER_CLASSES[fmt], False)


def read_source(source: bytes | str, limits: Limits) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        if os.path.getsize(source) > limits.max_source_bytes:
            raise _too_large(limits)
        with open(source, "rb") as fh:
            data = fh.read(limits.max_source_bytes + 1)
    if len(data) > limits.max_source_bytes:
        raise _too_large(limits)
    return data


def _too_large(limits: Limits) -> Refusal:
    return Refusal(422, "source_too_large", f"the original exceeds {limits.max_source_bytes} "
                                            "bytes")


def convert(source: bytes | str, spec: Spec, limits: Limits, out_path: str | None = None
            ) -> Converted:
    data = read_source(source, limits)
    try:
        header = pyvips.Image.new_from_buffer(data, "")  # the header only: nothing decoded
    except pyvips.Error:
        raise Refusal(415, "not_an_allowed_image",
                      "not an image, or not of an allowed type") from None
    source_format = _input_format(header)
    if source_format not in limits.allowed_formats:
        raise Refusal(415, "not_an_allowed_image", f"{source_format} images are not allowed")
    pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
    if pages > limits.max_frames:
        raise Refusal(422, "too_many_frames", f"{pages} frames, the limit is {limits.max_frames}")
    pixels = header.width * header.height * pages  # height of one page: n=1 was loaded
    if pixels > limits.max_source_pixels:
        raise Refusal(422, "too_many_pixels",
                      f"{header.width}x{header.height}x{pages} pixels, the limit is "
                      f"{limits.max_source_pixels}")
    frames = pages if pages > 1 and spec.format in ANIMATED_OUTPUTS else 1
    image = _resize(data, header, spec, frames)
    body = _encode(image, spec)
    if len(body) > limits.max_output_bytes:
        raise Refusal(422, "output_too_large", f"the result exceeds {limits.max_output_bytes} "
                                               "bytes")
    page_height = image.get("page-height") if frames > 1 else image.height
    if out_path is not None:
        with open(out_path, "wb") as fh:
            fh.write(body)
    return Converted(None if out_path else body, out_path, CONTENT_TYPES[spec.format],
                     spec.format, image.width, page_height, frames, source_format, len(data),
                     len(body))


def _input_format(header: pyvips.Image) -> str:
    loader = str(header.get("vips-loader")).removesuffix("_buffer").removesuffix("_source")
    fmt = _LOADER_FORMATS.get(loader, loader)
    if fmt == "heif":
        compression = header.get("heif-compression") if header.get_typeof(
            "heif-compression") else ""
        fmt = "avif" if compression == "av1" else "heic"
    return fmt


def _resize(data: bytes, header: pyvips.Image, spec: Spec, frames: int) -> pyvips.Image:
    width, height = spec.width or UNBOUNDED, spec.height or UNBOUNDED
    options = "n=-1" if frames > 1 else ""
    if spec.fit == "cover" and frames == 1:
        return _flatten(pyvips.Image.thumbnail_buffer(
            data, width, height=height, size="down", crop="centre", option_string=options),
            spec)
    if spec.fit == "cover":
        # libvips crops an animation as one tall strip: scale to cover, then crop each frame.
        scale = min(1.0, max(width / header.width, height / header.height))
        image = pyvips.Image.thumbnail_buffer(data, max(1, round(header.width * scale)),
                                              height=UNBOUNDED, size="down",
                                              option_string=options)
        return _per_frame(image, frames, min(width, image.width),
                          min(height, image.get("page-height")), pad=False, spec=spec)
    image = _flatten(pyvips.Image.thumbnail_buffer(
        data, width, height=height, size="down", option_string=options), spec)
    if spec.fit == "contain":
        return _per_frame(image, frames, width, height, pad=True, spec=spec)
    return image


def _flatten(image: pyvips.Image, spec: Spec) -> pyvips.Image:
    if spec.format == "jpeg" and image.hasalpha():
        return image.flatten(background=[255] * (image.bands - 1))  # JPEG has no alpha
    return image


def _per_frame(image: pyvips.Image, frames: int, width: int, height: int, *, pad: bool,
               spec: Spec) -> pyvips.Image:
    page_height = image.get("page-height") if frames > 1 else image.height
    if pad and spec.format != "jpeg" and not image.hasalpha():
        image = image.addalpha()
    background = [0] * image.bands if pad and spec.format != "jpeg" else [255] * image.bands
    out = []
    for index in range(frames):
        frame = image.crop(0, index * page_height, image.width, page_height)
        if pad:
            frame = frame.gravity("centre", width, height, extend="background",
                                  background=background)
        else:
            frame = frame.crop((frame.width - width) // 2, (frame.height - height) // 2, width,
                               height)
        out.append(frame)
    joined = out[0] if frames == 1 else pyvips.Image.arrayjoin(out, across=1)
    if frames > 1:
        joined = joined.copy()
        joined.set_type(pyvips.GValue.gint_type, "page-height", out[0].height)
    return joined


def _encode(image: pyvips.Image, spec: Spec) -> bytes:
    # Metadata stripped except the colour profile: `keep` (libvips >= 8.15), else strip.
    keep = {"keep": "icc"} if pyvips.at_least_libvips(8, 15) else {"strip": True}
    if spec.format == "jpeg":
        return bytes(image.write_to_buffer(".jpg", Q=spec.quality, optimize_coding=True,
                                           **keep))
    if spec.format == "webp":
        return bytes(image.write_to_buffer(".webp", Q=spec.quality, **keep))
    if spec.format == "avif":
        return bytes(image.write_to_buffer(".avif", Q=spec.quality, effort=AVIF_EFFORT,
                                           **keep))
    if spec.format == "png":
        return bytes(image.write_to_buffer(".png", **keep))
    return bytes(image.write_to_buffer(".gif", effort=GIF_EFFORT, **keep))
