"""Deterministic sample media for demos and tests: PNG images, PDFs and a large video-like file
(and, with pyvips, images for conversion presets: origin/sampleimages.py).

Rule: the same bytes on every run (fixed seeds, no clock), generated in chunks as they are
stored, so the 200 MB video never sits in memory; seeding touches only an empty database.
"""

from __future__ import annotations

import logging
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from origin import sampleimages
from origin.db import Access, MediaStore, Revision

DEFAULT_VIDEO_BYTES = 200 * 1000 * 1000
_MIB = 1 << 20
_VIDEO_SEED = 2026
_PHOTO_SEED = 1920

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    path: str
    content_type: str
    size_bytes: int
    chunks: Callable[[], Iterator[bytes]]
    access: Access = Access.PUBLIC
    cache_control: str | None = None  # None: the application's default


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rows: Iterator[bytes]) -> bytes:
    """An 8-bit RGB PNG from `height` rows of `width * 3` bytes."""
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every scanline
    if len(raw) != height * (1 + width * 3):
        raise ValueError("rows do not match the image size")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def _ramp(width: int) -> bytes:
    return bytes(x * 255 // max(1, width - 1) for x in range(width))


def gradient_rows(width: int, height: int) -> Iterator[bytes]:
    """Red rises left to right, green top to bottom, blue falls left to right."""
    ramp = _ramp(width)
    row = bytearray(width * 3)
    row[0::3] = ramp
    row[2::3] = ramp[::-1]
    for y in range(height):
        row[1::3] = bytes([y * 255 // max(1, height - 1)]) * width
        yield bytes(row)


def photo_rows(width: int, height: int) -> Iterator[bytes]:
    """A sky-to-ground picture with sensor-like noise, so it compresses like a photograph."""
    rng = random.Random(_PHOTO_SEED)
    ramp = _ramp(width)
    noise_mask = bytes(b & 0x0F for b in range(256))
    shifts = [bytes((b + s) & 0xFF for b in range(256)) for s in range(256)]
    row = bytearray(width * 3)
    for y in range(height):
        sky = y < height * 3 // 5
        level = y * 255 // max(1, height - 1)
        row[0::3] = ramp.translate(shifts[level // 2]) if sky else bytes([90 + level // 8]) * width
        row[1::3] = bytes([120 + level // 3 if sky else 140 - level // 4]) * width
        row[2::3] = bytes([255 - level // 3 if sky else 40]) * width
        noise = rng.randbytes(len(row)).translate(noise_mask)
        mixed = int.from_bytes(row, "big") ^ int.from_bytes(noise, "big")
        yield mixed.to_bytes(len(row), "big")


def pdf(title: str, lines: list[str]) -> bytes:
    """A one-page PDF 1.4 with Helvetica text and a correct cross-reference table."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text = [f"BT /F1 24 Tf 72 720 Td ({escape(title)}) Tj ET"]
    text += [
        f"BT /F1 12 Tf 72 {690 - 18 * i} Td ({escape(line)}) Tj ET" for i, line in enumerate(lines)
    ]
    stream = "\n".join(text).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def video_chunks(size_bytes: int) -> Iterator[bytes]:
    """An MP4-shaped file: an `ftyp` box, then one `mdat` box of seeded random bytes."""
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    mdat_bytes = size_bytes - len(header)
    if mdat_bytes >= 1 << 32:
        header += struct.pack(">I4sQ", 1, b"mdat", mdat_bytes)  # 64-bit largesize form
    elif mdat_bytes >= 8:
        header += struct.pack(">I4s", mdat_bytes, b"mdat")
    header = header[:size_bytes]
    yield header
    rng = random.Random(_VIDEO_SEED)
    left = size_bytes - len(header)
    while left > 0:
        block = rng.randbytes(_MIB)  # always a full MiB, so a prefix does not depend on the size
        yield block[:left]
        left -= len(block)


def _fixed(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter((data,))


def samples(*, video_size_bytes: int = DEFAULT_VIDEO_BYTES) -> list[Sample]:
    images = {
        "/media/images/gradient-64.png": png(64, 64, gradient_rows(64, 64)),
        "/media/images/gradient-640x480.png": png(640, 480, gradient_rows(640, 480)),
        "/media/images/photo-1920x1080.png": png(1920, 1080, photo_rows(1920, 1080)),
    }
    sample_pdf = pdf("mediaproxy sample", ["A small valid PDF served by the reference origin."])
    report = pdf("Quarterly report", ["Protected: a cache must check access before serving."])
    items = [
        Sample(path, "image/png", len(data), _fixed(data), cache_control="public, max-age=86400")
        for path, data in images.items()
    ]
    items += [  # for conversion presets: generated with libvips when pyvips is installed
        Sample(path, sampleimages.content_type(path), len(data), _fixed(data),
               cache_control="public, max-age=86400")
        for path, data in sampleimages.images().items()
    ]
    items += [
        Sample("/media/docs/sample.pdf", "application/pdf", len(sample_pdf), _fixed(sample_pdf)),
        Sample(
            "/media/private/report.pdf",
            "application/pdf",
            len(report),
            _fixed(report),
            access=Access.PROTECTED,
        ),
        Sample(
            "/media/video/sample.mp4",
            "video/mp4",
            video_size_bytes,
            lambda: video_chunks(video_size_bytes),
            cache_control="public, max-age=3600",
        ),
    ]
    return items


def seed(store: MediaStore, *, video_size_bytes: int = DEFAULT_VIDEO_BYTES) -> list[Revision]:
    """Publish the samples into an empty store (blocking); returns [] if it held anything."""
    if not store.is_empty():
        log.info("not seeding %s: it already holds media", store.path)
        return []
    published = []
    for sample in samples(video_size_bytes=video_size_bytes):
        result = store.publish(
            sample.path,
            sample.size_bytes,
            sample.chunks(),
            content_type=sample.content_type,
            access=sample.access,
            cache_control=sample.cache_control,
        )
        published.append(result.revision)
        log.info("seeded %s (%d bytes)", sample.path, sample.size_bytes)
    return published
