"""VO data access for the client: SSAP search of any service, DataLink resolution and SODA cutouts, through pyvo.

pyvo builds every query (its ``SSAQuery``, ``DatalinkQuery`` and
``SodaQuery`` know the parameter encodings: POS in ICRS degrees, BAND in metres
with spectral equivalencies, TIME in ISO 8601) and reads every answer; this
module adds what an astronomer's client needs around it:

- **Tolerance of real services.** Archives in daily use send VOTables that
  astropy refuses: the Ondřejov CCD700 SSA service declares a PARAM with
  ``arraysize="m"``, which stops astropy's parser even with
  ``verify='ignore'``. Such an invalid ``arraysize`` is read as ``*`` (any
  length), which is what the service meant, and the rest is parsed as is.
- **Errors in the service's words.** A DALI error VOTable (on HTTP 400 or
  with ``QUERY_STATUS=ERROR`` on a 200, as SSA 1.0 services do), a SODA
  ``text/plain`` error or a DataLink fault row becomes a
  :class:`~vocloud.client.errors.VocloudError` carrying the service's message.
- **Downloads** through :mod:`vocloud.client.cache`: timeouts, a progress bar on
  a terminal, and a local cache, so that the same DataLink document or cutout
  is fetched once.
- **Cutouts around a spectral line.** SODA's BAND is compared with the archived
  wavelengths, which are air wavelengths for air-calibrated spectra (the vocloud
  server says so in its BAND description and in the SSA ``ssa_medium`` column).
  A line given in air (the astronomers' convention above 2000 Å: H-alpha is
  6562.8 Å) is moved into the spectrum's medium first (Morton 2000, the IAU
  standard), about 1.8 Å at H-alpha.

The cutout service of a record is found as pyvo's ``processed()`` finds it,
descriptors in the record's own table first (one request less): a SODA
descriptor; else the SSA "getData" descriptor of archives that predate SODA
(``ivo://ivoa.net/std/SSDP#sync`` with ``LAMBDA_MIN``/``LAMBDA_MAX``, as the
Ondřejov archive has); else the SODA service of the ``#cutout`` row of the
record's DataLink document.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO, TypeAlias
from xml.parsers.expat import ExpatError

import astropy.units as u
import numpy as np
import requests
from astropy.coordinates import SkyCoord
from astropy.io.votable import parse as parse_votable_file
from astropy.io.votable.tree import VOTableFile
from astropy.table import Row, Table
from astropy.time import Time
from pyvo.dal import DALFormatError, DALOverflowWarning, DALQueryError, DALServiceError, SSAService
from pyvo.dal.adhoc import (
    DATALINK_IVOID,
    SODA_SYNC_IVOID,
    DatalinkQuery,
    DatalinkRecord,
    DatalinkResults,
    SodaQuery,
)
from pyvo.dal.query import Record
from pyvo.dal.ssa import SSARecord, SSAResults

from .cache import Cache, CacheEntry, Params, download, http_get, request_url
from .errors import VocloudError

__all__ = [
    "DEFAULT_HALF_WIDTH",
    "DEFAULT_LINE",
    "SSDP_SYNC_IVOID",
    "CutoutRequest",
    "Links",
    "Medium",
    "SSAResponse",
    "air_to_vacuum",
    "cutout",
    "cutout_request",
    "datalink",
    "fetch_cutout",
    "line_band",
    "lookup",
    "parse_votable",
    "ssa_query",
    "ssa_search",
    "vacuum_to_air",
]

DEFAULT_LINE: Final = 6562.8 * u.AA
"""H-alpha, in air: the line the Ondřejov CCD700 archive is about."""

DEFAULT_HALF_WIDTH: Final = 50.0 * u.AA
"""Half the width of a cutout around a line: ±50 Å holds H-alpha's wings and some continuum on either side."""

