"""1-D FITS images with a linear wavelength WCS: the IRAF ``onedspec`` output of the Ondřejov CCD700 archive.

The wavelength of pixel ``i`` (0-based) is ``CRVAL1 + (i + 1 - CRPIX1) * CD1_1``,
with ``CDELT1`` when ``CD1_1`` is absent (the FITS rule: the CD matrix wins; IRAF
writes both, equal); ``DC-FLAG = 1`` makes it log-linear (``10**`` of that). The
unit is ``CUNIT1`` or the ``units=`` of IRAF's ``WAT1_001``, Ångström by default.
Air or vacuum comes from ``VACUUM``/``AIRORVAC``/``CTYPE1 = AWAV|WAVE``; IRAF's
``LINEAR`` says neither, and air is assumed (ground-based arc-lamp calibration).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .assemble import assemble, content_did
from .fits_cards import FitsCards
from .format_error import SpectrumFormatError
from .header_values import (
    flux_calibration,
    header_number,
    header_text,
    iso_to_mjd,
    kept_keys,
    medium_from_header,
    sexagesimal_to_degrees,
)
from .model import FluxCalibration, Medium, Spectrum, SpectrumMeta
from .ondrejov import (
    CCD700_COLLECTION,
    CCD700_FACILITY,
    CCD700_INSTRUMENT,
    CCD700_MEDIUM,
    ccd700_did,
    is_ccd700_did,
    is_ccd700_header,
)
from .spectral_units import UnknownUnitError, flux_vounit, to_angstrom

__all__ = ["KEPT_KEYS", "read_image_1d"]

KEPT_KEYS = (
    "OBJECT",
    "FILENAME",
    "DATE-OBS",
    "UT",
    "EXPTIME",
    "RA",
    "DEC",
    "EQUINOX",
    "OBSERVAT",
    "TELESCOP",
    "INSTRUME",
    "DETECTOR",
    "BUNIT",
    "CTYPE1",
    "CRVAL1",
    "CRPIX1",
    "CDELT1",
    "CD1_1",
    "DC-FLAG",
    "JD",
    "HJD",
    "VHELIO",
    "AIRMASS",
    "EXPVAL",
    "GRATANG",
    "DICHMIR",
    "SPECFILT",
    "SLITWID",
    "DS_IDPUB",
)
"""Original keywords kept in ``SpectrumMeta.header`` (``VHELIO``: the heliocentric correction, in km/s)."""

_WAT_UNITS = re.compile(r"\bunits=(\S+)")
_SECONDS_PER_DAY = 86400.0


def read_image_1d(header: FitsCards, data: NDArray[Any], *, source: str, content: bytes) -> Spectrum:
    """A spectrum from a 1-D FITS image and its header.

    Parameters
    ----------
    header
        The image's header cards.
    data
        The pixel values, 1-D.
    source
        The file's name, for messages.
    content
        The file's bytes, hashed into a DID when the header names none.

    Returns
    -------
    Spectrum
        With the DID from ``DS_IDPUB``, else the CCD700 archive's DID from
        ``FILENAME`` for Ondřejov CCD700 files, else one made from the content.

    Raises
    ------
    SpectrumFormatError
        Raised if the header has no usable linear wavelength WCS, or the arrays
        fail the checks of :func:`.assemble.assemble`.
    """
    flux = np.asarray(data)
    wavelength = _wavelengths(header, len(flux), source=source)
    observatory, instrument = header_text(header, "OBSERVAT"), header_text(header, "INSTRUME")
    filename = header_text(header, "FILENAME")
    did = header_text(header, "DS_IDPUB")
    ondrejov = is_ccd700_header(observatory, instrument)
    if did is None:
        did = ccd700_did(filename) if ondrejov and filename else content_did(content)
    ondrejov = ondrejov or is_ccd700_did(did)
    t_min = iso_to_mjd(header_text(header, "DATE-OBS"), header_text(header, "UT") or header_text(header, "TIME-OBS"))
    if t_min is None:
        t_min = header_number(header, "MJD-OBS")
    exposure = header_number(header, "EXPTIME")
    if exposure is None:
        exposure = header_number(header, "EXPOSURE")
    meta = SpectrumMeta(
        publisher_did=did,
        target_name=header_text(header, "OBJECT"),
        ra=sexagesimal_to_degrees(header.get("RA"), hours=True),
        dec=sexagesimal_to_degrees(header.get("DEC"), hours=False),
        t_min=t_min,
        t_max=t_min + exposure / _SECONDS_PER_DAY if t_min is not None and exposure is not None else None,
        exposure=exposure,
        facility_name=CCD700_FACILITY if ondrejov else header_text(header, "TELESCOP"),
        instrument_name=CCD700_INSTRUMENT if ondrejov else instrument,
        # The collection follows the DID: files that only look like CCD700 ones (the demo archive) are not in it.
        obs_collection=CCD700_COLLECTION if is_ccd700_did(did) else None,
        em_res_power=header_number(header, "SPEC_RP"),
        flux_unit=flux_vounit(header_text(header, "BUNIT")),
        flux_calibration=flux_calibration(header_text(header, "FLUX_CAL")) or FluxCalibration.UNCALIBRATED,
        medium=medium_from_header(header, CCD700_MEDIUM if ondrejov else Medium.AIR),
        header=kept_keys(header, KEPT_KEYS),
    )
    return assemble(wavelength, flux, meta, source=source)


def _wavelengths(header: FitsCards, n_pixels: int, *, source: str) -> NDArray[np.float64]:
    """The wavelength of each pixel in Ångström from the linear (or log-linear) WCS of axis 1."""
    ctype = (header_text(header, "CTYPE1") or "").upper()
    system = header_text(header, "WAT0_001") or ""
    if ctype.startswith("MULTISPE") or "multispec" in system:
        raise SpectrumFormatError(source, "IRAF multispec wavelength solutions are not supported; use onedspec output")
    if ctype.startswith(("PIXEL", "RA-", "DEC-", "GLON", "GLAT", "FREQ", "ENER")):
        raise SpectrumFormatError(source, f"axis 1 is {ctype!r}, not a wavelength axis")
    start = header_number(header, "CRVAL1")
    step = header_number(header, "CD1_1")
    if step is None:
        step = header_number(header, "CDELT1")
    if start is None or step is None:
        problem = "no wavelength calibration: CRVAL1 and CDELT1 (or CD1_1) are needed in the header of a 1-D image"
        raise SpectrumFormatError(source, problem)
    if step == 0.0:
        raise SpectrumFormatError(source, "no wavelength calibration: the wavelength step CDELT1/CD1_1 is 0")
    reference = header_number(header, "CRPIX1")
    pixels = np.arange(n_pixels, dtype=np.float64) + 1.0 - (1.0 if reference is None else reference)
    coordinate = start + pixels * step
    if header_number(header, "DC-FLAG") == 1:
        coordinate = 10.0**coordinate
    unit = header_text(header, "CUNIT1")
    if unit is None:
        found = _WAT_UNITS.search(header_text(header, "WAT1_001") or "")
        unit = found.group(1) if found else None
    try:
        return to_angstrom(coordinate, unit)
    except UnknownUnitError as e:
        raise SpectrumFormatError(source, str(e)) from e
