"""`vocloud.client.samp` and `CandidateViewer` on a private pyvo hub, against peers of our own that record what arrives.

The peers are plain `pyvo.samp.SAMPIntegratedClient`s, not our `SampClient`,
so that what is sent is checked by code that shares nothing with the sender.
The real peers (TOPCAT, Aladin, jsamp) are in tests/conformance/test_samp_peers.py.
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from astropy.io import fits
from astropy.table import Table
from pyvo import samp as pyvo_samp

from tests.support.candidates import write_candidates_table
from tests.support.live_server import LiveServer, running_server
from vocloud.client import viewers
from vocloud.client.samp import (
    MTYPE_HIGHLIGHT_ROW,
    MTYPE_POINT_AT_SKY,
    MTYPE_SELECT_ROW_LIST,
    MTYPE_SPECTRUM_LOAD,
    MTYPE_TABLE_LOAD,
    CandidateViewer,
    HighlightEvent,
    HubNotFoundError,
    PrivateHub,
    RowListEvent,
    SampClient,
    SampError,
    SampReplyError,
    TableLoadEvent,
    hub_lockfile,
    private_hub,
    spectrum_meta,
)
from vocloud.client.viewers import CUTOUT_FLUX_COLUMN, CUTOUT_SPECTRAL_COLUMN, CUTOUT_SPECTRAL_UNIT, HALPHA_BAND_M

WAIT_S = 10.0
"""Longest wait for a message to arrive; they take milliseconds."""


# --- a peer of our own ------------------------------------------------------------------------------------------


class Peer:
    """A SAMP client on pyvo that records every message of its MTypes and answers as it is told.

    Parameters
    ----------
    hub
        The hub to register with.
    name
        Its ``samp.name``.
    mtypes
        What it subscribes to.
    status
        What it answers calls with (``samp.ok`` or ``samp.error``); None never answers.
    """

    def __init__(self, hub: PrivateHub, name: str, mtypes: Sequence[str], *, status: str | None = "samp.ok") -> None:
        self.status = status
        self.messages: queue.Queue[tuple[str, dict[str, Any], str | None]] = queue.Queue()
        with pyvo_samp.conf.set_temp("use_internet", False):
            self.conn = pyvo_samp.SAMPIntegratedClient(name=name, addr="127.0.0.1")
            self.conn.connect(hub=hub.server)
        for mtype in mtypes:
            self.conn.bind_receive_message(mtype, self._receive)

    @property
    def id(self) -> str:
        return str(self.conn.get_public_id())

    def _receive(  # noqa: PLR0917 - the handler signature pyvo calls
        self, private_key: str, sender_id: str, msg_id: str | None, mtype: str, params: dict[str, Any], extra: Any
    ) -> None:
        self.messages.put((mtype, params, msg_id))
        if msg_id is not None and self.status is not None:
            error = {"samp.errortxt": f"{self.status} from the test peer"} if self.status == "samp.error" else None
            self.conn.ereply(msg_id, self.status, result={}, error=error)

    def next(self) -> tuple[str, dict[str, Any]]:
        """The next message received (MType, parameters); fails the test when none comes."""
        mtype, params, _ = self.messages.get(timeout=WAIT_S)
        return mtype, params

    def close(self) -> None:
        self.conn.disconnect()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateHub]:
    """A fresh hub per module: pyvo's hub keeps the clients of earlier tests that did not leave."""
    with private_hub(tmp_path_factory.mktemp("samp") / "lockfile") as running:
        yield running


@pytest.fixture
def peers(hub: PrivateHub) -> Iterator[list[Peer]]:
    """Peers the test makes with `peer`; all leave the hub at the end."""
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


@pytest.fixture
def peer(hub: PrivateHub, peers: list[Peer]) -> Any:
    def make(name: str, *mtypes: str, status: str | None = "samp.ok") -> Peer:
        made = Peer(hub, name, mtypes, status=status)
        peers.append(made)
        return made

    return make


