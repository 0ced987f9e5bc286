"""Two-column text spectra (wavelength, flux): CSV, TSV or whitespace-separated, with an optional header line.

Lines starting with ``#``, ``%``, ``!``, ``;`` or ``|`` are comments. The first
other line is a header if it is not numeric. Further columns (errors, masks) are
ignored. Wavelengths are in Ångström unless the header or a comment gives the
first column a unit, as in ``wavelength [nm]``, ``lambda(um)`` or ``wave_nm``.
These files carry no metadata: the DID is made from the content, the medium is
assumed to be air, the flux unit is unknown.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

from .assemble import assemble, content_did
from .format_error import SpectrumFormatError
from .model import Medium, Spectrum, SpectrumMeta
from .spectral_units import to_angstrom

__all__ = ["read_text_table"]

_COMMENT_STARTS = ("#", "%", "!", ";", "|")
_UNIT = r"angstroms?|aa|a|\u00c5|\u212b|nm|um|\u00b5m|microns?|mm|cm|m"
_HEADER_UNIT = re.compile(rf"(?:[\[(]\s*({_UNIT})\s*[\])]|_({_UNIT})\b)", re.IGNORECASE)
_DELIMITERS = (",", "\t", ";")
_SAMPLE_BYTES = 4096
_TEXT_BYTES = bytes(sorted({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x100)) - {0x7F}))
"""Bytes that occur in text files; more than 5 % of others in the first 4 KiB mean a binary file."""
_MESSAGE_LIMIT = 300


def read_text_table(content: bytes, *, source: str) -> Spectrum:
    """A spectrum from a text table of wavelength and flux.

    Parameters
    ----------
    content
        The file.
    source
        The file's name, for messages.

    Returns
    -------
    Spectrum
        With a DID made from the content.

    Raises
    ------
    SpectrumFormatError
        Raised if the text has no data lines, fewer than two columns,
        non-numeric values, or fails the checks of :func:`.assemble.assemble`.
    """
    text = _decode(content, source=source)
    comments: list[str] = []
    header: str | None = None
    data_lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(_COMMENT_STARTS):
            if not data_lines:
                comments.append(stripped.lstrip("#%!;| "))
            continue
        if not data_lines and header is None and not _is_numeric_row(stripped):
            header = stripped
            continue
        data_lines.append(stripped)
    if not data_lines:
        raise SpectrumFormatError(source, "no data lines: expected two columns, wavelength and flux")
    delimiter = next((mark for mark in _DELIMITERS if mark in data_lines[0]), None)
    n_columns = len(data_lines[0].split(delimiter))
    if n_columns < 2:
        problem = "found one column; a text spectrum needs two (wavelength, flux), separated by comma, tab or spaces"
        raise SpectrumFormatError(source, problem)
    try:
        table = np.loadtxt(data_lines, delimiter=delimiter, usecols=(0, 1), ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise SpectrumFormatError(source, f"not a table of numbers: {str(e)[:_MESSAGE_LIMIT]}") from e
    unit = _wavelength_unit(header, comments)
    meta = SpectrumMeta(publisher_did=content_did(content), medium=Medium.AIR)
    wavelength: NDArray[np.float64] = to_angstrom(table[:, 0], unit)
    return assemble(wavelength, table[:, 1], meta, source=source)


def _decode(content: bytes, *, source: str) -> str:
    """UTF-8 (with or without BOM), else Latin-1; NUL bytes mean a binary file."""
    sample = content[:_SAMPLE_BYTES]
    if b"\x00" in sample or len(sample.translate(None, _TEXT_BYTES)) > len(sample) // 20:
        raise SpectrumFormatError(source, "binary content that is neither FITS nor VOTable: not a spectrum")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def _is_numeric_row(line: str) -> bool:
    """Whether the first field of a line is a number (so the line is data, not a header)."""
    first = re.split(r"[,\t;\s]+", line, maxsplit=1)[0]
    try:
        float(first)
    except ValueError:
        return False
    return True


def _wavelength_unit(header: str | None, comments: list[str]) -> str | None:
    """The first column's unit as named in the header line, else in the last comment line; ``None`` for Ångström."""
    for label in (header, comments[-1] if comments else None):
        if label:
            found = _HEADER_UNIT.search(label)
            if found:
                return found.group(1) or found.group(2)
    return None
