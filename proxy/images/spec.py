"""The values that cross into a conversion process, and what comes back.

Rule: plain frozen values (picklable), no pyvips and no asyncio, so both sides import them.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.imageconfig import ImagesConfig


@dataclass(frozen=True, slots=True)
class Spec:
    width: int  # output box in pixels, DPR applied; 0 = not constrained
    height: int
    fit: str  # cover | contain | inside
    format: str  # the negotiated output format: avif | webp | jpeg | png | gif
    quality: int  # 1-100


@dataclass(frozen=True, slots=True)
class Limits:
    max_source_bytes: int
    max_source_pixels: int  # width x height x frames, checked on the header
    max_output_bytes: int
    max_frames: int
    allowed_formats: frozenset[str]  # jpeg, png, webp, gif, avif, heic, tiff

    @classmethod
    def of(cls, config: ImagesConfig) -> Limits:
        return cls(config.max_source_bytes, config.max_source_pixels, config.max_output_bytes,
                   config.max_frames, config.input_formats())


@dataclass(frozen=True, slots=True)
class Converted:
    body: bytes | None  # the encoded image, or None when it was written to `path`
    path: str | None
    content_type: str
    format: str
    width: int
    height: int  # of one frame
    frames: int
    source_format: str
    source_bytes: int
    output_bytes: int
