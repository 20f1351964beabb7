"""Conversion requests: `?preset=thumb[&dpr=2]`, or signed free-form `?w=&h=&fit=&fmt=&q=`.

Rule: a pure function of the raw query, the normalised path, the configured presets and the
signing keys. It returns `None` (not a conversion: an ordinary request), an `ImageRequest`, or
an `ImageRefusal` (400 bad or unknown parameters, 403 free-form without a valid signature);
it never raises. Free-form parameters are ours only when free-form is enabled, and then only
with a signature over all of them (`ikid`, `isig`), so nobody can ask for arbitrary sizes.

Free-form canonical string (UTF-8), fields joined by "\\n", signed with HMAC-SHA256 as
`policy/tokens.py` signs URLs (base64url, unpadded):

    mediaproxy-image-v1
    <kid>
    <path>             the normalised path, as in the URL (no query)
    w=<w>;h=<h>;fit=<fit>;fmt=<fmt>;q=<q>   every parameter, defaults filled in
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from proxy.policy.tokens import SIG_LENGTH, signature

VERSION = "mediaproxy-image-v1"
FREE_FORM = "free_form"  # the preset label of free-form conversions (keys, metrics)
FITS = ("cover", "contain", "inside")
FORMATS = ("auto", "avif", "webp", "jpeg", "png")
MAX_DIMENSION = 8192
PRESET_PARAMS = frozenset({"preset", "dpr"})
FREE_FORM_PARAMS = frozenset({"w", "h", "fit", "fmt", "q", "ikid", "isig"})
DEFAULT_QUALITY = 80


class PresetLike(Protocol):
    """What policy needs of a configured preset (proxy.imageconfig.Preset)."""

    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fit(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def quality(self) -> int: ...
    @property
    def dpr(self) -> tuple[float, ...]: ...


@dataclass(frozen=True, slots=True)
class ImageRequest:
    preset: str  # the preset's name, or FREE_FORM
    width: int  # output box in pixels, DPR applied; 0 = not constrained
    height: int
    fit: str  # cover | contain | inside
    format: str  # as asked: auto | avif | webp | jpeg | png (negotiate() picks for auto)
    quality: int
    dpr: float = 1.0

    @property
    def name(self) -> str:
        """What the conversion is, for its cache key (the format is added after negotiation):
        `preset=thumb`, `preset=thumb;dpr=2`, `preset=free_form;w=..;h=..;fit=..;q=..`."""
        if self.preset != FREE_FORM:
            return f"preset={self.preset}" + (f";dpr={self.dpr:g}" if self.dpr != 1 else "")
        return (f"preset={FREE_FORM};w={self.width};h={self.height};fit={self.fit};"
                f"q={self.quality}")


@dataclass(frozen=True, slots=True)
class ImageRefusal:
    status: int  # 400 | 403
    reason: str  # machine-readable
    message: str

    def json_body(self) -> str:
        return json.dumps({"error": self.reason, "message": self.message})


def params(allow_free_form: bool) -> frozenset[str]:
    """The query parameters that name a conversion: removed from the source's key."""
    return PRESET_PARAMS | FREE_FORM_PARAMS if allow_free_form else PRESET_PARAMS


def parse_request(
    query: str,
    path: str,
    *,
    presets: Sequence[PresetLike],
    allow_free_form: bool,
    keys: Mapping[str, bytes],
) -> ImageRequest | ImageRefusal | None:
    ours = params(allow_free_form) if presets or allow_free_form else frozenset()
    fields: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        if name not in ours:
            continue
        if name in fields:
            return _bad("duplicate_parameter", f"{name} given twice")  # never pick one
        fields[name] = unquote(value)
    if not fields:
        return None
    if "preset" in fields or "dpr" in fields:
        if fields.keys() - PRESET_PARAMS:
            return _bad("mixed_parameters", "preset cannot be combined with w, h, fit, fmt, q")
        return _preset_request(fields, presets)
    return _free_form_request(fields, path, keys)


def _bad(reason: str, message: str) -> ImageRefusal:
    return ImageRefusal(400, reason, message)


