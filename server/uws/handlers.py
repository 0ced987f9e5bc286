"""Thin aiohttp routes of the UWS 1.1 REST binding: parse, call the service, render."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aiohttp import web

from ..errors import UsageError
from ..keys import OWNER, SERVICE, SETTINGS
from ..kinds.spec import format_timestamp
from ..service_routes import base_url
from ..votable import VOTABLE_MIME, error_document
from .models import JobRecord
from .params import (
    RequestParams,
    parse_int_param,
    parse_phase,
    parse_timestamp_param,
    read_params,
)
from .phases import ExecutionPhase
from .render import job_document, job_list_document, parameters_document, results_document
from .service import JobService

__all__ = ["add_routes"]

XML = "text/xml"
"""Media type of UWS documents; what pyvo and TOPCAT expect."""


def add_routes(app: web.Application) -> None:
    """Register the UWS routes under ``/jobs/{kind}``."""
    job = "/jobs/{kind}/{job_id}"
    app.router.add_get("/jobs/{kind}", list_jobs)
    app.router.add_post("/jobs/{kind}", create_job)
    app.router.add_get(job, get_job)
    app.router.add_post(job, post_job)
    app.router.add_delete(job, delete_job)
    app.router.add_get(job + "/phase", get_phase)
    app.router.add_post(job + "/phase", post_phase)
    app.router.add_get(job + "/executionduration", get_execution_duration)
    app.router.add_post(job + "/executionduration", post_execution_duration)
    app.router.add_get(job + "/destruction", get_destruction)
    app.router.add_post(job + "/destruction", post_destruction)
    app.router.add_get(job + "/quote", get_quote)
    app.router.add_get(job + "/owner", get_owner)
    app.router.add_get(job + "/error", get_error)
    app.router.add_get(job + "/parameters", get_parameters)
    app.router.add_post(job + "/parameters", post_parameters)
    app.router.add_get(job + "/parameters/{name}", get_upload)
    app.router.add_get(job + "/results", get_results)
    app.router.add_get(job + "/results/{name}", get_result)


# -- helpers ---------------------------------------------------------------------


def _service(request: web.Request) -> JobService:
    return request.app[SERVICE]


def _owner(request: web.Request) -> str | None:
    return request[OWNER]


def _list_url(request: web.Request, kind: str) -> str:
    return f"{base_url(request)}/jobs/{kind}"


def _job_url(request: web.Request, job: JobRecord) -> str:
    return f"{_list_url(request, job.kind)}/{job.job_id}"


def _job(request: web.Request) -> JobRecord:
    return _service(request).get(request.match_info["kind"], request.match_info["job_id"], _owner(request))


async def _params(request: web.Request) -> RequestParams:
    settings = request.app[SETTINGS]
    return await read_params(request, upload_dir=settings.incoming_dir, max_upload=settings.max_upload)


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=XML, charset="utf-8")


def _text(value: str) -> web.Response:
    return web.Response(text=value, content_type="text/plain")


def _see_job(request: web.Request, job: JobRecord) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(_job_url(request, job))


def _only(params: RequestParams, name: str) -> str:
    value = params.pop_one(name)
    if value is None:
        msg = f"Missing parameter {name.upper()}"
        raise UsageError(msg)
    return value


# -- job list --------------------------------------------------------------------


async def list_jobs(request: web.Request) -> web.Response:
    """GET /jobs/{kind}: the caller's jobs, filtered by PHASE, AFTER and LAST."""
    kind = request.match_info["kind"]
    params = await _params(request)
    phases = [parse_phase(v) for v in params.pop("phase")]
    after_text = params.pop_one("after")
    after = parse_timestamp_param(after_text, name="AFTER") if after_text is not None else None
    last_text = params.pop_one("last")
    last = None
    if last_text is not None:
        last = parse_int_param(last_text, name="LAST")
        if last < 1:
            msg = "LAST: must be an integer greater than 0"
            raise UsageError(msg)
    if not phases:
        # UWS 1.1 section 2.2.2.1: ARCHIVED jobs are listed only when asked for.
        phases = [p for p in ExecutionPhase if p != ExecutionPhase.ARCHIVED]
    jobs = _service(request).list_jobs(kind, _owner(request), phases=phases, after=after, last=last)
    return _xml(job_list_document(jobs, list_url=_list_url(request, kind)))


async def create_job(request: web.Request) -> web.Response:
    """POST /jobs/{kind}: create a job (303 to it); PHASE=RUN starts it at once."""
    service = _service(request)
    kind = service.kind(request.match_info["kind"])
    params = await _params(request)
    try:
        phase_text = params.pop_one("phase")
        run_id = params.pop_one("runid")
        duration_text = params.pop_one("executionduration")
        destruction_text = params.pop_one("destruction")
        if phase_text is not None and phase_text.strip().upper() != "RUN":
            msg = f"PHASE: only RUN may be given when creating a job, not {phase_text!r}"
            raise UsageError(msg)
        job = await service.create(
            kind.name,
            _owner(request),
            params=params.pairs,
            uploads=params.uploads,
            run_id=run_id,
            execution_duration=None
            if duration_text is None
            else parse_int_param(duration_text, name="EXECUTIONDURATION"),
            destruction=None
            if destruction_text is None
            else parse_timestamp_param(destruction_text, name="DESTRUCTION"),
            run=phase_text is not None,
        )
    finally:
        params.discard_uploads()
    raise _see_job(request, job)


# -- one job ---------------------------------------------------------------------


