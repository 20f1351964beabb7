"""The media-like corpus: deterministic pseudo-random files served by the origin nginx.

Layout under bench/work/corpus/ (the origin's document root):
  media/small-4k.bin, media/small-64k.bin, media/medium-1m.bin, media/large-<N>m.bin
  slow/cold-<tag>.bin   symlinks to the large file, one per herd run (origin throttles /slow/)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GENERATOR = "shake256-v1"
CHUNK = 16 << 20


@dataclass(frozen=True)
class CorpusObject:
    label: str  # "4 KiB"
    path: str  # URL path, e.g. "/media/small-4k.bin"
    size: int
    sha256: str


@dataclass(frozen=True)
class Corpus:
    root: Path
    small: tuple[CorpusObject, ...]  # the objects of the small-hit test (4 KiB, 64 KiB)
    medium: CorpusObject
    large: CorpusObject

    @property
    def objects(self) -> tuple[CorpusObject, ...]:
        return (*self.small, self.medium, self.large)

    def cold_object(self, tag: str) -> CorpusObject:
        """A never-requested URL (under the origin's throttled /slow/) with the large body."""
        slow = self.root / "slow"
        slow.mkdir(exist_ok=True)
        link = slow / f"cold-{tag}.bin"
        link.unlink(missing_ok=True)
        link.symlink_to(Path("..") / self.large.path.lstrip("/"))
        return CorpusObject(
            label=f"cold {self.large.label}",
            path=f"/slow/{link.name}",
            size=self.large.size,
            sha256=self.large.sha256,
        )


def _generate(path: Path, name: str, size: int) -> str:
    """Write `size` deterministic pseudo-random bytes to `path`, return their sha256."""
    digest = hashlib.sha256()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        written = 0
        index = 0
        while written < size:
            n = min(CHUNK, size - written)
            block = hashlib.shake_256(f"mediaproxy-bench:{name}:{index}".encode()).digest(n)
            fh.write(block)
            digest.update(block)
            written += n
            index += 1
    os.replace(tmp, path)
    return digest.hexdigest()


def build_corpus(root: Path, large_mib: int) -> Corpus:
    """Create (or reuse) the corpus files; a manifest records sizes and digests."""
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    (root / "slow").mkdir(exist_ok=True)
    for stale in (root / "slow").glob("cold-*.bin"):
        stale.unlink()
    manifest_path = root / "manifest.json"
    try:
        manifest: dict[str, dict[str, object]] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}

    specs = [
        ("4 KiB", "small-4k.bin", 4 << 10),
        ("64 KiB", "small-64k.bin", 64 << 10),
        ("1 MiB", "medium-1m.bin", 1 << 20),
        (f"{large_mib} MiB", f"large-{large_mib}m.bin", large_mib << 20),
    ]
    objects: list[CorpusObject] = []
    for label, name, size in specs:
        path = media / name
        entry = manifest.get(name, {})
        sha = entry.get("sha256")
        reusable = (
            isinstance(sha, str)
            and entry.get("size") == size
            and entry.get("generator") == GENERATOR
            and path.is_file()
            and path.stat().st_size == size
            and entry.get("mtime_ns") == path.stat().st_mtime_ns
        )
        if not reusable:
            log.info("generating corpus file %s (%d bytes)", name, size)
            sha = _generate(path, name, size)
            manifest[name] = {
                "size": size,
                "sha256": sha,
                "generator": GENERATOR,
                "mtime_ns": path.stat().st_mtime_ns,
            }
        assert isinstance(sha, str)
        objects.append(CorpusObject(label=label, path=f"/media/{name}", size=size, sha256=sha))
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return Corpus(root=root, small=(objects[0], objects[1]), medium=objects[2], large=objects[3])
