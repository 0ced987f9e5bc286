"""FITS binary-table spectra: the Ondřejov DataLink/SODA product (columns ``spectral`` and ``flux``) and its kin.

Columns are found by their Spectrum DM utype (``TUTYPn`` ending in
``Data.SpectralAxis.Value`` / ``Data.FluxAxis.Value``, any case, any prefix), else
by common names (``spectral``, ``wavelength``, ``wave``, ``lambda``; ``loglam`` in
log10 Å as SDSS writes it; ``flux``). A table of one row with array cells is read
as one spectrum. Metadata are the SSA FITS keywords (``DS_IDPUB``, ``OBJECT``,
``RA``/``DEC`` in degrees, ``TMID`` in MJD, ``TELAPSE`` in s, ``FLUX_CAL``), from the
table header or else the primary header.

For CCD700 products (DID under ``ivo://asu.cas.cz/stel/ccd700/``) two facts of
that archive apply (see :mod:`.ondrejov`): ``TMID`` is the exposure start, and a
flux column without a unit is the service's continuum-normalised output
(``FLUXCALIB=normalized``; its ``FLUX_CAL`` keyword is copied from the original
and still says ``UNCALIBRATED``).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from .ondrejov import CCD700_COLLECTION, CCD700_FACILITY, CCD700_INSTRUMENT, CCD700_MEDIUM, is_ccd700_did
from .spectral_units import UnknownUnitError, flux_vounit, to_angstrom

__all__ = ["KEPT_KEYS", "read_table"]

KEPT_KEYS = (
    "DS_IDPUB",
    "TITLE",
    "OBJECT",
    "SRCCLASS",
    "RA",
    "DEC",
    "RADECSYS",
    "APERTURE",
    "TMID",
    "TELAPSE",
    "SPEC_VAL",
    "SPEC_BW",
    "TDMIN1",
    "TDMAX1",
    "FLUX_CAL",
    "SPEC_CAL",
    "VOPUB",
    "DATE",
    "VODATE",
)
"""Original keywords kept in ``SpectrumMeta.header``."""

_SPECTRAL_UTYPE = "spectrum.data.spectralaxis.value"
_FLUX_UTYPE = "spectrum.data.fluxaxis.value"
_SPECTRAL_NAMES = ("spectral", "wavelength", "wave", "lambda", "awav", "wavelen")
_LOG_SPECTRAL_NAMES = ("loglam",)
_FLUX_NAMES = ("flux", "flux_density", "fluxdensity", "intensity")
_SECONDS_PER_DAY = 86400.0


class _Headers:
    """The table header, falling back to the primary header (SSA keywords may sit in either)."""

    def __init__(self, table: FitsCards, primary: FitsCards) -> None:
        self._headers = (table, primary)

    def get(self, key: str, default: Any = None) -> Any:
        for header in self._headers:
            if key in header:
                return header.get(key)
        return default

    def __contains__(self, key: str) -> bool:
        return any(key in header for header in self._headers)


def read_table(
    table_header: FitsCards,
    columns: Mapping[str, NDArray[Any]],
    primary_header: FitsCards,
    *,
    source: str,
    content: bytes,
) -> Spectrum:
    """A spectrum from a FITS binary table.

    Parameters
    ----------
    table_header
        The table header's cards.
    columns
        Its columns by ``TTYPEn`` name, in column order.
    primary_header
        The primary header's cards, for keywords the table header lacks.
    source
        The file's name, for messages.
    content
        The file's bytes, hashed into a DID when no ``DS_IDPUB`` is given.

    Returns
    -------
    Spectrum
        With the DID of ``DS_IDPUB``, else one made from the content.

    Raises
    ------
    SpectrumFormatError
        Raised if no spectral or flux column is found, the spectral unit is not
        one, or the arrays fail the checks of :func:`.assemble.assemble`.
    """
    header = _Headers(table_header, primary_header)
    names = list(columns)
    spectral_index = _find_column(table_header, names, _SPECTRAL_UTYPE, _SPECTRAL_NAMES + _LOG_SPECTRAL_NAMES)
    flux_index = _find_column(table_header, names, _FLUX_UTYPE, _FLUX_NAMES)
    if spectral_index is None or flux_index is None:
        missing = "spectral (wavelength)" if spectral_index is None else "flux"
        problem = (
            f"table has no {missing} column (looked for the Spectrum DM utype or a usual name);"
            f" its columns are {', '.join(names) or 'none'}"
        )
        raise SpectrumFormatError(source, problem)
    spectral_name, flux_name = names[spectral_index], names[flux_index]
    spectral = _cells(columns[spectral_name])
    flux = _cells(columns[flux_name])
    if spectral_name.lower() in _LOG_SPECTRAL_NAMES:
        wavelength = np.power(10.0, spectral.astype(np.float64))
    else:
        try:
            wavelength = to_angstrom(spectral, header_text(table_header, f"TUNIT{spectral_index + 1}"))
        except UnknownUnitError as e:
            raise SpectrumFormatError(source, str(e)) from e
    did = header_text(header, "DS_IDPUB") or content_did(content)
    ccd700 = is_ccd700_did(did)
    flux_unit = flux_vounit(header_text(table_header, f"TUNIT{flux_index + 1}"))
    calibration = flux_calibration(header_text(header, "FLUX_CAL")) or FluxCalibration.UNCALIBRATED
    if ccd700 and flux_unit is None:
        flux_unit, calibration = "", FluxCalibration.NORMALIZED
    t_min, t_max, exposure = _times(header, exposure_start=ccd700)
    meta = SpectrumMeta(
        publisher_did=did,
        target_name=header_text(header, "OBJECT"),
        ra=sexagesimal_to_degrees(header.get("RA"), hours=True),
        dec=sexagesimal_to_degrees(header.get("DEC"), hours=False),
        t_min=t_min,
        t_max=t_max,
        exposure=exposure,
        facility_name=CCD700_FACILITY if ccd700 else header_text(header, "TELESCOP"),
        instrument_name=CCD700_INSTRUMENT if ccd700 else header_text(header, "INSTRUME"),
        obs_collection=CCD700_COLLECTION if ccd700 else None,
        em_res_power=header_number(header, "SPEC_RP"),
        flux_unit=flux_unit,
        flux_calibration=calibration,
        medium=_medium(table_header, spectral_index, header, CCD700_MEDIUM if ccd700 else Medium.AIR),
        header=kept_keys(header, KEPT_KEYS),
    )
    return assemble(wavelength, flux, meta, source=source)


def _find_column(header: FitsCards, names: list[str], utype: str, usual_names: tuple[str, ...]) -> int | None:
    """Index of the column with the Spectrum DM ``utype``, else of the first with one of ``usual_names``."""
    for index in range(len(names)):
        declared = (header_text(header, f"TUTYP{index + 1}") or "").lower()
        if declared.rsplit(":", 1)[-1] == utype:
            return index
    lowered = [name.lower() for name in names]
    for name in usual_names:
        if name in lowered:
            return lowered.index(name)
    return None


def _cells(column: NDArray[Any]) -> NDArray[Any]:
    """A column as a 1-D array: a scalar column as is, a one-row array column as its cell."""
    array = np.asarray(column)
    if array.ndim > 1 and array.shape[0] == 1:
        return array.reshape(-1)
    return array


def _medium(table_header: FitsCards, spectral_index: int, header: _Headers, default: Medium) -> Medium:
    """Air or vacuum from the spectral column's description (``TTYPEn`` comment), else the header keywords."""
    description = table_header.comment(f"TTYPE{spectral_index + 1}").lower()
    if "vacuum" in description:
        return Medium.VACUUM
    if "air" in description:
        return Medium.AIR
    return medium_from_header(header, default)


def _times(header: _Headers, *, exposure_start: bool) -> tuple[float | None, float | None, float | None]:
    """t_min, t_max (MJD) and exposure (s) from ``TMID``/``TELAPSE``, else ``MJD-OBS``/``DATE-OBS`` + ``EXPTIME``."""
    exposure = header_number(header, "TELAPSE")
    if exposure is None:
        exposure = header_number(header, "EXPTIME")
    length = (exposure or 0.0) / _SECONDS_PER_DAY
    middle = header_number(header, "TMID")
    if middle is not None:
        if exposure_start:
            return middle, middle + length, exposure
        return middle - length / 2.0, middle + length / 2.0, exposure
    start = header_number(header, "MJD-OBS")
    if start is None:
        start = iso_to_mjd(header_text(header, "DATE-OBS"))
    if start is None:
        return None, None, exposure
    return start, start + length if exposure is not None else None, exposure
