"""The labeller's TOPCAT routes in-process: subsets while collecting a class, highlights, tables sent back.

The SAMP messages are put in the labeller's inbox as `vocloud.client.samp`
events, as `SampClient.event_queue` would from pyvo's receiver thread; the keys
come from a script in which ``None`` is a moment without a key (when the inbox
is read). The server is a stand-in that accepts or refuses posts and records
them; the real route, through a hub and a server, is in test_label_samp.py.
"""

from __future__ import annotations

import io
import queue
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from astropy.table import Table

from vocloud.client.errors import VocloudError
from vocloud.client.journal import BatchState, Journal, session_url
from vocloud.client.labeller import KeyReader, Labeller, TableRef, candidates_from_table
from vocloud.client.labels import LabelRecord
from vocloud.client.samp import HighlightEvent, RowListEvent, SampEvent, TableLoadEvent

CLASSES = ("absorption", "emission", "double-peak")
SERVER = "http://vocloud.example:8080"
SESSION = session_url(SERVER, "s1")
TABLE = TableRef("vocloud-s1-1", f"{SERVER}/jobs/active_learning/j1/results/oracle")
IDS = [f"ivo://demo?{i}" for i in range(6)]


class Server:
    """Accepts posts, except those naming an id of ``unknown`` (all or nothing, as the real server)."""

    url = SERVER

    def __init__(self, unknown: Sequence[str] = ()) -> None:
        self.unknown = set(unknown)
        self.posts: list[list[tuple[str, str]]] = []

    def post_labels(
        self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None
    ) -> Mapping[str, Any]:
        bad = sorted({r.id for r in records} & self.unknown)
        if bad:
            raise VocloudError(f"{len(bad)} id(s) ({bad[0]!r}) not spectra of the session's selection", status=400)
        self.posts.append([(r.id, r.label) for r in records])
        return {"accepted": len(records), "labels": 0, "next_iteration": None, "session": SESSION}


Step = str | Callable[[], object] | None


class ScriptedKeys(KeyReader):
    """Keys from a script: a string is a key, None a moment without one, a callable runs (e.g. sends a message)."""

    def __init__(self, script: Sequence[Step]) -> None:
        super().__init__(io.StringIO())
        self.script = list(script)

    def read(self, timeout: float | None = None) -> str | None:
        while self.script:
            step = self.script.pop(0)
            if callable(step):
                step()
                continue
            if step is None and timeout is None:
                continue  # a labeller without an inbox never waits with a timeout
            return step
        return "q"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as opened:
        yield opened


def _run(
    journal: Journal, server: Server, script: Sequence[Step], inbox: queue.Queue[SampEvent], **options: Any
) -> tuple[Any, str]:
    out = io.StringIO()
    result = Labeller(
        candidates_from_table(Table({"id": IDS}), CLASSES),
        classes=CLASSES,
        journal=journal,
        session_url=SESSION,
        flush=lambda: journal.flush(server, session_url=SESSION),
        keys=ScriptedKeys(script),
        out=out,
        labeller="Ann",
        inbox=inbox,
        table=TABLE,
        peer_name=lambda sender: {"c1": "topcat"}.get(sender, sender),
        **options,
    ).run()
    return result, out.getvalue()


def _rows(*rows: int, table: TableRef = TABLE) -> RowListEvent:
    return RowListEvent("c1", table.table_id, table.url, list(rows))


def test_a_subset_selected_while_collecting_is_labelled_once(journal: Journal) -> None:
    """Rows 1, 3 as emission: journalled, sent at once, left out of the terminal's batch; a repeat sends nothing."""
    inbox: queue.Queue[SampEvent] = queue.Queue()
    server = Server()
    result, out = _run(
        journal, server,
        [lambda: inbox.put(_rows(3, 1)), None, lambda: inbox.put(_rows(1, 3)), None, "2", "1", "q"],
        inbox, collect="emission",
    )  # fmt: skip

    assert server.posts == [
        [(IDS[1], "emission"), (IDS[3], "emission")],
        [(IDS[0], "emission"), (IDS[2], "absorption")],
    ]
    assert "topcat selected 2 row(s) as emission: 2 label(s) journalled" in out
    assert "nothing new (2 already labelled so, left out)" in out
    assert f"[3/6] {IDS[2]}" in out and f"[2/6] {IDS[1]}" not in out  # the collected rows are not asked again
    assert (result.labelled, result.from_tools, result.remaining) == (4, 2, 2)
    assert {b.state for b in journal.batches()} == {BatchState.SENT}


