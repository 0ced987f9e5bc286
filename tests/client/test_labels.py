"""Label records: the CSV the server reads back unchanged, and labels from a VOTable edited in TOPCAT."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from vocloud.client.labels import LabelError, LabelRecord, from_csv, from_table, from_votable, to_csv
from vocloud.server.sessions.labels_input import LabelFormat, parse_labels

CLASSES = ("absorption", "emission", "double-peak")

RECORDS = [
    LabelRecord("ivo://vocloud/demo?spec-1", "emission", "Ann Smith", 'broad, "double"? line'),
    LabelRecord("ivo://vocloud/demo?spec-2", "absorption"),
    LabelRecord("ivo://vocloud/demo?spec-3", "double-peak", None, "H\u03b1 \u2014 ok\nsecond line"),
]


def test_to_csv_is_read_back_unchanged_by_the_server() -> None:
    """The server's own reader gets every field back, commas, quotes, newlines and non-ASCII included."""
    data = to_csv(RECORDS)
    assert data.splitlines()[0] == b"id,label,labeller,comment"
    parsed = parse_labels(data, LabelFormat.CSV)
    assert [(p.id, p.label, p.labeller, p.comment) for p in parsed] == [
        (r.id, r.label, r.labeller, r.comment) for r in RECORDS
    ]
    assert from_csv(data) == RECORDS


def test_from_csv_needs_id_and_label() -> None:
    with pytest.raises(LabelError, match="no label column"):
        from_csv(b"id,class\nx,emission\n")


def _edited_candidates() -> Table:
    """A candidates table as an expert leaves it in TOPCAT: a Label column added, some rows left blank."""
    table = Table()
    table["id"] = [f"ivo://vocloud/demo?spec-{i}" for i in range(5)]
    table["ra"] = np.arange(5.0)
    table["Label"] = MaskedColumn(
        ["emission", "", "absorption", "x", " double-peak "], mask=[False, False, False, True, False]
    )
    return table


def test_only_filled_in_rows_become_labels() -> None:
    """Empty and masked label cells are rows not labelled yet; names match whatever the case; text is stripped."""
    records = from_table(_edited_candidates(), labeller="Ann", classes=CLASSES)
    assert records == [
        LabelRecord("ivo://vocloud/demo?spec-0", "emission", "Ann"),
        LabelRecord("ivo://vocloud/demo?spec-2", "absorption", "Ann"),
        LabelRecord("ivo://vocloud/demo?spec-4", "double-peak", "Ann"),
    ]


def test_unknown_classes_and_missing_columns_are_reported_before_anything_is_sent() -> None:
    table = _edited_candidates()
    table["Label"][0] = "nova"
    with pytest.raises(LabelError, match="nova"):
        from_table(table, classes=CLASSES)
    with pytest.raises(LabelError, match="no 'class' column"):
        from_table(table, label_column="class")


def _votable_bytes(table: Table) -> bytes:
    buffer = io.BytesIO()
    table.write(buffer, format="votable")
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A directory served over HTTP on loopback, as TOPCAT serves a table it broadcasts; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the standard library's name
        pass


def test_a_votable_is_read_from_bytes_a_file_or_a_url(tmp_path: Path, served: str) -> None:
    """The same edited table gives the same labels however it arrives (a URL is what TOPCAT broadcasts)."""
    data = _votable_bytes(_edited_candidates())
    (tmp_path / "edited.vot").write_bytes(data)
    expected = from_table(_edited_candidates())
    assert len(expected) == 3
    assert from_votable(data) == expected
    assert from_votable(tmp_path / "edited.vot") == expected
    assert from_votable(f"{served}/edited.vot") == expected
    with pytest.raises(LabelError, match="Not a VOTable"):
        from_votable(b"<html><body>not a table</body></html>")
