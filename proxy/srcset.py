"""srcset values for templates: one preset's DPR ladder, with access tokens when needed.

Rule: URLs as the proxy will read them (`?preset=NAME[&dpr=N]` after the original's own
query); an access token, when asked for, is signed over the original's path and appended by
`proxy.signing.sign_url`, so one token covers the original and all of its presets.

    from proxy.srcset import srcset
    srcset("/media/images/photo.jpg", config.images.preset("thumb"))
    # '/media/images/photo.jpg?preset=thumb 1x, /media/images/photo.jpg?preset=thumb&dpr=2 2x'
"""

from __future__ import annotations

from proxy.imageconfig import Preset
from proxy.policy import images
from proxy.signing import sign_url


def preset_url(url: str, preset: str, dpr: float = 1.0) -> str:
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    query = f"preset={preset}" + (f"&dpr={dpr:g}" if dpr != 1 else "")
    return f"{base}{joiner}{query}" + (f"#{fragment}" if fragment else "")


def srcset(url: str, preset: Preset, *, descriptor: str = "x", key_id: str | None = None,
           secret: str | bytes | None = None, ttl_seconds: int = 3600,
           now: float | None = None) -> str:
    """`url?preset=P 1x, url?preset=P&dpr=2 2x, ...` (or `320w, 640w` with descriptor="w",
    for presets with a width). With `key_id` and `secret`, each URL carries an access token."""
    if descriptor not in ("x", "w") or (descriptor == "w" and not preset.width):
        raise ValueError("descriptor is 'x', or 'w' for a preset with a width")
    entries = []
    for dpr in preset.dpr:
        target = preset_url(url, preset.name, dpr)
        if key_id is not None and secret is not None:
            target = sign_url(target, key_id=key_id, secret=secret, ttl_seconds=ttl_seconds,
                              now=now)
        size = f"{dpr:g}x" if descriptor == "x" else f"{round(preset.width * dpr)}w"
        entries.append(f"{target} {size}")
    return ", ".join(entries)


def free_form_url(url: str, *, width: int = 0, height: int = 0, fit: str = "inside",
                  fmt: str = "auto", quality: int = images.DEFAULT_QUALITY, key_id: str,
                  secret: str | bytes) -> str:
    """A signed free-form conversion (needs images.allow_free_form): the signature covers the
    path and every parameter. `url` is a path, or an absolute URL; no query of its own."""
    scheme, sep, rest = url.partition("://")
    if sep:
        host, _, tail = rest.partition("/")
        path = "/" + tail
    else:
        scheme, host, path = "", "", url
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    query = images.sign_free_form(path, width=width, height=height, fit=fit, fmt=fmt,
                                  quality=quality, key_id=key_id, secret=key)
    return f"{scheme}{sep}{host}{path}?{query}"
