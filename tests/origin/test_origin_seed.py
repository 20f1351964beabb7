"""Seeding is deterministic, produces valid PNG and PDF files, and touches only empty stores."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from origin.db import Access, MediaStore
from origin.seed import seed

VIDEO_BYTES = 3 * (1 << 20) + 123


def _seeded(path: Path) -> dict[str, str]:
    store = MediaStore(path)
    try:
        return {r.path: r.sha256 for r in seed(store, video_size_bytes=VIDEO_BYTES)}
    finally:
        store.close()


def _body(store: MediaStore, path: str) -> bytes:
    revision = store.lookup(path)
    assert revision is not None
    reader = store.open_body(revision.id)
    try:
        return reader.read(0, revision.size_bytes)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaStore]:
    store = MediaStore(tmp_path_factory.mktemp("seed") / "m.db")
    seed(store, video_size_bytes=VIDEO_BYTES)
    yield store
    store.close()


def test_seed_is_deterministic(tmp_path: Path) -> None:
    first = _seeded(tmp_path / "one.db")
    second = _seeded(tmp_path / "two.db")
    assert first == second
    assert set(first) == {
        "/media/images/gradient-64.png",
        "/media/images/gradient-640x480.png",
        "/media/images/photo-1920x1080.png",
        "/media/docs/sample.pdf",
        "/media/private/report.pdf",
        "/media/video/sample.mp4",
        # pyvips is a dev dependency: the conversion samples are always there in tests
        "/media/images/photo-rotated.jpg",
        "/media/images/logo-alpha.png",
        "/media/images/landscape.webp",
        "/media/images/animated.gif",
    }


def test_seed_only_fills_an_empty_store(seeded_store: MediaStore) -> None:
    assert seed(seeded_store, video_size_bytes=10) == []


@pytest.mark.parametrize(
    ("path", "width", "height"),
    [
        ("/media/images/gradient-64.png", 64, 64),
        ("/media/images/gradient-640x480.png", 640, 480),
        ("/media/images/photo-1920x1080.png", 1920, 1080),
    ],
)
def test_pngs_are_valid(seeded_store: MediaStore, path: str, width: int, height: int) -> None:
    data = _body(seeded_store, path)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, kinds = 8, b"", []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc
        kinds.append(kind)
        if kind == b"IHDR":
            assert struct.unpack(">II", payload[:8]) == (width, height)
        if kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_pdfs_are_valid(seeded_store: MediaStore) -> None:
    for path in ("/media/docs/sample.pdf", "/media/private/report.pdf"):
        data = _body(seeded_store, path)
        assert data.startswith(b"%PDF-1.4") and data.endswith(b"%%EOF\n")
        startxref = re.search(rb"startxref\n(\d+)", data)
        assert startxref is not None
        assert data[int(startxref.group(1)) :].startswith(b"xref")
        for number, offset in enumerate(re.findall(rb"(\d{10}) 00000 n", data), start=1):
            assert data[int(offset) :].startswith(b"%d 0 obj" % number)
    report = seeded_store.lookup("/media/private/report.pdf")
    assert report is not None and report.access is Access.PROTECTED


def test_video_is_mp4_shaped(seeded_store: MediaStore) -> None:
    video = seeded_store.lookup("/media/video/sample.mp4")
    assert video is not None
    assert video.size_bytes == VIDEO_BYTES and video.content_type == "video/mp4"
    head = _body(seeded_store, "/media/video/sample.mp4")[:32]
    assert head[4:8] == b"ftyp"
    assert head[28:32] == b"mdat"
    assert struct.unpack(">I", head[24:28])[0] == VIDEO_BYTES - 24


def test_conversion_samples_are_what_they_claim(seeded_store: MediaStore) -> None:
    import pyvips

    photo = pyvips.Image.new_from_buffer(_body(seeded_store, "/media/images/photo-rotated.jpg"),
                                         "")
    assert (photo.get("vips-loader"), photo.width, photo.height) == ("jpegload_buffer", 1200,
                                                                       800)
    assert photo.get("orientation") == 6
    logo = pyvips.Image.new_from_buffer(_body(seeded_store, "/media/images/logo-alpha.png"), "")
    assert logo.hasalpha() and logo(0, 0)[3] == 0 and logo(200, 200)[3] == 255
    webp = pyvips.Image.new_from_buffer(_body(seeded_store, "/media/images/landscape.webp"), "")
    assert (webp.get("vips-loader"), webp.width) == ("webpload_buffer", 800)
    gif = pyvips.Image.new_from_buffer(_body(seeded_store, "/media/images/animated.gif"), "",
                                       n=-1)
    assert (gif.get("n-pages"), gif.get("page-height"), gif.width) == (10, 120, 160)
    revision = seeded_store.lookup("/media/images/animated.gif")
    assert revision is not None and revision.content_type == "image/gif"