def _preset_request(fields: Mapping[str, str], presets: Sequence[PresetLike]
                    ) -> ImageRequest | ImageRefusal:
    name = fields.get("preset")
    if name is None:
        return _bad("dpr_without_preset", "dpr needs a preset")
    preset = next((p for p in presets if p.name == name), None)
    if preset is None:
        return _bad("unknown_preset", f"no preset named {name[:64]!r}")
    dpr = 1.0
    if "dpr" in fields:
        text = fields["dpr"]
        try:
            dpr = float(text) if len(text) <= 8 and text.replace(".", "", 1).isdigit() else 0.0
        except ValueError:
            dpr = 0.0
        if dpr not in preset.dpr:
            offered = ", ".join(f"{v:g}" for v in preset.dpr)
            return _bad("dpr_not_offered", f"preset {name} offers dpr {offered}")
    return ImageRequest(preset.name, round(preset.width * dpr), round(preset.height * dpr),
                        preset.fit, preset.format, preset.quality, dpr)


def _free_form_request(fields: Mapping[str, str], path: str, keys: Mapping[str, bytes]
                       ) -> ImageRequest | ImageRefusal:
    sizes: dict[str, int] = {}
    for name, default, low, high in (("w", 0, 1, MAX_DIMENSION), ("h", 0, 1, MAX_DIMENSION),
                                     ("q", DEFAULT_QUALITY, 1, 100)):
        text = fields.get(name)
        if text is None:
            sizes[name] = default
        elif text.isascii() and text.isdigit() and len(text) <= 5 and low <= int(text) <= high:
            sizes[name] = int(text)
        else:
            return _bad("bad_parameter", f"{name} must be an integer from {low} to {high}")
    fit, fmt = fields.get("fit", "inside"), fields.get("fmt", "auto")
    if fit not in FITS:
        return _bad("bad_parameter", f"fit must be {', '.join(FITS)}")
    if fmt not in FORMATS:
        return _bad("bad_parameter", f"fmt must be {', '.join(FORMATS)}")
    if not sizes["w"] and not sizes["h"]:
        return _bad("bad_parameter", "give w, h or both")
    if fit != "inside" and not (sizes["w"] and sizes["h"]):
        return _bad("bad_parameter", f"fit={fit} needs both w and h")
    request = ImageRequest(FREE_FORM, sizes["w"], sizes["h"], fit, fmt, sizes["q"])
    key_id, sig = fields.get("ikid"), fields.get("isig")
    if key_id is None or sig is None:
        return ImageRefusal(403, "image_signature_missing",
                            "free-form conversions need a signature (ikid, isig)")
    secret = keys.get(key_id)
    if secret is None:
        return ImageRefusal(403, "image_unknown_key", "unknown signing key")
    expected = signature(secret, canonical(key_id, path, request))
    if len(sig) != SIG_LENGTH or not hmac.compare_digest(
            expected.encode("ascii"), sig.encode("ascii", "replace")):
        return ImageRefusal(403, "image_bad_signature", "the signature does not match")
    return request


def canonical(key_id: str, path: str, request: ImageRequest) -> bytes:
    covered = (f"w={request.width};h={request.height};fit={request.fit};"
               f"fmt={request.format};q={request.quality}")
    return "\n".join((VERSION, key_id, path, covered)).encode("utf-8")


def sign_free_form(path: str, *, width: int = 0, height: int = 0, fit: str = "inside",
                   fmt: str = "auto", quality: int = DEFAULT_QUALITY, key_id: str,
                   secret: bytes) -> str:
    """The query string (without "?") of a signed free-form conversion of `path` (normalised,
    as the proxy will see it)."""
    request = ImageRequest(FREE_FORM, width, height, fit, fmt, quality)
    sig = signature(secret, canonical(key_id, path, request))
    fields = [("w", width), ("h", height), ("fit", fit), ("fmt", fmt), ("q", quality)]
    query = "&".join(f"{name}={value}" for name, value in fields if value)
    return f"{query}&ikid={quote(key_id, safe='')}&isig={sig}"