SSDP_SYNC_IVOID: Final = "ivo://ivoa.net/std/SSDP#sync"
"""The SSA getData service of DaCHS archives older than SODA (ID, LAMBDA_MIN, LAMBDA_MAX in metres)."""

Medium = Literal["air", "vacuum"]
"""Whether wavelengths are measured in air or are vacuum wavelengths."""

Target: TypeAlias = "str | Record | Row"
"""What a cutout or DataLink lookup is for: a publisher DID, a pyvo record (SSA row, candidate), or an astropy row."""

_ID_COLUMNS: Final = ("ssa_pubDID", "obs_publisher_did", "publisher_did", "id", "ID")
"""Columns holding a row's publisher DID, most specific first (SSA, ObsCore, vocloud's candidates)."""

_MEDIUM_COLUMNS: Final = ("ssa_medium", "medium")
"""Columns saying whether a row's spectrum has air or vacuum wavelengths (vocloud's SSA has ``ssa_medium``)."""

_ARRAYSIZE: Final = re.compile(rb"""(\barraysize\s*=\s*)(["'])(.*?)\2""")
_VALID_ARRAYSIZE: Final = re.compile(rb"^(\d+x)*(\d+\*?|\*)$")
"""VOTable 1.4 section 2.2: dimensions separated by ``x``, the last one may be variable (``*`` or ``n*``)."""

_PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError, ExpatError)
"""What astropy's VOTable parser raises on a document it cannot read (its E/W classes are ValueErrors)."""


# -- VOTables ------------------------------------------------------------------------------------------------------


def _repair(data: bytes) -> bytes:
    """``data`` with every invalid ``arraysize`` attribute replaced by ``*``.

    Meant for what real services send: the Ondřejov SSA service's
    ``arraysize="m"`` on a PARAM (read as "any length", which is what a BAND
    PARAM of two numbers in a char string needs).
    """

    def fix(match: re.Match[bytes]) -> bytes:
        value = match.group(3).strip()
        if _VALID_ARRAYSIZE.match(value):
            return match.group(0)
        return match.group(1) + match.group(2) + b"*" + match.group(2)

    return _ARRAYSIZE.sub(fix, data)


def parse_votable(data: bytes, *, url: str = "the service") -> VOTableFile:
    """Parse a VOTable, repairing the quirks of real services that astropy refuses.

    Raises
    ------
    VocloudError
        Raised if the document is not a VOTable even after repair.
    """
    try:
        return parse_votable_file(io.BytesIO(data), verify="ignore")
    except _PARSE_ERRORS as first:
        repaired = _repair(data)
        if repaired != data:
            try:
                return parse_votable_file(io.BytesIO(repaired), verify="ignore")
            except _PARSE_ERRORS:
                pass
        msg = f"{url} did not answer with a VOTable this client can read: {first}"
        raise VocloudError(msg, url=url) from first


# -- SSA -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SSAResponse:
    """An SSA ``queryData`` answer: pyvo's results, the document as received, and whether MAXREC cut it short."""

    results: SSAResults
    """The rows as pyvo records (``getdatalink()``, ``processed()``, utype accessors)."""
    raw: bytes
    """The service's VOTable byte for byte (its service descriptors intact, e.g. for TOPCAT)."""
    url: str
    """The full query URL."""
    overflow: bool
    """Whether the service had more rows than it sent (``QUERY_STATUS=OVERFLOW``)."""

    def table(self) -> Table:
        """The rows as an astropy Table; ``meta`` holds ``query_url`` and ``overflow``."""
        table = self.results.to_table()
        table.meta["query_url"] = self.url
        table.meta["overflow"] = self.overflow
        return table


@contextlib.contextmanager
def _session(session: requests.Session | None) -> Iterator[requests.Session]:
    """The caller's session, or a new one closed afterwards (no socket left open)."""
    if session is not None:
        yield session
        return
    with requests.Session() as own:
        yield own


