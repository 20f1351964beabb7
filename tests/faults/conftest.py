"""Fault tests run real processes (origin and proxy as subprocesses): reuse the e2e fixtures."""

from tests.e2e.conftest import origin_process

__all__ = ["origin_process"]