@pytest.fixture
def samp(hub: PrivateHub) -> Iterator[SampClient]:
    with SampClient(timeout=5) as client:
        client.connect(hub.samp_hub)
        yield client


# --- finding the hub ----------------------------------------------------------------------------------------------


def test_the_lockfile_is_found_as_the_standard_profile_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("SAMP_HUB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_lockfile() == str(tmp_path / ".samp")
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'my hub').as_uri()}")
    assert hub_lockfile() == str(tmp_path / "my hub")
    assert hub_lockfile(tmp_path / "given") == str(tmp_path / "given")
    assert hub_lockfile("http://example.org/lock") == "http://example.org/lock"
    monkeypatch.setenv("SAMP_HUB", "web-profile:whatever")
    with pytest.raises(HubNotFoundError, match="profile"):
        hub_lockfile()


def test_connect_honours_samp_hub_then_home(hub: PrivateHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SAMP_HUB", hub.samp_hub)
    with SampClient(name="by-env") as client:
        client.connect()
        assert client.connected
        assert client.client_id not in client.clients()  # the hub lists the others

    monkeypatch.delenv("SAMP_HUB")
    with pytest.raises(HubNotFoundError, match=r"\.samp"):
        SampClient().connect()
    (tmp_path / ".samp").write_bytes(hub.lockfile.read_bytes())
    with SampClient(name="by-home") as client:
        client.connect()
        assert client.connected


def test_a_dead_hub_or_a_foreign_file_is_reported(tmp_path: Path):
    lockfile = tmp_path / "lock"
    with private_hub(lockfile):
        stale = lockfile.read_text()
    lockfile.write_text(stale)  # the hub is gone, its lockfile left behind as after a crash
    with pytest.raises(HubNotFoundError, match="does not answer"):
        SampClient().connect(lockfile)
    lockfile.write_text("not a lockfile\n")
    with pytest.raises(HubNotFoundError, match="not a SAMP"):
        SampClient().connect(lockfile)
    assert HubNotFoundError("x").exit_code == 3


_CUT_SHORT = """
import socket, sys, threading, time
from pathlib import Path
from urllib.parse import urlsplit
from vocloud.client.samp import SampClient, private_hub

with private_hub(Path(sys.argv[1])) as hub:
    url = urlsplit(hub.server.params["samp.hub.xmlrpc.url"])
    threads = threading.active_count()
    with socket.create_connection((url.hostname, url.port), timeout=5) as peer:
        peer.sendall(
            f"POST / HTTP/1.1\\r\\nHost: {url.netloc}\\r\\nContent-Type: text/xml\\r\\n"
            "Content-Length: 1000\\r\\n\\r\\n<?xml version='1.0'?><methodCall>".encode()
        )
    start = time.process_time()
    time.sleep(2)
    print("measured", time.process_time() - start, threading.active_count() - threads)
    with SampClient() as client:
        client.connect(hub.lockfile)
        print("connected", client.connected)
"""


@pytest.mark.timeout(60)
def test_a_peer_dying_in_the_middle_of_a_call_leaves_no_thread_spinning(tmp_path: Path):
    """A POST cut short (a peer killed while calling) ends its handler; pyvo's own loop read b"" for ever.

    Run in a plain interpreter: pytest's warnings-as-errors would end pyvo's loop by accident.
    """
    command = [sys.executable, "-c", _CUT_SHORT, str(tmp_path / "lock")]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=45)
    assert done.returncode == 0, done.stderr
    said = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    (cpu, extra_threads), (connected,) = said["measured"], said["connected"]
    assert float(cpu) < 0.5 and int(extra_threads) == 0  # spinning, it took a whole core: ~2 s in 2 s
    assert connected == "True"  # and the hub still serves others


