"""The application with a small demo archive and the fake ``active_learning`` runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.server.sessions.support import DEMO_COUNT
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_app(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    make_settings: Callable[..., Settings],
) -> AppFactory:
    """Start the real app in-process on a demo archive, iterations run by the fake runner; returns a client."""

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(**{"demo_spectra": DEMO_COUNT, **overrides})
        return await aiohttp_client(create_app(settings, kinds=ALL, executor=FakeIterationExecutor(workers=2)))

    return factory


@pytest.fixture
async def app(make_app: AppFactory) -> TestClient[Any, Any]:
    """The app with default test settings."""
    return await make_app()
