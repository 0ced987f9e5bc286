"""SODA 1.0 operations on one archived spectrum: BAND cutouts, continuum normalisation, FITS or VOTable out.

Pure computation on a stored file and its archive record; imports nothing of
the web server, so the ``/soda`` handler (in a thread) and the ``soda`` job
kind's runner (in a worker process) share it. Parameter parsers raise
:class:`CutoutUsageError` with a message that names the parameter; callers add
the SODA error label (``UsageError``) in their own error form.

Cutout semantics (SODA 1.0 section 3.3.4): BAND is an interval of wavelengths in
metres compared with the archived wavelengths as they are (air wavelengths for
air-calibrated spectra, the convention of the SSA ``em_min``/``em_max`` columns).
The pixels whose wavelength lies in the closed interval are returned; a band
narrower than a pixel step that lies inside the spectrum returns the one pixel
nearest its middle ("extracting using a scalar value should normally extract a
single pixel"); a band that includes no pixel gives no result, which
``/soda`` answers with 204 (SODA 1.0 section 5.1).
"""

from __future__ import annotations

import enum
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.votable.exceptions import W50
from numpy.typing import NDArray

from .archive.store import SpectrumRecord
from .continuum import HIGH_REJECT_SIGMA, LOW_REJECT_SIGMA, ContinuumError, fit_continuum
from .spectra.model import ANGSTROM_IN_M, FluxCalibration
from .spectra.readers import read_spectrum
from .votable import VOTABLE_MIME, FieldSpec, ResultDocument
from .votable import ParamSpec as VOParam

__all__ = [
    "FITS_MIME",
    "CutoutRequest",
    "CutoutResult",
    "CutoutUsageError",
    "OutputFormat",
    "file_stem",
    "make_cutout",
    "parse_band",
    "parse_flag",
    "parse_response_format",
    "select_pixels",
    "split_media_type",
]

FITS_MIME = "application/fits"
"""Media type of FITS files, binary tables included (RFC 4047)."""

SPECTRAL_UTYPE = "spec:Spectrum.Data.SpectralAxis.Value"
FLUX_UTYPE = "spec:Spectrum.Data.FluxAxis.Value"


class CutoutUsageError(ValueError):
    """A SODA parameter value cannot be used (SODA ``UsageError``); the message names the parameter."""


class OutputFormat(enum.Enum):
    """The formats a cutout can be written in (SODA ``RESPONSEFORMAT``)."""

    FITS = FITS_MIME
    VOTABLE = VOTABLE_MIME


_RESPONSE_FORMATS = {
    "fits": OutputFormat.FITS,
    FITS_MIME: OutputFormat.FITS,
    "votable": OutputFormat.VOTABLE,
    VOTABLE_MIME: OutputFormat.VOTABLE,
    "text/xml": OutputFormat.VOTABLE,
}
"""RESPONSEFORMAT values understood, MIME parameters stripped (DALI 1.1 section 3.4.3 short forms included)."""

RESPONSE_FORMAT_OPTIONS = ((OutputFormat.FITS, "FITS binary table"), (OutputFormat.VOTABLE, "VOTable"))
"""The formats offered to clients, with a label each, default first."""

_TRUE = {"true", "t", "1", "yes"}
_FALSE = {"false", "f", "0", "no"}


def parse_band(text: str) -> tuple[float, float]:
    """A SODA BAND value: two wavelengths in metres, ``-Inf``/``+Inf`` for open ends (DALI interval).

    Raises
    ------
    CutoutUsageError
        Raised if the value is not two numbers, a bound is NaN, or the lower
        bound is above the upper one.
    """
    parts = text.split()
    if len(parts) != 2:
        msg = f"BAND must be two wavelengths in metres, lower then upper (e.g. 6.5e-7 6.6e-7), not {text!r}"
        raise CutoutUsageError(msg)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        msg = f"BAND must be two numbers (metres; -Inf or +Inf for an open end), not {text!r}"
        raise CutoutUsageError(msg) from None
    if math.isnan(low) or math.isnan(high):
        msg = f"BAND bounds must be numbers, not NaN: {text!r}"
        raise CutoutUsageError(msg)
    if low > high:
        msg = f"BAND lower bound {low:g} m is above its upper bound {high:g} m"
        raise CutoutUsageError(msg)
    return low, high


