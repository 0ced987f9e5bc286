"""The ``soda`` job kind: SODA 1.0 {async} spectral cutouts through the UWS engine (/jobs/soda).

Declaration and runner in one module: the runner needs only :mod:`.cutout`,
which the server imports anyway for /soda, and nothing of the web stack, so
worker processes import it on their own. The job reads the archive from
``context.server.archive_dir``, which the server fills in; no path comes from
a request.

Parameters are those of /soda (see :mod:`.soda`): ``ID``, ``BAND``,
``RESPONSEFORMAT``, ``NORMALIZE``. The result ``result`` is the cutout, served
with the media type of the format asked for; when BAND includes no pixel of
the spectrum, the job still completes and ``result`` is a ``text/plain``
document starting with a SODA error label, as SODA 1.0 section 6 asks of
{async} results. Invalid values and unknown IDs fail the job with the same
``UsageError: ...`` messages /soda gives.
"""

from __future__ import annotations

from typing import Any

from .archive.service import Archive
from .cutout import (
    FITS_MIME,
    CutoutRequest,
    CutoutUsageError,
    make_cutout,
    parse_band,
    parse_response_format,
)
from .kinds import JobContext, JobKind, JobUsageError, ParamSpec, ParamType, ResultSpec

__all__ = ["SODA_KIND", "run_soda"]

SODA_KIND = JobKind(
    name="soda",
    title="Spectral cutout (SODA 1.0 async)",
    description=(
        "Cuts a wavelength interval out of an archived spectrum, optionally continuum-normalised, as a FITS"
        " binary table or a VOTable: the {async} resource of the SODA service at /soda, with the same"
        " parameters."
    ),
    runner="vocloud.server.soda_job:run_soda",
    parameters=(
        ParamSpec(
            name="id", type=ParamType.STRING, required=True, max_length=1024,
            description="Publisher DID of an archived spectrum",
        ),
        ParamSpec(
            name="band", type=ParamType.STRING, unit="m", max_length=200,
            description="Wavelength interval in metres, 'low high'; -Inf or +Inf for an open end",
        ),
        ParamSpec(
            name="responseformat", type=ParamType.STRING, max_length=200,
            description="application/fits (default) or application/x-votable+xml",
        ),
        ParamSpec(
            name="normalize", type=ParamType.BOOLEAN, default=False,
            description="Divide the flux by its fitted continuum (iteratively sigma-clipped Chebyshev series)",
        ),
    ),
    results=(
        ResultSpec(
            name="result",
            mime_type=FITS_MIME,
            description="The cutout as RESPONSEFORMAT asks (FITS by default); text/plain 'UsageError: ...' when"
            " BAND includes no pixel of the spectrum",
        ),
    ),
)  # fmt: skip


def run_soda(params: dict[str, Any], context: JobContext) -> None:
    """Cut the spectrum ``params["id"]`` as asked and write the result."""
    if context.server is None:
        msg = "UsageError: this server has no archive to cut spectra from"
        raise JobUsageError(msg)
    band_text = params.get("band")
    try:
        output, media_type = parse_response_format(params.get("responseformat"))
        request = CutoutRequest(
            band=parse_band(band_text) if band_text else None,
            output=output,
            media_type=media_type,
            normalize=bool(params.get("normalize", False)),
        )
    except CutoutUsageError as e:
        raise JobUsageError(f"UsageError: {e}") from None
    publisher_did = str(params["id"])
    archive = Archive(context.server.archive_dir)
    try:
        record = archive.store.get(publisher_did)
        if record is None:
            msg = f"UsageError: no spectrum with ID {publisher_did!r} in this archive"
            raise JobUsageError(msg)
        context.progress(0.1, "Reading the spectrum")
        try:
            result = make_cutout(record, archive.file_path(record), request)
        except CutoutUsageError as e:
            raise JobUsageError(f"UsageError: {e}") from None
    finally:
        archive.close()
    if result is None:
        message = (
            f"UsageError: BAND {band_text} includes no pixel of {publisher_did},"
            f" which covers {record.em_min:g} to {record.em_max:g} m\n"
        )
        context.result_path("result", mime_type="text/plain").write_text(message, encoding="utf-8")
    else:
        context.result_path("result", mime_type=result.content_type).write_bytes(result.body)
    context.progress(1.0, f"{result.n_points if result else 0} points written")
