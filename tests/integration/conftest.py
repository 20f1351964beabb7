"""Fixtures shared by the integration tests (the reference origin and the proxy are in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import free_port
from tests.integration.scripted_http import Scripted


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """An origin scripted per path that records what it was sent (`Scripted`)."""
    origin = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", origin.handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    origin.url = str(server.make_url("")).rstrip("/")
    yield origin
    await server.close()