def test_a_second_hub_on_the_same_lockfile_is_refused(tmp_path: Path):
    lockfile = tmp_path / "lock"
    with private_hub(lockfile):
        # pyvo starts the second hub anyway, warning; we refuse it, and the first keeps its lockfile.
        with (
            pytest.warns(pyvo_samp.SAMPWarning, match="already running"),
            pytest.raises(SampError, match="another hub is running"),
            private_hub(lockfile),
        ):
            pass
        with SampClient() as client:
            client.connect(lockfile)
            assert client.connected


def test_a_private_hub_keeps_away_from_the_users_samp_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    users = tmp_path / "users-lockfile"
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{users.as_uri()}")
    with private_hub(tmp_path / "private") as running:
        assert running.lockfile.is_file()
        assert not users.exists()
        with SampClient() as client:
            client.connect(running.samp_hub)
            assert client.connected
    assert not (tmp_path / "private").exists()
    assert f"std-lockurl:{users.as_uri()}" == os.environ["SAMP_HUB"]


# --- sending ------------------------------------------------------------------------------------------------------


def test_a_table_load_reaches_table_tools_and_their_answer_comes_back(samp: SampClient, peer: Any):
    topcat = peer("topcat", MTYPE_TABLE_LOAD)
    peer("aladin-like", MTYPE_POINT_AT_SKY)  # not a table tool: must not receive the table
    replies = samp.send_table("http://example.org/t.vot", table_id="cands-1", name="Candidates 1")
    assert list(replies) == [topcat.id]
    assert replies[topcat.id].name == "topcat" and replies[topcat.id].ok
    mtype, params = topcat.next()
    assert mtype == MTYPE_TABLE_LOAD
    assert params == {"url": "http://example.org/t.vot", "table-id": "cands-1", "name": "Candidates 1"}


def test_a_peer_that_answers_samp_error_raises_with_its_message(samp: SampClient, peer: Any):
    good = peer("good", MTYPE_TABLE_LOAD)
    bad = peer("bad", MTYPE_TABLE_LOAD, status="samp.error")
    with pytest.raises(SampReplyError, match=r"bad .*samp.error from the test peer") as raised:
        samp.send_table("http://example.org/t.vot", table_id="t")
    replies = raised.value.replies
    assert replies[good.id].ok and not replies[bad.id].ok
    assert "good" not in str(raised.value)


def test_recipients_by_name_or_id_and_refusals(samp: SampClient, peer: Any):
    first = peer("Viewer", MTYPE_TABLE_LOAD)
    second = peer("other", MTYPE_TABLE_LOAD)
    peer("sky", MTYPE_POINT_AT_SKY)
    assert list(samp.send_table("u", table_id="t", to="viewer")) == [first.id]
    assert list(samp.send_table("u", table_id="t", to=second.id)) == [second.id]
    assert first.next()[0] == second.next()[0] == MTYPE_TABLE_LOAD
    assert first.messages.empty()
    with pytest.raises(SampError, match=r"does not accept table\.load\.votable"):
        samp.send_table("u", table_id="t", to="sky")
    with pytest.raises(SampError, match="No SAMP client 'nobody'"):
        samp.send_table("u", table_id="t", to="nobody")
    assert samp.highlight_row("t", "u", 3) == {}  # nobody subscribed: nothing to send, nothing to check


def test_a_peer_that_never_answers_times_out(hub: PrivateHub, peer: Any):
    silent = peer("silent", MTYPE_TABLE_LOAD, status=None)
    with SampClient(timeout=1) as client:
        client.connect(hub.samp_hub)
        started = time.monotonic()
        with pytest.raises(SampReplyError, match=r"silent.*no reply"):
            client.send_table("u", table_id="t")
        assert time.monotonic() - started < 5
    assert silent.next()[0] == MTYPE_TABLE_LOAD


