"""``vocloud label`` driven like a person at a terminal: tmux send-keys and capture-pane.

Label five candidates, undo one, quit, resume, finish: the server then holds
exactly the intended labels, each once (the undone one never left the
journal), and the finished batch started the next iteration. The server is the
real application in-process, its iterations run by the fake runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import shutil
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from astropy.io.votable import parse

from tests.server.sessions.support import DEMO_COUNT, get_session
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from tests.support.labelling import client_environment, label_command, labelled_session
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

STARTUP_TIMEOUT_S = 120.0
"""Time for ``vocloud label`` to show its first candidate: an interpreter, astropy's import and a few requests.

About 2 s on an idle machine; on a 2-core machine shared with other test runs a
60 s wait once ran out, so start-up gets its own, long deadline, and keystrokes a short one."""
KEY_TIMEOUT_S = 30.0
"""Time for the labeller to answer a keystroke (journal the label, echo it, send a batch): milliseconds idle."""
_POLL_S = 0.2
"""Between two looks at the pane: each is a tmux process, which a loaded machine should not get more of."""

pytestmark = [
    # Two start-ups at their deadline and room for the rest: a ceiling for a loaded machine, not the expected time.
    pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 60),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

CLASSES = ("absorption", "emission", "double-peak")
PROMPT = "q quit >"


class Tmux:
    """A private tmux server (its own socket) with one pane running a bare shell."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"vocloud-test-{uuid.uuid4().hex[:12]}"
        self.config = tmp_path / "tmux.conf"
        self.config.write_text("set -g history-limit 50000\nset -g remain-on-exit on\n")

    async def run(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, "-f", str(self.config), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode == 0, f"tmux {args}: {err.decode()}"
        return out.decode()

    async def start(self, env: dict[str, str]) -> None:
        shell = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "--norc", "--noprofile"])
        await self.run("new-session", "-d", "-s", "t", "-x", "110", "-y", "50", shell)

    async def pids(self) -> tuple[int, int]:
        """The tmux server's and the pane shell's PIDs."""
        server, pane = (await self.run("display-message", "-p", "-t", "t", "#{pid} #{pane_pid}")).split()
        return int(server), int(pane)

    async def keys(self, *keys: str) -> None:
        await self.run("send-keys", "-t", "t", *keys)

    async def screen(self) -> str:
        """Everything the pane showed, scrollback included, wrapped lines joined."""
        return await self.run("capture-pane", "-p", "-J", "-t", "t", "-S", "-")

    async def wait_for(self, condition: Callable[[str], bool], what: str, *, timeout: float = KEY_TIMEOUT_S) -> str:
        """The pane's text once ``condition`` holds for it; fails saying what, how long, the load, and the pane."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            text = await self.screen()
            if condition(text):
                return text
            waited = loop.time() - started
            if waited > timeout:
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                pytest.fail(
                    f"timed out after {waited:.0f} s waiting for {what} (deadline {timeout:g} s; load average"
                    f" {load} on {os.cpu_count()} CPUs); the pane shows:\n{text[-3000:]}"
                )
            await asyncio.sleep(_POLL_S)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _kill(pids: Iterator[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def server(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_settings: Callable[..., Settings]
) -> TestClient[Any, Any]:
    """The real app on a loopback port, demo archive, iterations by the fake runner."""
    app = create_app(make_settings(demo_spectra=DEMO_COUNT), kinds=ALL, executor=FakeIterationExecutor(workers=1))
    return await aiohttp_client(app)


async def _history(server: TestClient[Any, Any], session_id: str) -> list[tuple[str, str, str]]:
    response = await server.get(f"/sessions/{session_id}/labels")
    table = parse(io.BytesIO(await response.read())).get_first_table().array
    return list(zip(table["id"].tolist(), table["label"].tolist(), table["labeller"].tolist(), strict=True))


async def test_label_five_undo_one_quit_resume_finish(server: TestClient[Any, Any], tmp_path: Path) -> None:
    base, session_id, oracle = await labelled_session(server, batch_size=8, seed_size=8)
    assert len(oracle) == 8
    env = client_environment(tmp_path / "journal.sqlite")
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    env["TERM"] = "xterm"
    command = shlex.join([*label_command(base, session_id), "--labeller", "Ann"]) + '; echo "EX""IT=$?"'
    tmux = Tmux(tmp_path)
    tmux_pid = pane_pid = None
    try:
        await tmux.start(env)
        tmux_pid, pane_pid = await tmux.pids()

        # First run: five labels, one key each (no Enter: the pane is a terminal), then undo the fifth and quit.
        await tmux.keys(command, "Enter")
        await tmux.wait_for(
            lambda s: f"[1/8] {oracle[0]}" in s and PROMPT in s, "the first candidate", timeout=STARTUP_TIMEOUT_S
        )
        first_keys = ["1", "2", "3", "1", "2"]
        for done, key in enumerate(first_keys, start=1):
            await tmux.keys(key)
            await tmux.wait_for(lambda s, n=done: s.count("(journalled)") == n, f"label {done}")
        await tmux.keys("u")
        await tmux.wait_for(lambda s: f"label of {oracle[4]} undone" in s, "the undo")
        await tmux.keys("q")
        screen = await tmux.wait_for(lambda s: "EXIT=" in s, "the first run to end")
        assert "EXIT=0" in screen and "sent 4 label(s) to the server" in screen
        assert "+------" in screen, screen
        intended = [(oracle[i], CLASSES[int(k) - 1], "Ann") for i, k in enumerate(first_keys[:4])]
        assert await _history(server, session_id) == intended

        # Second run: the four labelled are left out, the undone candidate comes first; finish the batch.
        await tmux.keys(command, "Enter")
        await tmux.wait_for(lambda s: f"[1/4] {oracle[4]}" in s, "the resumed run", timeout=STARTUP_TIMEOUT_S)
        second_keys = ["3", "3", "1", "2"]
        for done, key in enumerate(second_keys, start=6):
            await tmux.keys(key)
            await tmux.wait_for(lambda s, n=done: s.count("(journalled)") == n, f"label {done}")
        screen = await tmux.wait_for(lambda s: s.count("EXIT=") == 2, "the second run to end")

        assert screen.count("EXIT=0") == 2
        assert "4 candidate(s) already labelled are left out" in screen
        assert "the server started the next iteration" in screen
        intended += [(oracle[4 + i], CLASSES[int(k) - 1], "Ann") for i, k in enumerate(second_keys)]
        assert await _history(server, session_id) == intended
        document = await get_session(server, f"/sessions/{session_id}")
        assert document["labels"]["total"] == 8 and len(document["iterations"]) == 2
    finally:
        if pane_pid is not None:
            _kill(_children(pane_pid))
            _kill([pane_pid])
        with contextlib.suppress(AssertionError, OSError):
            await tmux.run("kill-server")
        if tmux_pid is not None:
            _kill([tmux_pid])
