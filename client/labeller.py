"""The terminal labeller: one candidate at a time, its class by one keystroke, every label journalled at once.

For each candidate of an oracle batch it prints the metadata the expert
decides on (id, target, position, predicted class and probabilities,
entropy and BALD), a small text plot of the spectrum (fetched through the
candidate's ``access_url``, else the server's DataLink ``#this``, and read with
astropy), and calls an optional ``show(row, index)`` hook that sends the
candidate to SPLAT, Aladin and TOPCAT over SAMP (`vocloud.client.viewers`).

Keys: ``1``..``9`` give the session's classes in order, ``u`` undoes the last
step, ``s`` skips, ``c`` and a class number collect that class from TOPCAT
(``c 0`` stops), ``q`` quits. Each label goes to the journal's open batch
before anything else happens (`vocloud.client.journal`); every ``batch_size``
labels, at quit and at the end, the batch is sealed and the journal flushed,
so a label is sent once, with its batch's idempotency key. Undo takes a label
back from the journal while its batch is open; once sealed (it may have
reached the server) the candidate is shown again and its new label, sent
later, replaces it (the server's latest label counts).

Messages from the VO tools (`vocloud.client.samp` events, put in an inbox by
SAMP's receiver threads) are read between keystrokes, in the labeller's own
thread, which owns the journal's SQLite connection: rows selected in TOPCAT on
the batch's table are labelled with the class being collected; a highlighted
row becomes the candidate in front of the expert (the next key labels it,
then the batch goes on where it was); a table sent back with a label column
gives its filled-in labels. Labels from the tools are journalled as one sealed
batch (after the open one, to keep the order they were given in) and sent at
once; those a spectrum already has are left out, so a subset broadcast twice
is sent once. A refusal by the server (all or nothing) is shown in its words.

Keys are read one at a time from a terminal (cbreak mode through
`termios`/`tty`: no Enter, no echo, Ctrl-C still interrupts) and line by line
otherwise, so tests and scripts can pipe them in; both wait with a timeout
(`select`) while an inbox is to be watched.
"""

from __future__ import annotations

import io
import math
import os
import queue
import re
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import quote

import numpy as np
import requests
from astropy.io import fits
from astropy.io.votable import parse
from astropy.table import Row, Table

from .journal import FlushReport, Journal, JournalEntry
from .labels import LabelError, LabelRecord, from_votable

__all__ = [
    "PLOT_HEIGHT",
    "PLOT_WIDTH",
    "Candidate",
    "KeyReader",
    "Labeller",
    "LabellerResult",
    "SpectrumFetcher",
    "TableRef",
    "candidates_from_table",
    "describe_flush",
    "probability_column",
    "read_spectrum",
    "text_plot",
]

PLOT_WIDTH = 60
"""Characters across the plot area: fits an 80-column terminal with the flux axis."""
PLOT_HEIGHT = 12
"""Lines of the plot area: a candidate, its plot and the prompt fit a 24-line terminal."""

QUIT, UNDO, SKIP, COLLECT = "q", "u", "s", "c"

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")

Show = Callable[[Row, int], Any]
"""The hook that brings a candidate up in the VO tools: ``show(row, index)``."""


def probability_column(class_name: str) -> str:
    """The candidates table's column of a class's mean probability (the server's naming: ``p_`` + an identifier)."""
    return "p_" + _NOT_NAME.sub("_", class_name)


@dataclass(frozen=True, kw_only=True, eq=False)
class Candidate:
    """What the labeller shows of one row of an oracle batch; absent columns are None.

    Candidates compare by identity (one object per row), never by their astropy
    rows, whose comparison gives arrays.

    Attributes
    ----------
    index
        The row's index in its table (what ``table.highlight.row`` names).
    id
        Publisher DID.
    row
        The table row itself, for the ``show`` hook.
    """

    index: int
    id: str
    row: Row
    target: str | None = None
    ra: float | None = None
    dec: float | None = None
    predicted: str | None = None
    probabilities: Mapping[str, float] | None = None
    entropy: float | None = None
    bald: float | None = None
    access_url: str | None = None


