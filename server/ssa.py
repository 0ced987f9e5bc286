"""SSAP 1.1 ``queryData`` over the spectra archive, at /ssa.

One row per archived spectrum, annotated with the SSA 1.1 utypes clients look
for (pyvo's ``SSARecord`` reads ``ssa:Target.Pos``, ``ssa:Access.Reference``,
``ssa:Access.Format``, ...), an access reference to the stored file, and a
DataLink service descriptor so that ``record.getdatalink()`` works.

Errors: a request that is invalid (a bad POS, a missing REQUEST, ...) is a
:class:`~vocloud.server.errors.UsageError`, which the error middleware answers
with HTTP 400 and a VOTable whose ``QUERY_STATUS`` is ``ERROR`` and whose
message names the parameter. SSA 1.1 (section 8.10) asks for that VOTable but
fixes no HTTP status; DALI 1.1 (section 4.2) asks a synchronous service for "a
suitable error code", and pyvo parses the VOTable of a 400 answer and raises a
``DALQueryError`` with our message, just as for a 200.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from vo_models.voresource.models import Capability

from .archive.store import ConeQuery, SpectrumRecord
from .dali import read_sync_params
from .errors import UsageError
from .keys import ARCHIVE
from .links import SSA_PATH, data_url, datalink_descriptor
from .service_routes import add_vosi_routes, base_url
from .ssa_capability import ssa_capability
from .vosi import vosi_capabilities
from .votable import (
    VOTABLE_MIME,
    CoordinateSystem,
    FieldSpec,
    ParamSpec,
    ResultDocument,
    TimeSystem,
)

__all__ = [
    "DEFAULT_MAXREC",
    "DEFAULT_SIZE",
    "MAX_MAXREC",
    "QueryData",
    "add_routes",
    "parse_query",
]

DEFAULT_MAXREC = 1000
"""Rows returned when MAXREC is not given (SSA capability ``defaultMaxRecords``)."""

MAX_MAXREC = 100_000
"""Hard limit on rows in one response (``maxRecords``); a larger MAXREC is lowered to it (DALI 1.1 section 3.4.4)."""

DEFAULT_SIZE = 0.1
"""Diameter of the search cone in degrees when POS comes without SIZE (SSA 1.1 section 4.1.1.2 leaves it to us).