def parse_response_format(text: str | None) -> tuple[OutputFormat, str]:
    """The output format a RESPONSEFORMAT value asks for, and the Content-Type to answer with; FITS by default.

    A media type asked for is answered with that media type (``text/xml`` for a
    VOTable too, DALI 1.1 section 3.4.3); VOTables are only written as TABLEDATA.

    Raises
    ------
    CutoutUsageError
        Raised if the format is not offered.
    """
    if text is None or not text.strip():
        return OutputFormat.FITS, FITS_MIME
    bare, parameters = split_media_type(text)
    found = _RESPONSE_FORMATS.get(bare)
    if found is None:
        offered = ", ".join(f.value for f, _ in RESPONSE_FORMAT_OPTIONS)
        msg = f"RESPONSEFORMAT {text!r} is not offered; use one of {offered}"
        raise CutoutUsageError(msg)
    if found == OutputFormat.VOTABLE and parameters.get("serialization", "tabledata") != "tabledata":
        msg = f"RESPONSEFORMAT {text!r}: VOTables are written as TABLEDATA only"
        raise CutoutUsageError(msg)
    return found, bare if "/" in bare else found.value


def split_media_type(text: str) -> tuple[str, dict[str, str]]:
    """A media type (or short form) as its lower-case bare type and its parameters (RFC 2045 syntax)."""
    bare, *parameters = text.split(";")
    pairs = (p.partition("=") for p in parameters if p.strip())
    return bare.strip().lower(), {k.strip().lower(): v.strip().strip('"').lower() for k, _, v in pairs}


def parse_flag(text: str | None, *, name: str) -> bool:
    """A boolean parameter (``true``/``false``, also ``1``/``0``, ``yes``/``no``); false when absent.

    Raises
    ------
    CutoutUsageError
        Raised if the value is none of these.
    """
    if text is None or not text.strip():
        return False
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    msg = f"{name} must be true or false, not {text!r}"
    raise CutoutUsageError(msg)


@dataclass(frozen=True, kw_only=True)
class CutoutRequest:
    """What a SODA request asks of one spectrum.

    Parameters
    ----------
    band
        Wavelength interval in metres, or ``None`` for the whole spectrum.
    output
        The format to write.
    media_type
        The Content-Type to answer with, when the request named one (``text/xml``
        for a VOTable); by default the format's own.
    normalize
        Whether to divide the flux by its fitted continuum (:mod:`.continuum`).
    """

    band: tuple[float, float] | None = None
    output: OutputFormat = OutputFormat.FITS
    media_type: str | None = None
    normalize: bool = False


@dataclass(frozen=True, kw_only=True)
class CutoutResult:
    """A written cutout.

    Parameters
    ----------
    body
        The file's bytes.
    content_type
        Its media type.
    filename
        A server-made file name for ``Content-Disposition``.
    n_points
        Pixels it holds.
    """

    body: bytes
    content_type: str
    filename: str
    n_points: int


def select_pixels(wavelength: NDArray[np.float64], band: tuple[float, float]) -> slice | None:
    """The pixels a BAND selects, as a slice of the (increasing) wavelengths in Å; ``None`` for none.

    Parameters
    ----------
    wavelength
        Wavelengths in Å, strictly increasing.
    band
        Interval in metres; infinite bounds are open ends.
    """
    low, high = band[0] / ANGSTROM_IN_M, band[1] / ANGSTROM_IN_M
    start = int(np.searchsorted(wavelength, low, side="left"))
    stop = int(np.searchsorted(wavelength, high, side="right"))
    if stop > start:
        return slice(start, stop)
    if wavelength[0] <= low and high <= wavelength[-1]:
        # Narrower than a pixel step, inside the spectrum: the pixel nearest its middle.
        middle = (low + high) / 2.0
        nearest = int(np.argmin(np.abs(wavelength[max(start - 1, 0) : start + 1] - middle))) + max(start - 1, 0)
        return slice(nearest, nearest + 1)
    return None


