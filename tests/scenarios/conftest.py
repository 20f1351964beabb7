"""Scenario tests run real processes: reuse the e2e fixtures."""

from tests.e2e.conftest import origin_process

__all__ = ["origin_process"]
