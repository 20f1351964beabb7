"""The installed distribution's version (`mediaproxy --version`, logs, build_info metric)."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    try:
        return metadata.version("mediaproxy")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"
