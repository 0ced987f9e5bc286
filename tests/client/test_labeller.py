"""The terminal labeller: keys, undo across batches, skip, quit-and-resume, the text plot, spectra, a real tty."""

from __future__ import annotations

import io
import os
import pty
import termios
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from vocloud.client.journal import BatchState, FlushReport, Journal, session_url
from vocloud.client.labeller import (
    PLOT_HEIGHT,
    PLOT_WIDTH,
    KeyReader,
    Labeller,
    candidates_from_table,
    read_spectrum,
    text_plot,
)
from vocloud.client.labels import LabelRecord
from vocloud.server.spectra.demo import generate_demo_archive

CLASSES = ("absorption", "emission", "double-peak")
SERVER = "http://vocloud.example:8080"
SESSION = session_url(SERVER, "s1")


class Poster:
    """Stands in for the server: every post is accepted and recorded."""

    url = SERVER

    def __init__(self) -> None:
        self.posts: list[list[tuple[str, str]]] = []

    def post_labels(
        self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None
    ) -> Mapping[str, Any]:
        self.posts.append([(r.id, r.label) for r in records])
        return {"accepted": len(records), "labels": 0, "next_iteration": None, "session": SESSION}


def _table(count: int = 4) -> Table:
    table = Table()
    table["id"] = [f"ivo://demo?{i}" for i in range(count)]
    table["target"] = [f"HD {100 + i}" for i in range(count)]
    table["ra"] = np.linspace(10, 20, count)
    table["dec"] = np.linspace(-5, 5, count)
    table["predicted_class"] = ["emission"] * count
    table["p_absorption"] = [0.2] * count
    table["p_emission"] = [0.7] * count
    table["p_double_peak"] = [0.1] * count
    table["entropy"] = [0.8] * count
    table["bald"] = [0.12] * count
    return table


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as opened:
        yield opened


def _labeller(journal: Journal, poster: Poster, keys: str, **options: Any) -> tuple[Labeller, io.StringIO]:
    out = io.StringIO()
    labeller = Labeller(
        candidates_from_table(options.pop("table", _table()), CLASSES),
        classes=CLASSES,
        journal=journal,
        session_url=SESSION,
        flush=lambda: journal.flush(poster, session_url=SESSION),
        keys=KeyReader(io.StringIO(keys)),
        out=out,
        labeller="Ann",
        **options,
    )
    return labeller, out


def test_keys_label_skip_and_undo_and_everything_is_sent_once(journal: Journal) -> None:
    """1..3 label, s skips, u takes back the last step (a label still in the open batch is never sent)."""
    poster = Poster()
    shown: list[tuple[str, int]] = []
    labeller, out = _labeller(
        journal, poster, "1\n2\nu\n3\ns\nx\n2\n", show=lambda row, index: shown.append((row["id"], index))
    )

    result = labeller.run()

    assert poster.posts == [
        [("ivo://demo?0", "absorption"), ("ivo://demo?1", "double-peak"), ("ivo://demo?3", "emission")]
    ]
    assert result.finished and result.labelled == 3 and result.skipped == 1 and result.remaining == 0
    assert [i for _, i in shown] == [0, 1, 2, 1, 2, 3]  # a wrong key shows nothing again
    text = out.getvalue()
    assert "label of ivo://demo?1 undone" in text
    assert "'x': press 1..3" in text
    assert "HD 101" in text and "predicted emission" in text and "emission 0.70" in text and "BALD 0.120" in text
    assert [b.state for b in journal.batches()] == [BatchState.SENT]
    assert all(r.labeller == "Ann" for b in journal.batches() for r in b.records)


def test_undo_of_a_sent_label_relabels_and_the_new_label_follows(journal: Journal) -> None:
    """With a batch per label, undo cannot take a label back: the candidate comes again and its new label is sent."""
    poster = Poster()
    labeller, out = _labeller(journal, poster, "1\nu\n2\nq\n", batch_size=1)

    result = labeller.run()

    assert poster.posts == [[("ivo://demo?0", "absorption")], [("ivo://demo?0", "emission")]]
    assert "was already sent" in out.getvalue()
    assert journal.labelled(SESSION) == {"ivo://demo?0": "emission"}
    assert not result.finished and result.labelled == 1 and result.remaining == 3


def test_quit_then_resume_shows_only_what_is_left(journal: Journal) -> None:
    """Quitting seals and sends what was labelled; a new run given those ids as done starts after them."""
    poster = Poster()
    first, _ = _labeller(journal, poster, "1\n1\nq\n")
    assert first.run().remaining == 2
    assert poster.posts == [[("ivo://demo?0", "absorption"), ("ivo://demo?1", "absorption")]]

    second, out = _labeller(journal, poster, "3\n3\n", done=set(journal.labelled(SESSION)))
    result = second.run()

    assert result.finished and result.labelled == 2
    assert "2 candidate(s) already labelled are left out" in out.getvalue()
    assert "[1/2] ivo://demo?2" in out.getvalue() and "ivo://demo?0\n" not in out.getvalue()
    assert poster.posts[1] == [("ivo://demo?2", "double-peak"), ("ivo://demo?3", "double-peak")]


def test_end_of_input_quits_and_a_failing_viewer_does_not_stop_labelling(journal: Journal) -> None:
    def broken(row: Any, index: int) -> None:
        raise RuntimeError("TOPCAT went away")

    poster = Poster()
    labeller, out = _labeller(journal, poster, "2\n", show=broken)
    result = labeller.run()
    assert not result.finished and result.labelled == 1
    assert "TOPCAT went away" in out.getvalue()
    assert poster.posts == [[("ivo://demo?0", "emission")]]


