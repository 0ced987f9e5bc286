"""VOTable spectra in the IVOA Spectrum data model (the SSA ``getData`` format), TABLEDATA or BINARY.

The spectral and flux columns are found by utype (``...Data.SpectralAxis.Value``,
``...Data.FluxAxis.Value``; any case, with or without the ``spec:`` prefix), else by
UCD (``em.wl``/``em.freq``/``em.energy``; ``phot.flux*``/``phot.count``), else by name.
Metadata come from the PARAMs' utypes: ``Curation.PublisherDID`` (or
``DataID.DatasetID``, or a PARAM named ``obs_publisher_did``), ``Target.Name``,
``Char.SpatialAxis.Coverage.Location.Value`` (or ``Target.Pos``),
``Char.TimeAxis.Coverage.Location.Value``/``Bounds.Extent``, ``Char.FluxAxis.Calibration``,
``Char.SpectralAxis.ResPower``. Air or vacuum is read from the spectral FIELD's
description ("Air wavelength"); without one, air is assumed. Every non-empty PARAM
is kept, by name, in the header dict.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from astropy.io import votable
from astropy.utils.exceptions import AstropyWarning
from numpy.typing import NDArray

from .assemble import assemble, content_did
from .format_error import SpectrumFormatError
from .header_values import flux_calibration, sexagesimal_to_degrees
from .model import FluxCalibration, Medium, Spectrum, SpectrumMeta
from .ondrejov import CCD700_COLLECTION, CCD700_FACILITY, CCD700_INSTRUMENT, CCD700_MEDIUM, is_ccd700_did
from .spectral_units import UnknownUnitError, flux_vounit, to_angstrom

__all__ = ["read_votable"]

_SPECTRAL_UTYPE = "data.spectralaxis.value"
_FLUX_UTYPE = "data.fluxaxis.value"
_SPECTRAL_UCDS = ("em.wl", "em.freq", "em.energy", "em.wavenumber")
_FLUX_UCDS = ("phot.flux", "phot.fludens", "phot.count", "phot.mag")
_SPECTRAL_NAMES = ("spectral", "wavelength", "wave", "lambda")
_FLUX_NAMES = ("flux", "flux_density", "intensity")
_DID_UTYPES = ("curation.publisherdid", "dataid.datasetid")
_DID_NAMES = ("obs_publisher_did", "ssa_pubdid", "publisher_did")
_KEPT_TEXT_LIMIT = 200
_SECONDS_PER_DAY = 86400.0

# Everything astropy.io.votable raises for a document it cannot parse as a VOTable.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OSError, AttributeError)


def read_votable(content: bytes, *, source: str) -> Spectrum:
    """A spectrum from the first table of a VOTable document.

    Parameters
    ----------
    content
        The document.
    source
        The file's name, for messages.

    Returns
    -------
    Spectrum
        With the publisher DID from the PARAMs, else one made from the content.

    Raises
    ------
    SpectrumFormatError
        Raised if the document does not parse, holds no table, no spectral or
        flux column is found, or the arrays fail the checks of
        :func:`.assemble.assemble`.
    """
    try:
        with warnings.catch_warnings():
            # Real services write VOTables with small deviations (W-numbered warnings); the data stay readable.
            warnings.simplefilter("ignore", AstropyWarning)
            document = votable.parse(io.BytesIO(content), verify="ignore")
            table = next(document.iter_tables(), None)
            if table is None:
                raise SpectrumFormatError(source, "the VOTable holds no TABLE")
            spectral_field = _find_field(table.fields, _SPECTRAL_UTYPE, _SPECTRAL_UCDS, _SPECTRAL_NAMES)
            flux_field = _find_field(table.fields, _FLUX_UTYPE, _FLUX_UCDS, _FLUX_NAMES)
            if spectral_field is None or flux_field is None:
                missing = "spectral (wavelength)" if spectral_field is None else "flux"
                names = ", ".join(field.name for field in table.fields) or "none"
                problem = f"the VOTable table has no {missing} FIELD (by utype, UCD or name); its FIELDs are {names}"
                raise SpectrumFormatError(source, problem)
            spectral = _column(table, spectral_field)
            flux = _column(table, flux_field)
            params = [item for item in document.iter_fields_and_params() if isinstance(item, votable.tree.Param)]
    except SpectrumFormatError:
        raise
    except _PARSE_ERRORS as e:
        raise SpectrumFormatError(source, f"not a readable VOTable: {e}") from e
    try:
        wavelength = to_angstrom(spectral, _unit_text(spectral_field.unit))
    except UnknownUnitError as e:
        raise SpectrumFormatError(source, str(e)) from e
    return assemble(wavelength, flux, _meta(params, spectral_field, flux_field, content), source=source)


def _meta(params: list[Any], spectral_field: Any, flux_field: Any, content: bytes) -> SpectrumMeta:
    """Metadata from the PARAMs and the FIELDs' units and descriptions."""
    by_utype = {_utype_key(param.utype): param for param in params if param.utype}
    by_name = {param.name.lower(): param for param in params if param.name}
    did = _first_text(by_utype, _DID_UTYPES) or _first_text(by_name, _DID_NAMES) or content_did(content)
    ccd700 = is_ccd700_did(did)
    ra, dec = _position(by_utype)
    location = _number(by_utype.get("char.timeaxis.coverage.location.value"))
    extent = _number(by_utype.get("char.timeaxis.coverage.bounds.extent"))
    start = _number(by_utype.get("char.timeaxis.coverage.bounds.start"))
    stop = _number(by_utype.get("char.timeaxis.coverage.bounds.stop"))
    if start is None and location is not None:
        # The CCD700 service writes the exposure start as the location (see .ondrejov).
        start = location if ccd700 else location - (extent or 0.0) / 2.0 / _SECONDS_PER_DAY
    if stop is None and start is not None and extent is not None:
        stop = start + extent / _SECONDS_PER_DAY
    description = (spectral_field.description or "").lower()
    medium = Medium.VACUUM if "vacuum" in description else Medium.AIR if "air" in description else None
    return SpectrumMeta(
        publisher_did=did,
        target_name=_text(by_utype.get("target.name")),
        ra=ra,
        dec=dec,
        t_min=start,
        t_max=stop,
        exposure=extent,
        facility_name=CCD700_FACILITY if ccd700 else _text(by_utype.get("dataid.observingelement")),
        instrument_name=CCD700_INSTRUMENT if ccd700 else _text(by_utype.get("dataid.instrument")),
        obs_collection=CCD700_COLLECTION if ccd700 else _text(by_utype.get("dataid.collection")),
        em_res_power=_resolving_power(by_utype),
        flux_unit=flux_vounit(_unit_text(flux_field.unit)),
        flux_calibration=flux_calibration(_text(by_utype.get("char.fluxaxis.calibration")))
        or FluxCalibration.UNCALIBRATED,
        medium=medium or (CCD700_MEDIUM if ccd700 else Medium.AIR),
        header=_kept(params),
    )


