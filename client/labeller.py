"""The terminal labeller: one candidate at a time, its class by one keystroke, every label journalled at once.

For each candidate of an oracle batch it prints the metadata the expert
decides on (id, target, position, predicted class and probabilities,
entropy and BALD), a small text plot of the spectrum (fetched through the
candidate's ``access_url``, else the server's DataLink ``#this``, and read with
astropy), and calls an optional ``show(row, index)`` hook that sends the
candidate to SPLAT, Aladin and TOPCAT over SAMP (`vocloud.client.viewers`).

Keys: ``1``..``9`` give the session's classes in order, ``u`` undoes the last
step, ``s`` skips, ``q`` quits. Each label goes to the journal's open batch
before anything else happens (`vocloud.client.journal`); every ``batch_size``
labels, at quit and at the end, the batch is sealed and the journal flushed,
so a label is sent once, with its batch's idempotency key. Undo takes a label
back from the journal while its batch is open; once sealed (it may have
reached the server) the candidate is shown again and its new label, sent
later, replaces it (the server's latest label counts).

Keys are read one at a time from a terminal (cbreak mode through
`termios`/`tty`: no Enter, no echo, Ctrl-C still interrupts) and line by line
otherwise, so tests and scripts can pipe them in.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import termios
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
from .labels import LabelRecord

__all__ = [
    "PLOT_HEIGHT",
    "PLOT_WIDTH",
    "Candidate",
    "KeyReader",
    "Labeller",
    "LabellerResult",
    "SpectrumFetcher",
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

QUIT, UNDO, SKIP = "q", "u", "s"

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")

Show = Callable[[Row, int], Any]
"""The hook that brings a candidate up in the VO tools: ``show(row, index)``."""


def probability_column(class_name: str) -> str:
    """The candidates table's column of a class's mean probability (the server's naming: ``p_`` + an identifier)."""
    return "p_" + _NOT_NAME.sub("_", class_name)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """What the labeller shows of one row of an oracle batch; absent columns are None.

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

    Parameters
    ----------
    stream
        Where keys come from; standard input by default.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self._saved: list[Any] | None = None

    @property
    def interactive(self) -> bool:
        """Whether keys come from a terminal (one keystroke each)."""
        try:
            return self.stream.isatty()
        except (ValueError, OSError):
            return False

    def __enter__(self) -> KeyReader:
        if self.interactive:
            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            # cbreak, not raw: output keeps its newline translation and Ctrl-C still interrupts.
            tty.setcbreak(fd)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self) -> str:
        """The next key, lower-cased; ``q`` at the end of input (Ctrl-D), so the labeller quits cleanly."""
        if self._saved is not None:
            raw = os.read(self.stream.fileno(), 1)
            return QUIT if raw in (b"", b"\x04") else raw.decode("utf-8", errors="replace").lower()
        line = self.stream.readline()
        if not line:
            return QUIT
        return line.strip()[:1].lower()


# -- the labeller -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LabellerResult:
    """How a labelling run ended.

    Attributes
    ----------
    labelled
        Labels given in this run (undone ones not counted).
    skipped
        Candidates skipped in this run and not labelled since.
    remaining
        Candidates neither labelled nor skipped (left by quitting).
    finished
        True if every candidate was labelled or skipped.
    reports
        The journal flushes made during the run, in order.
    """

    labelled: int
    skipped: int
    remaining: int
    finished: bool
    reports: tuple[FlushReport, ...]


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
    position: int
    entry: JournalEntry | None
    """The journalled label; None for a skip."""


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
    ) -> None:
        self.classes = list(classes)[:9]
        self.todo = [c for c in candidates if c.id not in done]
        self.already = len(candidates) - len(self.todo)
        self.journal = journal
        self.session_url = session_url
        self._flush = flush
        self.keys = keys
        self.out = out
        self.labeller = labeller
        self.show = show
        self.spectrum = spectrum
        self.batch_size = max(1, batch_size)
        self._steps: list[_Step] = []
        self._in_batch = 0
        self._reports: list[FlushReport] = []

    def _say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> LabellerResult:
        """Show the candidates and take keys until all are done or ``q``; the journal is flushed at the end."""
        position = 0
        shown: int | None = None
        finished = False
        if self.already:
            self._say(f"{self.already} candidate(s) already labelled are left out")
        try:
            while True:
                if position >= len(self.todo):
                    finished = True
                    break
                if position != shown:
                    self._present(position)
                    shown = position
                key = self._key()
                if key == QUIT:
                    break
                position = self._apply(key, position)
                if key == UNDO:
                    shown = None
        finally:
            self._send()
        labelled = {s.entry.record.id for s in self._steps if s.entry is not None}
        skipped = {self.todo[s.position].id for s in self._steps if s.entry is None} - labelled
        self._say(
            f"{len(labelled)} labelled, {len(skipped)} skipped"
            + ("" if finished else f", {len(self.todo) - position} left for next time")
        )
        return LabellerResult(
            labelled=len(labelled),
            skipped=len(skipped),
            remaining=len(self.todo) - position,
            finished=finished,
            reports=tuple(self._reports),
        )

    def _key(self) -> str:
        prompt = "  ".join(f"{i} {name}" for i, name in enumerate(self.classes, start=1))
        self.out.write(f"{prompt}   u undo  s skip  q quit > ")
        self.out.flush()
        key = self.keys.read()
        self._say(key)
        return key

    def _apply(self, key: str, position: int) -> int:
        """Act on one key; returns the position of the next candidate to show."""
        candidate = self.todo[position]
        if key.isdigit() and 1 <= int(key) <= len(self.classes):
            label = self.classes[int(key) - 1]
            entry = self.journal.add(
                self.session_url, LabelRecord(id=candidate.id, label=label, labeller=self.labeller)
            )
            self._steps.append(_Step(position, entry))
            self._in_batch += 1
            self._say(f"  {candidate.id} -> {label} (journalled)")
            if self._in_batch >= self.batch_size:
                self._send()
            return position + 1
        if key == SKIP:
            self._steps.append(_Step(position, None))
            self._say(f"  {candidate.id} skipped")
            return position + 1
        if key == UNDO:
            return self._undo(position)
        self._say(f"  {key!r}: press 1..{len(self.classes)} for a class, u to undo, s to skip, q to quit")
        return position

    def _undo(self, position: int) -> int:
        if not self._steps:
            self._say("  nothing to undo")
            return position
        step = self._steps.pop()
        if step.entry is None:
            self._say(f"  skip of {self.todo[step.position].id} undone")
        elif self.journal.remove(step.entry):
            self._in_batch -= 1
            self._say(f"  label of {step.entry.record.id} undone")
        else:
            self._say(
                f"  the label of {step.entry.record.id} was already sent: label it again and the new label replaces it"
            )
        return step.position

    def _send(self) -> None:
        self.journal.seal(self.session_url)
        self._in_batch = 0
        report = self._flush()
        self._reports.append(report)
        for line in describe_flush(report):
            self._say(f"  {line}")

    def _present(self, position: int) -> None:
        candidate = self.todo[position]
        self._say()
        self._say(f"[{position + 1}/{len(self.todo)}] {candidate.id}")
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
        if self.show is not None:
            try:
                self.show(candidate.row, candidate.index)
            except Exception as e:  # noqa: BLE001 - a viewer that fails must not stop the labelling
                self._say(f"  (not sent to the VO tools: {e})")
        if self.spectrum is not None:
            found = self.spectrum(candidate)
            self._say(f"  ({found})" if isinstance(found, str) else text_plot(*found))