def make_cutout(record: SpectrumRecord, path: Path, request: CutoutRequest) -> CutoutResult | None:
    """Read an archived spectrum, normalise and cut it as asked, and write it.

    The continuum is fitted on the whole spectrum and then cut, so a narrow
    band is normalised as well as a wide one.

    Parameters
    ----------
    record
        The spectrum's archive record (identity and metadata written out).
    path
        Its stored file (from :meth:`Archive.file_path`, never from a request).
    request
        What to do.

    Returns
    -------
    CutoutResult or None
        ``None`` when the band includes no pixel of the spectrum.

    Raises
    ------
    CutoutUsageError
        Raised if normalisation was asked for and cannot be done honestly.
    SpectrumFormatError
        Raised if the stored file cannot be read (a fault of the server).
    """
    if request.band is not None and (request.band[1] < record.em_min or request.band[0] > record.em_max):
        return None  # answered from the record, without reading the file
    spectrum = read_spectrum(path, name=Path(record.file).name)
    wavelength = spectrum.wavelength
    flux: NDArray[np.floating] = spectrum.flux
    calibration = record.flux_calibration
    flux_unit = record.flux_unit or ""
    notes: list[tuple[str, str | int | float | bool, str]] = []
    if request.normalize and calibration != FluxCalibration.NORMALIZED.value:
        try:
            fit = fit_continuum(wavelength, flux)
        except ContinuumError as e:
            msg = f"NORMALIZE: this spectrum cannot be continuum-normalised: {e}"
            raise CutoutUsageError(msg) from e
        flux = np.asarray(flux, dtype=np.float64) / fit.continuum
        calibration, flux_unit = FluxCalibration.NORMALIZED.value, ""
        notes = [
            ("CONTNORM", True, "flux divided by a fitted continuum"),
            ("CONTMETH", "chebyshev sigma-clip", "iterative asymmetric sigma clipping"),
            ("CONTDEG", fit.degree, "degree of the Chebyshev continuum"),
            ("CONTLOW", LOW_REJECT_SIGMA, "points below fit by this many sigma rejected"),
            ("CONTHIGH", HIGH_REJECT_SIGMA, "points above fit by this many sigma rejected"),
            ("CONTITER", fit.rounds, "fit-and-reject rounds"),
            ("CONTNPTS", fit.kept, "points the continuum fit rests on"),
        ]
    if request.band is not None:
        selected = select_pixels(wavelength, request.band)
        if selected is None:
            return None
        wavelength, flux = wavelength[selected], flux[selected]
    stem = file_stem(record.obs_publisher_did)
    suffix = "-norm" if request.normalize else ""
    match request.output:
        case OutputFormat.FITS:
            body = _fits_table(record, wavelength, flux, flux_unit=flux_unit, calibration=calibration, notes=notes)
            return CutoutResult(
                body=body,
                content_type=request.media_type or FITS_MIME,
                filename=f"{stem}-cutout{suffix}.fits",
                n_points=len(wavelength),
            )
        case OutputFormat.VOTABLE:
            body = _votable(record, wavelength, flux, flux_unit=flux_unit, calibration=calibration, notes=notes)
            return CutoutResult(
                body=body,
                content_type=request.media_type or VOTABLE_MIME,
                filename=f"{stem}-cutout{suffix}.vot",
                n_points=len(wavelength),
            )
        case _:  # pragma: no cover - the enum is closed
            msg = f"Unhandled output format {request.output}"
            raise AssertionError(msg)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(publisher_did: str) -> str:
    """A harmless file name stem from a DID: its last segment, unsafe characters replaced."""
    tail = re.split(r"[/?#=]", publisher_did.rstrip("/?#="))[-1]
    return _UNSAFE.sub("_", tail).strip("._")[:80] or "spectrum"


