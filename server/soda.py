"""SODA 1.0 spectral cutouts of archived spectra: sync at /soda, async as the ``soda`` job kind (/jobs/soda).

Parameters (names case-insensitive, GET or POST, DALI 1.1 section 3.1):

``ID``
    Publisher DID of an archived spectrum; exactly one.
``BAND``
    Wavelength interval in metres, ``low high``, ``-Inf``/``+Inf`` for open ends
    (SODA 1.0 section 3.3.4), compared with the archived wavelengths (air
    wavelengths for air-calibrated spectra). Without it, the whole spectrum.
``RESPONSEFORMAT``
    ``application/fits`` (default; a FITS binary table ``SPECTRUM`` with columns
    ``WAVELENGTH`` in Å and ``FLUX``) or ``application/x-votable+xml``.
``NORMALIZE``
    ``true`` divides the flux by a fitted continuum (an iteratively
    sigma-clipped Chebyshev series, see :mod:`.continuum`) before cutting; the
    result says how in its metadata (FITS ``CONT*`` keywords). A vocloud
    extension, declared in the service descriptor of every DataLink document.

Other SODA parameters (POS, CIRCLE, POLYGON, TIME, POL) mean nothing for a
1-D spectrum and are ignored, as DALI services ignore parameters they do not
use. Answers follow SODA 1.0 section 5: 200 with the cutout, 204 with no body
when BAND includes no pixel of the spectrum, and errors as ``text/plain``
starting with a SODA error label (``UsageError: ...``), rendered here by
:func:`soda_errors` rather than by the DALI error middleware.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from pydantic import AnyUrl
from vo_models.vodataservice.models import ParamHTTP
from vo_models.voresource.models import AccessURL, Capability

from .cutout import (
    FITS_MIME,
    RESPONSE_FORMAT_OPTIONS,
    CutoutRequest,
    CutoutUsageError,
    make_cutout,
    parse_band,
    parse_flag,
    parse_response_format,
)
from .dali import SyncParams, read_sync_params
from .errors import VocloudError
from .keys import ARCHIVE
from .links import SODA_PATH
from .service_routes import add_vosi_routes
from .spectra.readers import SpectrumFormatError
from .vosi import vosi_capabilities
from .votable import ParamSpec, ServiceDescriptor

__all__ = [
    "SODA_ASYNC_ID",
    "SODA_DESCRIPTOR_ID",
    "SODA_SYNC_ID",
    "SodaError",
    "SodaLabel",
    "add_routes",
    "normalized_url",
    "soda_descriptor",
    "soda_errors",
]

_log = logging.getLogger(__name__)

SODA_SYNC_ID = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_ASYNC_ID = "ivo://ivoa.net/std/SODA#async-1.0"

SODA_DESCRIPTOR_ID = "soda-sync"
"""XML ID of the SODA service descriptor in DataLink documents (their ``service_def``)."""

ASYNC_PATH = "/jobs/soda"
"""The job list of the ``soda`` kind: SODA's {async} resource."""

_REASON_MAX_CHARS = 200


class SodaLabel(enum.StrEnum):
    """The error labels a SODA error document starts with (SODA 1.0 section 5.2)."""

    ERROR = "Error"
    USAGE = "UsageError"
    MULTI_VALUED = "MultiValuedParamNotSupported"
    UNAVAILABLE = "ServiceUnavailable"


class SodaError(Exception):
    """A failed SODA request, sent as ``text/plain``: ``<label>: <message>``.

    Parameters
    ----------
    label
        The SODA error label.
    message
        What went wrong and what to change.
    status
        The HTTP status.
    """

    def __init__(self, label: SodaLabel, message: str, *, status: int) -> None:
        super().__init__(f"{label}: {message}")
        self.label = label
        self.message = message
        self.status = status

    @property
    def text(self) -> str:
        """The error document."""
        return f"{self.label}: {self.message}"


