"""LAMOST low-resolution spectra (``spec-*.fits``, DR1 and DR2): five rows stacked in one primary image.

What each row holds is told by ``EXTEN0``, and it changed between releases:
pipeline v2.6.4 (DR1) writes ``Flux Inverse Subcontinuum Andmask Ormask``,
pipeline 2.7.5 (DR2) ``Flux Inverse Wavelength Andmask Ormask``. Row 3 is thus
a wavelength array in DR2 and a continuum in DR1; reading it blindly as
either breaks the other release. The flux is the row named ``Flux``; the
wavelengths come from the ``Wavelength`` row where ``EXTEN0`` names one, else
from the log-linear solution ``10**(COEFF0 + COEFF1 * i)`` (vacuum, ``VACUUM = T``;
both agree to 1e-11 Å in the DR2 files).

Choices, documented here because the model has no place for them:

* Flux is kept as the pipeline gives it (relatively calibrated, no unit);
  pixels flagged in ``Andmask`` (bad in every exposure) or with zero inverse
  variance are not masked: a preprocessing step can do that if it wants.
* Times: t_min/t_max are ``DATE-BEG``/``DATE-END``, which are Beijing local
  time (UTC+8) in these headers; without them ``DATE-OBS`` ± ``EXPTIME``/2. ``DATE-OBS``, "the observation
  median UTC", lies between them in 214 of the 215 files, and 3 minutes after
  the end in the single-exposure spec-55959-GAC_094N27_V3_sp16-125.
* ``Z = -9999`` (and ``Z_ERR``) is the pipeline's "no redshift" (CLASS
  ``Unknown``) and is left out of the kept header rather than passed on as a number.
* Publisher DID (a vocloud convention, LAMOST publishes none in the file):
  ``ivo://lamost.org/dr<N>/<FILENAME stem>``, N from ``DATA_V`` (``LAMOST DR5``) or,
  in early files without it, from ``VERSPIPE`` (v2.6.4 → 1, 2.7.5 → 2); an
  unknown pipeline gives ``ivo://lamost.org/pipeline-<VERSPIPE>/<stem>``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .assemble import assemble, content_did
from .fits_cards import FitsCards
from .format_error import SpectrumFormatError
from .header_values import header_number, header_text, iso_to_mjd, kept_keys, medium_from_header
from .model import FluxCalibration, Medium, Spectrum, SpectrumMeta

__all__ = ["DID_PREFIX", "KEPT_KEYS", "is_lamost", "lamost_did", "read_lamost"]

DID_PREFIX = "ivo://lamost.org/"
"""Prefix of the DIDs vocloud gives LAMOST spectra."""

KEPT_KEYS = (
    "FILENAME",
    "OBSID",
    "DESIG",
    "OBJNAME",
    "OBJTYPE",
    "PLANID",
    "SPID",
    "FIBERID",
    "LMJD",
    "MJD",
    "DATE-OBS",
    "EXPTIME",
    "CLASS",
    "SUBCLASS",
    "Z",
    "Z_ERR",
    "SN_U",
    "SN_G",
    "SN_R",
    "SN_I",
    "SN_Z",
    "HELIO_RV",
    "VERSPIPE",
    "DATA_V",
    "EXTEN0",
)
"""Original keywords kept in ``SpectrumMeta.header`` (pipeline class, redshift and S/N for labels and cuts)."""

_PIPELINE_RELEASE = {"v2.6.4": 1, "2.6.4": 1, "v2.7.5": 2, "2.7.5": 2}
"""LAMOST data release of the pipeline versions whose files carry no ``DATA_V``."""

_NO_VALUE = -9999.0
_BEIJING_HOURS = 8.0
_SECONDS_PER_DAY = 86400.0
_DEFAULT_ROWS = ("flux", "inverse", "subcontinuum", "andmask", "ormask")
_RELEASE = re.compile(r"DR\s*(\d+)", re.IGNORECASE)


def is_lamost(header: FitsCards) -> bool:
    """Whether a primary header is a LAMOST row-stacked spectrum (``EXTEN0``, or LAMOST with ``COEFF0``)."""
    if "EXTEN0" in header:
        return True
    return (header_text(header, "TELESCOP") or "").upper() == "LAMOST" and "COEFF0" in header


def lamost_did(header: FitsCards) -> str | None:
    """The vocloud DID of a LAMOST file (see the module docstring); ``None`` without ``FILENAME``."""
    filename = header_text(header, "FILENAME")
    if filename is None:
        return None
    stem = PurePosixPath(filename).name.removesuffix(".gz").removesuffix(".fits").removesuffix(".fit")
    release = _release(header)
    if release is None:
        return f"{DID_PREFIX}pipeline-{header_text(header, 'VERSPIPE') or 'unknown'}/{stem}"
    return f"{DID_PREFIX}dr{release}/{stem}"


def read_lamost(header: FitsCards, data: NDArray[Any], *, source: str, content: bytes) -> Spectrum:
    """A spectrum from a LAMOST ``spec-*.fits`` primary image.

    Parameters
    ----------
    header
        The primary header's cards.
    data
        The image, shape (rows, pixels).
    source
        The file's name, for messages.
    content
        The file's bytes, hashed into a DID when the header has no ``FILENAME``.

    Returns
    -------
    Spectrum
        Flux from the ``Flux`` row, vacuum wavelengths, pipeline labels kept.

    Raises
    ------
    SpectrumFormatError
        Raised if the image is not 2-D, ``EXTEN0`` names no flux row or fewer
        rows than there are, or no wavelength solution is found.
    """
    image = np.asarray(data)
    if image.ndim != 2:
        raise SpectrumFormatError(source, f"a LAMOST spectrum is a 2-D image of rows, got shape {image.shape}")
    rows = _row_names(header)
    if len(rows) > image.shape[0]:
        problem = f"EXTEN0 names {len(rows)} rows ({' '.join(rows)}) but the image has {image.shape[0]}"
        raise SpectrumFormatError(source, problem)
    if "flux" not in rows:
        raise SpectrumFormatError(source, f"EXTEN0 names no Flux row: {header_text(header, 'EXTEN0')!r}")
    flux = image[rows.index("flux")]
    if "wavelength" in rows:
        wavelength = np.asarray(image[rows.index("wavelength")], dtype=np.float64)
    else:
        wavelength = _log_linear(header, image.shape[1], source=source)
    t_min, t_max = _times(header)
    release = _release(header)
    meta = SpectrumMeta(
        publisher_did=lamost_did(header) or content_did(content),
        target_name=header_text(header, "DESIG") or header_text(header, "OBJNAME"),
        ra=header_number(header, "RA"),
        dec=header_number(header, "DEC"),
        exposure=header_number(header, "EXPTIME"),
        facility_name=header_text(header, "TELESCOP") or "LAMOST",
        # The header names no instrument; this five-row layout is the low-resolution survey's.
        instrument_name="LRS",
        obs_collection="LAMOST" if release is None else f"LAMOST DR{release}",
        flux_unit=None,
        flux_calibration=FluxCalibration.RELATIVE,
        medium=medium_from_header(header, Medium.VACUUM),
        header=_kept(header),
        t_min=t_min,
        t_max=t_max,
    )
    return assemble(wavelength, flux, meta, source=source)


def _row_names(header: FitsCards) -> list[str]:
    """Row names from ``EXTEN0``, lower case; the DR1 layout when it is missing."""
    text = header_text(header, "EXTEN0")
    if text is None:
        return list(_DEFAULT_ROWS)
    return [word.lower() for word in text.split()]


def _log_linear(header: FitsCards, n_pixels: int, *, source: str) -> NDArray[np.float64]:
    """Wavelengths from ``COEFF0``/``COEFF1`` (log10 Å of pixel 0, step), else ``CRVAL1``/``CD1_1``."""
    start, step = header_number(header, "COEFF0"), header_number(header, "COEFF1")
    pixels = np.arange(n_pixels, dtype=np.float64)
    if start is None or step is None:
        start, step = header_number(header, "CRVAL1"), header_number(header, "CD1_1")
        if step is None:
            step = header_number(header, "CDELT1")
        reference = header_number(header, "CRPIX1")
        pixels += 1.0 - (1.0 if reference is None else reference)
    if start is None or step is None:
        raise SpectrumFormatError(source, "no wavelength solution: COEFF0/COEFF1 (or CRVAL1/CD1_1) are missing")
    logs: NDArray[np.float64] = start + step * pixels
    return np.power(10.0, logs)


def _release(header: FitsCards) -> int | None:
    """The LAMOST data release: from ``DATA_V``, else from the pipeline version; ``None`` if unknown."""
    found = _RELEASE.search(header_text(header, "DATA_V") or "")
    if found:
        return int(found.group(1))
    return _PIPELINE_RELEASE.get(header_text(header, "VERSPIPE") or "")


def _times(header: FitsCards) -> tuple[float | None, float | None]:
    """t_min and t_max in MJD (see the module docstring)."""
    begin = iso_to_mjd(header_text(header, "DATE-BEG"), offset_hours=_BEIJING_HOURS)
    end = iso_to_mjd(header_text(header, "DATE-END"), offset_hours=_BEIJING_HOURS)
    if begin is not None and end is not None and 0.0 < end - begin < 1.0:
        return begin, end
    median = iso_to_mjd(header_text(header, "DATE-OBS"))
    exposure = header_number(header, "EXPTIME")
    if median is not None and exposure is not None:
        half = exposure / 2.0 / _SECONDS_PER_DAY
        return median - half, median + half
    return median, None


def _kept(header: FitsCards) -> dict[str, str]:
    """The kept keywords, without the pipeline's -9999 "no value" redshift."""
    kept = kept_keys(header, KEPT_KEYS)
    for key in ("Z", "Z_ERR"):
        if header_number(header, key) == _NO_VALUE:
            kept.pop(key, None)
    return kept
