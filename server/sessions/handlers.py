"""Thin aiohttp routes of ``/sessions``: parse, call the session service, render.

``POST /sessions`` answers 303 to the new session; ``POST
/sessions/{id}/labels`` answers 200 with a small JSON report (how many labels
were stored, how many spectra are labelled now, and the URL of the iteration
job the post started, or null), so a script learns at once whether its batch
started the next iteration. Another owner's session is 404 everywhere.

A label post may carry ``Idempotency-Key: "<uuid4>"`` (IETF httpapi
idempotency-key draft; an RFC 8941 string, a bare token is accepted too). The
first post with a key is applied; a repeat with the same labels gets the first
answer again with ``Idempotent-Replayed: true`` and stores nothing; the same key
with other labels is refused 422, and a repeat while the first is still being
handled 409. Keys are per session and per owner and kept as long as the
session, so a client may retry a post whose answer it lost at any later time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from ..errors import PayloadTooLargeError, UsageError
from ..keys import OWNER, SERVICE, SESSIONS, SETTINGS
from ..service_routes import base_url
from ..uws.params import RequestParams, read_params
from ..votable import VOTABLE_MIME
from .labels_input import IDEMPOTENCY_HEADER, REPLAYED_HEADER, format_for, idempotency_key, parse_labels, sniff
from .models import NewLabel, SessionRecord
from .params import parse_session_request
from .render import (
    label_history_document,
    label_post_document,
    session_document,
    session_list_document,
    session_url,
)
from .service import SessionService
from .store import SessionStore

__all__ = ["DATABASE_NAME", "add_routes", "session_service", "setup"]

DATABASE_NAME = "sessions.sqlite"
"""The sessions' database file in the data directory."""

_LABELS_FIELD = "labels"
"""The form field (file or text) carrying labels."""

_FORMS = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def setup(app: web.Application) -> None:
    """Register the session service's ``cleanup_ctx`` and the routes; call after the job service is registered."""
    app.cleanup_ctx.append(session_service)
    add_routes(app)


def add_routes(app: web.Application) -> None:
    """Register the session routes."""
    one = "/sessions/{session_id}"
    app.router.add_get("/sessions", list_sessions)
    app.router.add_post("/sessions", create_session)
    app.router.add_get(one, get_session)
    app.router.add_delete(one, delete_session)
    app.router.add_post(one + "/iterations", start_iteration)
    app.router.add_get(one + "/labels", get_labels)
    app.router.add_post(one + "/labels", post_labels)


