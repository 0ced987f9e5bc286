"""Labels as the client handles them: `LabelRecord`, the CSV the server reads, and labels from an edited VOTable.

An expert labels candidates in several ways (the terminal labeller, TOPCAT
subsets, a table edited in TOPCAT); all of them end as `LabelRecord` rows,
journalled locally (`vocloud.client.journal`) and posted as CSV (`to_csv`,
the format ``POST /sessions/{id}/labels`` reads with the fewest surprises:
no XML, no nesting, one line per label).

`from_votable` reads a candidates table that the expert edited in TOPCAT, by
adding a column (``label`` by default) and typing each row's class: rows whose
label cell is empty or masked are left unlabelled, not refused, because an
expert labels part of a table at a time.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["CSV_COLUMNS", "LabelError", "LabelRecord", "from_csv", "from_table", "from_votable", "to_csv"]

CSV_COLUMNS = ("id", "label", "labeller", "comment")
"""Header of the CSV the client posts (the server also accepts it without the last two)."""


class LabelError(ValueError):
    """Labels could not be read: a missing column, or classes the session does not have."""


@dataclass(frozen=True)
class LabelRecord:
    """One label an expert gave.

    Attributes
    ----------
    id
        The spectrum's publisher DID (the candidates table's ``id``).
    label
        One of the session's class names.
    labeller
        Who labelled, as the expert wants it recorded (the server records the authenticated owner apart).
    comment
        Free text kept in the label history.
    """

    id: str
    label: str
    labeller: str | None = None
    comment: str | None = None


def to_csv(records: Iterable[LabelRecord]) -> bytes:
    """The labels as UTF-8 CSV with the header ``id,label,labeller,comment`` (absent values as empty cells)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([record.id, record.label, record.labeller or "", record.comment or ""])
    return buffer.getvalue().encode("utf-8")


def from_csv(data: bytes) -> list[LabelRecord]:
    """Read labels written by `to_csv` (or any CSV with ``id`` and ``label`` columns).

    Raises
    ------
    LabelError
        Raised if the header lacks ``id`` or ``label``.
    """
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    names = {name.strip().lower(): name for name in reader.fieldnames or ()}
    missing = [name for name in ("id", "label") if name not in names]
    if missing:
        msg = f"The CSV has no {' and no '.join(missing)} column; its columns are {list(reader.fieldnames or ())}"
        raise LabelError(msg)
    records = []
    for row in reader:
        values = {key: (row.get(names[key]) or "").strip() if key in names else "" for key in CSV_COLUMNS}
        if values["id"] and values["label"]:
            records.append(
                LabelRecord(values["id"], values["label"], values["labeller"] or None, values["comment"] or None)
            )
    return records


def from_table(
    table: Table,
    *,
    label_column: str = "label",
    id_column: str = "id",
    labeller: str | None = None,
    classes: Sequence[str] | None = None,
) -> list[LabelRecord]:
    """Labels from the rows of a table whose ``label_column`` is filled in; other rows are skipped.

    Column names are matched case-insensitively, as TOPCAT users type them.
    Cells are taken as text (a class typed as a number stays that text); with
    ``classes``, every label must be one of them, so a typo is reported here,
    before anything is journalled, rather than by the server later.

    Raises
    ------
    LabelError
        Raised if a column is missing, or a label is not among ``classes``.
    """
    ids = _column(table, id_column)
    labels = _column(table, label_column)
    records = []
    for did, label in zip(_cells(ids), _cells(labels), strict=True):
        if did is None or label is None:
            continue
        records.append(LabelRecord(id=did, label=label, labeller=labeller))
    if classes is not None:
        unknown = sorted({r.label for r in records} - set(classes))
        if unknown:
            msg = f"Labels {unknown} are not among the session's classes {list(classes)}"
            raise LabelError(msg)
    return records


def from_votable(
    source: str | Path | bytes,
    *,
    label_column: str = "label",
    id_column: str = "id",
    labeller: str | None = None,
    classes: Sequence[str] | None = None,
    http: requests.Session | None = None,
    timeout: float = 60.0,
) -> list[LabelRecord]:
    """Labels from the first table of a VOTable edited in TOPCAT: a file, its bytes, or an http(s) or file URL.

    A URL is what TOPCAT broadcasts with ``table.load.votable`` (``http://``
    from its own server, or ``file://`` for a table it holds as a local file);
    an http(s) one is fetched with ``http`` (a fresh session by default). See
    `from_table` for the rest.

    Raises
    ------
    LabelError
        Raised if the document is not a VOTable with a table, or as `from_table` says.
    requests.RequestException
        Raised if a URL cannot be fetched.
    OSError
        Raised if a file cannot be read.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        with contextlib.ExitStack() as stack:
            session = http or stack.enter_context(requests.Session())
            response = session.get(source, timeout=timeout)
            response.raise_for_status()
            data = response.content
    elif isinstance(source, bytes):
        data = source
    elif isinstance(source, str) and source.startswith("file:"):
        data = Path(url2pathname(unquote(urlsplit(source).path))).read_bytes()
    else:
        data = Path(source).read_bytes()
    # Imported here: astropy takes most of a second, which `vocloud --help` (through the journal) should not pay.
    from astropy.io.votable import parse  # noqa: PLC0415

    try:
        # TOPCAT writes valid VOTables, but other tools do not: read what can be read.
        document = parse(io.BytesIO(data), verify="ignore")
        table = document.get_first_table().to_table(use_names_over_ids=True)
    except (ValueError, IndexError) as e:
        msg = f"Not a VOTable with a table: {e}"
        raise LabelError(msg) from e
    return from_table(table, label_column=label_column, id_column=id_column, labeller=labeller, classes=classes)


def _column(table: Table, name: str) -> Any:
    by_lower = {column.lower(): column for column in table.colnames}
    found = by_lower.get(name.lower())
    if found is None:
        msg = f"The table has no {name!r} column; its columns are {table.colnames[:20]}"
        raise LabelError(msg)
    return table[found]


def _cells(column: Any) -> list[str | None]:
    """A column's cells as stripped text, None where masked or empty."""
    import numpy as np  # noqa: PLC0415 - see from_votable

    mask = np.ma.getmaskarray(column).tolist()
    values = np.ma.getdata(column).tolist()
    cells: list[str | None] = []
    for value, masked in zip(values, mask, strict=True):
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        cells.append(None if masked or not text.strip() else text.strip())
    return cells