def _reason(text: str) -> str:
    """The error as an HTTP reason phrase: one line of printable ASCII (pyvo shows only the status line)."""
    line = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    return line if len(line) <= _REASON_MAX_CHARS else line[: _REASON_MAX_CHARS - 3] + "..."


def _error_response(error: SodaError) -> web.Response:
    return web.Response(
        status=error.status, reason=_reason(error.text), text=error.text + "\n", content_type="text/plain"
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def soda_errors(handler: Handler) -> Handler:
    """Answer every failure of a SODA handler in SODA's own form (SODA 1.0 section 5.2)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SodaError as e:
            return _error_response(e)
        except VocloudError as e:  # e.g. an unreadable request body, from the shared parameter reader
            label = SodaLabel.USAGE if e.status < 500 else SodaLabel.ERROR
            return _error_response(SodaError(label, e.message, status=e.status))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            label = SodaLabel.USAGE if e.status < 500 else SodaLabel.ERROR
            return _error_response(SodaError(label, e.reason, status=e.status))
        except Exception:  # noqa: BLE001 - the protocol boundary: a SODA client gets a SODA error, never a traceback
            _log.exception("Unexpected error answering %s %s", request.method, request.path_qs)
            message = "internal server error; the operator can find details in the log"
            return _error_response(SodaError(SodaLabel.ERROR, message, status=500))

    return wrapped


@dataclass(frozen=True, kw_only=True)
class SodaQuery:
    """A parsed SODA request."""

    publisher_did: str
    cutout: CutoutRequest


def _single(params: SyncParams, name: str) -> str | None:
    values = params.all(name)
    if len(values) > 1:
        msg = f"{name.upper()} was given {len(values)} times; this service takes one value per request"
        raise SodaError(SodaLabel.MULTI_VALUED, msg, status=400)
    return values[0] if values else None


def parse_query(params: SyncParams) -> SodaQuery:
    """The SODA query of a request's parameters.

    Raises
    ------
    SodaError
        Raised if ID is missing, a parameter is repeated, or a value is invalid.
    """
    publisher_did = _single(params, "id")
    if publisher_did is None or not publisher_did.strip():
        raise SodaError(SodaLabel.USAGE, "ID is required: the publisher DID of an archived spectrum", status=400)
    band_text = _single(params, "band")
    try:
        output, media_type = parse_response_format(_single(params, "responseformat"))
        cutout = CutoutRequest(
            band=parse_band(band_text) if band_text is not None and band_text.strip() else None,
            output=output,
            media_type=media_type,
            normalize=parse_flag(_single(params, "normalize"), name="NORMALIZE"),
        )
    except CutoutUsageError as e:
        raise SodaError(SodaLabel.USAGE, str(e), status=400) from e
    return SodaQuery(publisher_did=publisher_did, cutout=cutout)


@soda_errors
async def sync_cutout(request: web.Request) -> web.StreamResponse:
    """GET/POST /soda: the cutout of one spectrum (SODA 1.0 {sync})."""
    query = parse_query(await read_sync_params(request))
    archive = request.app[ARCHIVE]
    record = archive.store.get(query.publisher_did)
    if record is None:
        message = f"no spectrum with ID {query.publisher_did!r} in this archive"
        raise SodaError(SodaLabel.USAGE, message, status=404)
    try:
        result = await asyncio.to_thread(make_cutout, record, archive.file_path(record), query.cutout)
    except CutoutUsageError as e:
        raise SodaError(SodaLabel.USAGE, str(e), status=400) from e
    except (SpectrumFormatError, OSError) as e:
        _log.error("Stored file of %s cannot be read: %s", record.obs_publisher_did, e)
        message = f"the stored file of {record.obs_publisher_did} cannot be read; the operator is told"
        raise SodaError(SodaLabel.ERROR, message, status=500) from e
    if result is None:
        # SODA 1.0 section 5.1: no pixel in the cutout is 204 No Content, no body.
        return web.Response(status=204)
    return web.Response(
        body=result.body,
        headers={
            "Content-Type": result.content_type,
            "Content-Disposition": f'inline; filename="{result.filename}"',
        },
    )


def normalized_url(base: str, publisher_did: str) -> str:
    """URL of the continuum-normalised version of a spectrum (SODA with ``NORMALIZE=true``), FITS."""
    return f"{base}{SODA_PATH}?{urlencode({'ID': publisher_did, 'NORMALIZE': 'true'})}"


def soda_descriptor(base: str, *, id_field: str, coverage: tuple[float, float] | None) -> ServiceDescriptor:
    """The SODA sync service descriptor for DataLink documents (SODA 1.0 section 4.2).

    Parameters
    ----------
    base
        The service's public base URL.
    id_field
        XML ID of the FIELD holding the dataset identifiers (the ``ref`` of ID).
    coverage
        Wavelength range (metres) of the one spectrum described, for BAND's
        VALUES; ``None`` when the document describes several.
    """
    band = ParamSpec(
        name="BAND",
        datatype="double",
        arraysize="2",
        xtype="interval",
        unit="m",
        ucd="em.wl;stat.interval",
        description=(
            "Wavelength interval to extract, in metres (the archived wavelengths: air wavelengths for"
            " air-calibrated spectra); -Inf or +Inf for an open end"
        ),
        minimum=repr(coverage[0]) if coverage else None,
        maximum=repr(coverage[1]) if coverage else None,
    )
    return ServiceDescriptor(
        id=SODA_DESCRIPTOR_ID,
        standard_id=SODA_SYNC_ID,
        access_url=f"{base}{SODA_PATH}",
        description="Spectral cutouts (SODA 1.0 sync): a wavelength interval of the spectrum, optionally"
        " continuum-normalised, as a FITS binary table or a VOTable",
        input_params=(
            ParamSpec(
                name="ID",
                datatype="char",
                arraysize="*",
                ucd="meta.ref.url;meta.curation",
                ref=id_field,
                description="Publisher DID of the spectrum",
            ),
            band,
            ParamSpec(
                name="RESPONSEFORMAT",
                datatype="char",
                arraysize="*",
                ucd="meta.code.mime",
                description="Format of the cutout; FITS binary table by default",
                options=tuple(fmt.value for fmt, _ in RESPONSE_FORMAT_OPTIONS),
            ),
            ParamSpec(
                name="NORMALIZE",
                datatype="char",
                arraysize="*",
                ucd="meta.code",
                description=(
                    "true: divide the flux by its continuum, fitted as a Chebyshev series with iterative"
                    " sigma clipping (2 sigma below, 3 above); the method is recorded in the result"
                ),
                options=("true", "false"),
            ),
        ),
    )


def _capabilities(base: str) -> list[Capability]:
    def soda(standard_id: str, url: str) -> Capability:
        return Capability(
            standard_id=AnyUrl(standard_id),
            interface=[
                ParamHTTP(
                    role="std",
                    version="1.0",
                    access_url=[AccessURL(value=AnyUrl(url), use="base")],
                    query_type=["GET", "POST"],
                    result_type=FITS_MIME,
                )
            ],
        )

    return [
        soda(SODA_SYNC_ID, f"{base}{SODA_PATH}"),
        soda(SODA_ASYNC_ID, f"{base}{ASYNC_PATH}"),
        *vosi_capabilities(base, SODA_PATH),
    ]


def add_routes(app: web.Application) -> None:
    """Register the SODA sync service and its VOSI endpoints (async is the ``soda`` job kind)."""
    app.router.add_get(SODA_PATH, sync_cutout)
    app.router.add_post(SODA_PATH, sync_cutout)
    add_vosi_routes(app, SODA_PATH, _capabilities, note="vocloud SODA service is answering")