def test_an_oracle_table_with_only_ids_is_enough() -> None:
    """The fake runner's oracle table has only ``id``: candidates come out with the rest unknown."""
    table = Table({"id": ["a", "b"]})
    (first, second) = candidates_from_table(table, CLASSES)
    assert (first.id, first.index, second.index) == ("a", 0, 1)
    assert first.predicted is None and first.probabilities is None and first.access_url is None
    with pytest.raises(ValueError, match="no 'id' column"):
        candidates_from_table(Table({"name": ["a"]}), CLASSES)


def test_the_text_plot_puts_an_emission_line_where_it_is() -> None:
    """A line at 3/4 of the range peaks in the top row, at 3/4 of the width; the axes say the ranges."""
    wavelength = np.linspace(6500.0, 6600.0, 1000)
    flux = 1.0 + 4.0 * np.exp(-0.5 * ((wavelength - 6575.0) / 1.5) ** 2)
    lines = text_plot(wavelength, flux).splitlines()
    assert len(lines) == PLOT_HEIGHT + 2
    plot = [line.split("+", 1)[1] for line in lines[:PLOT_HEIGHT]]
    assert all(len(row) == PLOT_WIDTH for row in plot)
    peak_columns = [c for c, char in enumerate(plot[0]) if char != " "]
    assert peak_columns and all(abs(c - 0.75 * PLOT_WIDTH) <= 2 for c in peak_columns)
    # The continuum sits on the bottom rows everywhere away from the line.
    assert all(plot[-1][c] != " " for c in range(0, 30))
    assert float(lines[0].split()[0]) == pytest.approx(5.0, abs=0.01)
    assert float(lines[PLOT_HEIGHT - 1].split()[0]) == pytest.approx(1.0, abs=0.01)
    assert "6500" in lines[-1] and "6600" in lines[-1]
    assert text_plot(np.array([1.0]), np.array([2.0])) == "(no data to plot)"


def test_read_spectrum_reads_the_demo_archive_a_fits_table_and_a_votable(tmp_path: Path) -> None:
    """The archive's IRAF 1-D FITS (linear WCS), a binary table and a VOTable all give wavelength and flux."""
    generate_demo_archive(tmp_path / "demo", count=3, seed=1)
    path = next((tmp_path / "demo" / "spectra").glob("*.fit"))
    x, y = read_spectrum(path.read_bytes())
    header = fits.getheader(path)
    assert x[0] == pytest.approx(header["CRVAL1"] + (1 - header.get("CRPIX1", 1)) * header["CDELT1"])
    assert 6200 < x[0] < x[-1] < 6800 and x.size == y.size == header["NAXIS1"]

    table = Table({"WAVE": x, "FLUX": y})
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(buffer)
    tx, ty = read_spectrum(buffer.getvalue())
    assert np.allclose(tx, x) and np.allclose(ty, y)
    buffer = io.BytesIO()
    Table({"spectral": x, "flux": y}).write(buffer, format="votable")
    vx, vy = read_spectrum(buffer.getvalue())
    assert np.allclose(vx, x) and np.allclose(vy, y)
    with pytest.raises(ValueError, match="Neither FITS nor VOTable"):
        read_spectrum(b"SIMPLE nonsense")


def test_keys_are_read_one_at_a_time_from_a_terminal_and_the_terminal_is_restored() -> None:
    """On a tty no Enter is needed; leaving restores the terminal's settings; Ctrl-D quits."""
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "r", closefd=False) as stream:
            before = termios.tcgetattr(slave)
            reader = KeyReader(stream)
            assert reader.interactive
            with reader:
                assert not termios.tcgetattr(slave)[3] & termios.ICANON
                os.write(master, b"2U\x04")
                assert [reader.read(), reader.read(), reader.read()] == ["2", "u", "q"]
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_lines_are_read_from_a_pipe() -> None:
    reader = KeyReader(io.StringIO("  1 extra\n\nq\n"))
    assert not reader.interactive
    with reader:
        assert [reader.read(), reader.read(), reader.read(), reader.read()] == ["1", "", "q", "q"]


def test_flush_reports_are_shown_to_the_expert(journal: Journal) -> None:
    """A refusal's message reaches the screen, and labels left for later are counted."""

    class Refusing(Poster):
        def post_labels(self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None) -> Any:
            from vocloud.client.errors import VocloudError

            raise VocloudError("1 id ('ivo://demo?0') not spectra of the session's selection", status=400)

    labeller, out = _labeller(journal, Refusing(), "1\nq\n")
    result = labeller.run()
    assert isinstance(result.reports[-1], FlushReport) and result.reports[-1].refused
    assert "the server refused 1 label(s): 1 id ('ivo://demo?0') not spectra" in out.getvalue()


def test_a_pipe_is_read_by_line_with_a_timeout() -> None:
    """Nothing to read yet is None after the timeout; half a line waits for its end; the pipe's end quits."""
    read, write = os.pipe()
    try:
        with os.fdopen(read, "r", closefd=False) as stream, KeyReader(stream) as reader:
            assert reader.read(timeout=0.05) is None
            os.write(write, b"2 and")
            assert reader.read(timeout=0.05) is None
            os.write(write, b" more\nS\n")
            assert [reader.read(timeout=1), reader.read(timeout=1)] == ["2", "s"]
            os.close(write)
            write = -1
            assert reader.read(timeout=1) == "q"
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_a_terminal_key_can_be_waited_for_with_a_timeout() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "r", closefd=False) as stream, KeyReader(stream) as reader:
            assert reader.read(timeout=0.05) is None
            os.write(master, b"3")
            assert reader.read(timeout=1) == "3"
    finally:
        os.close(master)
        os.close(slave)