def _fits_table(
    record: SpectrumRecord,
    wavelength: NDArray[np.float64],
    flux: NDArray[np.floating],
    *,
    flux_unit: str,
    calibration: str,
    notes: list[tuple[str, str | int | float | bool, str]],
) -> bytes:
    """The spectrum as a FITS binary table with SSA keywords, in the layout of the Ondřejov DataLink products."""
    medium = "Air" if record.medium == "air" else "Vacuum"
    flux_format = "E" if np.asarray(flux).dtype == np.float32 else "D"
    columns = [
        fits.Column(name="WAVELENGTH", format="D", unit="Angstrom", array=wavelength),
        fits.Column(name="FLUX", format=flux_format, unit=flux_unit or None, array=flux),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    header = table.header
    header.comments["TTYPE1"] = f"{medium} wavelength"
    header.comments["TTYPE2"] = "Continuum-normalised flux" if calibration == "NORMALIZED" else "Flux"
    _card(header, "TUTYP1", SPECTRAL_UTYPE, "Spectrum DM role of column 1")
    _card(header, "TUTYP2", FLUX_UTYPE, "Spectrum DM role of column 2")
    _card(header, "DS_IDPUB", record.obs_publisher_did, "publisher dataset identifier")
    _optional(header, "OBJECT", record.target_name, "target name")
    _optional(header, "RA", record.s_ra, "[deg] ICRS right ascension")
    _optional(header, "DEC", record.s_dec, "[deg] ICRS declination")
    _optional(header, "MJD-OBS", record.t_min, "[d] exposure start (MJD, UTC)")
    _optional(header, "EXPTIME", record.t_exptime, "[s] exposure time")
    _optional(header, "TELESCOP", record.facility_name, "facility")
    _optional(header, "INSTRUME", record.instrument_name, "instrument")
    _card(header, "AIRORVAC", "air" if record.medium == "air" else "vac", "air or vacuum wavelengths")
    _card(header, "FLUX_CAL", calibration, "flux calibration (SSA Char.FluxAxis.Calibration)")
    _card(header, "TDMIN1", float(wavelength[0]), "[Angstrom] shortest wavelength")
    _card(header, "TDMAX1", float(wavelength[-1]), "[Angstrom] longest wavelength")
    for key, value, comment in notes:
        _card(header, key, value, comment)
    primary = fits.PrimaryHDU()
    _card(primary.header, "ORIGIN", "vocloud", "SODA cutout of an archived spectrum")
    _card(primary.header, "DS_IDPUB", record.obs_publisher_did, "publisher dataset identifier")
    buffer = io.BytesIO()
    fits.HDUList([primary, table]).writeto(buffer)
    return buffer.getvalue()


def _card(header: fits.Header, key: str, value: str | float | bool, comment: str) -> None:
    """Set a keyword, with its comment only where the card has room (astropy warns when it truncates)."""
    # Fixed format: the value field ends in column 30, then " / " and the comment.
    room = 80 - max(len(fits.Card(key, value).image.rstrip()), 30) - len(" / ")
    header[key] = (value, comment) if len(comment) <= room else value


def _optional(header: fits.Header, key: str, value: str | float | None, comment: str) -> None:
    if value is not None:
        _card(header, key, value, comment)


ANGSTROM_VOUNIT = "0.1nm"
"""The Ångström in VOUnit syntax: VOUnit 1.0 deprecates ``Angstrom`` (astropy warns and suggests this)."""


def _votable(
    record: SpectrumRecord,
    wavelength: NDArray[np.float64],
    flux: NDArray[np.floating],
    *,
    flux_unit: str,
    calibration: str,
    notes: list[tuple[str, str | int | float | bool, str]],
) -> bytes:
    """The spectrum as a VOTable results table with Spectrum DM utypes on its two columns."""
    normalized = calibration == FluxCalibration.NORMALIZED.value
    medium = "Air" if record.medium == "air" else "Vacuum"
    fields = (
        FieldSpec(
            name="wavelength", datatype="double", unit=ANGSTROM_VOUNIT, ucd="em.wl", utype=SPECTRAL_UTYPE,
            description=f"{medium} wavelength",
        ),
        FieldSpec(
            name="flux", datatype="float" if np.asarray(flux).dtype == np.float32 else "double",
            unit=flux_unit or None, ucd="phot.flux.density;arith.ratio" if normalized else "phot.flux.density",
            utype=FLUX_UTYPE, description="Continuum-normalised flux" if normalized else "Flux",
        ),
    )  # fmt: skip
    with warnings.catch_warnings():
        # A flux unit astropy cannot parse is still written as the archive has it.
        warnings.simplefilter("ignore", W50)
        document = ResultDocument(
            fields=fields,
            params=_votable_params(record, calibration=calibration, notes=notes),
            description=f"Spectrum {record.obs_publisher_did}",
        )
    return document.write({"wavelength": wavelength, "flux": flux}, rows=len(wavelength))


def _votable_params(
    record: SpectrumRecord, *, calibration: str, notes: list[tuple[str, str | int | float | bool, str]]
) -> list[VOParam]:
    """The metadata PARAMs of a VOTable cutout."""

    def text(name: str, value: str, ucd: str) -> VOParam:
        return VOParam(name=name, datatype="char", arraysize="*", value=value, ucd=ucd)

    def number(name: str, value: float, ucd: str, unit: str) -> VOParam:
        return VOParam(name=name, datatype="double", value=repr(float(value)), ucd=ucd, unit=unit)

    params = [text("publisher_did", record.obs_publisher_did, "meta.ref.ivoid")]
    if record.target_name:
        params.append(text("target_name", record.target_name, "meta.id;src"))
    if record.s_ra is not None and record.s_dec is not None:
        params.append(number("s_ra", record.s_ra, "pos.eq.ra", "deg"))
        params.append(number("s_dec", record.s_dec, "pos.eq.dec", "deg"))
    if record.t_min is not None:
        params.append(number("t_min", record.t_min, "time.start;obs.exposure", "d"))
    params.append(text("flux_calibration", calibration, "meta.code.qual"))
    params.append(text("medium", record.medium, "meta.code"))
    params.extend(text(key.lower(), str(value), "meta.note") for key, value, _ in notes)
    return params
