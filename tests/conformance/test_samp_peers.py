"""vocloud's SAMP client with the real peers: TOPCAT and Aladin under Xvfb, jsamp's Snooper and MessageSender.

Deselected by default (``-m conformance`` selects them); skipped, saying so, on
a machine without the peers (``conformance/install-samp-peers`` installs them).
Each test runs its own pyvo hub, whose lockfile is also the peers' ``~/.samp``
(Aladin reads nothing else), and stops every program it started by PID.

What each proves, in the peer's own terms:

* TOPCAT loads the candidates table (written by the server's own writer, its
  DataLink pointing at a live server) and answers ``samp.ok``; the table it
  serves back through its ``table.get.stil`` has the same rows.
* Aladin, pointed at a candidate through `CandidateViewer.show`, answers
  ``coord.get.sky`` with the candidate's position.
* The Snooper (a spectrum viewer as far as SAMP goes) receives
  ``spectrum.load.ssa-generic`` with the SODA cutout URL and its SSA metadata.
* MessageSender, standing in for an expert broadcasting a subset from TOPCAT,
  sends ``table.select.rowList``: our callback gets the rows; and, end to end,
  ``vocloud label SESSION --collect emission`` labels them emission on the server.

Timings (peer registration, a table load's round trip) are printed and recorded
as test properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestClient
from astropy.table import Table

from conformance.samp_peers import (
    missing_programs,
    parse_snooper,
    run_message_sender,
    start_aladin,
    start_snooper,
    start_topcat,
    start_xvfb,
    wait_for,
)
from tests.server.sessions.support import DEMO_COUNT
from tests.support.candidates import write_candidates_table
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from tests.support.labelling import label_command, label_history, labelled_session, read_until, stop_process
from tests.support.live_server import LiveServer, running_server
from vocloud.client.samp import (
    MTYPE_POINT_AT_SKY,
    MTYPE_SPECTRUM_LOAD,
    MTYPE_TABLE_LOAD,
    CandidateViewer,
    PrivateHub,
    SampClient,
    SampReplyError,
    private_hub,
)
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

_MISSING = missing_programs()

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        bool(_MISSING), reason=f"not installed: {', '.join(_MISSING)}; run conformance/install-samp-peers"
    ),
    # A JVM start and a Java GUI's on a busy 2-core machine.
    pytest.mark.timeout(180),
    # pyvo's hub warns (from its own threads) when it cannot notify a peer that was killed,
    # as Aladin must be: expected here, and not about the code under test.
    pytest.mark.filterwarnings("ignore::pyvo.samp.SAMPWarning"),
]

REGISTER_TIMEOUT_S = 120.0
"""Time for a Java peer to start and register on a loaded machine (about 3 s for TOPCAT, 5 s for Aladin idle)."""

LOADS = 5
"""Table loads timed for the round-trip figure."""


@dataclass
class Desk:
    """A private hub, an X display, and the environment the peers start in."""

    hub: PrivateHub
    home: Path
    """The peers' home directory: ``.samp`` in it is the hub's lockfile."""
    env: dict[str, str]
    logs: Path


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One X server without a screen for the module's GUI programs."""
    with start_xvfb(tmp_path_factory.mktemp("xvfb") / "xvfb.log") as name:
        yield name


@pytest.fixture
def desk(display: str, tmp_path: Path) -> Iterator[Desk]:
    """A fresh hub per test: pyvo's hub keeps clients that died (Aladin is killed) registered."""
    home = tmp_path / "home"
    home.mkdir()
    with private_hub(home / ".samp") as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMP_", "VOCLOUD_"))}
        env.update(SAMP_HUB=hub.samp_hub, DISPLAY=display, HOME=str(home))
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        try:
            yield Desk(hub=hub, home=home, env=env, logs=tmp_path)
        finally:
            # Before the peers are stopped (by the tests' own finally blocks, which ran already, or
            # not at all): a hub stopping notifies its clients, which only live ones can hear.
            hub.server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path, Table]]:
    """A live server with its demo archive, and a candidates table of five of its spectra (a file)."""
    data = tmp_path_factory.mktemp("live")
    with running_server(data_dir=data / "data", log_path=data / "server.log", workers=1) as server:
        table = write_candidates_table(server.base_url, data / "candidates.vot")
        yield server, data / "candidates.vot", table


def _registered(samp: SampClient, name: str, mtype: str | None = None) -> Callable[[], bool]:
    """Whether a client called ``name`` is on the hub (and subscribed to ``mtype``: Aladin subscribes late)."""
    return lambda: any(n.casefold() == name.casefold() for n in samp.clients(mtype).values())


def _report(record_property: Callable[[str, object], None], name: str, value: float) -> None:
    record_property(name, round(value, 3))
    print(f"{name}: {value:.3f} s")  # the figures the run is for; -s shows them


