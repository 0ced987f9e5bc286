"""Running blocking client code (pyvo, requests, STILTS) from async tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def in_thread(scenario: Callable[[], Any]) -> Any:
    """Run blocking code in a worker thread, never on the event loop that serves the application."""
    return await asyncio.to_thread(scenario)
