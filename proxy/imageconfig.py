"""The [images] section: conversion presets, the free-form switch, limits and the pool.

Rule: presets are nested tables (`[images.presets.thumb]`) parsed here into frozen `Preset`
values, each key checked and named in the error (`images.presets.thumb.fit: ...`). No preset
and free-form off means the feature is off: `?preset=` is then an ordinary query parameter.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from proxy.errors import ConfigError

FITS = ("cover", "contain", "inside")
FORMATS = ("auto", "avif", "webp", "jpeg", "png")
INPUT_FORMATS = ("jpeg", "png", "webp", "gif", "avif", "heic", "tiff")
FREE_FORM = "free_form"  # the preset label of signed free-form conversions (metrics, keys)
MAX_DIMENSION = 8192  # largest width or height a preset (times its DPR) may ask for
MAX_DPR = 4.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

# A preset key -> its type (and, for "dpr", a list of numbers).
_PRESET_KEYS: dict[str, type] = {"width": int, "height": int, "fit": str, "format": str,
                                 "quality": int, "dpr": list}


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    width: int = 0  # 0 = not constrained (at least one of width, height is set)
    height: int = 0
    fit: str = "inside"  # cover (fill the box, crop) | contain (fit, pad) | inside (fit)
    format: str = "auto"  # auto (AVIF, WebP or the source's, from Accept) | avif | webp | ...
    quality: int = 80  # encoder quality, 1-100 (ignored by PNG)
    dpr: tuple[float, ...] = (1.0,)  # device pixel ratios a request may ask (`dpr=2`)


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    TABLES: ClassVar[tuple[str, ...]] = ("presets",)  # nested: parsed by from_tables
    presets: tuple[Preset, ...] = ()  # [images.presets.<name>] tables; none = feature off
    allow_free_form: bool = False  # w=, h=, fit=, fmt=, q= with a signature covering them
    max_source_pixels: int = 50_000_000  # width x height x frames, read from the header
    max_source_bytes: int = 32 * 1024 * 1024  # larger originals are refused (422)
    max_output_bytes: int = 8 * 1024 * 1024  # a larger result is refused (422)
    max_frames: int = 100  # animation frames a source may have
    timeout_seconds: float = 10.0  # per conversion; the worker process is then replaced
    allowed_input_formats: str = "jpeg,png,webp,gif,avif"  # others get 415
    pool_workers: int = 2  # conversion processes per proxy worker
    max_conversions_per_second: float = 20.0  # remakes after a soft purge, per worker

    @classmethod
    def from_tables(cls, values: Mapping[str, Any], tables: Mapping[str, Any]
                    ) -> ImagesConfig:
        """The section from its flat keys (coerced by config_load) and its nested tables."""
        return cls(presets=parse_presets(tables.get("presets", {})), **values)

    def tables(self) -> dict[str, Any]:
        """The nested tables in their TOML shape (the JSON hand-over to workers)."""
        return {"presets": presets_as_tables(self.presets)}

    def preset(self, name: str) -> Preset | None:
        for preset in self.presets:
            if preset.name == name:
                return preset
        return None

    @property
    def enabled(self) -> bool:
        return bool(self.presets) or self.allow_free_form

    def input_formats(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.allowed_input_formats.split(",") if f.strip())

    def validate(self) -> None:
        for name in ("max_source_pixels", "max_source_bytes", "max_output_bytes", "max_frames",
                     "pool_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"images.{name}: must be >= 1")
        if self.pool_workers > 64:
            raise ConfigError("images.pool_workers: must be <= 64")
        if not 0 < self.timeout_seconds <= 600:
            raise ConfigError("images.timeout_seconds: must be > 0 and <= 600")
        if self.max_conversions_per_second <= 0:
            raise ConfigError("images.max_conversions_per_second: must be > 0")
        formats = self.input_formats()
        if not formats:
            raise ConfigError("images.allowed_input_formats: name at least one format")
        for fmt in sorted(formats):
            if fmt not in INPUT_FORMATS:
                raise ConfigError(f"images.allowed_input_formats: {fmt!r} is not one of "
                                  f"{', '.join(INPUT_FORMATS)}")
        if self.enabled and importlib.util.find_spec("pyvips") is None:
            raise ConfigError("images.presets: conversions need libvips; install it with: "
                              "pip install 'mediaproxy[images]'")


def parse_presets(raw: Any) -> tuple[Preset, ...]:
    """`{"thumb": {"width": 320, ...}, ...}` (TOML tables) -> presets, each key checked."""
    if not isinstance(raw, Mapping):
        raise ConfigError("images.presets: expected tables such as [images.presets.thumb]")
    return tuple(_preset(name, table) for name, table in raw.items())


def _preset(name: str, table: Any) -> Preset:
    where = f"images.presets.{name}"
    if not _NAME.match(name) or name == FREE_FORM:
        raise ConfigError(f"{where}: a preset name is 1-32 of a-z 0-9 _ - (not {FREE_FORM!r})")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = _PRESET_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(_PRESET_KEYS)})")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
        if kind is list:
            value = _dpr_list(value, f"{where}.{key}")
        values[key] = value
    preset = Preset(name, **values)
    _check_preset(preset, where)
    return preset


def _dpr_list(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or not value or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: expected a list of numbers such as [1, 2, 3]")
    ladder = tuple(sorted({float(v) for v in value}))
    if ladder[0] < 1 or ladder[-1] > MAX_DPR:
        raise ConfigError(f"{where}: ratios must be between 1 and {MAX_DPR:g}")
    if 1.0 not in ladder:
        raise ConfigError(f"{where}: the ladder must include 1")
    if any(round(v * 100) != v * 100 for v in ladder):
        raise ConfigError(f"{where}: at most two decimals per ratio")
    return ladder


def _check_preset(preset: Preset, where: str) -> None:
    for key in ("width", "height"):
        if not 0 <= getattr(preset, key) <= MAX_DIMENSION:
            raise ConfigError(f"{where}.{key}: must be between 0 and {MAX_DIMENSION}")
        if getattr(preset, key) * preset.dpr[-1] > MAX_DIMENSION:
            raise ConfigError(f"{where}.{key}: times the largest dpr exceeds {MAX_DIMENSION}")
    if not preset.width and not preset.height:
        raise ConfigError(f"{where}: set width, height or both")
    if preset.fit not in FITS:
        raise ConfigError(f"{where}.fit: must be {', '.join(FITS)}, got {preset.fit!r}")
    if preset.fit in ("cover", "contain") and not (preset.width and preset.height):
        raise ConfigError(f"{where}.fit: {preset.fit} needs both width and height")
    if preset.format not in FORMATS:
        raise ConfigError(f"{where}.format: must be {', '.join(FORMATS)}, got "
                          f"{preset.format!r}")
    if not 1 <= preset.quality <= 100:
        raise ConfigError(f"{where}.quality: must be between 1 and 100")


def presets_as_tables(presets: tuple[Preset, ...]) -> dict[str, dict[str, Any]]:
    """The inverse of parse_presets, for the hand-over to worker processes (JSON)."""
    return {p.name: {"width": p.width, "height": p.height, "fit": p.fit, "format": p.format,
                     "quality": p.quality, "dpr": list(p.dpr)} for p in presets}