Six arcminutes: wide enough for the imprecise pointing coordinates in the
headers of archival spectra, narrow enough not to mix up targets.
"""

THREAD_ROWS = 2000
"""Responses with more rows are formatted in a worker thread, not to hold up the event loop (about 1 ms per 50 rows)."""

SERVICE_PROTOCOL = "1.1"

_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
_SECONDS_PER_DAY = 86400.0

# --- the response table -------------------------------------------------------------------------------------------

_ICRS = "icrs"
_UTC = "utc_mjd"

FIELDS = (
    FieldSpec(name="ssa_pubDID", datatype="char", arraysize="*", utype="ssa:Curation.PublisherDID",
              ucd="meta.ref.url;meta.curation", description="Dataset identifier assigned by the publisher"),
    FieldSpec(name="accref", datatype="char", arraysize="*", utype="ssa:Access.Reference", ucd="meta.ref.url",
              description="URL of the stored file"),
    FieldSpec(name="mime", datatype="char", arraysize="*", utype="ssa:Access.Format", ucd="meta.code.mime",
              description="Media type of the stored file"),
    FieldSpec(name="accsize", datatype="long", unit="byte", utype="ssa:Access.Size", ucd="phys.size;meta.file",
              description="Size of the stored file"),
    FieldSpec(name="ssa_length", datatype="long", utype="ssa:Dataset.Length", ucd="meta.number",
              description="Number of points in the spectrum"),
    FieldSpec(name="ssa_dstitle", datatype="unicodeChar", arraysize="*", utype="ssa:DataID.Title",
              ucd="meta.title;meta.dataset", description="Title of the dataset"),
    FieldSpec(name="ssa_collection", datatype="unicodeChar", arraysize="*", utype="ssa:DataID.Collection",
              ucd="meta.id", description="Data collection the spectrum belongs to"),
    FieldSpec(name="ssa_instrument", datatype="unicodeChar", arraysize="*", utype="ssa:DataID.Instrument",
              ucd="meta.id;instr", description="Instrument that observed the spectrum"),
    FieldSpec(name="facility", datatype="unicodeChar", arraysize="*", ucd="meta.id;instr.tel",
              description="Telescope or observatory"),
    # pyvo's SSARecord.dateobs reads DataID.Date with astropy's "iso" format (a
    # space, not a T). Our datasets are archival observations, not reprocessed
    # products, so the dataset's creation date is the midpoint of its exposure.
    FieldSpec(name="ssa_cdate", datatype="char", arraysize="*", utype="ssa:DataID.Date", ucd="time;meta.dataset",
              description="Date of the dataset: midpoint of the exposure, UTC (YYYY-MM-DD hh:mm:ss.sss)"),
    FieldSpec(name="ssa_publisher", datatype="char", arraysize="*", utype="ssa:Curation.Publisher",
              ucd="meta.curation", description="Publisher: the naming authority of the publisher DID"),
    FieldSpec(name="ssa_targname", datatype="unicodeChar", arraysize="*", utype="ssa:Target.Name", ucd="meta.id;src",
              description="Name of the observed target"),
    FieldSpec(name="ssa_targetpos", datatype="double", arraysize="2", unit="deg", utype="ssa:Target.Pos",
              ucd="pos.eq;src", ref=_ICRS, description="ICRS position (RA, Dec) of the target"),
    FieldSpec(name="ssa_location", datatype="double", arraysize="2", unit="deg",
              utype="ssa:Char.SpatialAxis.Coverage.Location.Value", ucd="pos.eq", ref=_ICRS,
              description="ICRS position (RA, Dec) observed"),
    FieldSpec(name="ssa_ra", datatype="double", unit="deg", utype="ssa:Char.SpatialAxis.Coverage.Location.Value.C1",
              ucd="pos.eq.ra;meta.main", ref=_ICRS, description="ICRS right ascension observed"),
    FieldSpec(name="ssa_dec", datatype="double", unit="deg", utype="ssa:Char.SpatialAxis.Coverage.Location.Value.C2",
              ucd="pos.eq.dec;meta.main", ref=_ICRS, description="ICRS declination observed"),
    FieldSpec(name="ssa_dateObs", datatype="double", unit="d", utype="ssa:Char.TimeAxis.Coverage.Location.Value",
              ucd="time.epoch", ref=_UTC, description="Midpoint of the exposure, MJD"),
    FieldSpec(name="ssa_timeExt", datatype="double", unit="s", utype="ssa:Char.TimeAxis.Coverage.Bounds.Extent",
              ucd="time.duration", description="Time from start to end of the exposure"),
    FieldSpec(name="ssa_tstart", datatype="double", unit="d", utype="ssa:Char.TimeAxis.Coverage.Bounds.Start",
              ucd="time.start;obs.exposure", ref=_UTC, description="Start of the exposure, MJD"),
    FieldSpec(name="ssa_tstop", datatype="double", unit="d", utype="ssa:Char.TimeAxis.Coverage.Bounds.Stop",
              ucd="time.end;obs.exposure", ref=_UTC, description="End of the exposure, MJD"),
    FieldSpec(name="ssa_exptime", datatype="double", unit="s", utype="ssa:Char.TimeAxis.Coverage.Support.Extent",
              ucd="time.duration;obs.exposure", description="Exposure time"),
    FieldSpec(name="ssa_specmid", datatype="double", unit="m", utype="ssa:Char.SpectralAxis.Coverage.Location.Value",
              ucd="em.wl;instr.bandpass", description="Midpoint of the wavelength range"),
    FieldSpec(name="ssa_specext", datatype="double", unit="m", utype="ssa:Char.SpectralAxis.Coverage.Bounds.Extent",
              ucd="em.wl;instr.bandwidth", description="Width of the wavelength range"),
    FieldSpec(name="ssa_specstart", datatype="double", unit="m", utype="ssa:Char.SpectralAxis.Coverage.Bounds.Start",
              ucd="em.wl;stat.min", description="Shortest wavelength"),
    FieldSpec(name="ssa_specend", datatype="double", unit="m", utype="ssa:Char.SpectralAxis.Coverage.Bounds.Stop",
              ucd="em.wl;stat.max", description="Longest wavelength"),
    FieldSpec(name="ssa_respower", datatype="double", utype="ssa:Char.SpectralAxis.ResPower", ucd="spect.resolution",
              description="Resolving power (wavelength over resolution element)"),
    FieldSpec(name="ssa_fluxcalib", datatype="char", arraysize="*", utype="ssa:Char.FluxAxis.Calibration",
              description="Flux calibration: ABSOLUTE, RELATIVE, NORMALIZED or UNCALIBRATED"),
    FieldSpec(name="ssa_fluxunit", datatype="char", arraysize="*", utype="ssa:Char.FluxAxis.Unit", ucd="meta.unit",
              description="Unit of the flux (VOUnit; empty for normalised flux)"),
    FieldSpec(name="ssa_medium", datatype="char", arraysize="*", ucd="meta.code",
              description="Whether wavelengths in the file are air or vacuum wavelengths"),
)  # fmt: skip
"""The columns of a queryData response, grouped by SSA component (SSA 1.1 section 4.2.1)."""

PARAMS = (
    ParamSpec(name="ssa_model", datatype="char", arraysize="*", utype="ssa:Dataset.DataModel", value="Spectrum-1.0",
              description="Data model name and version"),
    ParamSpec(name="ssa_dstype", datatype="char", arraysize="*", utype="ssa:Dataset.Type", value="Spectrum",
              description="Type of dataset"),
    ParamSpec(name="ssa_datasource", datatype="char", arraysize="*", utype="ssa:DataID.DataSource", value="pointed",
              description="Original source of the data"),
    ParamSpec(name="ssa_creationtype", datatype="char", arraysize="*", utype="ssa:DataID.CreationType",
              value="archival", description="How the datasets were created"),
    ParamSpec(name="ssa_csysName", datatype="char", arraysize="*", utype="ssa:CoordSys.SpaceFrame.Name", value="ICRS",
              description="Frame of positions"),
    ParamSpec(name="ssa_timeframe", datatype="char", arraysize="*", utype="ssa:CoordSys.TimeFrame.Name", value="UTC",
              ucd="time.scale", description="Time scale of times"),
    ParamSpec(name="ssa_spectralucd", datatype="char", arraysize="*", utype="ssa:Char.SpectralAxis.Ucd",
              value="em.wl", description="UCD of the spectral axis"),
)  # fmt: skip

INPUT_PARAMS = (
    ParamSpec(name="INPUT:REQUEST", id="INPUT_REQUEST", datatype="char", arraysize="*", value="queryData",
              options=("queryData",), description="The operation; required"),
    ParamSpec(name="INPUT:VERSION", id="INPUT_VERSION", datatype="char", arraysize="*", value=SERVICE_PROTOCOL,
              description="SSA version the client expects (any 1.x is served as 1.1)"),
    ParamSpec(name="INPUT:POS", id="INPUT_POS", datatype="char", arraysize="*", unit="deg",
              ucd="pos.eq;meta.main", description="Centre of the search cone: RA,Dec in ICRS decimal degrees"
              " (optionally followed by ;ICRS)"),
    ParamSpec(name="INPUT:SIZE", id="INPUT_SIZE", datatype="double", unit="deg", value=str(DEFAULT_SIZE),
              maximum="360", description="Diameter of the search cone around POS, more than 0"),
    ParamSpec(name="INPUT:BAND", id="INPUT_BAND", datatype="char", arraysize="*", unit="m", ucd="em.wl",
              description="Wavelength in metres: a value the spectrum must cover, or a range lo/hi, lo/ or /hi it"
              " must overlap"),
    ParamSpec(name="INPUT:TIME", id="INPUT_TIME", datatype="char", arraysize="*", ucd="time.epoch",
              description="ISO 8601 UTC time (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss) the exposure must"
              " cover, or a range t1/t2, t1/ or /t2 it must overlap"),
    ParamSpec(name="INPUT:FORMAT", id="INPUT_FORMAT", datatype="char", arraysize="*", value="ALL",
              options=("ALL", "COMPLIANT", "NATIVE", "GRAPHIC", "votable", "fits", "xml", "METADATA"),
              description="Formats of the datasets wanted (comma-separated; a media type such as application/fits"
              " also works); METADATA describes the service"),
    ParamSpec(name="INPUT:MAXREC", id="INPUT_MAXREC", datatype="long", value=str(DEFAULT_MAXREC), minimum="0",
              maximum=str(MAX_MAXREC), description="Most rows to return; more matches give QUERY_STATUS=OVERFLOW"),
    ParamSpec(name="INPUT:TARGETNAME", id="INPUT_TARGETNAME", datatype="char", arraysize="*", ucd="meta.id;src",
              description="Target name (case-insensitive, exact)"),
    ParamSpec(name="INPUT:COLLECTION", id="INPUT_COLLECTION", datatype="char", arraysize="*",
              description="Data collection name (exact)"),
    ParamSpec(name="INPUT:PUBDID", id="INPUT_PUBDID", datatype="char", arraysize="*", ucd="meta.ref.url;meta.curation",
              description="Publisher dataset identifier (exact)"),
    ParamSpec(name="INPUT:RESPONSEFORMAT", id="INPUT_RESPONSEFORMAT", datatype="char", arraysize="*",
              value=VOTABLE_MIME, options=(VOTABLE_MIME, "votable", "text/xml"),
              description="Format of the response (DALI 1.1): a VOTable"),
)  # fmt: skip
"""The input parameters a FORMAT=METADATA response lists (SSA 1.1 section 6.2)."""

_INFOS = (("SERVICE_PROTOCOL", SERVICE_PROTOCOL, "SSAP"),)


class _Documents:
    """The queryData and metadata documents for one public base URL (the DataLink descriptor names it)."""

    def __init__(self, base: str) -> None:
        descriptor = datalink_descriptor(base, id_ref="ssa_pubDID")
        common: dict[str, Any] = {
            "fields": FIELDS,
            "params": PARAMS,
            "infos": _INFOS,
            "descriptors": (descriptor,),
            "coordinate_systems": (CoordinateSystem(id=_ICRS, system="ICRS"),),
            "time_systems": (TimeSystem(id=_UTC, timeorigin="MJD-origin", timescale="UTC", refposition="TOPOCENTER"),),
            "description": "vocloud SSA service: archived 1-D spectra",
        }
        self.query = ResultDocument(**common)
        self._common = common
        self._metadata: ResultDocument | None = None

    @property
    def metadata(self) -> ResultDocument:
        """The FORMAT=METADATA document: the same table, empty, plus the INPUT parameters."""
        if self._metadata is None:
            self._metadata = ResultDocument(resource_params=INPUT_PARAMS, **self._common)
        return self._metadata


class _DocumentCache:
    """Documents by base URL; bounded, since without a configured base URL the Host header chooses it."""

    _SIZE = 8

    def __init__(self) -> None:
        self._documents: OrderedDict[str, _Documents] = OrderedDict()

    def get(self, base: str) -> _Documents:
        documents = self._documents.pop(base, None) or _Documents(base)
        self._documents[base] = documents
        while len(self._documents) > self._SIZE:
            self._documents.popitem(last=False)
        return documents


_DOCUMENTS: web.AppKey[_DocumentCache] = web.AppKey("ssa_documents", _DocumentCache)

# --- parameters -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QueryData:
    """A parsed queryData request.

    Parameters
    ----------
    metadata
        FORMAT=METADATA: describe the service, search nothing.
    search
        The archive constraints, without the row limit.
    maxrec
        Most rows to return (after the hard limit).
    formats
        Wanted dataset formats (lower-case FORMAT items), or ``None`` for all.
    response_type
        Content-Type of the response.
    """

    metadata: bool = False
    search: ConeQuery = field(default_factory=ConeQuery)
    maxrec: int = DEFAULT_MAXREC
    formats: frozenset[str] | None = None
    response_type: str = VOTABLE_MIME


def parse_query(params: Mapping[str, str]) -> QueryData:
    """Parse queryData parameters (names already upper-case).

    Unknown parameters are ignored (SSA 1.1 section 8.7.1); empty values count
    as absent.

    Raises
    ------
    UsageError
        Raised if REQUEST is not queryData or a supported parameter has an
        invalid value; the message names the parameter.
    """
    values = {name: value.strip() for name, value in params.items() if value.strip()}
    request = values.get("REQUEST")
    if request is None:
        msg = "REQUEST is missing: SSA queries need REQUEST=queryData"
        raise UsageError(msg)
    if request.lower() != "querydata":
        msg = f"REQUEST={request} is not supported; this service answers REQUEST=queryData"
        raise UsageError(msg)
    version = values.get("VERSION")
    if version is not None and not re.fullmatch(r"1(\.\d+)?", version):
        msg = f"VERSION={version} is not supported; this service speaks SSA {SERVICE_PROTOCOL}"
        raise UsageError(msg)
    response_type = _response_type(values.get("RESPONSEFORMAT"))
    formats = [item.strip().lower() for item in values.get("FORMAT", "all").split(",") if item.strip()]
    # SSA 1.1 section 6.1: with FORMAT=METADATA, the other queryData parameters are ignored.
    if "metadata" in formats:
        return QueryData(metadata=True, response_type=response_type)
    cone = _cone(values.get("POS"), values.get("SIZE"))
    return QueryData(
        search=ConeQuery(
            ra=cone[0] if cone else None,
            dec=cone[1] if cone else None,
            radius=cone[2] if cone else None,
            band=_band(values["BAND"]) if "BAND" in values else None,
            time=_time(values["TIME"]) if "TIME" in values else None,
            target_name=values.get("TARGETNAME"),
            collection=values.get("COLLECTION"),
            publisher_did=values.get("PUBDID"),
        ),
        maxrec=_maxrec(values.get("MAXREC")),
        formats=None if not formats or "all" in formats else frozenset(formats),
        response_type=response_type,
    )


def _response_type(value: str | None) -> str:
    if value is None:
        return VOTABLE_MIME
    kind = value.split(";", 1)[0].strip().lower()
    if kind in {"votable", VOTABLE_MIME}:
        return VOTABLE_MIME
    if kind == "text/xml":
        # DALI 1.1 section 3.4.3: a media type asked for is the Content-Type answered.
        return "text/xml"
    msg = f"RESPONSEFORMAT={value} is not supported; SSA responses are VOTables ({VOTABLE_MIME})"
    raise UsageError(msg)


def _number(text: str, name: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"{name}: {text!r} is not a number ({what})"
        raise UsageError(msg)
    return value


def _cone(pos: str | None, size: str | None) -> tuple[float, float, float] | None:
    """RA, Dec and radius in degrees; SIZE alone constrains nothing."""
    if pos is None:
        return None
    coordinates, _, frame = pos.partition(";")
    if frame and frame.strip().upper() != "ICRS":
        msg = f"POS={pos}: frame {frame.strip()} is not supported; give ICRS coordinates"
        raise UsageError(msg)
    parts = coordinates.split(",")
    if len(parts) != 2:
        msg = f"POS={pos}: expected RA,Dec in decimal degrees, e.g. POS=52.1,-27.8"
        raise UsageError(msg)
    ra = _number(parts[0], "POS", "RA in degrees")
    dec = _number(parts[1], "POS", "Dec in degrees")
    if not 0.0 <= ra <= 360.0:
        msg = f"POS={pos}: RA must be within 0..360 degrees"
        raise UsageError(msg)
    if not -90.0 <= dec <= 90.0:
        msg = f"POS={pos}: Dec must be within -90..90 degrees"
        raise UsageError(msg)
    diameter = DEFAULT_SIZE if size is None else _number(size, "SIZE", "the cone diameter in degrees")
    if not 0.0 < diameter <= 360.0:
        msg = f"SIZE={size}: the cone diameter must be more than 0 and at most 360 degrees"
        raise UsageError(msg)
    return ra, dec, diameter / 2


def _range(text: str, name: str) -> tuple[str | None, str | None]:
    """The ends of a one-element SSA range-list (section 8.7.2): ``v`` (both ends), ``lo/hi``, ``lo/``, ``/hi``."""
    if "," in text:
        msg = f"{name}={text}: give one value or range; lists of ranges are not supported"
        raise UsageError(msg)
    parts = text.split("/")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        msg = f"{name}={text}: expected a value or a range lo/hi"
        raise UsageError(msg)
    return parts[0].strip() or None, parts[1].strip() or None


def _ordered(name: str, text: str, low: float | None, high: float | None) -> tuple[float | None, float | None]:
    """The range, refused when reversed.

    A reversed range is most likely a mistake (swapped bounds, a unit slip);
    answering it silently with the sorted range would hide that, so it is a
    usage error naming the parameter, as SODA's BAND is.
    """
    if low is not None and high is not None and low > high:
        msg = f"{name}={text}: the lower bound is above the upper bound"
        raise UsageError(msg)
    return low, high


def _band(text: str) -> tuple[float | None, float | None]:
    """The BAND interval in metres. A spectral frame qualifier (;source) is accepted and ignored (section 4.1.1.3)."""
    value = text.partition(";")[0]
    low, high = _range(value, "BAND")

    def metres(part: str | None) -> float | None:
        if part is None:
            return None
        try:
            wavelength = float(part)
        except ValueError:
            msg = f"BAND={text}: {part!r} is not a wavelength in metres (bandpass names are not supported)"
            raise UsageError(msg) from None
        if not math.isfinite(wavelength) or wavelength < 0:
            msg = f"BAND={text}: wavelengths must be finite and not negative"
            raise UsageError(msg)
        return wavelength

    return _ordered("BAND", text, metres(low), metres(high))


_PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _mjd(moment: datetime) -> float:
    return (moment - _MJD_EPOCH).total_seconds() / _SECONDS_PER_DAY


def _period(text: str) -> tuple[float, float]:
    """Start and end (MJD) of what an ISO 8601 value denotes.

    A year, month or day stands for all of it (SSA 1.1 section 4.1.1.4: "an
    imprecise value such as yyyy indicates the entire period").

    Raises
    ------
    ValueError
        Raised if the text is not such a value.
    """
    match = _PARTIAL_DATE.fullmatch(text)
    if match:
        year, month, day = int(match[1]), match[2], match[3]
        if day is not None:
            start = date(year, int(month), int(day))
            end = start + timedelta(days=1)
        elif month is not None:
            start = date(year, int(month), 1)
            end = date(year + int(month) // 12, int(month) % 12 + 1, 1)
        else:
            start, end = date(year, 1, 1), date(year + 1, 1, 1)
        midnight = datetime.min.time()
        return (
            _mjd(datetime.combine(start, midnight, tzinfo=UTC)),
            _mjd(datetime.combine(end, midnight, tzinfo=UTC)),
        )
    moment = datetime.fromisoformat(text)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return _mjd(moment), _mjd(moment)


def _time(text: str) -> tuple[float | None, float | None]:
    """The TIME interval in MJD (UTC)."""
    low, high = _range(text, "TIME")
    try:
        first = None if low is None else _period(low)
        last = None if high is None else _period(high)
    except ValueError:
        msg = f"TIME={text}: expected ISO 8601 UTC times such as 2008-11-05 or 2008-11-05T20:15:00, or a range t1/t2"
        raise UsageError(msg) from None
    if first is not None and last is not None and first[0] > last[0]:
        msg = f"TIME={text}: the start is after the end"
        raise UsageError(msg)
    return (None if first is None else first[0], None if last is None else last[1])


def _maxrec(text: str | None) -> int:
    if text is None:
        return DEFAULT_MAXREC
    try:
        maxrec = int(text)
    except ValueError:
        maxrec = -1
    if maxrec < 0:
        msg = f"MAXREC={text}: expected a whole number of rows, 0 or more"
        raise UsageError(msg)
    return min(maxrec, MAX_MAXREC)


def _format_matches(access_format: str, wanted: frozenset[str]) -> bool:
    """Whether a stored file's media type is among the FORMAT items (SSA 1.1 section 4.1.1.5).

    Our files are the projects' native formats. The shorthands follow DaCHS:
    COMPLIANT and ``votable`` mean VOTable, ``fits`` FITS, GRAPHIC images other
    than FITS; an unknown item matches nothing (a null result, not an error).
    """
    kind = access_format.split(";", 1)[0].strip().lower()
    graphic = kind.startswith("image/") and kind != "image/fits"
    for item in wanted:
        match item:
            case "native":
                hit = not graphic
            case "graphic":
                hit = graphic
            case "compliant" | "votable":
                hit = kind == VOTABLE_MIME
            case "fits":
                hit = kind in {"application/fits", "image/fits"}
            case "xml":
                hit = kind in {"application/xml", "text/xml"}
            case _:
                hit = "/" in item and kind == item.split(";", 1)[0].strip()
        if hit:
            return True
    return False


# --- rows ----------------------------------------------------------------------------------------------------------


def _iso(mjd: float) -> str:
    moment = _MJD_EPOCH + timedelta(seconds=round(mjd * _SECONDS_PER_DAY, 3))
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _authority(did: str) -> str | None:
    if not did.startswith("ivo://"):
        return None
    return "ivo://" + re.split(r"[/?#]", did[6:], maxsplit=1)[0]


def _columns(records: Sequence[SpectrumRecord], base: str) -> dict[str, list[Any]]:
    """The response columns of these records, by field name (``None`` for null)."""
    columns: dict[str, list[Any]] = {spec.name: [] for spec in FIELDS}
    add: dict[str, Callable[[Any], None]] = {name: values.append for name, values in columns.items()}
    for r in records:
        has_pos = r.s_ra is not None and r.s_dec is not None
        pos = [r.s_ra, r.s_dec] if has_pos else None
        if r.t_min is not None and r.t_max is not None:
            mid: float | None = (r.t_min + r.t_max) / 2
            elapsed: float | None = (r.t_max - r.t_min) * _SECONDS_PER_DAY
        else:
            mid, elapsed = r.t_min, r.t_exptime
        day = _iso(mid) if mid is not None else None
        title = " ".join(p for p in (r.target_name, r.instrument_name, day and day[:10]) if p)
        add["ssa_pubDID"](r.obs_publisher_did)
        add["accref"](data_url(base, r.obs_publisher_did))
        add["mime"](r.access_format)
        add["accsize"](r.access_estsize)
        add["ssa_length"](r.n_points)
        add["ssa_dstitle"](title or r.obs_publisher_did)
        add["ssa_collection"](r.obs_collection)
        add["ssa_instrument"](r.instrument_name)
        add["facility"](r.facility_name)
        add["ssa_cdate"](day)
        add["ssa_publisher"](_authority(r.obs_publisher_did))
        add["ssa_targname"](r.target_name)
        add["ssa_targetpos"](pos)
        add["ssa_location"](pos)
        add["ssa_ra"](r.s_ra if has_pos else None)
        add["ssa_dec"](r.s_dec if has_pos else None)
        add["ssa_dateObs"](mid)
        add["ssa_timeExt"](elapsed)
        add["ssa_tstart"](r.t_min)
        add["ssa_tstop"](r.t_max)
        add["ssa_exptime"](r.t_exptime)
        add["ssa_specmid"]((r.em_min + r.em_max) / 2)
        add["ssa_specext"](r.em_max - r.em_min)
        add["ssa_specstart"](r.em_min)
        add["ssa_specend"](r.em_max)
        add["ssa_respower"](r.em_res_power)
        add["ssa_fluxcalib"](r.flux_calibration)
        add["ssa_fluxunit"](r.flux_unit)
        add["ssa_medium"](r.medium)
    return columns


def _search(query: QueryData, search: Callable[[ConeQuery], list[SpectrumRecord]]) -> tuple[list[SpectrumRecord], bool]:
    """The matching records, at most MAXREC of them, and whether there were more."""
    if query.formats is None:
        records = search(dataclasses.replace(query.search, limit=query.maxrec + 1))
    else:
        # The store does not index formats: filter here, then apply the limit.
        wanted = query.formats
        records = [r for r in search(query.search) if _format_matches(r.access_format, wanted)]
    overflow = len(records) > query.maxrec
    return records[: query.maxrec], overflow


async def _parameters(request: web.Request) -> dict[str, str]:
    """Query-string and (for POST) form parameters, by upper-case name.

    Raises
    ------
    UsageError
        Raised if a parameter is given twice with different values (SSA 1.1
        section 8.7.1 leaves that undefined; we say so rather than pick one).
    """
    params: dict[str, str] = {}
    for name, value in (await read_sync_params(request)).pairs:
        key = name.upper()
        if key in params and params[key] != value:
            msg = f"{key} is given more than once with different values"
            raise UsageError(msg)
        params[key] = value
    return params


async def query_data(request: web.Request) -> web.Response:
    """GET or POST /ssa: SSAP 1.1 queryData."""
    query = parse_query(await _parameters(request))
    base = base_url(request)
    documents = request.app[_DOCUMENTS].get(base)
    if query.metadata:
        body = documents.metadata.write({}, rows=0)
    elif query.maxrec == 0:
        # DALI 1.1 section 3.4.4: MAXREC=0 asks for the metadata of the result and an overflow indicator.
        body = documents.query.write({}, rows=0, status="OVERFLOW", message="MAXREC=0: no rows were asked for")
    else:
        records, overflow = _search(query, request.app[ARCHIVE].store.search)
        message = None
        if overflow:
            message = (
                f"More than MAXREC={query.maxrec} spectra match; ask for more (at most {MAX_MAXREC})"
                " or narrow the constraints"
            )

        def render() -> bytes:
            columns = _columns(records, base)
            return documents.query.write(
                columns, rows=len(records), status="OVERFLOW" if overflow else "OK", message=message
            )

        body = await asyncio.to_thread(render) if len(records) > THREAD_ROWS else render()
    return web.Response(body=body, content_type=query.response_type)


def _capabilities(base: str) -> list[Capability]:
    return [
        ssa_capability(base + SSA_PATH, max_records=MAX_MAXREC, default_max_records=DEFAULT_MAXREC),
        *vosi_capabilities(base, SSA_PATH),
    ]


def add_routes(app: web.Application) -> None:
    """Register the SSA service and its VOSI endpoints."""
    app[_DOCUMENTS] = _DocumentCache()
    app.router.add_get(SSA_PATH, query_data)
    app.router.add_post(SSA_PATH, query_data)
    add_vosi_routes(app, SSA_PATH, _capabilities, note="vocloud SSA service is accepting queries")