def test_a_spectrum_goes_with_its_ssa_metadata_as_strings(samp: SampClient, peer: Any):
    splat = peer("splat", MTYPE_SPECTRUM_LOAD)
    meta = spectrum_meta(
        url="http://h/soda?ID=x", media_type="application/fits", target="HD 1", ra=10.5, dec=-20.25,
        spectral_column="WAVELENGTH", flux_column="FLUX", spectral_unit="Angstrom",
    )  # fmt: skip
    samp.send_spectrum("http://h/soda?ID=x", meta, spectrum_id="ivo://x", name="HD 1")
    mtype, params = splat.next()
    assert mtype == MTYPE_SPECTRUM_LOAD
    assert params["url"] == "http://h/soda?ID=x" and params["spectrum-id"] == "ivo://x" and params["name"] == "HD 1"
    received = params["meta"]
    assert received["ssa:Access.Format"] == "application/fits"
    assert received["ssa:Target.Name"] == "HD 1"
    assert received["ssa:Dataset.SpectralAxis"] == "WAVELENGTH" and received["ssa:Dataset.FluxAxis"] == "FLUX"
    assert [float(v) for v in received["ssa:Char.SpatialAxis.Coverage.Location.Value"].split()] == [10.5, -20.25]
    assert all(isinstance(v, str) for v in received.values())


def test_spectrum_meta_keeps_what_is_known():
    assert spectrum_meta() == {}
    meta = spectrum_meta(media_type="application/fits", ra=float("nan"), dec=1.0, target="", spectral_unit="Angstrom")
    assert meta == {
        "ssa:Access.Format": "application/fits",
        "ssa:Char.SpectralAxis.Unit": "Angstrom",
        "vox:spectrum_units": "Angstrom",
    }
    both = spectrum_meta(spectral_unit="Angstrom", flux_unit="ADU")
    assert both["vox:spectrum_units"] == "Angstrom ADU" and both["ssa:Char.FluxAxis.Unit"] == "ADU"


def test_point_at_sends_degrees_and_refuses_nonsense(samp: SampClient, peer: Any):
    aladin = peer("Aladin", MTYPE_POINT_AT_SKY)
    samp.point_at(83.822083, -5.391111)
    mtype, params = aladin.next()
    assert mtype == MTYPE_POINT_AT_SKY
    assert (float(params["ra"]), float(params["dec"])) == (83.822083, -5.391111)
    with pytest.raises(ValueError, match="nan"):
        samp.point_at(float("nan"), 0.0)


def test_rows_are_selected_and_highlighted_by_index(samp: SampClient, peer: Any):
    topcat = peer("topcat", MTYPE_SELECT_ROW_LIST, MTYPE_HIGHLIGHT_ROW)
    samp.select_rows("t", "http://h/t.vot", [0, 4, 2])
    samp.highlight_row("t", "http://h/t.vot", 4)
    assert topcat.next() == (
        MTYPE_SELECT_ROW_LIST,
        {"table-id": "t", "url": "http://h/t.vot", "row-list": ["0", "4", "2"]},
    )
    assert topcat.next() == (MTYPE_HIGHLIGHT_ROW, {"table-id": "t", "url": "http://h/t.vot", "row": "4"})


# --- receiving ----------------------------------------------------------------------------------------------------


def _message(mtype: str, **params: Any) -> dict[str, Any]:
    return {"samp.mtype": mtype, "samp.params": params}


def test_selected_rows_reach_the_callback_and_the_sender_hears_ok(samp: SampClient, peer: Any):
    got: queue.Queue[tuple[Any, ...]] = queue.Queue()
    samp.on_row_list(lambda table_id, url, rows: got.put((table_id, url, rows, threading.current_thread())))
    topcat = peer("topcat")
    message = _message(MTYPE_SELECT_ROW_LIST, **{"table-id": "cands", "url": "http://h/c.vot", "row-list": ["0", "2"]})
    response = topcat.conn.call_and_wait(samp.client_id, message, "5")
    assert response["samp.status"] == "samp.ok"
    table_id, url, rows, thread = got.get(timeout=WAIT_S)
    assert (table_id, url, rows) == ("cands", "http://h/c.vot", [0, 2])
    assert thread is not threading.current_thread()  # pyvo's receiver thread, as documented
    # TOPCAT broadcasts subsets as notifications too: no reply, same callback.
    topcat.conn.notify(samp.client_id, _message(MTYPE_SELECT_ROW_LIST, url="http://h/c.vot", **{"row-list": ["7"]}))
    assert got.get(timeout=WAIT_S)[:3] == (None, "http://h/c.vot", [7])