def _fetch(
    url: str, params: Params | None, *, session: requests.Session, cache: Cache | None, timeout: float
) -> tuple[bytes, str]:
    """The body of a GET and its full URL, from the cache when one is given."""
    if cache is not None:
        entry = download(session, url, params, cache=cache, timeout=timeout, progress=False)
        return entry.path.read_bytes(), entry.url
    response = http_get(session, url, params, timeout=timeout)
    return response.content, response.url


def _ssa_results(data: bytes, *, url: str, session: requests.Session) -> tuple[SSAResults, bool]:
    """pyvo's results of an SSA answer, and whether it overflowed.

    Raises
    ------
    VocloudError
        Raised if the service reported an error (``QUERY_STATUS=ERROR``) or
        sent no result table.
    """
    votable = parse_votable(data, url=url)
    try:
        # The overflow is reported to the caller as a value, not as a warning only a console would show.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DALOverflowWarning)
            results = SSAResults(votable, url=url, session=session)
    except DALQueryError as e:
        raise VocloudError(e.reason or str(e), url=url) from e
    except DALFormatError as e:
        msg = f"{url} answered without an SSA result table: {e.reason or e}"
        raise VocloudError(msg, url=url) from e
    return results, str(results.status[0]).lower() == "overflow"


def ssa_query(
    url: str,
    *,
    pos: SkyCoord | tuple[float, float] | None = None,
    size: u.Quantity | float | None = None,
    band: u.Quantity | tuple[float, float] | None = None,
    time: Time | tuple[str, str] | None = None,
    maxrec: int | None = None,
    session: requests.Session | None = None,
    cache: Cache | None = None,
    timeout: float = 60.0,
    **extra: Any,
) -> SSAResponse:
    """Run an SSAP ``queryData`` request on any SSA service.

    Parameters
    ----------
    url
        The service's base URL (e.g. ``http://127.0.0.1:8080/ssa``).
    pos
        Centre of the search cone: a SkyCoord, or (RA, Dec) in ICRS degrees.
    size
        Diameter of the cone: a Quantity, or degrees.
    band
        Spectral interval: a Quantity pair in any spectral unit, or metres.
    time
        Time interval: astropy Times, or ISO 8601 strings.
    maxrec
        Most rows wanted; the answer says whether there were more.
    session
        The HTTP session (credentials); a new one when None.
    cache
        Answer from (and store in) this cache; None (the default) always asks
        the service, since a search should see what was archived since.
    timeout
        Seconds the service may take to answer.
    **extra
        Further SSA parameters (``TARGETNAME``, ``COLLECTION``, ``PUBDID``, ...).

    Raises
    ------
    VocloudError
        Raised if the service refused the query or sent something that is not
        an SSA answer (subclasses for an unreachable or slow service).
    ValueError
        Raised if a constraint is malformed (pyvo's message).
    """
    with _session(session) as http:
        query = SSAService(url, session=http).create_query(
            pos=pos, diameter=size, band=band, time=time, maxrec=maxrec, **extra
        )
        params = {key: str(value) for key, value in query.items() if value is not None}
        data, full_url = _fetch(query.queryurl, params, session=http, cache=cache, timeout=timeout)
        results, overflow = _ssa_results(data, url=full_url, session=http)
    return SSAResponse(results=results, raw=data, url=full_url, overflow=overflow)


def ssa_search(
    url: str,
    *,
    pos: SkyCoord | tuple[float, float] | None = None,
    size: u.Quantity | float | None = None,
    band: u.Quantity | tuple[float, float] | None = None,
    time: Time | tuple[str, str] | None = None,
    maxrec: int | None = None,
    session: requests.Session | None = None,
    timeout: float = 60.0,
    **extra: Any,
) -> Table:
    """Search any SSA service; the rows as an astropy Table (see :func:`ssa_query` for the parameters).

    ``table.meta["overflow"]`` says whether MAXREC (the caller's or the
    service's) cut the answer short.

    Raises
    ------
    VocloudError
        Raised if the service refused the query or its answer cannot be read.
    """
    response = ssa_query(
        url, pos=pos, size=size, band=band, time=time, maxrec=maxrec, session=session, timeout=timeout, **extra
    )
    return response.table()