def _value(row: Row, columns: Mapping[str, str], name: str) -> Any:
    column = columns.get(name.lower())
    if column is None:
        return None
    value = row[column]
    if np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def candidates_from_table(table: Table, classes: Sequence[str]) -> list[Candidate]:
    """The rows of an oracle (or candidates) table as `Candidate`; only ``id`` is required.

    Raises
    ------
    ValueError
        Raised if the table has no ``id`` column.
    """
    columns = {name.lower(): name for name in table.colnames}
    if "id" not in columns:
        msg = f"The table has no 'id' column; its columns are {table.colnames[:20]}"
        raise ValueError(msg)
    found: list[Candidate] = []
    for index, row in enumerate(table):
        probabilities = {c: _value(row, columns, probability_column(c)) for c in classes}
        known = {c: float(p) for c, p in probabilities.items() if p is not None}
        found.append(
            Candidate(
                index=index,
                id=str(_value(row, columns, "id")),
                row=row,
                target=_value(row, columns, "target"),
                ra=_number(_value(row, columns, "ra")),
                dec=_number(_value(row, columns, "dec")),
                predicted=_value(row, columns, "predicted_class"),
                probabilities=known or None,
                entropy=_number(_value(row, columns, "entropy")),
                bald=_number(_value(row, columns, "bald")),
                access_url=_value(row, columns, "access_url"),
            )
        )
    return found


# -- spectra ------------------------------------------------------------------------------

_WAVE_NAMES = ("wavelength", "wave", "lambda", "spectral_axis", "loglam")
_FLUX_NAMES = ("flux", "intensity", "spec", "data", "counts")


def _pick(names: Sequence[str], wanted: Sequence[str]) -> str | None:
    lowered = {n.lower(): n for n in names}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    return None


def _table_spectrum(table: Table) -> tuple[np.ndarray, np.ndarray] | None:
    names = table.colnames
    wave = _pick(names, _WAVE_NAMES)
    flux = _pick(names, _FLUX_NAMES)
    if wave is None or flux is None:
        numeric = [n for n in names if np.issubdtype(table[n].dtype, np.number)]
        if len(numeric) < 2:
            return None
        wave, flux = wave or numeric[0], flux or next(n for n in numeric if n != (wave or numeric[0]))
    x = np.ma.filled(np.asarray(table[wave], dtype=float).ravel(), np.nan)
    y = np.ma.filled(np.asarray(table[flux], dtype=float).ravel(), np.nan)
    if wave.lower() == "loglam":
        x = 10**x
    return (x, y) if x.size == y.size else None


def _image_spectrum(hdu: Any) -> tuple[np.ndarray, np.ndarray] | None:
    data = np.asarray(hdu.data, dtype=float).squeeze()
    if data.ndim != 1 or data.size < 2:
        return None
    header = hdu.header
    step = header.get("CDELT1", header.get("CD1_1", 1.0))
    pixel = np.arange(1, data.size + 1, dtype=float)
    x = float(header.get("CRVAL1", 0.0)) + (pixel - float(header.get("CRPIX1", 1.0))) * float(step)
    # IRAF's DC-FLAG 1 means a log-linear axis.
    if int(header.get("DC-FLAG", 0)) == 1:
        x = 10**x
    return x, data


