"""DataLink 1.1 ``{links}`` of archived spectra, at /datalink; the original files at /data and previews at /preview.

For each ID (repeatable, GET or POST) the links, consecutive and in the
order of the request (DataLink 1.1 section 3.2):

``#this``
    The archived original file (``/data?ID=``), with its media type and size.
``#preview``
    A PNG plot (``/preview?ID=``), drawn on first use and cached.
``#cutout``
    The SODA sync service (:mod:`.soda`) through its service descriptor, whose
    ID parameter takes the row's ID; with one spectrum in the document, BAND
    declares that spectrum's wavelength range (SODA 1.0 section 4.2).
``#derivation``
    The continuum-normalised spectrum (SODA with ``NORMALIZE=true``, FITS),
    unless the archived flux is already normalised.

An ID not in the archive gets one row with ``NotFoundFault: ...`` and
semantics ``#this``. MAXREC (DALI 1.1 section 3.4.4) bounds the rows; since
the links of one ID are never split (DataLink 1.1 section 2.1.1), IDs whose links do not
fit are left out and QUERY_STATUS says OVERFLOW. RESPONSEFORMAT accepts the
VOTable forms only (section 2.1.2). Service-level errors are DALI error
VOTables starting with a DataLink fault name (``UsageFault: ...``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from aiohttp import web
from pydantic import AnyUrl
from vo_models.vodataservice.models import ParamHTTP
from vo_models.voresource.models import AccessURL, Capability

from .archive.store import SpectrumRecord
from .cutout import FITS_MIME, file_stem, split_media_type
from .dali import SyncParams, read_sync_params
from .errors import NotFoundError, UsageError, VocloudError
from .keys import ARCHIVE
from .links import DATA_PATH, DATALINK_PATH, PREVIEW_PATH, data_url, preview_url
from .preview import PREVIEW_MIME, ensure_preview
from .service_routes import add_vosi_routes, base_url
from .soda import SODA_DESCRIPTOR_ID, normalized_url, soda_descriptor
from .spectra.model import FluxCalibration
from .spectra.readers import SpectrumFormatError
from .vosi import vosi_capabilities
from .votable import (
    DATALINK_MIME,
    DATALINK_STANDARD_ID,
    VOTABLE_MIME,
    FieldSpec,
    ResultDocument,
)

__all__ = ["MAX_LINK_ROWS", "add_routes", "links_for"]

_log = logging.getLogger(__name__)

MAX_LINK_ROWS = 10_000
"""Most rows of one ``{links}`` response, and MAXREC's default: 2,500 spectra of four links."""

ID_FIELD = "ID"
"""XML ID of the ID column, which the SODA descriptor's ID parameter refers to."""

_FIELDS = (
    FieldSpec(name="ID", datatype="char", arraysize="*", ucd="meta.id;meta.main", id=ID_FIELD),
    FieldSpec(name="access_url", datatype="char", arraysize="*", ucd="meta.ref.url"),
    FieldSpec(name="service_def", datatype="char", arraysize="*", ucd="meta.ref"),
    FieldSpec(name="error_message", datatype="char", arraysize="*", ucd="meta.code.error"),
    FieldSpec(name="description", datatype="char", arraysize="*", ucd="meta.note"),
    FieldSpec(name="semantics", datatype="char", arraysize="*", ucd="meta.code"),
    FieldSpec(name="content_type", datatype="char", arraysize="*", ucd="meta.code.mime"),
    FieldSpec(name="content_length", datatype="long", unit="byte", ucd="phys.size;meta.file"),
    FieldSpec(name="content_qualifier", datatype="char", arraysize="*", ucd="meta.code.class"),
)
"""The ``{links}`` columns in DataLink 1.1 section 3.2 order (content_qualifier: product-type vocabulary)."""

Row = dict[str, str | int | None]


def links_for(base: str, publisher_did: str, record: SpectrumRecord | None) -> list[Row]:
    """The rows of one ID: its links, or one error row when it is not archived."""
    if not publisher_did.strip():
        return [_row(publisher_did, "#this", error_message="UsageFault: an ID value is empty")]
    if record is None:
        message = f"NotFoundFault: {publisher_did} is not in this archive"
        return [_row(publisher_did, "#this", error_message=message)]
    rows = [
        _row(
            publisher_did,
            "#this",
            access_url=data_url(base, publisher_did),
            description=f"The archived original file ({record.n_points} points)",
            content_type=record.access_format,
            content_length=record.access_estsize,
            content_qualifier="#spectrum",
        ),
        _row(
            publisher_did,
            "#preview",
            access_url=preview_url(base, publisher_did),
            description="Plot of the spectrum (PNG)",
            content_type=PREVIEW_MIME,
        ),
        _row(
            publisher_did,
            "#cutout",
            service_def=SODA_DESCRIPTOR_ID,
            description="Spectral cutout by wavelength (SODA); FITS binary table or VOTable",
        ),
    ]
    if record.flux_calibration != FluxCalibration.NORMALIZED.value:
        rows.append(
            _row(
                publisher_did,
                "#derivation",
                access_url=normalized_url(base, publisher_did),
                description="Continuum-normalised spectrum: flux divided by an iteratively sigma-clipped"
                " Chebyshev continuum fit (FITS binary table)",
                content_type=FITS_MIME,
                content_qualifier="#spectrum",
            )
        )
    return rows


