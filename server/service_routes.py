"""Service-level routes: the landing page, the description of job kinds and VOSI for /jobs."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from vo_models.voresource.models import Capability

from .keys import ARCHIVE, SERVICE, SETTINGS, STARTED
from .kinds.describe import kinds_json, kinds_xml
from .vosi import availability_document, capabilities_document, uws_capabilities

__all__ = ["CapabilitiesFor", "add_routes", "add_vosi_routes", "base_url"]


CapabilitiesFor = Callable[[str], list[Capability]]
"""Builds a service's capabilities from the public base URL."""


def add_routes(app: web.Application) -> None:
    """Register ``/``, ``/jobs`` and the job service's VOSI endpoints."""
    app.router.add_get("/", landing)
    app.router.add_get("/jobs", describe_kinds)
    add_vosi_routes(
        app, "/jobs", lambda base: uws_capabilities(base, "/jobs"), note="vocloud job service is accepting jobs"
    )


def add_vosi_routes(app: web.Application, path: str, capabilities: CapabilitiesFor, *, note: str) -> None:
    """Register VOSI ``{path}/availability`` and ``{path}/capabilities`` for one service."""

    async def availability(request: web.Request) -> web.Response:
        up_since = datetime.fromtimestamp(request.app[STARTED], tz=UTC)
        return _xml(availability_document(up_since=up_since, note=note))

    async def capabilities_handler(request: web.Request) -> web.Response:
        return _xml(capabilities_document(capabilities(base_url(request))))

    app.router.add_get(f"{path}/availability", availability)
    app.router.add_get(f"{path}/capabilities", capabilities_handler)


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


def base_url(request: web.Request) -> str:
    """The service's public base URL: configured, or taken from the request."""
    configured = request.app[SETTINGS].base_url
    return configured.rstrip("/") if configured else str(request.url.origin())


def _wants_xml(request: web.Request) -> bool:
    fmt = next((v for k, v in request.query.items() if k.lower() == "format"), "").lower()
    if fmt:
        return fmt in {"xml", "text/xml", "application/xml"}
    accept = request.headers.get("Accept", "")
    return ("xml" in accept) and "json" not in accept


async def describe_kinds(request: web.Request) -> web.Response:
    """GET /jobs: every job kind with its parameters and results (JSON, or XML when asked)."""
    kinds = list(request.app[SERVICE].kinds)
    base = base_url(request)
    if _wants_xml(request):
        return web.Response(body=kinds_xml(kinds, base=base), content_type="text/xml", charset="utf-8")
    return web.json_response(kinds_json(kinds, base=base))


async def landing(request: web.Request) -> web.Response:
    """GET /: what the service offers and how to use it from TOPCAT and pyvo."""
    base = base_url(request)
    kinds = list(request.app[SERVICE].kinds)
    esc = html.escape
    rows = "\n".join(
        f'<li><a href="{esc(base)}/jobs/{esc(k.name)}"><code>/jobs/{esc(k.name)}</code></a>: {esc(k.title)}</li>'
        for k in kinds
    ) or "<li>No job kinds are installed yet.</li>"
    auth_note = (
        "<p>This server asks for a user name and password (HTTP Basic).</p>"
        if request.app[SETTINGS].auth == "basic"
        else ""
    )
    count = request.app[ARCHIVE].store.count()
    b = esc(base)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vocloud</title></head>
<body>
<h1>vocloud</h1>
<p>Machine learning on archives of 1-D astronomical spectra, served through
Virtual Observatory protocols.</p>
{auth_note}
<h2>The spectra archive ({count} spectra)</h2>
<ul>
<li>SSAP 1.1: <a href="{b}/ssa?REQUEST=queryData&amp;FORMAT=METADATA"><code>{b}/ssa</code></a>
(<a href="{b}/ssa/capabilities">capabilities</a>, <a href="{b}/ssa/availability">availability</a>)</li>
<li>DataLink 1.1: <code>{b}/datalink?ID=...</code>
(<a href="{b}/datalink/capabilities">capabilities</a>, <a href="{b}/datalink/availability">availability</a>)</li>
<li>SODA 1.0 cutouts: <code>{b}/soda?ID=...&amp;BAND=...</code>
(<a href="{b}/soda/capabilities">capabilities</a>, <a href="{b}/soda/availability">availability</a>)</li>
</ul>
<p>Add spectra with <code>vocloud ingest FILES_OR_DIRS_OR_URLS --server {b}</code> or the
<code>ingest</code> job below.</p>
<h2>Asynchronous jobs (IVOA UWS 1.1)</h2>
<ul>
{rows}
</ul>
<p>Every job list follows UWS 1.1: create with <code>POST</code>, start with
<code>PHASE=RUN</code>, block with <code>?WAIT=-1</code>, fetch
<code>/results/result</code>. Parameters of every kind:
<a href="{b}/jobs">{b}/jobs</a> (JSON; add <code>?FORMAT=xml</code> for XML).
VOSI: <a href="{b}/jobs/capabilities">capabilities</a>,
<a href="{b}/jobs/availability">availability</a>.</p>
<h2>From TOPCAT</h2>
<p><em>VO &gt; SSA Query</em>, then enter <code>{b}/ssa</code> as the SSA URL and search
around a position (the demo archive covers the northern sky). Job results are VOTables:
load a result URL with <em>File &gt; Load Table</em>.</p>
<h2>From pyvo</h2>
<pre>import pyvo
from astropy.coordinates import SkyCoord
ssa = pyvo.dal.SSAService("{b}/ssa")
results = ssa.search(pos=SkyCoord(180, 45, unit="deg"), diameter=20)
record = results[0]
links = record.getdatalink()          # #this, #preview, #cutout (SODA)
print(record.acref, links.bysemantics("#preview", include_narrower=False)[0].access_url)</pre>
<pre>import requests, pyvo
r = requests.post("{b}/jobs/KIND", data={{"PHASE": "RUN"}})
job = pyvo.dal.AsyncTAPJob(r.url)
job.wait(); print(job.phase, job.result_uri)</pre>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")