def lookup(
    publisher_did: str,
    *,
    ssa_url: str,
    session: requests.Session | None = None,
    cache: Cache | None = None,
    timeout: float = 60.0,
) -> SSARecord:
    """The SSA record of one spectrum, asked by its publisher DID (SSA ``PUBDID``).

    The record carries what a cutout needs and a bare ID does not: the
    DataLink (or SODA) service descriptor and the wavelength medium. The
    answer for one DID does not change, so it may come from the cache.

    Raises
    ------
    VocloudError
        Raised if the service does not know the DID (status 404), or refused the query.
    """
    response = ssa_query(ssa_url, session=session, cache=cache, timeout=timeout, PUBDID=publisher_did)
    for record in response.results:
        if _text(record.getbyutype("ssa:Curation.PublisherDID")) in (publisher_did, None):
            return record
    msg = f"no spectrum with publisher DID {publisher_did!r} at {ssa_url}"
    raise VocloudError(msg, status=404, url=response.url)


# -- DataLink ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Links:
    """The DataLink links of one dataset."""

    id: str
    """The dataset's identifier (publisher DID)."""
    this: DatalinkRecord | None
    """``#this``: the dataset itself (``.access_url``, ``.content_type``, ``.content_length``)."""
    preview: DatalinkRecord | None
    """``#preview``: a quick-look image."""
    cutout: DatalinkRecord | None
    """``#cutout``: the row naming a SODA service (``.service_def``)."""
    results: DatalinkResults
    """The whole document (other semantics, the service descriptors)."""

    def by_semantics(self, term: str) -> list[DatalinkRecord]:
        """The rows of this dataset with exactly this semantics term (``#this``, ``#derivation``, ...).

        Exact terms, not pyvo's default of also matching narrower ones: that
        needs the DataLink vocabulary from the network.
        """
        wanted = term if term.startswith("#") or ":" in term else f"#{term}"
        return [row for row in self.results if row.semantics == wanted and row.id == self.id]


def _text(value: Any) -> str | None:
    """A VOTable cell as text (bytes decoded, masked and empty as None)."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def _row_value(target: Record | Row, names: Sequence[str]) -> str | None:
    """The first of ``names`` that the row has, as text."""
    keys = target.colnames if isinstance(target, Row) else list(target.keys())
    for name in names:
        if name in keys:
            value = _text(target[name])
            if value is not None:
                return value
    return None


def _target_id(target: Target) -> str:
    """The publisher DID of a target.

    Raises
    ------
    ValueError
        Raised if a row has no identifier column.
    """
    if isinstance(target, str):
        return target
    if isinstance(target, Record):
        found = _text(target.getbyutype("ssa:Curation.PublisherDID")) or _text(target.getbyucd("meta.id;meta.main"))
        if found:
            return found
    found = _row_value(target, _ID_COLUMNS)
    if found is None:
        msg = f"the row has no publisher DID column (looked for {', '.join(_ID_COLUMNS)})"
        raise ValueError(msg)
    return found


def _descriptor(record: Record, standard_id: str) -> Any | None:
    """The service descriptor (an ``adhoc:service`` RESOURCE) of ``standard_id`` in a record's table, if any."""
    finder = getattr(record._results, "get_adhocservice_by_ivoid", None)
    if finder is None:
        return None
    try:
        return finder(standard_id)
    except DALServiceError:
        return None


def _query_parts(query: DatalinkQuery) -> tuple[str, dict[str, str]]:
    return str(query.queryurl), {key: str(value) for key, value in query.items() if value is not None}


