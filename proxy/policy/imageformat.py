"""Which format a conversion is made in: the preset's, or for `auto` the best the client
explicitly accepts.

Rule: `auto` picks AVIF, then WebP, then the source's format, and only an explicit
`image/avif` or `image/webp` with q > 0 in Accept selects those: `*/*` and `image/*` get the
source's format (browsers send them for everything). Accept is reduced to that small token set
before anything is keyed, so the raw field never reaches a key; every `auto` answer carries
`Vary: Accept`.
"""

from __future__ import annotations

from collections.abc import Iterable

NEGOTIATED = ("avif", "webp")  # in order of preference
OUTPUT_FORMATS = ("avif", "webp", "jpeg", "png", "gif")
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                  "avif": "image/avif", "gif": "image/gif", "heic": "image/heic",
                  "tiff": "image/tiff"}
_BY_TYPE = {value: key for key, value in _CONTENT_TYPES.items()} | {"image/jpg": "jpeg",
                                                                     "image/pjpeg": "jpeg",
                                                                     "image/x-png": "png"}


def accept_tokens(values: Iterable[str]) -> frozenset[str]:
    """Accept field values -> the subset of {"avif", "webp"} they explicitly accept."""
    found: set[str] = set()
    refused: set[str] = set()
    for value in values:
        for member in value.split(","):
            media, *parameters = member.split(";")
            media = media.strip().lower()
            if media not in ("image/avif", "image/webp"):
                continue
            token = media[6:]
            (found if _weight(parameters) > 0 else refused).add(token)
    return frozenset(found - refused)  # RFC 9110 §12.5.1: q=0 means "not acceptable"


def _weight(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0  # an unreadable weight is no evidence of support
            return weight if 0 <= weight <= 1 else 0.0
    return 1.0


def format_of_type(content_type: str) -> str | None:
    """`image/jpeg; charset=x` -> "jpeg"; None for anything that is not a known image type."""
    return _BY_TYPE.get(content_type.split(";", 1)[0].strip().lower())


def content_type(fmt: str) -> str:
    return _CONTENT_TYPES[fmt]


def negotiate(requested: str, accepted: frozenset[str], source_format: str | None) -> str:
    """The output format: the preset's fixed one, or for "auto" AVIF, WebP, then the
    source's (a source we cannot write, such as TIFF or HEIC, gives JPEG)."""
    if requested != "auto":
        return requested
    for fmt in NEGOTIATED:
        if fmt in accepted:
            return fmt
    return source_format if source_format in OUTPUT_FORMATS else "jpeg"


def varies(requested: str) -> bool:
    """Whether the answer depends on Accept (then it carries Vary: Accept)."""
    return requested == "auto"