def _row(publisher_did: str, semantics: str, **values: str | int | None) -> Row:
    row: Row = {spec.name: None for spec in _FIELDS}
    row.update(values, ID=publisher_did, semantics=semantics)
    return row


_COVERAGE_PLACEHOLDER = (1.2345678901234567e-300, 7.654321098765432e-300)
"""BAND limits written into the cached metadata and replaced by each spectrum's own: building
the metadata per coverage cost milliseconds, and an archive has as many coverages as setups."""


def _write(
    base: str, coverage: tuple[float, float] | None, rows: list[Row], *, described: bool, overflow: bool
) -> bytes:
    """The ``{links}`` document: cached metadata, this response's rows and BAND limits."""
    document = _document(base, _COVERAGE_PLACEHOLDER if coverage else None, described)
    columns = {spec.name: [row[spec.name] for row in rows] for spec in _FIELDS}
    body = document.write(columns, rows=len(rows), status="OVERFLOW" if overflow else "OK")
    if coverage is not None:
        for placeholder, value in zip(_COVERAGE_PLACEHOLDER, coverage, strict=True):
            body = body.replace(repr(placeholder).encode(), repr(value).encode())
    return body


@functools.lru_cache(maxsize=64)
def _document(base: str, coverage: tuple[float, float] | None, with_descriptor: bool) -> ResultDocument:
    """The metadata of a ``{links}`` response, built once per base URL and described coverage."""
    descriptors = (soda_descriptor(base, id_field=ID_FIELD, coverage=coverage),) if with_descriptor else ()
    return ResultDocument(
        fields=_FIELDS,
        infos=(("standardID", DATALINK_STANDARD_ID, None),),
        descriptors=descriptors,
    )


def _response_type(params: SyncParams) -> str:
    """The Content-Type a RESPONSEFORMAT asks for (DataLink 1.1 section 2.1.2, DALI 1.1 section 3.4.3).

    No value, ``votable`` and the plain VOTable type get the DataLink media type
    (DALI lets a service add parameters to a plain type); a parameterised type is
    answered with itself; ``text/xml`` with ``text/xml``.

    Raises
    ------
    UsageError
        Raised if the format is not a TABLEDATA VOTable, or is given twice.
    """
    values = params.all("responseformat")
    if len(values) > 1:
        raise UsageError("UsageFault: RESPONSEFORMAT may be given once")
    if not values or not values[0].strip():
        return DATALINK_MIME
    requested = values[0]
    bare, options = split_media_type(requested)
    if bare not in {"votable", VOTABLE_MIME, "text/xml"}:
        msg = f"UsageFault: RESPONSEFORMAT {requested!r} is not offered; use votable ({DATALINK_MIME})"
        raise UsageError(msg)
    if (
        set(options) - {"serialization", "content"}
        or options.get("serialization", "tabledata") != "tabledata"
        or options.get("content", "datalink") != "datalink"
    ):
        raise UsageError(f"UsageFault: RESPONSEFORMAT {requested!r}: only DataLink TABLEDATA VOTables are offered")
    if bare == "text/xml":
        return "text/xml"
    if bare == "votable" or not options:
        return DATALINK_MIME
    return ";".join([VOTABLE_MIME, *(f"{key}={value}" for key, value in options.items())])


def _maxrec(params: SyncParams) -> int:
    """MAXREC, bounded by :data:`MAX_LINK_ROWS` (DALI 1.1 section 3.4.4).

    Raises
    ------
    UsageError
        Raised if MAXREC is not a non-negative integer, or is given twice.
    """
    values = params.all("maxrec")
    if len(values) > 1:
        raise UsageError("UsageFault: MAXREC may be given once")
    if not values:
        return MAX_LINK_ROWS
    try:
        maxrec = int(values[0].strip())
    except ValueError:
        raise UsageError(f"UsageFault: MAXREC must be a non-negative integer, not {values[0]!r}") from None
    if maxrec < 0:
        raise UsageError(f"UsageFault: MAXREC must be a non-negative integer, not {maxrec}")
    return min(maxrec, MAX_LINK_ROWS)