def _links_request(target: Target, publisher_did: str, service_url: str | None, http: requests.Session) -> Any:
    """The DataLink query for a target: the record's own descriptor, else ``service_url``."""
    if isinstance(target, Record):
        descriptor = _descriptor(target, DATALINK_IVOID)
        if descriptor is not None:
            return DatalinkQuery.from_resource(target, descriptor, session=http)
    if service_url is None:
        msg = f"no DataLink service known for {publisher_did}: give the DataLink service URL"
        raise VocloudError(msg)
    return DatalinkQuery(service_url, id=publisher_did, session=http)


def datalink(
    target: Target,
    *,
    service_url: str | None = None,
    session: requests.Session | None = None,
    cache: Cache | None = None,
    timeout: float = 60.0,
) -> Links:
    """Resolve the DataLink links of a dataset: its file, preview and cutout service.

    Parameters
    ----------
    target
        A publisher DID, or a pyvo record whose table has a DataLink service
        descriptor (an SSA row of vocloud or DaCHS), or an astropy row with an
        ID column.
    service_url
        The DataLink ``{links}`` endpoint, for targets that bring no descriptor.
    session
        The HTTP session; a new one when None.
    cache
        Where the DataLink document may come from and is kept; None asks every time.
    timeout
        Seconds the service may take to answer.

    Raises
    ------
    VocloudError
        Raised if no DataLink service is known, the service refused, or it
        answered only with an error row for this ID (status 404 for a
        ``NotFoundFault``).
    """
    publisher_did = _target_id(target)
    with _session(session) as http:
        query = _links_request(target, publisher_did, service_url, http)
        url, params = _query_parts(query)
        data, full_url = _fetch(url, params, session=http, cache=cache, timeout=timeout)
        votable = parse_votable(data, url=full_url)
        try:
            results = DatalinkResults(
                votable, url=full_url, session=http, original_row=target if isinstance(target, Record) else None
            )
        except DALQueryError as e:
            raise VocloudError(e.reason or str(e), url=full_url) from e
        except DALFormatError as e:
            msg = f"{full_url} answered without a DataLink table: {e.reason or e}"
            raise VocloudError(msg, url=full_url) from e
    rows = [row for row in results if row.id == publisher_did] or list(results)

    def first(term: str) -> DatalinkRecord | None:
        return next((row for row in rows if row.semantics == term and not row.error_message), None)

    links = Links(id=publisher_did, this=first("#this"), preview=first("#preview"), cutout=first("#cutout"),
                  results=results)  # fmt: skip
    if links.this is None and links.cutout is None:
        errors = [row.error_message for row in rows if row.error_message]
        if errors:
            status = 404 if errors[0].startswith("NotFoundFault") else None
            raise VocloudError(errors[0], status=status, url=full_url)
    return links


# -- cutouts -------------------------------------------------------------------------------------------------------


def air_to_vacuum(wavelength: u.Quantity) -> u.Quantity:
    """Vacuum wavelength of an air wavelength (IAU standard, Morton 2000; valid above 2000 Å).

    N. Piskunov's inversion of Morton's (2000, ApJS 130, 403) refractive
    index of standard air, in terms of the air wavenumber ``s = 10^4 / λ_air``
    (µm⁻¹), as VALD and SDSS use it and as the server's preprocessing does.
    """
    air = wavelength.to_value(u.AA, equivalencies=u.spectral())
    s2 = (1.0e4 / air) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return (air * n * u.AA).to(wavelength.unit, equivalencies=u.spectral())


def vacuum_to_air(wavelength: u.Quantity) -> u.Quantity:
    """Air wavelength of a vacuum wavelength (IAU standard, Morton 2000 eq. 8; valid above 2000 Å)."""
    vacuum = wavelength.to_value(u.AA, equivalencies=u.spectral())
    s2 = (1.0e4 / vacuum) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return (vacuum / n * u.AA).to(wavelength.unit, equivalencies=u.spectral())


