"""A real vocloud application served from a background thread, and ``vocloud`` commands run in-process.

The client is blocking (requests), so a server it talks to must not run on the
caller's event loop: `serve_app` gives the application a loop and a thread of
its own, so that tests of the client stay plain functions. `Run` calls the
``vocloud`` entry point the console script calls, with its output captured.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import unused_port

from tests.support.kinds import ALL
from vocloud.client.cli import main
from vocloud.server.app import create_app
from vocloud.server.executor.base import Executor
from vocloud.server.settings import Settings

__all__ = ["Run", "count_requests", "serve_app", "vocloud_app"]

_STOP_TIMEOUT_S = 30.0


@contextmanager
def serve_app(make_app: Callable[[str], web.Application]) -> Iterator[str]:
    """Serve ``make_app(base_url)`` on a free loopback port from a background thread; yields the base URL.

    A blocking client under test must not run on the loop that serves it; its
    own thread and loop let the tests stay plain functions. The app is cleaned
    up (worker pools stopped) before the block ends, however it ends.
    """
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(base))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name=f"app-{port}", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(_STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT_S)
        loop.close()


def vocloud_app(
    data_dir: Path, *, executor: Callable[[], Executor] | None = None, **settings: Any
) -> Callable[[str], web.Application]:
    """A factory of the real application with the test kinds, its links pointing at the served URL.

    Parameters
    ----------
    data_dir
        The server's data directory.
    executor
        Makes the executor (e.g. the fake iteration executor); default the local pool.
    **settings
        Settings other than the test defaults (2 workers, no demo archive).
    """

    def make(base: str) -> web.Application:
        values: dict[str, Any] = {"data_dir": data_dir, "port": 0, "workers": 2, "demo_spectra": 0}
        values.update(settings)
        made = None if executor is None else executor()
        return create_app(Settings(base_url=base, **values), kinds=ALL, executor=made)

    return make


def count_requests(http: requests.Session) -> list[requests.Response]:
    """Record every response the session receives (redirects and 401 retries included)."""
    seen: list[requests.Response] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append(response)
        seen.extend(response.history)

    http.hooks["response"].append(hook)
    return seen


class Run:
    """Run ``vocloud`` commands in-process; returns (exit code, stdout, stderr), and fails on a traceback."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err