def read_spectrum(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength and flux of a 1-D spectrum file: a FITS image (IRAF WCS), a FITS table, or a VOTable.

    Units are whatever the file has: the plot only needs the shape.

    Raises
    ------
    ValueError
        Raised if no spectrum can be found in the data.
    """
    if data.lstrip()[:1] == b"<":
        document = parse(io.BytesIO(data), verify="ignore")
        found = _table_spectrum(document.get_first_table().to_table(use_names_over_ids=True))
        if found is None:
            msg = "The VOTable has no spectral and flux columns"
            raise ValueError(msg)
        return found
    try:
        hdus = fits.open(io.BytesIO(data), memmap=False)
    except OSError as e:
        msg = f"Neither FITS nor VOTable: {e}"
        raise ValueError(msg) from e
    with hdus:
        for hdu in hdus:
            if hdu.data is None:
                continue
            if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
                found = _table_spectrum(Table(hdu.data))
            else:
                found = _image_spectrum(hdu)
            if found is not None:
                return found
    msg = "The FITS file holds no 1-D spectrum"
    raise ValueError(msg)


class SpectrumFetcher:
    """Fetch and read a candidate's spectrum: its ``access_url``, else the ``#this`` link of the server's DataLink.

    Parameters
    ----------
    http
        The session to fetch with (the vocloud server's credentials).
    server
        The vocloud server's base URL, whose ``/datalink`` resolves ids without
        an ``access_url`` (the oracle table of some iterations has only ids).
    timeout
        Seconds per request.
    """

    def __init__(self, http: requests.Session, *, server: str | None = None, timeout: float = 30.0) -> None:
        self.http = http
        self.server = server
        self.timeout = timeout

    def url_of(self, candidate: Candidate) -> str | None:
        """Where the candidate's spectrum is, or None when nothing says."""
        if candidate.access_url:
            return candidate.access_url
        if self.server is None:
            return None
        from pyvo.dal.adhoc import DatalinkResults  # noqa: PLC0415 - pyvo costs half a second to import

        links = DatalinkResults.from_result_url(
            f"{self.server}/datalink?ID={quote(candidate.id, safe='')}", session=self.http
        )
        # Without narrower terms: expanding them downloads the IVOA vocabulary, and labelling must work offline.
        for link in links.bysemantics("#this", include_narrower=False):
            if link.access_url:
                return str(link.access_url)
        return None

    def __call__(self, candidate: Candidate) -> tuple[np.ndarray, np.ndarray] | str:
        """The spectrum, or a short reason why there is none to plot (never an exception: it is only a plot)."""
        try:
            url = self.url_of(candidate)
            if url is None:
                return "no link to the spectrum"
            response = self.http.get(url, timeout=self.timeout)
            response.raise_for_status()
            return read_spectrum(response.content)
        except Exception as e:  # noqa: BLE001 - a plot that fails must not stop the labelling
            return f"spectrum not shown: {e}"


def text_plot(wavelength: np.ndarray, flux: np.ndarray, *, width: int = PLOT_WIDTH, height: int = PLOT_HEIGHT) -> str:
    """A plain-character plot: each column spans the flux range of its wavelength bin; axes labelled at the ends."""
    x = np.asarray(wavelength, dtype=float)
    y = np.asarray(flux, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if x.size < 2 or x.max() == x.min():
        return "(no data to plot)"
    order = np.argsort(x)
    x, y = x[order], y[order]
    column = np.minimum(((x - x[0]) / (x[-1] - x[0]) * width).astype(int), width - 1)
    low, high = float(y.min()), float(y.max())
    span = high - low or 1.0

    def line_of(value: float) -> int:
        return round((high - value) / span * (height - 1))

    grid = [[" "] * width for _ in range(height)]
    for c in range(width):
        values = y[column == c]
        if values.size == 0:
            continue
        top, bottom = line_of(float(values.max())), line_of(float(values.min()))
        for r in range(top, bottom + 1):
            grid[r][c] = "|" if bottom > top else "*"
    label_width = max(len(f"{low:.4g}"), len(f"{high:.4g}"))
    lines = []
    for r, cells in enumerate(grid):
        label = f"{high:.4g}" if r == 0 else f"{low:.4g}" if r == height - 1 else ""
        lines.append(f"{label:>{label_width}} +{''.join(cells)}")
    lines.append(" " * label_width + " +" + "-" * width)
    left, right = f"{x[0]:.6g}", f"{x[-1]:.6g}"
    lines.append(" " * (label_width + 2) + left + right.rjust(width - len(left)))
    return "\n".join(lines)


# -- keys ---------------------------------------------------------------------------------


class KeyReader:
    """Keystrokes from a terminal one at a time (cbreak mode while in use), or lines from a pipe.

    Both can wait with a timeout (`select` on the file descriptor), so the
    labeller can look at what the VO tools sent while the expert thinks. A
    stream without a file descriptor (a `io.StringIO` in tests) is read line
    by line and never waits.

    Parameters
    ----------
    stream
        Where keys come from; standard input by default.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self._saved: list[Any] | None = None
        self._fd: int | None
        try:
            self._fd = self.stream.fileno()
        except (ValueError, OSError, io.UnsupportedOperation):
            self._fd = None
        self._pending = b""
        """Bytes read from a pipe past the last line taken: reading by descriptor bypasses the stream's buffer."""
        self._ended = False

    @property
    def interactive(self) -> bool:
        """Whether keys come from a terminal (one keystroke each)."""
        try:
            return self.stream.isatty()
        except (ValueError, OSError):
            return False

    def __enter__(self) -> KeyReader:
        if self.interactive and self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            # cbreak, not raw: output keeps its newline translation and Ctrl-C still interrupts.
            tty.setcbreak(self._fd)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._saved is not None and self._fd is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _ready(self, timeout: float | None) -> bool:
        """Whether the descriptor has something to read (or its end) within ``timeout`` seconds (None: wait)."""
        if timeout is None or self._fd is None:
            return True
        readable, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        return bool(readable)

    def read(self, timeout: float | None = None) -> str | None:
        """The next key, lower-cased; ``q`` at the end of input (Ctrl-D), so the labeller quits cleanly.

        Parameters
        ----------
        timeout
            Seconds to wait for it; None waits as long as it takes.

        Returns
        -------
        str or None
            The key (from a pipe: the first character of the next line, ``""``
            for an empty line), or None when ``timeout`` passed first.
        """
        if self._saved is not None and self._fd is not None:
            if not self._ready(timeout):
                return None
            raw = os.read(self._fd, 1)
            return QUIT if raw in (b"", b"\x04") else raw.decode("utf-8", errors="replace").lower()
        line = self._line(timeout)
        if line is None:
            return None
        if not line:
            return QUIT
        return line.strip()[:1].lower()

    def _line(self, timeout: float | None) -> str | None:
        """The next line with its newline, ``""`` at the end of input, None if ``timeout`` passed first."""
        if self._fd is None:
            return self.stream.readline()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending and not self._ended:
            if not self._ready(None if deadline is None else deadline - time.monotonic()):
                return None
            chunk = os.read(self._fd, 4096)
            self._ended = not chunk
            self._pending += chunk
        line, newline, self._pending = self._pending.partition(b"\n")
        return (line + newline).decode("utf-8", errors="replace")


# -- the labeller -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LabellerResult:
    """How a labelling run ended.

    Attributes
    ----------
    labelled
        Spectra labelled in this run, by key or from the VO tools (undone labels not counted).
    skipped
        Candidates skipped in this run and not labelled since.
    remaining
        Candidates of the batch neither labelled nor skipped (left by quitting).
    finished
        True if every candidate was labelled or skipped.
    reports
        The journal flushes made during the run, in order.
    from_tools
        Spectra labelled from the VO tools (TOPCAT subsets and edited tables), included in ``labelled``.
    """

    labelled: int
    skipped: int
    remaining: int
    finished: bool
    reports: tuple[FlushReport, ...]
    from_tools: int = 0


def describe_flush(report: FlushReport) -> list[str]:
    """Lines telling the expert what a flush did: what was sent, what the server refused and why, what waits."""
    lines = []
    if report.sent:
        lines.append(f"sent {report.labels_sent} label(s) to the server")
        started = [b.answer.get("next_iteration") for b in report.sent if b.answer and b.answer.get("next_iteration")]
        lines.extend(f"the server started the next iteration: {url}" for url in started)
    for batch in report.refused:
        lines.append(f"the server refused {len(batch.records)} label(s): {batch.message}")
    if report.left:
        count = sum(len(b.records) for b in report.left)
        lines.append(f"{count} label(s) kept in the journal, to be sent next time ({report.error})")
    return lines


@dataclass(frozen=True)
class _Step:
    """One step the expert can undo: a label given by key, or a skip."""

    candidate: Candidate
    position: int | None
    """Its place in the batch to label; None for a candidate brought up from a table viewer out of turn."""
    entry: JournalEntry | None
    """The journalled label; None for a skip."""
    previous: str | None = None
    """The label the spectrum had before (what undo restores in the labeller's memory)."""


@dataclass(frozen=True)
class TableRef:
    """How the VO tools name the table the candidates came from: its SAMP ``table-id`` and its URL."""

    table_id: str | None
    url: str | None

    def names(self, table_id: str | None, url: str | None) -> bool:
        """Whether a message's ``table-id`` or ``url`` is this table's."""
        return (table_id is not None and table_id == self.table_id) or (url is not None and url == self.url)


Position = int | Candidate
"""What is in front of the expert: a place in the batch, or a candidate a table viewer brought up out of turn."""


class Labeller:
    """Label candidates one keystroke at a time; see the module docstring for the keys and the journalling.

    Parameters
    ----------
    candidates
        The candidates, in the order to show them.
    classes
        The session's classes; key ``n`` gives the ``n``-th (at most 9 have keys).
    journal
        Where each label is written at once.
    session_url
        The session the labels belong to (as the journal files them).
    flush
        Seals nothing itself: called after the labeller sealed its batch, it sends
        the journal's pending batches and says what happened.
    keys
        Where the keystrokes come from.
    out
        Where the candidates and messages go.
    labeller
        The name recorded with each label.
    show
        Called with each candidate's table row and index before its key is read.
    spectrum
        Gives a candidate's spectrum, or a reason there is none; no plot when None.
    done
        Ids already labelled (journal and server): skipped, so a quit run resumes.
    batch_size
        Labels per sealed batch: how many a crash of the network can make wait.
    known
        The latest label of each spectrum already labelled (journal and server):
        a TOPCAT subset or table that repeats them sends nothing again.
    inbox
        Where the VO tools' messages arrive (`vocloud.client.samp.SampClient.event_queue`):
        read between keystrokes, in this thread, which owns the journal.
    table
        How the VO tools name the candidates' table: only messages about it act.
    collect
        The class rows selected in a table viewer are labelled with, from the start
        (``c`` and a class number change it, ``c 0`` stops).
    highlighted
        Called instead of ``show`` for a candidate a table viewer highlighted:
        it must not highlight the row back.
    read_labels
        Reads the labels of a table a VO tool sent (``table.load.votable``) from
        its URL; `vocloud.client.labels.from_votable` by default.
    peer_name
        The name of a SAMP client from its id, for messages; the id by default.
    poll_s
        How often the inbox is looked at while waiting for a key.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        classes: Sequence[str],
        journal: Journal,
        session_url: str,
        flush: Callable[[], FlushReport],
        keys: KeyReader,
        out: TextIO,
        labeller: str | None = None,
        show: Show | None = None,
        spectrum: Callable[[Candidate], tuple[np.ndarray, np.ndarray] | str] | None = None,
        done: Collection[str] = frozenset(),
        batch_size: int = 10,
        known: Mapping[str, str] | None = None,
        inbox: queue.Queue[Any] | None = None,
        table: TableRef | None = None,
        collect: str | None = None,
        highlighted: Show | None = None,
        read_labels: Callable[[str], Sequence[LabelRecord]] | None = None,
        peer_name: Callable[[str], str] | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.all_classes = list(classes)
        self.classes = self.all_classes[:9]
        self._known: dict[str, str] = dict(known or {})
        finished = set(done) | set(self._known)
        self.todo = [c for c in candidates if c.id not in finished]
        self.already = len(candidates) - len(self.todo)
        self._by_row = {c.index: c for c in candidates}
        self._position_of = {c.id: p for p, c in enumerate(self.todo)}
        self.journal = journal
        self.session_url = session_url
        self._flush = flush
        self.keys = keys
        self.out = out
        self.labeller = labeller
        self.show = show
        self.spectrum = spectrum
        self.batch_size = max(1, batch_size)
        self.inbox = inbox
        self.table = table or TableRef(None, None)
        if collect is not None and collect not in self.all_classes:
            msg = f"Cannot collect {collect!r}: the session's classes are {self.all_classes}"
            raise ValueError(msg)
        self.collecting = collect
        self.highlighted = highlighted
        self._read_labels = read_labels or self._from_votable
        self._peer_name = peer_name or str
        self.poll_s = poll_s
        self._steps: list[_Step] = []
        self._in_batch = 0
        self._reports: list[FlushReport] = []
        self._done: set[int] = set()
        """Places of the batch labelled or skipped in this run."""
        self._place = 0
        self._out_of_turn: Candidate | None = None
        self._from_tools: set[str] = set()
        self._highlighted: str | None = None
        """Id of the candidate a table viewer highlighted, until it is presented."""
        self._prompt_open = False

    # -- output

    def _say(self, text: str = "") -> None:
        if self._prompt_open:
            # A message from the VO tools arrived while the prompt waited: it starts a line of its own.
            self.out.write("\n")
            self._prompt_open = False
        self.out.write(text + "\n")
        self.out.flush()

    # -- the loop

    def run(self) -> LabellerResult:
        """Show the candidates and take keys until all are done or ``q``; the journal is flushed at the end."""
        shown: Position | None = None
        if self.already:
            self._say(f"{self.already} candidate(s) already labelled are left out")
        if self.collecting is not None:
            self._say(f"collecting {self.collecting}: rows you select in TOPCAT are labelled {self.collecting}")
        try:
            while (current := self._current()) is not None:
                if current != shown:
                    self._present(current)
                    shown = current
                key = self._key(self._prompt())
                if key is None:
                    continue  # the VO tools changed something: look again
                if key == QUIT:
                    break
                if key == COLLECT:
                    self._choose_collect()
                    continue
                self._apply(key, current)
                if key == UNDO:
                    shown = None
        finally:
            self._send()
        labelled = {s.candidate.id for s in self._steps if s.entry is not None} | self._from_tools
        skipped = {s.candidate.id for s in self._steps if s.entry is None} - labelled
        remaining = len(self.todo) - len(self._done)
        self._say(
            f"{len(labelled)} labelled, {len(skipped)} skipped"
            + (f", {remaining} left for next time" if remaining else "")
        )
        return LabellerResult(
            labelled=len(labelled),
            skipped=len(skipped),
            remaining=remaining,
            finished=remaining == 0,
            reports=tuple(self._reports),
            from_tools=len(self._from_tools),
        )

    def _current(self) -> Position | None:
        """What the next key applies to: a candidate brought up out of turn, else the first place not done."""
        if self._out_of_turn is not None:
            return self._out_of_turn
        if self._place in self._done or self._place >= len(self.todo):
            self._place = next((p for p in range(len(self.todo)) if p not in self._done), len(self.todo))
        return self._place if self._place < len(self.todo) else None

    def _candidate(self, at: Position) -> Candidate:
        return at if isinstance(at, Candidate) else self.todo[at]

    def _prompt(self) -> str:
        classes = "  ".join(f"{i} {name}" for i, name in enumerate(self.classes, start=1))
        collect = "c collect" if self.collecting is None else f"c collect (now {self.collecting})"
        return f"{classes}   u undo  s skip  {collect}  q quit > "

    def _key(self, prompt: str) -> str | None:
        """The next key, echoed; None when a message from the VO tools was acted on first."""
        before = self._current()
        self.out.write(prompt)
        self.out.flush()
        self._prompt_open = True
        while True:
            key = self.keys.read(None if self.inbox is None else self.poll_s)
            if key is not None:
                if self._prompt_open:
                    self.out.write(key + "\n")
                    self.out.flush()
                    self._prompt_open = False
                else:
                    self._say(f"key {key!r}")
                return key
            if self._take_messages() and (not self._prompt_open or self._current() != before):
                return None

    def _apply(self, key: str, current: Position) -> None:
        """Act on one key for the candidate in front of the expert."""
        candidate = self._candidate(current)
        place = current if isinstance(current, int) else None
        if key.isdigit() and 1 <= int(key) <= len(self.classes):
            label = self.classes[int(key) - 1]
            entry = self.journal.add(
                self.session_url, LabelRecord(id=candidate.id, label=label, labeller=self.labeller)
            )
            self._steps.append(_Step(candidate, place, entry, self._known.get(candidate.id)))
            self._known[candidate.id] = label
            self._finish(current)
            self._in_batch += 1
            self._say(f"  {candidate.id} -> {label} (journalled)")
            if self._in_batch >= self.batch_size:
                self._send()
            return
        if key == SKIP:
            if place is not None:
                self._steps.append(_Step(candidate, place, None))
            self._finish(current)
            self._say(f"  {candidate.id} skipped")
            return
        if key == UNDO:
            self._undo()
            return
        self._say(
            f"  {key!r}: press 1..{len(self.classes)} for a class, u to undo, s to skip,"
            " c and a class number to collect TOPCAT selections, q to quit"
        )

    def _finish(self, current: Position) -> None:
        if isinstance(current, int):
            self._done.add(current)
        else:
            self._out_of_turn = None

    def _undo(self) -> None:
        if not self._steps:
            self._say("  nothing to undo")
            return
        step = self._steps.pop()
        if step.position is None:
            self._out_of_turn = step.candidate
        else:
            self._done.discard(step.position)
            self._place = step.position
            self._out_of_turn = None
        if step.entry is None:
            self._say(f"  skip of {step.candidate.id} undone")
        elif self.journal.remove(step.entry):
            self._in_batch -= 1
            if step.previous is None:
                self._known.pop(step.candidate.id, None)
            else:
                self._known[step.candidate.id] = step.previous
            self._say(f"  label of {step.entry.record.id} undone")
        else:
            self._say(
                f"  the label of {step.entry.record.id} was already sent: label it again and the new label replaces it"
            )

    def _send(self) -> None:
        self.journal.seal(self.session_url)
        self._in_batch = 0
        report = self._flush()
        self._reports.append(report)
        for line in describe_flush(report):
            self._say(f"  {line}")

    def _choose_collect(self) -> None:
        """``c`` then a class number: label with it the rows selected in TOPCAT; ``c`` then ``0``: stop."""
        choices = "  ".join(f"{i} {name}" for i, name in enumerate(self.classes, start=1))
        key = None
        while key is None:
            key = self._key(f"  collect from TOPCAT: {choices}  0 stop > ")
        if key.isdigit() and 1 <= int(key) <= len(self.classes):
            self.collecting = self.classes[int(key) - 1]
            self._say(f"  collecting {self.collecting}: rows you select in TOPCAT are labelled {self.collecting}")
        elif key == "0":
            self.collecting = None
            self._say("  not collecting: rows selected in TOPCAT are left alone")
        else:
            now = "nothing" if self.collecting is None else self.collecting
            self._say(f"  {key!r} is not a class number: still collecting {now}")

    def _present(self, at: Position) -> None:
        candidate = self._candidate(at)
        self._say()
        if isinstance(at, int):
            self._say(f"[{at + 1}/{len(self.todo)}] {candidate.id}")
        else:
            label = self._known.get(candidate.id)
            now = f"labelled {label}" if label else "not labelled yet"
            self._say(f"[row {candidate.index + 1}, highlighted in TOPCAT] {candidate.id} ({now})")
        where = []
        if candidate.target:
            where.append(f"target {candidate.target}")
        if candidate.ra is not None and candidate.dec is not None:
            where.append(f"ra {candidate.ra:.5f}  dec {candidate.dec:+.5f}")
        if where:
            self._say("  " + "   ".join(where))
        if candidate.predicted or candidate.probabilities:
            probabilities = "  ".join(f"{c} {p:.2f}" for c, p in (candidate.probabilities or {}).items())
            self._say(f"  predicted {candidate.predicted or '-'}   {probabilities}".rstrip())
        pairs = (("entropy", candidate.entropy), ("BALD", candidate.bald))
        scores = [f"{name} {value:.3f}" for name, value in pairs if value is not None]
        if scores:
            self._say("  " + "   ".join(scores))
        from_viewer, self._highlighted = self._highlighted == candidate.id, None
        hook = self.highlighted if from_viewer and self.highlighted is not None else self.show
        if hook is not None:
            try:
                hook(candidate.row, candidate.index)
            except Exception as e:  # noqa: BLE001 - a viewer that fails must not stop the labelling
                self._say(f"  (not sent to the VO tools: {e})")
        if self.spectrum is not None:
            found = self.spectrum(candidate)
            self._say(f"  ({found})" if isinstance(found, str) else text_plot(*found))

    # -- labels from the VO tools

    def _take_messages(self) -> bool:
        """Act on every message the VO tools sent since the last look; True if anything was said or changed."""
        if self.inbox is None:
            return False
        acted = False
        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                return acted
            acted = True
            try:
                self._message(event)
            except (LabelError, requests.RequestException, OSError) as e:
                self._say(f"  {e}")

    def _message(self, event: Any) -> None:
        # Imported here: a run without a hub never loads pyvo.samp; with one, .samp is loaded already.
        from .samp import HighlightEvent, RowListEvent, TableLoadEvent  # noqa: PLC0415

        sender = self._peer_name(event.sender)
        match event:
            case RowListEvent() if self.table.names(event.table_id, event.url):
                self._rows_selected(sender, event.rows)
            case HighlightEvent() if self.table.names(event.table_id, event.url):
                self._row_highlighted(sender, event.row)
            case RowListEvent() | HighlightEvent():
                self._say(f"  {sender} sent rows of another table ({event.table_id or event.url}): left alone")
            case TableLoadEvent():
                self._table_sent(sender, event)
            case _:
                self._say(f"  {sender} sent {type(event).__name__}: left alone")

    def _rows(self, sender: str, rows: Sequence[int]) -> list[Candidate] | None:
        unknown = sorted(set(rows) - set(self._by_row))
        if unknown:
            self._say(
                f"  {sender} named row(s) {unknown[:10]} of a batch of {len(self._by_row)}: not this batch, left alone"
            )
            return None
        return [self._by_row[r] for r in sorted(set(rows))]

    def _rows_selected(self, sender: str, rows: Sequence[int]) -> None:
        """A subset broadcast from TOPCAT: labelled with the class being collected, if any."""
        if self.collecting is None:
            self._say(f"  {sender} selected {len(rows)} row(s): press c and a class number to label such selections")
            return
        chosen = self._rows(sender, rows)
        if chosen is None:
            return
        records = [LabelRecord(id=c.id, label=self.collecting, labeller=self.labeller) for c in chosen]
        self._journal_from_tools(records, f"{sender} selected {len(chosen)} row(s) as {self.collecting}")

    def _row_highlighted(self, sender: str, row: int) -> None:
        """A row highlighted in TOPCAT: its candidate comes up here and in the other viewers; the next key labels it."""
        chosen = self._rows(sender, [row])
        if not chosen:
            return
        (candidate,) = chosen
        current = self._current()
        if current is not None and self._candidate(current).id == candidate.id:
            return  # already in front of the expert (or the echo of our own highlight)
        self._highlighted = candidate.id
        place = self._position_of.get(candidate.id)
        if place is not None and place not in self._done:
            self._place = place
            self._out_of_turn = None
        else:
            self._out_of_turn = candidate
        self._say(f"  {sender} highlighted row {row + 1}: {candidate.id}")

    def _table_sent(self, sender: str, event: Any) -> None:
        """A table broadcast back (edited in TOPCAT): its filled-in label cells are labels, all or nothing."""
        name = event.name or event.table_id or event.url
        records = self._read_labels(event.url)
        if not records:
            self._say(f"  {sender} sent table {name}: no labelled row in it")
            return
        self._journal_from_tools(records, f"{sender} sent table {name} with {len(records)} label(s)")

    def _from_votable(self, url: str) -> list[LabelRecord]:
        return from_votable(url, classes=self.all_classes, labeller=self.labeller)

    def _journal_from_tools(self, records: Sequence[LabelRecord], what: str) -> None:
        """Journal labels from the VO tools as one batch and send it; labels the spectra already have are left out.

        The terminal's open batch is sealed first, so that the server receives
        the labels in the order the expert gave them (its latest label counts).
        """
        new = [r for r in records if self._known.get(r.id) != r.label]
        unchanged = len(records) - len(new)
        note = f" ({unchanged} already labelled so, left out)" if unchanged else ""
        if not new:
            self._say(f"  {what}: nothing new{note}")
            return
        self.journal.seal(self.session_url)
        self._in_batch = 0
        key = self.journal.record(self.session_url, new)
        self._say(f"  {what}: {len(new)} label(s) journalled{note}")
        report = self._flush()
        self._reports.append(report)
        for line in describe_flush(report):
            self._say(f"  {line}")
        if any(batch.key == key for batch in report.refused):
            return  # nothing of it was stored: the candidates stay to label
        for record in new:
            self._known[record.id] = record.label
            self._from_tools.add(record.id)
            place = self._position_of.get(record.id)
            if place is not None:
                self._done.add(place)
            if self._out_of_turn is not None and self._out_of_turn.id == record.id:
                self._out_of_turn = None