def test_without_a_class_to_collect_a_subset_is_left_alone_until_c_chooses_one(journal: Journal) -> None:
    inbox: queue.Queue[SampEvent] = queue.Queue()
    server = Server()
    result, out = _run(
        journal, server,
        [
            lambda: inbox.put(_rows(0)), None,
            "c", "3", lambda: inbox.put(_rows(4, 5)), None,
            lambda: inbox.put(_rows(2, table=TableRef("other", "http://elsewhere/t.vot"))), None,
            "c", "0", lambda: inbox.put(_rows(0)), None,
            "q",
        ],
        inbox,
    )  # fmt: skip

    assert server.posts == [[(IDS[4], "double-peak"), (IDS[5], "double-peak")]]
    assert out.count("press c and a class number to label such selections") == 2
    assert "rows of another table (other): left alone" in out
    assert "c collect (now double-peak)" in out and "not collecting" in out
    assert result.from_tools == 2


def test_a_highlighted_row_comes_up_and_the_next_key_labels_it(journal: Journal) -> None:
    """Highlight row 4: shown through the hook that does not highlight back; labelled; then back to the first left."""
    inbox: queue.Queue[SampEvent] = queue.Queue()
    server = Server()
    shown: list[tuple[str, int]] = []
    highlighted: list[tuple[str, int]] = []
    result, out = _run(
        journal, server,
        [
            "1",
            lambda: inbox.put(HighlightEvent("c1", TABLE.table_id, TABLE.url, 4)), None,
            "3",
            lambda: inbox.put(HighlightEvent("c1", TABLE.table_id, TABLE.url, 0)), None,  # done: out of turn
            "2",
            "q",
        ],
        inbox,
        show=lambda row, index: shown.append((str(row["id"]), index)),
        highlighted=lambda row, index: highlighted.append((str(row["id"]), index)),
    )  # fmt: skip

    assert [i for _, i in shown] == [0, 1, 1, 1]  # after the highlighted ones, the first left comes back
    assert highlighted == [(IDS[4], 4), (IDS[0], 0)]
    assert server.posts == [[(IDS[0], "absorption"), (IDS[4], "double-peak"), (IDS[0], "emission")]]
    assert f"[row 1, highlighted in TOPCAT] {IDS[0]} (labelled absorption)" in out
    assert (result.labelled, result.remaining) == (2, 4)


def test_a_table_sent_back_gives_its_labels_and_a_refused_one_changes_nothing(journal: Journal) -> None:
    """A table with labels is journalled and sent; one naming an id the session lacks is refused whole."""
    inbox: queue.Queue[SampEvent] = queue.Queue()
    server = Server(unknown=["ivo://elsewhere?9"])
    tables = {
        "good": [LabelRecord(IDS[0], "emission", "Ann"), LabelRecord(IDS[5], "absorption", "Ann")],
        "bad": [LabelRecord(IDS[1], "emission", "Ann"), LabelRecord("ivo://elsewhere?9", "emission", "Ann")],
        "empty": [],
    }
    result, out = _run(
        journal, server,
        [lambda name=name: inbox.put(TableLoadEvent("c1", f"file:///{name}.vot", None, name)) for name in tables]
        + [None, "q"],
        inbox, read_labels=lambda url: tables[url.rsplit("/", 1)[-1].removesuffix(".vot")],
    )  # fmt: skip

    assert server.posts == [[(IDS[0], "emission"), (IDS[5], "absorption")]]
    assert "topcat sent table good with 2 label(s): 2 label(s) journalled" in out
    assert "the server refused 2 label(s): 1 id(s) ('ivo://elsewhere?9') not spectra" in out
    assert "topcat sent table empty: no labelled row in it" in out
    assert (result.from_tools, result.remaining) == (2, 4)  # the refused table's candidate is still to label
    assert journal.labelled(SESSION) == {IDS[0]: "emission", IDS[5]: "absorption"}
    assert [b.state for b in journal.batches()] == [BatchState.SENT, BatchState.REFUSED]


def test_collecting_a_class_the_session_lacks_is_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="the session's classes are"):
        _run(journal, Server(), [], queue.Queue(), collect="nova")