def _utype_key(utype: str) -> str:
    """``spec:Spectrum.Curation.PublisherDID`` and ``ssa:Curation.PublisherDID`` → ``curation.publisherdid``."""
    key = utype.rsplit(":", 1)[-1].lower()
    return key.removeprefix("spectrum.")


def _find_field(fields: Any, utype: str, ucds: tuple[str, ...], names: tuple[str, ...]) -> Any:
    """The FIELD with ``utype``, else the first whose primary UCD is one of ``ucds``, else one named so."""
    for field in fields:
        if field.utype and _utype_key(field.utype) == utype:
            return field
    for field in fields:
        primary = (field.ucd or "").split(";", 1)[0].strip().lower()
        if primary.startswith(ucds) and "stat.error" not in (field.ucd or "").lower():
            return field
    for field in fields:
        if (field.name or "").lower() in names:
            return field
    return None


def _column(table: Any, field: Any) -> NDArray[np.float64]:
    """A FIELD's values as floats, null cells as NaN; a table of one row with an array cell gives that array."""
    key = field.ID if field.ID in table.array.dtype.names else field.name
    values = table.array[key]
    if len(values) == 1 and (values.dtype == object or values.ndim > 1):
        values = values[0]
    filled = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    return np.asarray(filled, dtype=np.float64).reshape(-1)


def _unit_text(unit: Any) -> str | None:
    """A FIELD unit (an astropy unit, possibly unrecognised) as the text the file wrote."""
    return None if unit is None else str(unit)


def _text(param: Any) -> str | None:
    """A PARAM value as stripped text; ``None`` when absent or empty."""
    if param is None or param.value is None:
        return None
    value = param.value
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _number(param: Any) -> float | None:
    """A scalar PARAM value as a finite float; ``None`` when absent, empty or NaN."""
    if param is None or param.value is None:
        return None
    try:
        number = float(np.ma.filled(np.ma.asarray(param.value, dtype=np.float64), np.nan).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _first_text(params: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = _text(params.get(key))
        if text is not None:
            return text
    return None


def _position(by_utype: dict[str, Any]) -> tuple[float | None, float | None]:
    """RA and Dec in degrees from the aperture location, else the target position."""
    for key in ("char.spatialaxis.coverage.location.value", "target.pos"):
        param = by_utype.get(key)
        if param is None or param.value is None:
            continue
        value = param.value
        if isinstance(value, str):
            parts = value.replace(",", " ").split()
            pair = (sexagesimal_to_degrees(parts[0], hours=False), sexagesimal_to_degrees(parts[1], hours=False))
        else:
            array = np.ma.filled(np.ma.asarray(value, dtype=np.float64), np.nan).reshape(-1)
            pair = (float(array[0]), float(array[1])) if array.size >= 2 else (None, None)
        if pair[0] is not None and pair[1] is not None and np.isfinite(pair[0]) and np.isfinite(pair[1]):
            return pair
    return None, None


def _resolving_power(by_utype: dict[str, Any]) -> float | None:
    """``ResPower``, else the band's centre over ``Resolution`` (both in the same unit) when both are given."""
    power = _number(by_utype.get("char.spectralaxis.respower"))
    if power is not None:
        return power
    resolution_param = by_utype.get("char.spectralaxis.resolution")
    centre_param = by_utype.get("char.spectralaxis.coverage.location.value")
    resolution, centre = _number(resolution_param), _number(centre_param)
    if resolution_param is None or centre_param is None:
        return None
    if resolution and centre and str(resolution_param.unit) == str(centre_param.unit):
        return centre / resolution
    return None


def _kept(params: list[Any]) -> dict[str, str]:
    """Every non-empty PARAM by name, as text (arrays space-separated, long values cut)."""
    kept: dict[str, str] = {}
    for param in params:
        value = param.value
        if value is None or not param.name:
            continue
        if isinstance(value, np.ndarray):
            filled = np.ma.filled(value, np.nan) if np.ma.isMaskedArray(value) else value
            if filled.dtype.kind == "f" and not np.isfinite(filled).any():
                continue
            text = " ".join(str(item) for item in np.asarray(filled).reshape(-1))
        else:
            text = (value.decode() if isinstance(value, bytes) else str(value)).strip()
        if text:
            kept[param.name] = text[:_KEPT_TEXT_LIMIT]
    return kept