def test_a_failing_callback_or_a_bad_message_is_the_senders_error(samp: SampClient, peer: Any):
    def refuse(table_id: str | None, url: str | None, rows: list[int]) -> None:
        msg = f"class 'comet' is not one of the session's ({rows})"
        raise ValueError(msg)

    samp.on_row_list(refuse)
    topcat = peer("topcat")
    message = _message(MTYPE_SELECT_ROW_LIST, **{"table-id": "t", "url": "u", "row-list": ["1"]})
    response = topcat.conn.call_and_wait(samp.client_id, message, "5")
    assert response["samp.status"] == "samp.error"
    assert "comet" in response["samp.error"]["samp.errortxt"]
    bad = _message(MTYPE_SELECT_ROW_LIST, **{"table-id": "t", "url": "u", "row-list": ["one"]})
    response = topcat.conn.call_and_wait(samp.client_id, bad, "5")
    assert response["samp.status"] == "samp.error"
    assert "Bad table.select.rowList" in response["samp.error"]["samp.errortxt"]


def test_highlights_and_table_loads_reach_their_callbacks_and_the_queue(samp: SampClient, peer: Any):
    highlights: queue.Queue[tuple[Any, ...]] = queue.Queue()
    loads: queue.Queue[tuple[Any, ...]] = queue.Queue()
    samp.on_highlight(lambda table_id, url, row: highlights.put((table_id, url, row)))
    samp.on_table_load(lambda url, table_id, name: loads.put((url, table_id, name)))
    events = samp.event_queue()
    topcat = peer("topcat")
    topcat.conn.call_and_wait(
        samp.client_id, _message(MTYPE_HIGHLIGHT_ROW, **{"table-id": "t", "url": "u", "row": "5"}), "5"
    )
    topcat.conn.call_and_wait(
        samp.client_id, _message(MTYPE_TABLE_LOAD, url="file:///tmp/edited.vot", name="edited"), "5"
    )
    assert highlights.get(timeout=WAIT_S) == ("t", "u", 5)
    assert loads.get(timeout=WAIT_S) == ("file:///tmp/edited.vot", None, "edited")
    sender = topcat.id
    assert events.get(timeout=WAIT_S) == HighlightEvent(sender, "t", "u", 5)
    assert events.get(timeout=WAIT_S) == TableLoadEvent(sender, "file:///tmp/edited.vot", None, "edited")


def test_only_what_someone_listens_to_is_subscribed(hub: PrivateHub, peer: Any):
    watcher = peer("watcher")
    with SampClient(name="quiet") as client:
        client.connect(hub.samp_hub)
        assert client.client_id not in watcher.conn.get_subscribed_clients(MTYPE_SELECT_ROW_LIST)
        events = client.event_queue()
        for mtype in (MTYPE_SELECT_ROW_LIST, MTYPE_HIGHLIGHT_ROW, MTYPE_TABLE_LOAD):
            assert client.client_id in watcher.conn.get_subscribed_clients(mtype)
        message = _message(MTYPE_SELECT_ROW_LIST, **{"table-id": "t", "url": "u", "row-list": []})
        watcher.conn.call_and_wait(client.client_id, message, "5")
        assert events.get(timeout=WAIT_S) == RowListEvent(watcher.id, "t", "u", [])