def test_topcat_loads_the_candidates_table(
    desk: Desk, live: tuple[LiveServer, Path, Table], record_property: Callable[[str, object], None]
) -> None:
    _, path, table = live
    with SampClient(timeout=60) as samp:
        samp.connect(desk.hub.samp_hub)
        topcat = start_topcat(env=desk.env, log=desk.logs / "topcat.log")
        try:
            took = wait_for(_registered(samp, "topcat", MTYPE_TABLE_LOAD), timeout=REGISTER_TIMEOUT_S, what="TOPCAT")
            _report(record_property, "topcat_registration_s", took)
            viewer = CandidateViewer(samp, path.as_uri(), "vocloud-candidates", name="candidates")
            round_trips = []
            for number in range(LOADS):
                started = time.monotonic()
                if number == 0:
                    replies = viewer.load_table()
                else:  # TOPCAT refuses a table-id it holds already: the same table under new ones
                    replies = samp.send_table(path.as_uri(), table_id=f"again-{number}", name=f"again {number}")
                round_trips.append(time.monotonic() - started)
                assert [(r.name, r.status) for r in replies.values()] == [("topcat", "samp.ok")]
            with pytest.raises(SampReplyError, match="topcat"):
                viewer.load_table()  # the same table-id twice: TOPCAT's error reaches the caller
            _report(record_property, "topcat_table_load_first_s", round_trips[0])
            _report(record_property, "topcat_table_load_median_s", statistics.median(round_trips))

            # What TOPCAT holds, served back by TOPCAT itself. It lists a table a moment after
            # answering the load, hence the retries.
            served: dict[str, Any] = {}

            def pulled() -> bool:
                with contextlib.suppress(SampReplyError):
                    reply = samp.call("table.get.stil", {"format": "votable", "index": "1"}, to="topcat")
                    served.update(next(iter(reply.values())).result)
                return "url" in served

            wait_for(pulled, timeout=30, what="TOPCAT serving its first table")
            with requests.get(served["url"], timeout=30) as answer:
                answer.raise_for_status()
                back = Table.read(io.BytesIO(answer.content), format="votable")
            assert len(back) == len(table)
            assert [str(v) for v in back["id"]] == [str(v) for v in table["id"]]
            assert [str(v) for v in back["target"]] == [str(v) for v in table["target"]]
            for column in ("ra", "dec", "p_emission", "bald", "x", "y"):
                assert list(back[column]) == pytest.approx(list(table[column]), rel=1e-6), column
            assert [bool(v) for v in back["oracle"]] == [bool(v) for v in table["oracle"]]
            assert [int(v) for v in back["rank"]] == [int(v) for v in table["rank"]]

            # TOPCAT takes a highlight of a row of the table it loaded.
            shown = viewer.show(table[3], 3)
            assert shown.sent.get("table.highlight.row") == ["topcat"], shown
        finally:
            topcat.stop()


def test_aladin_is_pointed_at_a_candidate(
    desk: Desk, live: tuple[LiveServer, Path, Table], record_property: Callable[[str, object], None]
) -> None:
    _, path, table = live
    with SampClient(timeout=60) as samp:
        samp.connect(desk.hub.samp_hub)
        aladin = start_aladin(home=desk.home, env=desk.env, log=desk.logs / "aladin.log")
        try:
            took = wait_for(_registered(samp, "Aladin", MTYPE_POINT_AT_SKY), timeout=REGISTER_TIMEOUT_S, what="Aladin")
            _report(record_property, "aladin_registration_s", took)
            viewer = CandidateViewer(samp, path.as_uri(), "vocloud-candidates")
            row = table[1]
            shown = viewer.show(row, 1)
            assert "Aladin" in shown.sent.get(MTYPE_POINT_AT_SKY, []), shown
            where = next(iter(samp.call("coord.get.sky", {}, to="Aladin").values())).result
            assert float(where["ra"]) == pytest.approx(float(row["ra"]), abs=1 / 3600)
            assert float(where["dec"]) == pytest.approx(float(row["dec"]), abs=1 / 3600)
            # And to another candidate: Aladin follows.
            other = table[4]
            viewer.show(other, 4)
            where = next(iter(samp.call("coord.get.sky", {}, to="Aladin").values())).result
            assert float(where["dec"]) == pytest.approx(float(other["dec"]), abs=1 / 3600)
        finally:
            aladin.stop()
        assert aladin.process.returncode is not None


