"""FITS header cards parsed straight from the file's bytes, for fast keyword lookup.

astropy's ``Header.get`` costs tens of microseconds a keyword (it parses the
card and consults its configuration each time); a reader asks for some fifty,
which made header access slower than opening the file. This parses the raw
80-byte cards once into a dict and a value on first use (FITS standard 4.0,
section 4.2: quoted strings with ``''`` escapes and ``CONTINUE`` long strings,
logical ``T``/``F``, integers, reals with ``E`` or ``D`` exponents; an empty
value is ``None``). Commentary cards and ``HIERARCH`` keywords are not kept. A
test compares every value with astropy's on the 244 real files.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["FitsCards"]

CARD = 80
"""Bytes per header card."""

BLOCK = 2880
"""Bytes per header or data block."""

_INTEGER = re.compile(r"^[+-]?\d+$")
_REAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?$")
_UNSET = object()


class FitsCards:
    """The value cards of one FITS header, by keyword (the first card of a repeated keyword wins).

    Parameters
    ----------
    fields
        Keyword → the card's bytes 10-80 (value and comment) as text.
    data_offset
        Byte offset of the data that follow the header (the ``END`` card's
        2880-byte block rounded up).
    """

    def __init__(self, fields: dict[str, str], *, data_offset: int) -> None:
        self._fields = fields
        self._values: dict[str, Any] = {}
        self.data_offset = data_offset

    @classmethod
    def from_bytes(cls, content: bytes, offset: int = 0) -> FitsCards:
        """Parse the header that starts at ``offset`` of ``content``, up to its ``END`` card.

        Raises
        ------
        ValueError
            Raised if the header has no ``END`` card before the content ends (a truncated file).
        """
        fields: dict[str, str] = {}
        position = offset
        end = len(content) - CARD
        continued: str | None = None
        while position <= end:
            card = content[position : position + CARD].decode("ascii", errors="replace")
            position += CARD
            keyword = card[:8].rstrip()
            if keyword == "END":
                return cls(fields, data_offset=offset + -(-(position - offset) // BLOCK) * BLOCK)
            if keyword == "CONTINUE" and continued is not None:
                fields[continued] = _join_continued(fields[continued], card[8:])
                continued = continued if _is_continued(fields[continued]) else None
                continue
            continued = None
            if card[8:10] != "= " or not keyword or keyword == "HIERARCH" or keyword in fields:
                continue
            fields[keyword] = card[10:]
            if _is_continued(card[10:]):
                continued = keyword
        msg = f"FITS header at byte {offset} has no END card: the file is truncated or not FITS"
        raise ValueError(msg)

    def data_size(self) -> int:
        """Bytes of the data unit the header announces: ``|BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)``.

        Zero when ``NAXIS`` is 0 or a value is missing or not an integer (astropy then judges the file).
        """
        bitpix, naxis = self.get("BITPIX"), self.get("NAXIS")
        if not isinstance(bitpix, int) or not isinstance(naxis, int) or naxis <= 0:
            return 0
        lengths = [self.get(f"NAXIS{axis}") for axis in range(1, naxis + 1)]
        if not all(isinstance(length, int) and length >= 0 for length in lengths):
            return 0
        if self.get("GROUPS") is True:
            lengths = lengths[1:]  # random groups: NAXIS1 = 0 by convention
        pixels = 1
        for length in lengths:
            pixels *= length
        gcount, pcount = self.get("GCOUNT", 1), self.get("PCOUNT", 0)
        gcount = gcount if isinstance(gcount, int) else 1
        pcount = pcount if isinstance(pcount, int) else 0
        return abs(bitpix) // 8 * gcount * (pcount + pixels)

    def __contains__(self, keyword: object) -> bool:
        return keyword in self._fields

    def get(self, keyword: str, default: Any = None) -> Any:
        """The value of ``keyword`` (str, bool, int, float or ``None`` when blank); ``default`` when absent."""
        value = self._values.get(keyword, _UNSET)
        if value is _UNSET:
            field = self._fields.get(keyword)
            if field is None:
                return default
            value = _parse_value(field)[0]
            self._values[keyword] = value
        return value

    def comment(self, keyword: str) -> str:
        """The comment of ``keyword``'s card, stripped; empty when absent."""
        field = self._fields.get(keyword)
        return "" if field is None else _parse_value(field)[1]


def _parse_value(field: str) -> tuple[Any, str]:
    """Value and comment of a card's value field (bytes 10-80)."""
    text = field.lstrip()
    if text.startswith("'"):
        value, rest = _parse_string(text)
        comment = rest.split("/", 1)[1].strip() if "/" in rest else ""
        return value, comment
    raw, _, comment = text.partition("/")
    token = raw.strip()
    comment = comment.strip()
    if not token:
        return None, comment
    if token in ("T", "F"):
        return token == "T", comment
    if _INTEGER.match(token):
        return int(token), comment
    if _REAL.match(token):
        return float(token.replace("D", "E").replace("d", "e")), comment
    return None, comment


def _parse_string(text: str) -> tuple[str, str]:
    """A quoted string value (``''`` is a quote; trailing blanks dropped) and the text after it."""
    parts: list[str] = []
    index = 1
    while True:
        close = text.find("'", index)
        if close < 0:
            return text[1:].rstrip(), ""
        parts.append(text[index:close])
        if text.startswith("''", close):
            parts.append("'")
            index = close + 2
            continue
        return "".join(parts).rstrip(), text[close + 1 :]


def _is_continued(field: str) -> bool:
    """Whether a value field holds a string ending in ``&``, the mark of a ``CONTINUE``d long string."""
    text = field.lstrip()
    return "&'" in text and text.startswith("'") and _parse_string(text)[0].endswith("&")


def _join_continued(field: str, continuation: str) -> str:
    """Append a ``CONTINUE`` card's string to a long-string value field ending in ``&'``."""
    value, rest = _parse_string(field.lstrip())
    more, more_rest = _parse_string(continuation.lstrip())
    joined = value.removesuffix("&") + more
    return "'" + joined.replace("'", "''") + "'" + (more_rest or rest)
