"""``vocloud label`` with a SAMP hub: TOPCAT's subsets, highlights and edited tables become labels, each sent once.

A plain `pyvo.samp.SAMPIntegratedClient` stands in for TOPCAT (it shares no
code with the client under test): it receives the oracle batch the labeller
sends, then sends what an expert's TOPCAT would — a subset while "emission" is
collected (twice, as an expert may), a highlighted row, a table with a label
column, and one naming a spectrum the session does not hold. The labeller runs
as a real process on a private hub; the server is the real application
in-process, whose label history must then hold exactly the intended labels.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from astropy.table import Table
from pyvo import samp as pyvo_samp

from tests.server.sessions.support import DEMO_COUNT
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from tests.support.labelling import (
    client_environment,
    label_command,
    label_history,
    labelled_session,
    read_until,
    run_to_end,
    stop_process,
)
from tests.support.live_server import vocloud_command
from vocloud.client.errors import EXIT_UNREACHABLE, EXIT_USAGE
from vocloud.client.samp import (
    MTYPE_HIGHLIGHT_ROW,
    MTYPE_SELECT_ROW_LIST,
    MTYPE_TABLE_LOAD,
    PrivateHub,
    private_hub,
)
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

pytestmark = pytest.mark.timeout(120)

WAIT_S = 30.0
"""Longest wait for a SAMP message or a line of the labeller (the labeller's start-up included)."""


class TopcatStandIn:
    """A SAMP peer that takes tables and highlights like TOPCAT (recording them) and sends what an expert would."""

    def __init__(self, hub: PrivateHub) -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        with pyvo_samp.conf.set_temp("use_internet", False):
            self.conn = pyvo_samp.SAMPIntegratedClient(name="topcat", addr="127.0.0.1")
            self.conn.connect(hub=hub.server)
        for mtype in (MTYPE_TABLE_LOAD, MTYPE_HIGHLIGHT_ROW):
            self.conn.bind_receive_message(mtype, self._receive)

    def _receive(  # noqa: PLR0917 - the handler signature pyvo calls
        self, private_key: str, sender_id: str, msg_id: str | None, mtype: str, params: dict[str, Any], extra: Any
    ) -> None:
        self.received.put((mtype, params))
        if msg_id is not None:
            self.conn.ereply(msg_id, "samp.ok", result={})

    def next(self, mtype: str) -> dict[str, Any]:
        """The parameters of the next message of ``mtype`` received (others before it are dropped)."""
        while True:
            received, params = self.received.get(timeout=WAIT_S)
            if received == mtype:
                return params

    def highlights(self) -> list[int]:
        """Rows highlighted so far (the queue is emptied)."""
        rows = []
        while not self.received.empty():
            mtype, params = self.received.get_nowait()
            if mtype == MTYPE_HIGHLIGHT_ROW:
                rows.append(int(params["row"]))
        return rows

    def send(self, to: str, mtype: str, params: dict[str, Any]) -> None:
        self.conn.notify(to, {"samp.mtype": mtype, "samp.params": params})

    def labeller_id(self) -> str:
        (found,) = self.conn.get_subscribed_clients(MTYPE_SELECT_ROW_LIST)
        return str(found)

    def close(self) -> None:
        self.conn.disconnect()


@pytest.fixture
async def server(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_settings: Callable[..., Settings]
) -> TestClient[Any, Any]:
    """The real app on a loopback port, demo archive, iterations by the fake runner."""
    app = create_app(make_settings(demo_spectra=DEMO_COUNT), kinds=ALL, executor=FakeIterationExecutor(workers=1))
    return await aiohttp_client(app)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[PrivateHub]:
    with private_hub(tmp_path / "samp-lock") as running:
        yield running


def _labels_table(path: Path, rows: list[tuple[str, str]]) -> str:
    """A VOTable as TOPCAT would write the oracle batch with a typed-in ``label`` column; returns its file URL."""
    Table(rows=rows, names=("id", "label"), dtype=(str, str)).write(path, format="votable")
    return path.as_uri()


async def test_subsets_highlights_and_tables_from_topcat_become_labels_once(
    server: TestClient[Any, Any], hub: PrivateHub, tmp_path: Path
) -> None:
    base, session_id, oracle = await labelled_session(server, auto_advance="false")
    assert len(oracle) == 5
    env = {**client_environment(tmp_path / "journal.sqlite"), "SAMP_HUB": hub.samp_hub}
    topcat = await asyncio.to_thread(TopcatStandIn, hub)
    process = await asyncio.create_subprocess_exec(
        *label_command(base, session_id, "--collect", "emission", "--labeller", "Ann", samp=True),
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        loaded = await asyncio.to_thread(topcat.next, MTYPE_TABLE_LOAD)
        table = {"table-id": loaded["table-id"], "url": loaded["url"]}
        assert loaded["table-id"] == f"vocloud-{session_id}-1" and loaded["url"].endswith("/results/oracle")
        labeller = await asyncio.to_thread(topcat.labeller_id)
        seen = await read_until(process, f"[1/5] {oracle[0]}", 1, timeout=WAIT_S)
        assert "collecting emission: rows you select in TOPCAT are labelled emission" in seen

        # (b) The expert selects rows 1 and 3 and broadcasts the subset, then does it again.
        for _ in range(2):
            await asyncio.to_thread(topcat.send, labeller, MTYPE_SELECT_ROW_LIST, {**table, "row-list": ["3", "1"]})
        seen = await read_until(process, "nothing new (2 already labelled so", 1, timeout=WAIT_S)
        assert "topcat selected 2 row(s) as emission: 2 label(s) journalled" in seen
        assert "sent 2 label(s) to the server" in seen
        intended = [(oracle[1], "emission"), (oracle[3], "emission")]
        assert await label_history(server, session_id) == intended

        # A highlighted row comes up in the labeller (and is not highlighted back); a key labels it.
        await asyncio.to_thread(topcat.send, labeller, MTYPE_HIGHLIGHT_ROW, {**table, "row": "4"})
        seen = await read_until(process, f"[5/5] {oracle[4]}", 1, timeout=WAIT_S)
        assert "topcat highlighted row 5" in seen
        process.stdin.write(b"3\n")  # type: ignore[union-attr]
        await read_until(process, f"{oracle[4]} -> double-peak (journalled)", 1, timeout=WAIT_S)
        assert 4 not in topcat.highlights()

        # (c) The oracle batch comes back with a label column: filled-in cells are labels, unchanged ones left out.
        url = _labels_table(
            tmp_path / "edited.vot", [(oracle[0], "absorption"), (oracle[1], "emission"), (oracle[2], "")]
        )
        await asyncio.to_thread(topcat.send, labeller, MTYPE_TABLE_LOAD, {"url": url, "name": "edited"})
        seen = await read_until(process, "sent 2 label(s) to the server", 1, timeout=WAIT_S)
        assert "topcat sent table edited with 2 label(s): 1 label(s) journalled (1 already labelled so" in seen
        intended += [(oracle[4], "double-peak"), (oracle[0], "absorption")]  # the key's label was sealed first
        assert await label_history(server, session_id) == intended

        # A table naming a spectrum the session does not hold is refused whole, in the server's words.
        url = _labels_table(tmp_path / "wrong.vot", [(oracle[2], "emission"), ("ivo://elsewhere/x", "emission")])
        await asyncio.to_thread(topcat.send, labeller, MTYPE_TABLE_LOAD, {"url": url, "name": "wrong"})
        seen = await read_until(process, "the server refused 2 label(s)", 1, timeout=WAIT_S)
        assert "not spectra of the session's selection" in seen
        assert await label_history(server, session_id) == intended

        process.stdin.write(b"q\n")  # type: ignore[union-attr]
        await process.stdin.drain()  # type: ignore[union-attr]
        async with asyncio.timeout(WAIT_S):
            await process.wait()
    finally:
        await stop_process(process)
        await asyncio.to_thread(topcat.close)
    assert process.returncode == EXIT_USAGE  # some labels were refused: scripts can tell
    assert await label_history(server, session_id) == intended


async def test_collect_needs_a_hub_and_one_of_the_sessions_classes(
    server: TestClient[Any, Any], tmp_path: Path
) -> None:
    base, session_id, _ = await labelled_session(server, auto_advance="false")
    env = client_environment(tmp_path / "journal.sqlite")
    no_hub = {**env, "SAMP_HUB": f"std-lockurl:{(tmp_path / 'no-such-lockfile').as_uri()}"}

    status, output = await run_to_end(label_command(base, session_id, "--collect", "emission", samp=True), no_hub, "")
    assert status == EXIT_UNREACHABLE, output
    assert "--collect needs a SAMP hub" in output and "Traceback" not in output

    # The session by its URL (which names the server too): found, and its classes known.
    by_url = [*vocloud_command(), "label", f"{base}/sessions/{session_id}", "--collect", "nova"]
    status, output = await run_to_end(by_url, no_hub, "")
    assert status == EXIT_USAGE and "cannot collect 'nova': the session's classes are absorption," in output

    status, output = await run_to_end(label_command(base, session_id, "--collect", "emission"), env, "")
    assert status == EXIT_USAGE and "cannot go with --no-samp" in output