def _medium(value: str | None) -> Medium | None:
    match (value or "").strip().lower():
        case "air":
            return "air"
        case "vacuum" | "vac":
            return "vacuum"
        case _:
            return None


def line_band(
    around: u.Quantity | float = DEFAULT_LINE,
    half_width: u.Quantity | float = DEFAULT_HALF_WIDTH,
    *,
    line_medium: Medium = "air",
    spectrum_medium: Medium | None = None,
) -> u.Quantity:
    """The wavelength interval ``around ± half_width`` in the spectrum's medium, in metres.

    Parameters
    ----------
    around
        The line's wavelength: a Quantity, or Å.
    half_width
        Half the interval: a Quantity, or Å.
    line_medium
        The medium ``around`` is given in (air, as line lists quote optical lines).
    spectrum_medium
        The medium of the archived wavelengths; None when unknown, in which
        case the line is taken as it is (at worst 1.8 Å off at H-alpha).
    """
    centre = around if isinstance(around, u.Quantity) else around * u.AA
    width = half_width if isinstance(half_width, u.Quantity) else half_width * u.AA
    centre = centre.to(u.AA, equivalencies=u.spectral())
    if spectrum_medium is not None and spectrum_medium != line_medium:
        centre = air_to_vacuum(centre) if spectrum_medium == "vacuum" else vacuum_to_air(centre)
    width = width.to(u.AA)
    if width.value <= 0:
        raise ValueError(f"the half width must be positive, not {width}")
    return u.Quantity([centre - width, centre + width]).to(u.m)


def _band_metres(band: u.Quantity | tuple[float, float]) -> u.Quantity:
    quantity = band if isinstance(band, u.Quantity) else u.Quantity(list(band), u.m)
    if quantity.shape != (2,):
        raise ValueError(f"a band is two wavelengths, not {band!r}")
    metres = np.sort(quantity.to(u.m, equivalencies=u.spectral()))
    if not metres[0] < metres[1]:
        raise ValueError(f"the band {band!r} is empty")
    return metres


@dataclass(frozen=True, kw_only=True)
class CutoutRequest:
    """The request that fetches a cutout: where, what, and what it was derived from."""

    url: str
    """The service's access URL."""
    params: dict[str, str]
    """The query parameters (ID, BAND in metres, ...)."""
    standard_id: str
    """The protocol of the service (SODA sync, or SSDP for older archives)."""
    publisher_did: str
    """The dataset cut."""
    band: u.Quantity
    """The interval asked for, in metres, in the spectrum's medium."""
    medium: Medium | None
    """The medium of the archived wavelengths, when known."""

    @property
    def full_url(self) -> str:
        """The URL with its parameters, as it is sent."""
        return request_url(self.url, self.params)


def _soda_from(
    row: Record, descriptor: Any, band: u.Quantity, responseformat: str | None
) -> tuple[str, dict[str, str]]:
    extra = {"responseformat": responseformat} if responseformat else {}
    query = SodaQuery.from_resource(row, descriptor, band=band, **extra)
    return _query_parts(query)


def _ssdp_from(
    record: Record, descriptor: Any, band: u.Quantity, responseformat: str | None
) -> tuple[str, dict[str, str]]:
    """The getData request of an SSDP descriptor (LAMBDA_MIN/LAMBDA_MAX in metres).

    Built here rather than by pyvo's ``DatalinkQuery.from_resource``, which
    fails on the empty float PARAM values such descriptors declare.
    """
    inputs = next((group for group in descriptor.groups if group.name == "inputParams"), None)
    access = next((param.value for param in descriptor.params if param.name == "accessURL"), None)
    if inputs is None or not access:
        raise VocloudError("the getData service descriptor has no accessURL or inputParams")
    names = {field.ID: field.name for field in record._results.resultstable.fields if field.ID}
    params: dict[str, str] = {}
    for param in inputs.entries:
        if getattr(param, "ref", None):
            value = _text(record[names.get(param.ref, param.ref)])
            if value is not None:
                params[param.name] = value
    params["LAMBDA_MIN"] = repr(float(band[0].to_value(u.m)))
    params["LAMBDA_MAX"] = repr(float(band[1].to_value(u.m)))
    if responseformat:
        params["FORMAT"] = responseformat
    return _text(access) or "", params


