"""Fixtures: an origin application on a fresh SQLite file, and a test client bound to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from origin.app import create_app
from tests.origin.origin_testing import ADMIN_TOKEN, TIMEOUT, Client


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "media.sqlite3"


@pytest.fixture
def origin_app(db_path: Path) -> web.Application:
    return create_app(db_path, admin_token=ADMIN_TOKEN)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, origin_app: web.Application) -> Client:
    return await aiohttp_client(origin_app, timeout=TIMEOUT)