def test_a_spectrum_viewer_receives_the_cutout_with_its_metadata(
    desk: Desk, live: tuple[LiveServer, Path, Table], record_property: Callable[[str, object], None]
) -> None:
    server, path, table = live
    with SampClient(timeout=30) as samp, requests.Session() as http:
        samp.connect(desk.hub.samp_hub)
        snooper = start_snooper(env=desk.env, log=desk.logs / "snooper.log", name="snoop", mtype="spectrum.*")
        try:
            took = wait_for(_registered(samp, "snoop", MTYPE_SPECTRUM_LOAD), timeout=REGISTER_TIMEOUT_S, what="Snooper")
            _report(record_property, "snooper_registration_s", took)
            viewer = CandidateViewer(samp, path.as_uri(), "vocloud-candidates", http=http)
            row = table[0]
            shown = viewer.show(row, 0)
            # The Snooper logs what it gets and answers samp.warning ("not acted on"): a partial success.
            assert shown.sent.get(MTYPE_SPECTRUM_LOAD) == ["snoop"], shown
            wait_for(lambda: parse_snooper(snooper.output()), timeout=30, what="the Snooper printing the message")
        finally:
            snooper.stop()
    (message,) = [m for m in parse_snooper(snooper.output()) if m.message["samp.mtype"] == MTYPE_SPECTRUM_LOAD]
    params = message.message["samp.params"]
    assert params["url"] == shown.spectrum_url
    assert params["url"].startswith(server.url("/soda?"))
    assert params["spectrum-id"] == str(row["id"])
    meta = params["meta"]
    assert meta["ssa:Access.Format"] == "application/fits"
    assert meta["ssa:Target.Name"] == str(row["target"])
    assert meta["ssa:Curation.PublisherDID"] == str(row["id"])
    assert (meta["ssa:Dataset.SpectralAxis"], meta["ssa:Dataset.FluxAxis"]) == ("WAVELENGTH", "FLUX")
    assert meta["ssa:Char.SpectralAxis.Unit"] == "Angstrom" and meta["vox:spectrum_units"].startswith("Angstrom")
    ra, dec = (float(v) for v in meta["ssa:Char.SpatialAxis.Coverage.Location.Value"].split())
    assert (ra, dec) == pytest.approx((float(row["ra"]), float(row["dec"])))


def test_rows_sent_by_message_sender_reach_our_callback(desk: Desk) -> None:
    rows: queue.Queue[tuple[str | None, str | None, list[int]]] = queue.Queue()
    with SampClient(name="vocloud-rows") as samp:
        samp.on_row_list(lambda table_id, url, selected: rows.put((table_id, url, selected)))
        samp.connect(desk.hub.samp_hub)
        params = {"table-id": "t1", "url": "http://example.org/c.vot", "row-list": '["0","2"]'}
        status, output = run_message_sender(
            "table.select.rowList", params, target="vocloud-rows", env=desk.env, log=desk.logs / "sender.log"
        )
    assert status == 0, output
    assert "samp.ok" in output
    assert rows.get(timeout=10) == ("t1", "http://example.org/c.vot", [0, 2])


@pytest.fixture
async def server(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_settings: Callable[..., Settings]
) -> TestClient[Any, Any]:
    """The real app on a loopback port, its demo archive, iterations by the fake runner (no training)."""
    app = create_app(make_settings(demo_spectra=DEMO_COUNT), kinds=ALL, executor=FakeIterationExecutor(workers=1))
    return await aiohttp_client(app)


async def test_rows_selected_in_topcat_become_labels_on_the_server(
    desk: Desk, server: TestClient[Any, Any], tmp_path: Path
) -> None:
    """The whole route of issue 5 (5 b): ``vocloud label --collect emission`` hears a subset and labels it emission.

    jsamp's MessageSender stands in for the expert broadcasting a TOPCAT subset
    of the oracle batch; the labeller runs as the real command, journals the
    rows and sends them; the server's history then holds exactly those ids.
    """
    base, session_id, oracle = await labelled_session(server, batch_size=6, seed_size=6)
    env = {**desk.env, "VOCLOUD_JOURNAL": str(tmp_path / "journal.sqlite")}
    command = label_command(base, session_id, "--collect", "emission", "--labeller", "samp-test", samp=True)
    labeller = await asyncio.create_subprocess_exec(
        *command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        # Shown once it is on the hub, subscribed, and has sent the batch to the table viewers.
        await read_until(labeller, f"[1/6] {oracle[0]}", 1, timeout=REGISTER_TIMEOUT_S)
        params = {
            "table-id": f"vocloud-{session_id}-1",
            "url": f"{base}/jobs/active_learning/any/results/oracle",  # the table-id alone names the table
            "row-list": '["0","2","5"]',
        }
        status, output = await asyncio.to_thread(
            run_message_sender, "table.select.rowList", params, target="vocloud", env=desk.env,
            log=desk.logs / "sender.log",
        )  # fmt: skip
        assert status == 0, output
        assert "samp.ok" in output
        seen = await read_until(labeller, "sent 3 label(s) to the server", 1, timeout=60)
        assert "selected 3 row(s) as emission: 3 label(s) journalled" in seen
        assert labeller.stdin is not None
        labeller.stdin.close()  # the end of the expert's keys: the labeller quits
        async with asyncio.timeout(60):
            await labeller.wait()
    finally:
        await stop_process(labeller)
    assert labeller.returncode == 0
    assert await label_history(server, session_id) == [(oracle[i], "emission") for i in (0, 2, 5)]