def test_callbacks_run_one_at_a_time(samp: SampClient, peer: Any):
    running = 0
    most = 0
    done: queue.Queue[int] = queue.Queue()
    guard = threading.Lock()

    def slow(table_id: str | None, url: str | None, rows: list[int]) -> None:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with guard:
            running -= 1
        done.put(rows[0])

    samp.on_row_list(slow)
    topcat = peer("topcat")
    for i in range(4):
        topcat.conn.notify(samp.client_id, _message(MTYPE_SELECT_ROW_LIST, **{"table-id": "t", "row-list": [str(i)]}))
    assert sorted(done.get(timeout=WAIT_S) for _ in range(4)) == [0, 1, 2, 3]
    assert most == 1


def test_sending_without_a_hub_says_so():
    client = SampClient()
    assert not client.connected
    with pytest.raises(SampError, match="Not connected"):
        client.send_table("u", table_id="t")
    client.disconnect()  # nothing to leave: no error


# --- CandidateViewer against a live server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path, Table]]:
    """A live server with its demo archive, and a candidates table of five of its spectra (a file)."""
    data = tmp_path_factory.mktemp("live")
    with running_server(data_dir=data / "data", log_path=data / "server.log", workers=1) as server:
        table = write_candidates_table(server.base_url, data / "candidates.vot")
        yield server, data / "candidates.vot", table


def test_the_viewer_sends_the_cutout_the_position_and_the_highlight(
    samp: SampClient, peer: Any, live: tuple[LiveServer, Path, Table], session: requests.Session
):
    _, path, table = live
    splat = peer("splat", MTYPE_SPECTRUM_LOAD)
    # Aladin takes highlights too, but has not loaded the table: it must not be asked to highlight a row of it.
    aladin = peer("Aladin", MTYPE_POINT_AT_SKY, MTYPE_HIGHLIGHT_ROW)
    topcat = peer("topcat", MTYPE_TABLE_LOAD, MTYPE_HIGHLIGHT_ROW)
    url = path.as_uri()
    viewer = CandidateViewer(samp, url, "cands", http=session)
    assert list(viewer.load_table()) == [topcat.id]
    assert topcat.next() == (MTYPE_TABLE_LOAD, {"url": url, "table-id": "cands", "name": "cands"})

    row = table[2]
    shown = viewer.show(row, 2)
    assert shown.failed == {}
    assert shown.sent == {
        MTYPE_SPECTRUM_LOAD: ["splat"],
        MTYPE_POINT_AT_SKY: ["Aladin"],
        MTYPE_HIGHLIGHT_ROW: ["topcat"],
    }

    mtype, params = splat.next()
    assert mtype == MTYPE_SPECTRUM_LOAD
    assert params["url"] == shown.spectrum_url
    query = parse_qs(urlsplit(params["url"]).query)
    assert query["ID"] == [str(row["id"])]
    assert [float(v) for v in query["BAND"][0].split()] == pytest.approx(HALPHA_BAND_M)
    meta = params["meta"]
    assert meta["ssa:Target.Name"] == str(row["target"]) and meta["ssa:Curation.PublisherDID"] == str(row["id"])
    assert meta["ssa:Access.Format"] == "application/fits"
    # The cutout at that URL is what the metadata says: a FITS table with those columns, in that unit, in the band.
    cutout = session.get(params["url"], timeout=30)
    assert cutout.status_code == 200 and cutout.headers["Content-Type"] == meta["ssa:Access.Format"]
    with fits.open(io.BytesIO(cutout.content)) as hdus:
        columns = hdus[1].columns
        wavelength = hdus[1].data[meta["ssa:Dataset.SpectralAxis"]]
        assert meta["ssa:Dataset.FluxAxis"] in columns.names
        assert columns[meta["ssa:Dataset.SpectralAxis"]].unit == CUTOUT_SPECTRAL_UNIT
    assert (meta["ssa:Dataset.SpectralAxis"], meta["ssa:Dataset.FluxAxis"]) == (
        CUTOUT_SPECTRAL_COLUMN,
        CUTOUT_FLUX_COLUMN,
    )
    assert HALPHA_BAND_M[0] <= wavelength.min() * 1e-10 and wavelength.max() * 1e-10 <= HALPHA_BAND_M[1]

    assert aladin.next() == (MTYPE_POINT_AT_SKY, {"ra": repr(float(row["ra"])), "dec": repr(float(row["dec"]))})
    assert topcat.next() == (MTYPE_HIGHLIGHT_ROW, {"table-id": "cands", "url": url, "row": "2"})
    assert aladin.messages.empty()

    # A row TOPCAT highlighted itself goes to the other tools, and is not highlighted back to it.
    shown = viewer.show(table[3], 3, highlight=False)
    assert shown.sent == {MTYPE_SPECTRUM_LOAD: ["splat"], MTYPE_POINT_AT_SKY: ["Aladin"]}
    assert aladin.next()[1]["dec"] == repr(float(table[3]["dec"]))
    assert topcat.messages.empty()


