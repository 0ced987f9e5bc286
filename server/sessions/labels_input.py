"""Reading posted labels: CSV, JSON or VOTable, bounded, into `NewLabel` rows.

Used by ``POST /sessions/{id}/labels`` and for the initial labels of
``POST /sessions``. Columns (CSV header, VOTable FIELD names) and JSON keys are
``id`` (the spectrum's publisher DID), ``label`` (a class name) and the
optional ``labeller`` and ``comment``; names are matched case-insensitively and
other columns are ignored, so a candidates table saved from TOPCAT with a
``label`` column added can be posted as it is. This module only reads: whether
the ids and classes belong to the session is the service's business.

A post may carry an ``Idempotency-Key`` (IETF httpapi draft
"The Idempotency-Key HTTP Header Field"): `idempotency_key` reads it and
`fingerprint` digests the labels it came with, so that a retry of the same
labels under the same key can be told from a different post reusing the key.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import PayloadTooLargeError, UsageError, VocloudError
from ..votable import VOTABLE_MIME, parse_tolerant
from .models import NewLabel

__all__ = [
    "IDEMPOTENCY_HEADER",
    "MAX_COMMENT_CHARS",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_ID_CHARS",
    "MAX_LABELLER_CHARS",
    "MAX_LABELS",
    "REPLAYED_HEADER",
    "IdempotencyKeyReusedError",
    "LabelFormat",
    "UnsupportedMediaTypeError",
    "collapse",
    "describe",
    "fingerprint",
    "format_for",
    "idempotency_key",
    "parse_labels",
    "sniff",
]

MAX_LABELS = 100_000
"""Most labels in one post (the body is also bounded by the server's ``max_upload``)."""

MAX_ID_CHARS = 400
"""Longest accepted id (publisher DIDs are far shorter; this only bounds what a post can store)."""

MAX_LABELLER_CHARS = 200
"""Longest accepted ``labeller``."""

MAX_COMMENT_CHARS = 4000
"""Longest accepted ``comment``."""

_SHOWN = 20
"""Most offending values a message lists (then a count)."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Request header whose key makes a label post safe to retry (IETF httpapi idempotency-key draft)."""

REPLAYED_HEADER = "Idempotent-Replayed"
"""Response header, ``true`` on an answer replayed for a repeated key (nothing was applied again)."""

MAX_IDEMPOTENCY_KEY_CHARS = 255
"""Longest accepted idempotency key (a UUID, as the draft recommends, has 36)."""

_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"(?:;.*)?')
"""An RFC 8941 sf-string (printable ASCII, only ``\\"`` and ``\\\\`` escaped), optional parameters after it."""

_BARE_KEY = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+")
"""A key sent without the quotes the draft asks for: visible ASCII without quotes, commas, semicolons, backslashes."""


class UnsupportedMediaTypeError(VocloudError):
    """The body's Content-Type is not a format the endpoint reads (HTTP 415)."""

    status = 415


class IdempotencyKeyReusedError(VocloudError):
    """An idempotency key came back with different labels (HTTP 422, as the draft says)."""

    status = 422


class LabelFormat(enum.StrEnum):
    """Formats labels can be posted in."""

    CSV = "csv"
    JSON = "json"
    VOTABLE = "votable"


_MEDIA_TYPES = {
    "text/csv": LabelFormat.CSV,
    "application/csv": LabelFormat.CSV,
    "application/json": LabelFormat.JSON,
    VOTABLE_MIME: LabelFormat.VOTABLE,
    "text/xml": LabelFormat.VOTABLE,
    "application/xml": LabelFormat.VOTABLE,
}


def format_for(content_type: str) -> LabelFormat:
    """The format of a body of that media type (parameters such as ``charset`` ignored).

    Raises
    ------
    UnsupportedMediaTypeError
        Raised if the media type is none of CSV, JSON or VOTable.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    found = _MEDIA_TYPES.get(media_type)
    if found is None:
        accepted = ", ".join([*_MEDIA_TYPES, "multipart/form-data (a file field 'labels')"])
        msg = f"Labels cannot be read from a body of type {media_type or '(none)'!r}; send one of {accepted}"
        raise UnsupportedMediaTypeError(msg)
    return found


def sniff(data: bytes) -> LabelFormat:
    """The format of an uploaded file, whose declared type browsers and clients set unreliably.

    XML starts with ``<``, JSON with ``[`` or ``{``; anything else is read as CSV.
    """
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        return LabelFormat.VOTABLE
    if start in (b"[", b"{"):
        return LabelFormat.JSON
    return LabelFormat.CSV


def parse_labels(data: bytes, label_format: LabelFormat, *, max_labels: int = MAX_LABELS) -> list[NewLabel]:
    """Read labels, in the order given.

    Raises
    ------
    UsageError
        Raised if the body is not of the format, lacks the ``id`` or ``label``
        column, or a row is malformed; the message names the line or item.
    PayloadTooLargeError
        Raised if there are more than ``max_labels`` labels.
    """
    match label_format:
        case LabelFormat.CSV:
            rows = _csv_rows(data)
        case LabelFormat.JSON:
            rows = _json_rows(data)
        case LabelFormat.VOTABLE:
            rows = _votable_rows(data)
        case _:  # pragma: no cover - the enum is closed
            msg = f"Unhandled label format {label_format}"
            raise AssertionError(msg)
    labels: list[NewLabel] = []
    for where, values in rows:
        if len(labels) == max_labels:
            msg = f"More than {max_labels} labels in one post; post them in parts"
            raise PayloadTooLargeError(msg)
        labels.append(_label(where, values))
    if not labels:
        msg = "No labels in the body: give at least one row with id and label"
        raise UsageError(msg)
    return labels


def collapse(labels: Sequence[NewLabel]) -> list[NewLabel]:
    """One label per id: repeats of an id with the same label are merged (the last one is kept).

    Raises
    ------
    UsageError
        Raised if an id is given twice with different labels; the message names them.
    """
    last: dict[str, NewLabel] = {}
    conflicting: dict[str, None] = {}
    for item in labels:
        earlier = last.pop(item.id, None)
        if earlier is not None and earlier.label != item.label:
            conflicting[item.id] = None
        last[item.id] = item
    if conflicting:
        msg = f"{describe(conflicting, 'id')} given twice with different labels"
        raise UsageError(msg)
    return list(last.values())


def idempotency_key(value: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header, or None when the header is absent.

    The draft makes the field an RFC 8941 String (``"8e03978e-..."``); a bare
    token is accepted as well, because several well-known APIs taught clients to
    send keys unquoted and refusing them would only make retries fail.

    Raises
    ------
    UsageError
        Raised if the value is empty, not a string of printable ASCII, or longer
        than `MAX_IDEMPOTENCY_KEY_CHARS`.
    """
    if value is None:
        return None
    text = value.strip()
    quoted = _SF_STRING.fullmatch(text)
    if quoted is not None:
        key = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif _BARE_KEY.fullmatch(text):
        key = text
    else:
        msg = f'{IDEMPOTENCY_HEADER} must be a quoted string of printable ASCII such as "<a uuid4>", not {value!r}'
        raise UsageError(msg)
    if not key.strip():
        msg = f"{IDEMPOTENCY_HEADER} is empty; send a unique key (a UUID) per post"
        raise UsageError(msg)
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        msg = f"{IDEMPOTENCY_HEADER} is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        raise UsageError(msg)
    return key


def fingerprint(labels: Sequence[NewLabel]) -> str:
    """SHA-256 of the labels as read, in order: the same labels give the same digest in any format.

    A digest of the parsed labels rather than of the body, because a client
    retrying a multipart post gets a new boundary, and CSV and JSON of the same
    labels are the same request.
    """
    rows = [[item.id, item.label, item.labeller, item.comment] for item in labels]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=True, separators=(",", ":")).encode()).hexdigest()


def describe(values: Iterable[str], what: str) -> str:
    """``N what(s): a, b, ...``, listing at most the first 20."""
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:_SHOWN])
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{len(items)} {what}{'s' if len(items) != 1 else ''} ({shown}{more})"


