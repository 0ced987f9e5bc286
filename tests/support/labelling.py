"""Driving ``vocloud label`` in tests: a session ready to label, the server's label history, the client as a process.

The client runs as a real process (``vocloud label``) against the real
application served in-process by ``aiohttp_client``; these helpers make the
session, build its command line and environment (a private journal, no SAMP
hub or proxy of the developer's), and read what it prints.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from astropy.io.votable import parse

from tests.server.sessions.support import create_session, default_form, path_of, wait_iteration
from tests.support.live_server import vocloud_command

__all__ = [
    "client_environment",
    "label_command",
    "label_history",
    "labelled_session",
    "read_until",
    "run_to_end",
    "stop_process",
]


async def labelled_session(server: TestClient[Any, Any], **form: Any) -> tuple[str, str, list[str]]:
    """A session with a completed first iteration: (base URL, session id, its oracle batch in order)."""
    path = await create_session(server, default_form(**form))
    document = await wait_iteration(server, path, 1)
    oracle = await server.get(path_of(document["iterations"][0]["results"]["oracle"]))
    table = parse(io.BytesIO(await oracle.read())).get_first_table().array
    return str(server.make_url("")).rstrip("/"), path.rsplit("/", 1)[-1], [str(d) for d in table["id"]]


async def label_history(server: TestClient[Any, Any], session_id: str) -> list[tuple[str, str]]:
    """The server's label history as (id, label) in posting order."""
    response = await server.get(f"/sessions/{session_id}/labels")
    assert response.status == 200
    table = parse(io.BytesIO(await response.read())).get_first_table().array
    return list(zip(table["id"].tolist(), table["label"].tolist(), strict=True))


def label_command(base: str, session_id: str, *extra: str, samp: bool = False) -> list[str]:
    """``vocloud label SESSION`` against ``base``, with ``--no-samp`` unless ``samp``."""
    return [*vocloud_command(), "label", session_id, "--server", base, *([] if samp else ["--no-samp"]), *extra]


def client_environment(journal_file: Path) -> dict[str, str]:
    """The test's environment with the journal in a temporary file and no SAMP hub or proxy in the way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOCLOUD_", "SAMP_"))}
    env["VOCLOUD_JOURNAL"] = str(journal_file)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


async def read_until(process: asyncio.subprocess.Process, marker: str, count: int, *, timeout: float = 60) -> str:
    """Read the process's output until ``marker`` was seen ``count`` times; returns what was read."""
    assert process.stdout is not None
    seen = ""
    try:
        async with asyncio.timeout(timeout):
            while seen.count(marker) < count:
                line = await process.stdout.readline()
                assert line, f"the client ended before {count} x {marker!r}: {seen}"
                seen += line.decode()
    except TimeoutError:
        msg = f"no {count} x {marker!r} from the client within {timeout:g} s; it printed:\n{seen[-3000:]}"
        raise AssertionError(msg) from None
    return seen


async def run_to_end(command: list[str], env: dict[str, str], keys: str) -> tuple[int, str]:
    """Run a client with ``keys`` on its standard input; its status and output."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate(keys.encode())
    finally:
        await stop_process(process)
    return process.returncode or 0, output.decode()


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Kill a client this test started (by its own PID) if it is still running, and reap it."""
    if process.returncode is None:
        process.kill()
        await process.wait()
