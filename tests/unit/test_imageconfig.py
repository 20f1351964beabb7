"""[images]: presets as nested tables, flat keys with units and env overrides, clear errors."""

from typing import Any

import pytest

from proxy import config
from proxy.errors import ConfigError
from proxy.imageconfig import Preset


def images(**section: Any) -> config.Config:
    return config.from_dict({"images": section})


def test_default_is_off() -> None:
    c = config.from_dict({})
    assert c.images.presets == () and not c.images.enabled


def test_presets_flat_keys_units_and_env() -> None:
    c = config.from_dict(
        {"images": {"max_source_bytes": "10MiB", "presets": {
            "thumb": {"width": 320, "height": 240, "fit": "cover", "dpr": [2, 1, 3]},
            "large": {"width": 1600, "format": "webp", "quality": 70}}}},
        env={"MEDIAPROXY_IMAGES_TIMEOUT_SECONDS": "500ms", "MEDIAPROXY_IMAGES_POOL_WORKERS": "3"})
    assert c.images.enabled
    assert c.images.preset("thumb") == Preset("thumb", 320, 240, "cover", "auto", 80,
                                              (1.0, 2.0, 3.0))
    assert c.images.preset("large") == Preset("large", 1600, 0, "inside", "webp", 70, (1.0,))
    assert c.images.preset("nope") is None
    assert c.images.max_source_bytes == 10 * 1024 * 1024
    assert c.images.timeout_seconds == 0.5 and c.images.pool_workers == 3


def test_hand_over_to_workers_round_trips() -> None:
    c = images(presets={"thumb": {"width": 100, "height": 100, "fit": "contain", "dpr": [1, 2]}},
               allow_free_form=True)
    assert config.from_json(config.to_json(c)) == c


@pytest.mark.parametrize(
    ("section", "env", "message"),
    [
        ({"presets": {"thumb": {"width": 10, "fit": "crop"}}}, {},
         "images.presets.thumb.fit: must be cover, contain, inside"),
        ({"presets": {"thumb": {"width": 10, "height": 10, "format": "gif"}}}, {},
         "images.presets.thumb.format: must be auto"),
        ({"presets": {"thumb": {"width": 10, "fit": "cover"}}}, {},
         "images.presets.thumb.fit: cover needs both width and height"),
        ({"presets": {"thumb": {}}}, {}, "images.presets.thumb: set width, height or both"),
        ({"presets": {"thumb": {"width": "10"}}}, {},
         "images.presets.thumb.width: expected an integer"),
        ({"presets": {"thumb": {"width": 10, "size": 3}}}, {},
         "images.presets.thumb.size: unknown key"),
        ({"presets": {"thumb": {"width": 10, "quality": 0}}}, {},
         "images.presets.thumb.quality: must be between 1 and 100"),
        ({"presets": {"thumb": {"width": 10, "dpr": [2, 3]}}}, {},
         "images.presets.thumb.dpr: the ladder must include 1"),
        ({"presets": {"thumb": {"width": 10, "dpr": [1, 9]}}}, {},
         "images.presets.thumb.dpr: ratios must be between 1 and 4"),
        ({"presets": {"thumb": {"width": 10, "dpr": "2x"}}}, {},
         "images.presets.thumb.dpr: expected a list"),
        ({"presets": {"thumb": {"width": 4000, "dpr": [1, 3]}}}, {},
         "images.presets.thumb.width: times the largest dpr exceeds 8192"),
        ({"presets": {"Thumb!": {"width": 10}}}, {}, "images.presets.Thumb!: a preset name"),
        ({"presets": {"free_form": {"width": 10}}}, {}, "images.presets.free_form: a preset"),
        ({"presets": {"thumb": 3}}, {}, "images.presets.thumb: expected a table"),
        ({"presets": 3}, {}, "images.presets: expected tables"),
        ({"allowed_input_formats": "jpeg,bmp"}, {},
         "images.allowed_input_formats: 'bmp' is not one of"),
        ({"pool_workers": 0}, {}, "images.pool_workers: must be >= 1"),
        ({"timeout_seconds": 0}, {}, "images.timeout_seconds: must be > 0"),
        ({"max_frames": "many"}, {}, "images.max_frames: expected an integer"),
        ({"colour": 1}, {}, "images.colour: unknown key"),
        ({}, {"MEDIAPROXY_IMAGES_PRESETS": "x"}, "MEDIAPROXY_IMAGES_PRESETS: unknown environment"),
        ({}, {"MEDIAPROXY_IMAGES_MAX_FRAMES": "x"}, "images.max_frames (from MEDIAPROXY_IMAGES"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, Any], env: dict[str, str],
                                 message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"images": section}, env=env)
    assert message in err.value.message