# -- formats ---------------------------------------------------------------------------

_Row = tuple[str, dict[str, Any]]
"""Where a row came from (for messages), and its values by lower-case column name."""


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        msg = f"The {what} is not UTF-8 text: {e}"
        raise UsageError(msg) from e


def _columns(names: Sequence[str], what: str) -> dict[str, int]:
    lowered = [name.strip().lower() for name in names]
    indices = {name: i for i, name in enumerate(lowered) if name in ("id", "label", "labeller", "comment")}
    repeated = sorted({name for name in indices if lowered.count(name) > 1})
    if repeated:
        msg = f"The {what} names the column(s) {repeated} more than once"
        raise UsageError(msg)
    missing = [name for name in ("id", "label") if name not in indices]
    if missing:
        msg = f"The {what} has no {' and no '.join(missing)} column; its columns are {list(names)[:20]}"
        raise UsageError(msg)
    return indices


def _csv_rows(data: bytes) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(_text(data, "CSV body"), newline=""), strict=True)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            msg = "The CSV body is empty: it needs a header line naming id and label, then one line per label"
            raise UsageError(msg)
        columns = _columns(header, "CSV header")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                msg = f"CSV line {reader.line_num}: {len(row)} fields where the header has {len(header)}"
                raise UsageError(msg)
            yield f"CSV line {reader.line_num}", {name: row[i] for name, i in columns.items()}
    except csv.Error as e:
        msg = f"CSV line {reader.line_num}: {e}"
        raise UsageError(msg) from e