async def session_service(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` of the session service; registered after the job service, which it needs running."""
    settings = app[SETTINGS]
    store = SessionStore(settings.data_dir / DATABASE_NAME)
    service = SessionService(
        store=store, jobs=app[SERVICE], archive_dir=settings.archive_dir, incoming_dir=settings.incoming_dir
    )
    try:
        await service.start()
        app[SESSIONS] = service
        yield
    finally:
        await service.close()
        store.close()


# -- helpers ------------------------------------------------------------------------------


def _service(request: web.Request) -> SessionService:
    return request.app[SESSIONS]


def _session(request: web.Request) -> SessionRecord:
    return _service(request).get(request.match_info["session_id"], request[OWNER])


async def _params(request: web.Request) -> RequestParams:
    settings = request.app[SETTINGS]
    return await read_params(request, upload_dir=settings.incoming_dir, max_upload=settings.max_upload)


async def _form_labels(params: RequestParams) -> list[NewLabel] | None:
    """Labels from the form's ``labels`` field (a file, or text), their format sniffed; None if absent.

    Raises
    ------
    UsageError
        Raised if another file is uploaded, ``labels`` is given twice, or the labels cannot be read.
    """
    others = sorted({u.name for u in params.uploads if u.name != _LABELS_FIELD})
    if others:
        msg = f"Only {_LABELS_FIELD!r} may be uploaded as a file, not {others}"
        raise UsageError(msg)
    files = [u for u in params.uploads if u.name == _LABELS_FIELD]
    texts = [t for t in params.pop(_LABELS_FIELD) if t.strip()]
    if len(files) + len(texts) > 1:
        msg = f"{_LABELS_FIELD}: given more than once"
        raise UsageError(msg)
    if files:
        data = await asyncio.to_thread(files[0].path.read_bytes)
    elif texts:
        data = texts[0].encode()
    else:
        return None
    return await asyncio.to_thread(parse_labels, data, sniff(data))


async def _body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].max_upload
    if request.content_length is not None and request.content_length > limit:
        msg = f"The request body is larger than the limit of {limit} bytes"
        raise PayloadTooLargeError(msg)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        msg = f"The request body is larger than the limit of {limit} bytes"
        raise PayloadTooLargeError(msg) from e


# -- sessions ------------------------------------------------------------------------------


async def list_sessions(request: web.Request) -> web.Response:
    """GET /sessions: a summary of each of the caller's sessions (JSON)."""
    views = _service(request).list_sessions(request[OWNER])
    return web.json_response(session_list_document(views, base=base_url(request)))


async def create_session(request: web.Request) -> web.Response:
    """POST /sessions: create a session and start its first iteration; 303 to the session."""
    params = await _params(request)
    try:
        try:
            labels = await _form_labels(params)
        except UsageError as e:
            raise type(e)(f"{_LABELS_FIELD}: {e.message}") from e
        session_request = parse_session_request(params.pairs, labels=labels or ())
        record = await _service(request).create(session_request, request[OWNER])
    finally:
        params.discard_uploads()
    raise web.HTTPSeeOther(session_url(base_url(request), record.session_id))


async def get_session(request: web.Request) -> web.Response:
    """GET /sessions/{id}: the session document (JSON, ``schemas/session.schema.json``)."""
    view = _service(request).view(_session(request))
    return web.json_response(session_document(view, base=base_url(request)))


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /sessions/{id}: forget the session (its jobs stay); 303 to the session list."""
    await _service(request).delete(_session(request))
    raise web.HTTPSeeOther(f"{base_url(request)}/sessions")


async def start_iteration(request: web.Request) -> web.Response:
    """POST /sessions/{id}/iterations: start the next iteration now (409 while one runs); 303 to the session."""
    record = _session(request)
    await _service(request).start_next(record)
    raise web.HTTPSeeOther(session_url(base_url(request), record.session_id))


# -- labels --------------------------------------------------------------------------------


async def get_labels(request: web.Request) -> web.Response:
    """GET /sessions/{id}/labels: the full label history as a VOTable with its MIVOT mapping."""
    record = _session(request)
    entries = await _service(request).label_history(record)
    body = await asyncio.to_thread(label_history_document, record, entries, base=base_url(request))
    return web.Response(body=body, content_type=VOTABLE_MIME)


async def post_labels(request: web.Request) -> web.Response:
    """POST /sessions/{id}/labels: add labels (CSV, JSON, VOTable, or a form's ``labels`` file), all or nothing."""
    record = _session(request)
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
    if request.content_type in _FORMS:
        params = await _params(request)
        try:
            labels = await _form_labels(params)
        finally:
            params.discard_uploads()
        if labels is None:
            msg = (
                f"No labels: send a form field {_LABELS_FIELD!r} (a CSV, JSON or VOTable file), or the labels"
                " themselves as the body with Content-Type text/csv, application/json or application/x-votable+xml"
            )
            raise UsageError(msg)
    else:
        label_format = format_for(request.content_type)
        data = await _body(request)
        labels = await asyncio.to_thread(parse_labels, data, label_format)
    post = await _service(request).post_labels(record, labels, request[OWNER], key=key)
    return web.json_response(
        label_post_document(
            accepted=post.accepted,
            labelled=post.labelled,
            next_job_id=post.next_job_id,
            session_id=record.session_id,
            base=base_url(request),
        ),
        headers={REPLAYED_HEADER: "true"} if post.replayed else None,
    )