def test_a_highlight_refused_just_after_the_table_load_is_tried_again(
    samp: SampClient, peer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """TOPCAT answers a load before it lists the table: a highlight refused in that moment is sent again."""
    path = tmp_path / "t.vot"
    Table({"id": ["a", "b"]}).write(path, format="votable")
    topcat = peer("topcat", MTYPE_TABLE_LOAD, MTYPE_HIGHLIGHT_ROW)
    viewer = CandidateViewer(samp, path.as_uri(), "t", band=None)
    viewer.load_table()
    topcat.status = "samp.error"
    listed = threading.Timer(0.5, lambda: setattr(topcat, "status", "samp.ok"))
    listed.start()
    try:
        shown = viewer.show(Table.read(path)[1], 1)
    finally:
        listed.cancel()
    assert shown.sent.get(MTYPE_HIGHLIGHT_ROW) == ["topcat"], shown
    highlights = [params["row"] for mtype, params, _ in list(topcat.messages.queue) if mtype == MTYPE_HIGHLIGHT_ROW]
    assert len(highlights) >= 2 and set(highlights) == {"1"}

    monkeypatch.setattr(viewers, "_SETTLE_S", 0.0)  # long after the load, a refusal is the answer
    topcat.status = "samp.error"
    assert MTYPE_HIGHLIGHT_ROW in viewer.show(Table.read(path)[0], 0).failed


def test_the_viewer_without_a_band_or_a_hub(
    samp: SampClient, peer: Any, live: tuple[LiveServer, Path, Table], session: requests.Session
):
    server, path, table = live
    splat = peer("splat", MTYPE_SPECTRUM_LOAD)
    whole = CandidateViewer(samp, path.as_uri(), "cands", http=session, band=None)
    shown = whole.show(table[0], 0)
    assert shown.sent == {MTYPE_SPECTRUM_LOAD: ["splat"]}  # nobody else is on the hub: skipped quietly
    _, params = splat.next()
    assert params["url"] == server.url("/data?" + urlencode({"ID": str(table[0]["id"])}))
    assert "ssa:Dataset.SpectralAxis" not in params["meta"]  # the original file's layout is not vocloud's to say

    far = CandidateViewer(samp, path.as_uri(), "cands", http=session, band=(1e-6, 2e-6))
    assert far.spectrum_url(table[1]) == (str(table[1]["access_url"]), "application/fits", False)

    offline = CandidateViewer(None, path.as_uri(), "cands")
    assert offline.load_table() == {}
    assert offline.show(table[0], 0).sent == {}
    assert splat.messages.empty()


def test_the_viewer_reports_a_spectrum_tool_that_fails(
    samp: SampClient, peer: Any, live: tuple[LiveServer, Path, Table], session: requests.Session
):
    _, path, table = live
    peer("splat", MTYPE_SPECTRUM_LOAD, status="samp.error")
    viewer = CandidateViewer(samp, path.as_uri(), "cands", http=session)
    shown = viewer.show(table[1], 1)
    assert "samp.error from the test peer" in shown.failed[MTYPE_SPECTRUM_LOAD]
    assert MTYPE_SPECTRUM_LOAD not in shown.sent