def _json_rows(data: bytes) -> Iterator[_Row]:
    try:
        document = json.loads(_text(data, "JSON body"))
    except json.JSONDecodeError as e:
        msg = f"The body is not JSON: {e}"
        raise UsageError(msg) from e
    if isinstance(document, dict) and isinstance(document.get("labels"), list):
        document = document["labels"]
    if not isinstance(document, list):
        msg = 'The JSON body must be a list of {"id": ..., "label": ...} objects, or {"labels": [...]}'
        raise UsageError(msg)
    for i, item in enumerate(document):
        where = f"JSON item {i}"
        if not isinstance(item, dict):
            msg = f'{where}: not an object like {{"id": ..., "label": ...}}'
            raise UsageError(msg)
        values = {str(k).lower(): v for k, v in item.items()}
        for name, value in values.items():
            if name in ("id", "label", "labeller", "comment") and value is not None and not isinstance(value, str):
                msg = f"{where}: {name} must be a string, not {type(value).__name__}"
                raise UsageError(msg)
        yield where, values


def _votable_rows(data: bytes) -> Iterator[_Row]:
    try:
        document = parse_tolerant(data)
    except ValueError as e:
        msg = f"The body is not a VOTable: {e}"
        raise UsageError(msg) from e
    tables = list(document.iter_tables())
    if not tables:
        msg = "The VOTable has no TABLE: put the labels in its first table (columns id and label)"
        raise UsageError(msg)
    table = tables[0]
    columns = _columns([field.name for field in table.fields], "VOTable's first table")
    array = table.array
    # By position: the array's field names are the FIELD IDs where there are any.
    values = {name: _cells(array[array.dtype.names[i]]) for name, i in columns.items()}
    for row in range(len(array)):
        yield f"VOTable row {row + 1}", {name: cells[row] for name, cells in values.items()}


def _cells(column: Any) -> list[Any]:
    """A VOTable column as Python values, masked cells as None."""
    mask = np.ma.getmaskarray(column).tolist()
    data = np.ma.getdata(column).tolist()
    return [None if masked else value for value, masked in zip(data, mask, strict=True)]


def _string(where: str, name: str, value: Any, *, limit: int, required: bool) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            msg = f"{where}: {name} is missing or empty"
            raise UsageError(msg)
        return None
    if len(text) > limit:
        msg = f"{where}: {name} is longer than {limit} characters"
        raise UsageError(msg)
    return text


def _label(where: str, values: dict[str, Any]) -> NewLabel:
    return NewLabel(
        id=_string(where, "id", values.get("id"), limit=MAX_ID_CHARS, required=True) or "",
        label=_string(where, "label", values.get("label"), limit=MAX_ID_CHARS, required=True) or "",
        labeller=_string(where, "labeller", values.get("labeller"), limit=MAX_LABELLER_CHARS, required=False),
        comment=_string(where, "comment", values.get("comment"), limit=MAX_COMMENT_CHARS, required=False),
    )