async def links(request: web.Request) -> web.Response:
    """GET/POST /datalink: the ``{links}`` of every ID."""
    params = await read_sync_params(request)
    content_type = _response_type(params)
    limit = _maxrec(params)
    ids = params.all("id")
    base = base_url(request)
    records = request.app[ARCHIVE].store.get_many(ids) if ids else {}
    rows: list[Row] = []
    described: list[SpectrumRecord] = []
    taken = 0
    for publisher_did in ids:
        record = records.get(publisher_did)
        found = links_for(base, publisher_did, record)
        if len(rows) + len(found) > limit:
            break
        rows.extend(found)
        taken += 1
        if record is not None:
            described.append(record)
    # DALI 1.1 section 3.4.4: MAXREC=0 always answers with metadata and an overflow indicator.
    overflow = taken < len(ids) or limit == 0
    coverage = None
    if len({r.obs_publisher_did for r in described}) == 1:
        coverage = (described[0].em_min, described[0].em_max)
    body = await asyncio.to_thread(
        _write, base, coverage, rows, described=bool(described), overflow=overflow
    )
    # The exact media type, no charset (datalinklint checks it byte for byte): a raw header on a bytes body.
    return web.Response(body=body, headers={"Content-Type": content_type})


def _one_record(request: web.Request, params: SyncParams) -> SpectrumRecord:
    ids = params.all("id")
    if len(ids) != 1:
        raise UsageError(f"Give exactly one ID (the publisher DID of a spectrum), not {len(ids)}")
    record = request.app[ARCHIVE].store.get(ids[0])
    if record is None:
        raise NotFoundError(f"No spectrum with ID {ids[0]!r} in this archive")
    return record


async def data_file(request: web.Request) -> web.StreamResponse:
    """GET /data: the archived original file of one spectrum (``#this``)."""
    record = _one_record(request, await read_sync_params(request))
    archive = request.app[ARCHIVE]
    path = archive.file_path(record)
    # The stored name is server-made; this only guards against a corrupted record.
    if not path.resolve().is_relative_to(archive.files_dir.resolve()) or not path.is_file():
        _log.error("Stored file of %s is missing: %s", record.obs_publisher_did, path)
        raise VocloudError(f"The stored file of {record.obs_publisher_did} is missing; the operator is told")
    filename = file_stem(record.obs_publisher_did) + Path(record.file).suffix
    return web.FileResponse(
        path,
        headers={
            "Content-Type": record.access_format,
            "Content-Disposition": f'inline; filename="{filename}"',
        },
    )


async def preview(request: web.Request) -> web.StreamResponse:
    """GET /preview: the PNG plot of one spectrum (``#preview``), drawn off the event loop on first use."""
    record = _one_record(request, await read_sync_params(request))
    archive = request.app[ARCHIVE]
    try:
        path = await asyncio.to_thread(ensure_preview, archive, record)
    except (SpectrumFormatError, OSError) as e:
        _log.error("No preview of %s: %s", record.obs_publisher_did, e)
        raise VocloudError(f"The preview of {record.obs_publisher_did} cannot be drawn; the operator is told") from e
    filename = file_stem(record.obs_publisher_did) + ".png"
    return web.FileResponse(
        path,
        headers={"Content-Type": PREVIEW_MIME, "Content-Disposition": f'inline; filename="{filename}"'},
    )


def _capabilities(base: str) -> list[Capability]:
    links_capability = Capability(
        standard_id=AnyUrl(DATALINK_STANDARD_ID),
        interface=[
            ParamHTTP(
                role="std",
                version="1.1",
                access_url=[AccessURL(value=AnyUrl(f"{base}{DATALINK_PATH}"), use="base")],
                query_type=["GET", "POST"],
                result_type=DATALINK_MIME,
            )
        ],
    )
    return [links_capability, *vosi_capabilities(base, DATALINK_PATH)]


def add_routes(app: web.Application) -> None:
    """Register the DataLink service, the file and preview endpoints, and DataLink's VOSI endpoints."""
    app.router.add_get(DATALINK_PATH, links)
    app.router.add_post(DATALINK_PATH, links)
    app.router.add_get(DATA_PATH, data_file)
    app.router.add_get(PREVIEW_PATH, preview)
    add_vosi_routes(app, DATALINK_PATH, _capabilities, note="vocloud DataLink service is answering")
