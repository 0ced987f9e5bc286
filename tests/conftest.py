"""Shared fixtures: settings in a temporary data directory and an in-process server."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestClient

from tests.support.kinds import ALL
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""Real spectra and VO responses beside the checkout (absent on some machines)."""

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep an operator's VOCLOUD_* variables out of the tests."""
    for name in list(os.environ):
        if name.startswith("VOCLOUD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh server data directory."""
    return tmp_path / "data"


@pytest.fixture
def make_settings(data_dir: Path) -> Callable[..., Settings]:
    """Build settings in the test's data directory, with overrides."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": data_dir, "port": 0, "workers": 2, "demo_spectra": 0}
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    make_settings: Callable[..., Settings],
) -> ClientFactory:
    """Start the real application in-process with the test kinds; returns a client."""

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(make_settings(**overrides), kinds=ALL))

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    """The application with default test settings."""
    return await make_client()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session for clients such as pyvo (closed at the end, so no socket is left open)."""
    with requests.Session() as http:
        yield http


@pytest.fixture
def shared_data() -> Path:
    """The shared real data directory; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present on this machine")
    return SHARED_DATA