async def get_job(request: web.Request) -> web.Response:
    """GET the job document; ``WAIT`` (and ``PHASE``) block until the phase changes."""
    service = _service(request)
    params = await _params(request)
    wait_text = params.pop_one("wait")
    if wait_text is None:
        job = _job(request)
    else:
        wait = parse_int_param(wait_text, name="WAIT")
        if wait < -1:
            msg = "WAIT: must be -1 (as long as the server allows) or a number of seconds"
            raise UsageError(msg)
        phase_text = params.pop_one("phase")
        phase = parse_phase(phase_text) if phase_text is not None else None
        job = await service.wait(
            request.match_info["kind"],
            request.match_info["job_id"],
            _owner(request),
            timeout=float(wait),
            phase=phase,
        )
    return _xml(job_document(job, job_url=_job_url(request, job), quote=service.quote(job)))


async def post_job(request: web.Request) -> web.Response:
    """POST to a job: ``ACTION=DELETE`` destroys it (UWS 1.1 section 2.2.3.2)."""
    job = _job(request)
    params = await _params(request)
    params.discard_uploads()
    action = _only(params, "action")
    if action.strip().upper() != "DELETE":
        msg = f"ACTION: only DELETE is supported, not {action!r}"
        raise UsageError(msg)
    await _service(request).delete(job)
    raise web.HTTPSeeOther(_list_url(request, job.kind))


async def delete_job(request: web.Request) -> web.Response:
    """DELETE a job: stop it, forget it, remove its files; 303 to the job list."""
    job = _job(request)
    await _service(request).delete(job)
    raise web.HTTPSeeOther(_list_url(request, job.kind))


async def get_phase(request: web.Request) -> web.Response:
    """GET the phase as text."""
    return _text(_job(request).phase.value)


async def post_phase(request: web.Request) -> web.Response:
    """POST ``PHASE=RUN`` or ``PHASE=ABORT``."""
    job = _job(request)
    params = await _params(request)
    params.discard_uploads()
    value = _only(params, "phase").strip().upper()
    service = _service(request)
    match value:
        case "RUN":
            service.run(job)
        case "ABORT":
            service.abort(job)
        case _:
            msg = f"PHASE: must be RUN or ABORT, not {value!r}"
            raise UsageError(msg)
    raise _see_job(request, job)


async def get_execution_duration(request: web.Request) -> web.Response:
    """GET the execution duration in seconds."""
    return _text(str(_job(request).execution_duration))


async def post_execution_duration(request: web.Request) -> web.Response:
    """POST ``EXECUTIONDURATION`` (seconds; the service may lower it)."""
    job = _job(request)
    params = await _params(request)
    params.discard_uploads()
    seconds = parse_int_param(_only(params, "executionduration"), name="EXECUTIONDURATION")
    _service(request).set_execution_duration(job, seconds)
    raise _see_job(request, job)


async def get_destruction(request: web.Request) -> web.Response:
    """GET the destruction time (ISO 8601)."""
    return _text(format_timestamp(_job(request).destruction_time))


async def post_destruction(request: web.Request) -> web.Response:
    """POST ``DESTRUCTION`` (ISO 8601; the service may bring it earlier)."""
    job = _job(request)
    params = await _params(request)
    params.discard_uploads()
    when = parse_timestamp_param(_only(params, "destruction"), name="DESTRUCTION")
    _service(request).set_destruction(job, when)
    raise _see_job(request, job)


async def get_quote(request: web.Request) -> web.Response:
    """GET the quote: an estimated completion time, or empty for "don't know"."""
    quote: datetime | None = _service(request).quote(_job(request))
    return _text("" if quote is None else format_timestamp(quote))


async def get_owner(request: web.Request) -> web.Response:
    """GET the owner (empty for anonymous jobs)."""
    return _text(_job(request).owner or "")


async def get_error(request: web.Request) -> web.Response:
    """GET the error document: a DALI error VOTable with the full message.

    TAP (and taplint) expect a VOTable here; for jobs that did not fail it
    is 404.
    """
    job = _job(request)
    if job.error is None:
        msg = f"Job {job.job_id} has no error (it is {job.phase.value})"
        raise web.HTTPNotFound(text=msg)
    detail = _service(request).error_detail(job)
    message = job.error.message if not detail else f"{job.error.message}\n\n{detail}"
    return web.Response(body=error_document(message), content_type=VOTABLE_MIME)


async def get_parameters(request: web.Request) -> web.Response:
    """GET the parameter list."""
    job = _job(request)
    return _xml(parameters_document(job, job_url=_job_url(request, job)))


async def post_parameters(request: web.Request) -> web.Response:
    """POST new parameter values to a PENDING job."""
    job = _job(request)
    params = await _params(request)
    try:
        await _service(request).update_parameters(job, params=params.pairs, uploads=params.uploads)
    finally:
        params.discard_uploads()
    raise _see_job(request, job)


async def get_upload(request: web.Request) -> web.StreamResponse:
    """GET the stored copy of an uploaded parameter."""
    job = _job(request)
    path: Path = _service(request).upload_path(job, request.match_info["name"])
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def get_results(request: web.Request) -> web.Response:
    """GET the result list."""
    job = _job(request)
    return _xml(results_document(job, job_url=_job_url(request, job)))


async def get_result(request: web.Request) -> web.StreamResponse:
    """GET one result file, with its declared media type."""
    job = _job(request)
    result, path = _service(request).result_path(job, request.match_info["name"])
    return web.FileResponse(path, headers={"Content-Type": result.mime_type})