def cutout_request(
    target: Target,
    *,
    around: u.Quantity | float = DEFAULT_LINE,
    half_width: u.Quantity | float = DEFAULT_HALF_WIDTH,
    band: u.Quantity | tuple[float, float] | None = None,
    line_medium: Medium = "air",
    medium: Medium | None = None,
    responseformat: str | None = None,
    ssa_url: str | None = None,
    datalink_url: str | None = None,
    session: requests.Session | None = None,
    cache: Cache | None = None,
    timeout: float = 60.0,
) -> CutoutRequest:
    """Work out the SODA (or SSDP) request for a cutout, without fetching the cutout.

    See :func:`cutout` for the parameters. A bare DID, or a row that does not
    say its medium, is first looked up in the SSA service (``ssa_url``) when
    one is given, to learn its medium and its service descriptors; with only
    ``datalink_url``, its DataLink document is read directly and the medium is
    unknown unless given.

    Raises
    ------
    VocloudError
        Raised if no cutout service is found for the dataset, or a service refused.
    ValueError
        Raised if the band or line is malformed.
    """
    publisher_did = _target_id(target)
    with _session(session) as http:
        known = medium or (None if isinstance(target, str) else _medium(_row_value(target, _MEDIUM_COLUMNS)))
        if ssa_url is not None and known is None and not isinstance(target, SSARecord):
            # A bare DID, or a row that does not say its medium (a candidates table): the SSA record does.
            target = lookup(publisher_did, ssa_url=ssa_url, session=http, cache=cache, timeout=timeout)
            known = medium or _medium(_row_value(target, _MEDIUM_COLUMNS))
        if band is not None:
            interval = _band_metres(band)
        else:
            interval = line_band(around, half_width, line_medium=line_medium, spectrum_medium=known)
        if isinstance(target, Record):
            for standard_id, build in ((SODA_SYNC_IVOID, _soda_from), (SSDP_SYNC_IVOID, _ssdp_from)):
                descriptor = _descriptor(target, standard_id)
                if descriptor is not None:
                    url, params = build(target, descriptor, interval, responseformat)
                    return CutoutRequest(url=url, params=params, standard_id=standard_id,
                                         publisher_did=publisher_did, band=interval, medium=known)  # fmt: skip
        links = datalink(target, service_url=datalink_url, session=http, cache=cache, timeout=timeout)
        row = links.cutout
        descriptor = None
        if row is not None and row.service_def:
            with contextlib.suppress(DALServiceError):
                descriptor = links.results.get_adhocservice_by_id(row.service_def)
        if descriptor is None:
            row = row or links.this
            with contextlib.suppress(DALServiceError):
                descriptor = links.results.get_adhocservice_by_ivoid(SODA_SYNC_IVOID)
        if row is None or descriptor is None:
            msg = f"{publisher_did} has no SODA cutout service in its DataLink document ({links.results.url})"
            raise VocloudError(msg, url=links.results.url)
        url, params = _soda_from(row, descriptor, interval, responseformat)
    return CutoutRequest(url=url, params=params, standard_id=SODA_SYNC_IVOID, publisher_did=publisher_did,
                         band=interval, medium=known)  # fmt: skip


