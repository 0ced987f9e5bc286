"""The data array of a plain FITS primary image, straight from the file's bytes.

Opening a file with astropy.io.fits costs about a millisecond, mostly spent
parsing the header once more into ``Card`` objects; for the simple images that
make up nearly every archive (IRAF 1-D spectra, LAMOST row stacks) the array is
just big-endian numbers after the header. This reads those with
``numpy.frombuffer`` (``BSCALE``/``BZERO`` and integer ``BLANK`` applied) and
declines anything else (random groups, compressed or tiled images, a data
unit shorter than the header says), for which the caller uses astropy. A test
compares the arrays with astropy's on all real image files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .fits_cards import FitsCards

__all__ = ["primary_image"]

_DTYPES: dict[int, np.dtype[Any]] = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}
"""numpy type of each FITS ``BITPIX`` (FITS data are big-endian)."""


def primary_image(content: bytes, cards: FitsCards) -> NDArray[Any] | None:
    """The primary image's data, scaled as FITS says; ``None`` when astropy should read it instead.

    Parameters
    ----------
    content
        The whole file.
    cards
        Its primary header.

    Returns
    -------
    numpy.ndarray or None
        The array in numpy axis order (``NAXISn`` reversed), read-only, or
        ``None`` for layouts this fast path does not cover.
    """
    bitpix, naxis = cards.get("BITPIX"), cards.get("NAXIS")
    dtype = _DTYPES.get(bitpix) if isinstance(bitpix, int) else None
    if dtype is None or not isinstance(naxis, int) or naxis < 1 or cards.get("GROUPS") is True:
        return None
    shape = tuple(cards.get(f"NAXIS{axis}") for axis in range(naxis, 0, -1))
    if not all(isinstance(length, int) and length > 0 for length in shape):
        return None
    count = math.prod(shape)
    start = cards.data_offset
    if start + count * dtype.itemsize > len(content):
        return None
    data: NDArray[Any] = np.frombuffer(content, dtype=dtype, count=count, offset=start).reshape(shape)
    scale, zero = cards.get("BSCALE", 1), cards.get("BZERO", 0)
    blank = cards.get("BLANK") if dtype.kind in "iu" else None
    if scale == 1 and zero == 0 and blank is None:
        return data
    if not isinstance(scale, int | float) or not isinstance(zero, int | float):
        return None
    scaled = data.astype(np.float64) * float(scale) + float(zero)
    if isinstance(blank, int):
        scaled[data == blank] = np.nan
    return scaled
