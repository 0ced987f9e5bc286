"""The ingest job kind: every source reported, duplicates and bad files harmless, nothing half-written."""

import io
import tarfile
import zipfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from tests.support.uws import create, wait_for_phase
from vocloud.server.archive.ingest_job import _votable_sources
from vocloud.server.keys import ARCHIVE
from vocloud.server.spectra.demo import generate_demo_archive


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo archive (the generator is seeded, so the files are always the same)."""
    out = tmp_path_factory.mktemp("demo")
    generate_demo_archive(out, count=12, seed=5)
    return out


def _spectra(demo: Path) -> list[Path]:
    return sorted((demo / "spectra").glob("*.fit"))


async def _report(client, path):
    """Run to completion and return the report as (source, status, did, message) rows."""
    doc = await wait_for_phase(client, path, "COMPLETED", timeout=60)
    body = await (await client.get(f"{path}/results/result")).read()
    root = etree.fromstring(body)
    rows = [[td.text or "" for td in tr.iterfind("{*}TD")] for tr in root.iter("{*}TR")]
    return doc, rows


def _upload_form(files: list[tuple[str, bytes]], **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, content in files:
        form.add_field("file", content, filename=name, content_type="application/octet-stream")
    form.add_field("PHASE", "RUN")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def test_uploaded_files_are_archived_once_and_bad_ones_reported(client, demo):
    good = [(p.name, p.read_bytes()) for p in _spectra(demo)[:3]]
    form = _upload_form([*good, ("broken.fits", b"SIMPLE  = T\nnot really a FITS file"), good[0]])
    path = await create(client, "ingest", data=form)
    doc, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["added", "added", "added", "failed", "duplicate"]
    assert "uploaded file 4" in rows[3][0] and rows[3][3]
    archive = client.server.app[ARCHIVE]
    assert archive.store.count() == 3
    record = archive.store.get(rows[0][2])
    assert record is not None and record.obs_publisher_did.startswith("ivo://vocloud.demo/")
    assert archive.file_path(record).read_bytes() == good[0][1]
    assert record.access_format == "application/fits"
    assert doc.progress is not None and doc.progress[1] == "3 added, 1 duplicate, 1 failed"

    # The same files again: all duplicates, nothing changes.
    path = await create(client, "ingest", data=_upload_form(good))
    _, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["duplicate"] * 3
    assert archive.store.count() == 3


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
async def test_bundles_are_unpacked_safely(client, demo, kind):
    buffer = io.BytesIO()
    files = _spectra(demo)[:4]
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as bundle:
            for p in files:
                bundle.write(p, f"../../evil/{p.name}")
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
            for p in files:
                bundle.add(p, f"/abs/{p.name}")
    form = aiohttp.FormData()
    form.add_field("bundle", buffer.getvalue(), filename=f"spectra.{kind}")
    form.add_field("PHASE", "RUN")
    path = await create(client, "ingest", data=form)
    _, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["added"] * 4
    assert rows[0][0].startswith("bundle:")
    assert client.server.app[ARCHIVE].store.count() == 4


async def test_urls_are_fetched_and_failures_reported(client, demo, aiohttp_server):
    files = {p.name: p.read_bytes() for p in _spectra(demo)[:2]}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type="application/fits")

    remote = web.Application()
    remote.router.add_get("/spectra/{name}", serve)
    server = await aiohttp_server(remote)
    urls = [str(server.make_url(f"/spectra/{name}")) for name in files] + [
        str(server.make_url("/spectra/missing.fit")),
        "file:///etc/passwd",
    ]
    path = await create(client, "ingest", data=[("url", u) for u in urls] + [("PHASE", "RUN")])
    _, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["added", "added", "failed", "failed"]
    assert "404" in rows[2][3]
    assert "Only http and https" in rows[3][3]


async def test_directory_only_inside_an_allowed_root(make_client, demo, tmp_path):
    client = await make_client(ingest_roots=(demo,))
    path = await create(client, "ingest", directory=str(demo / "spectra"), phase="RUN")
    _, rows = await _report(client, path)
    assert len(rows) == len(_spectra(demo))
    assert {r[1] for r in rows} == {"added"}
    assert rows[0][0].startswith("spectra/")

    outside = await create(client, "ingest", directory=str(tmp_path), phase="RUN")
    doc = await wait_for_phase(client, outside, "ERROR")
    assert "ingest_roots" in doc.error_message
    escape = await create(client, "ingest", directory=str(demo / "spectra" / ".." / ".."), phase="RUN")
    assert "ingest_roots" in (await wait_for_phase(client, escape, "ERROR")).error_message


async def test_nothing_to_ingest_is_a_usage_error(client):
    path = await create(client, "ingest", phase="RUN")
    doc = await wait_for_phase(client, path, "ERROR")
    assert doc.error_type == "fatal"
    assert "Nothing to ingest" in doc.error_message


def test_real_ondrejov_ssa_response_lists_its_spectra(shared_data):
    """The Ondřejov response that astropy rejects (arraysize="m") still yields its 30 access references."""
    data = (shared_data / "vo-responses" / "ondrejov-ccd700-ssa" / "ssa-v509cas-with-datalink.xml").read_bytes()
    sources = list(_votable_sources(data, origin="test"))
    assert len(sources) == 30
    assert all(s.label.startswith("http://voarchive.asu.cas.cz/") for s in sources)


async def test_all_real_fits_files_ingest(make_client, shared_data):
    client = await make_client(ingest_roots=(shared_data,))
    path = await create(client, "ingest", directory=str(shared_data), phase="RUN")
    _, rows = await _report(client, path)
    fits_rows = [r for r in rows if r[0].lower().endswith((".fits", ".fit"))]
    assert len(fits_rows) == 244
    failed = [r for r in fits_rows if r[1] == "failed"]
    assert failed == []
    archive = client.server.app[ARCHIVE]
    assert archive.store.count() == len({r[2] for r in rows if r[1] in ("added", "duplicate")})


async def _remote_archive(make_settings, aiohttp_server, tmp_path):
    """A second vocloud with a small demo archive, standing in for a remote SSA/DataLink service."""
    from tests.support.kinds import ALL
    from vocloud.server.app import create_app

    settings = make_settings(data_dir=tmp_path / "remote", demo_spectra=8)
    return await aiohttp_server(create_app(settings, kinds=ALL))


async def test_remote_ssa_query_is_staged_by_accref(client, make_settings, aiohttp_server, tmp_path):
    remote = await _remote_archive(make_settings, aiohttp_server, tmp_path)
    path = await create(
        client, "ingest", ssa_url=str(remote.make_url("/ssa")), ssa_query="POS=0,0&SIZE=360&MAXREC=5", phase="RUN"
    )
    _, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["added"] * 5
    assert all("/data?ID=" in r[0] for r in rows)
    local, far = client.server.app[ARCHIVE], remote.app[ARCHIVE]
    for row in rows:
        mine, theirs = local.store.get(row[2]), far.store.get(row[2])
        assert local.file_path(mine).read_bytes() == far.file_path(theirs).read_bytes()


async def test_votable_without_accref_is_staged_through_datalink(client, make_settings, aiohttp_server, tmp_path):
    remote = await _remote_archive(make_settings, aiohttp_server, tmp_path)
    query = {"REQUEST": "queryData", "MAXREC": "3"}
    async with aiohttp.ClientSession() as http, http.get(remote.make_url("/ssa"), params=query) as response:
        body = await response.read()
    # Drop the access reference column, as a service that only offers DataLink would.
    root = etree.fromstring(body)
    table = root.find(".//{*}TABLE")
    fields = list(table.iterfind("{*}FIELD"))
    index = next(i for i, f in enumerate(fields) if f.get("utype", "").lower() == "ssa:access.reference")
    table.remove(fields[index])
    for tr in table.iter("{*}TR"):
        tr.remove(list(tr)[index])
    form = aiohttp.FormData()
    form.add_field("votable", etree.tostring(root), filename="ssa.xml")
    form.add_field("PHASE", "RUN")
    path = await create(client, "ingest", data=form)
    _, rows = await _report(client, path)
    assert [r[1] for r in rows] == ["added"] * 3
    assert all(r[0].startswith("ivo://vocloud.demo/") for r in rows)


async def test_ssa_error_response_is_a_usage_error(client, make_settings, aiohttp_server, tmp_path):
    remote = await _remote_archive(make_settings, aiohttp_server, tmp_path)
    path = await create(client, "ingest", ssa_url=str(remote.make_url("/ssa")), ssa_query="POS=1,91", phase="RUN")
    doc = await wait_for_phase(client, path, "ERROR")
    assert "POS" in doc.error_message