def cutout(
    target: Target,
    *,
    around: u.Quantity | float = DEFAULT_LINE,
    half_width: u.Quantity | float = DEFAULT_HALF_WIDTH,
    band: u.Quantity | tuple[float, float] | None = None,
    line_medium: Medium = "air",
    medium: Medium | None = None,
    responseformat: str | None = None,
    output: Path | None = None,
    ssa_url: str | None = None,
    datalink_url: str | None = None,
    session: requests.Session | None = None,
    cache: Cache | Literal[False] | None = None,
    timeout: float = 60.0,
    progress: bool | None = None,
    progress_stream: TextIO | None = None,
) -> Path:
    """A SODA cutout of a spectrum around a line (or over a band), downloaded once and kept in the cache.

    Parameters
    ----------
    target
        A publisher DID, a pyvo record (an SSA row, a candidates row with its
        DataLink descriptor), or an astropy row with an ID column.
    around, half_width
        The interval ``around ± half_width`` (Quantities, or Å); default H-alpha ± 50 Å.
    band
        An explicit interval instead (Quantity pair, or metres), in the
        archive's wavelengths as they are.
    line_medium
        The medium ``around`` is given in.
    medium
        The medium of the archived wavelengths; default: what the row says
        (``ssa_medium``), else what the SSA record at ``ssa_url`` says, else
        taken to be ``line_medium``.
    responseformat
        The format asked for (SODA ``RESPONSEFORMAT``); default: the service's (FITS for vocloud).
    output
        Where to write the cutout; default: leave it in the cache and return that path.
    ssa_url
        An SSA service to look a bare DID up in (medium and descriptors).
    datalink_url
        A DataLink endpoint for a bare DID without an SSA service.
    session
        The HTTP session; a new one when None.
    cache
        The cache; None: the default cache directory; False: none (``output`` is then required).
    timeout
        Seconds a service may take to answer.
    progress
        Progress bar for the download: None shows one on a terminal only.
    progress_stream
        Where the progress bar goes (default stderr).

    Returns
    -------
    Path
        The cutout file: ``output``, or its place in the cache.

    Raises
    ------
    VocloudError
        Raised if no cutout service is found, a service refused (the SODA
        error text), or the band holds no pixel of the spectrum (status 204).
    ValueError
        Raised if the band or line is malformed, or neither cache nor output is given.
    """
    store = Cache() if cache is None else (cache or None)
    if store is None and output is None:
        raise ValueError("without a cache, give the output file")
    with _session(session) as http:
        request = cutout_request(
            target, around=around, half_width=half_width, band=band, line_medium=line_medium, medium=medium,
            responseformat=responseformat, ssa_url=ssa_url, datalink_url=datalink_url, session=http,
            cache=store, timeout=timeout,
        )  # fmt: skip
        entry = fetch_cutout(
            request, session=http, cache=store, output=output, timeout=timeout, progress=progress,
            progress_stream=progress_stream,
        )  # fmt: skip
    return entry.path


def fetch_cutout(
    request: CutoutRequest,
    *,
    session: requests.Session,
    cache: Cache | None,
    output: Path | None = None,
    timeout: float = 60.0,
    progress: bool | None = None,
    progress_stream: TextIO | None = None,
) -> CacheEntry:
    """Download a planned cutout (see :func:`cutout_request`), from the cache when it is there.

    Raises
    ------
    VocloudError
        Raised if the service refused (its SODA error text), or the band holds
        no pixel of the spectrum (status 204).
    """
    try:
        return download(
            session, request.url, request.params, cache=cache, dest=output, timeout=timeout, progress=progress,
            label=_label(request.publisher_did), progress_stream=progress_stream,
        )  # fmt: skip
    except VocloudError as e:
        if e.status != 204:
            raise
        lo, hi = request.band.to_value(u.AA)
        msg = f"no pixel of {request.publisher_did} lies between {lo:.1f} and {hi:.1f} Å"
        raise VocloudError(msg, status=204, url=e.url) from e


def _label(publisher_did: str) -> str:
    return publisher_did.rstrip("/").rsplit("/", 1)[-1] or publisher_did
