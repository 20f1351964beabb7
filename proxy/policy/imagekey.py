"""Cache keys of conversions, and which conversions a purge by preset or format covers.

Rule: a conversion's key is its source's URL key, the variant separator (vary.SEP), a mark
(IMAGE_MARK, a control character no Vary variant contains) and a readable name:

    /photos/a.jpg \\x1f \\x1d preset=thumb;dpr=2;fmt=webp

So a prefix purge and an exact purge of the source cover its conversions with no extra rule
(both already cover the source's Vary variants), listings group them under their source, and
a key says what it holds. The source's own variant (if it varies) is not part of the key: a
conversion is made from whichever copy of the source is current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.policy.imageformat import OUTPUT_FORMATS
from proxy.policy.images import ImageRequest
from proxy.policy.vary import SEP, base_key

IMAGE_MARK = "\x1d"
# A stored conversion's field naming the source's validator (ETag, else Last-Modified) it was
# made from: reused only while the stored source still has it. Never sent to clients.
SOURCE_VALIDATOR = "X-Media-Source-Validator"


@dataclass(frozen=True, slots=True)
class ConversionName:
    url_key: str  # the source's URL key
    preset: str
    format: str


@dataclass(frozen=True, slots=True)
class PurgeSelector:
    """A purge by {"preset": ...}, {"format": ...} or both (then both must match)."""

    preset: str | None
    format: str | None

    def matches(self, key: str) -> bool:
        name = conversion_of(key)
        return name is not None and (self.preset is None or self.preset == name.preset) and (
            self.format is None or self.format == name.format)

    @property
    def tag(self) -> str:
        """The tag a purge ban uses: every conversion is stored with conversion_tags()."""
        return _tag(self.preset, self.format)


def conversion_key(source_key: str, request: ImageRequest, fmt: str) -> str:
    return f"{base_key(source_key)}{SEP}{IMAGE_MARK}{request.name};fmt={fmt}"


def conversion_of(key: str) -> ConversionName | None:
    """The parts of a conversion's key; None for any other key."""
    url_key, sep, rest = key.partition(SEP + IMAGE_MARK)
    if not sep:
        return None
    fields = dict(part.partition("=")[::2] for part in rest.split(";"))
    return ConversionName(url_key, fields.get("preset", ""), fields.get("fmt", ""))


def conversion_tags(request: ImageRequest, fmt: str) -> tuple[str, str, str]:
    """Tags stored with a conversion so that the store's tag bans purge by preset, format,
    or both. They start with IMAGE_MARK, which origin tags never contain (parse_tags splits
    on it: str.split() treats \\x1c-\\x1f as whitespace)."""
    return _tag(request.preset, None), _tag(None, fmt), _tag(request.preset, fmt)


def _tag(preset: str | None, fmt: str | None) -> str:
    parts = ([f"preset={preset}"] if preset is not None else []) + (
        [f"fmt={fmt}"] if fmt is not None else [])
    return IMAGE_MARK + ";".join(parts)


def parse_purge(body: Mapping[str, object]) -> PurgeSelector | str | None:
    """The preset/format part of a purge request body: a selector, an error text (400), or
    None when the body names neither."""
    preset, fmt = body.get("preset"), body.get("format")
    if preset is None and fmt is None:
        return None
    if preset is not None and (not isinstance(preset, str) or not preset or len(preset) > 64
                               or not all(c.isalnum() or c in "_-" for c in preset)):
        return "preset: expected a preset name"
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        return f"format: expected one of {', '.join(OUTPUT_FORMATS)}"
    assert preset is None or isinstance(preset, str)
    assert fmt is None or isinstance(fmt, str)
    return PurgeSelector(preset, fmt)

