"""Uploaded parameters (UWS 1.1 section 2.2.3.1.1): stored under server-chosen names, bounded in size."""

import aiohttp

from tests.support.uws import create, dali_error_message, get_job, parse_job_list, wait_for_phase


def _form(content: bytes, *, filename: str = "table.csv", name: str = "table", run: bool = True):
    form = aiohttp.FormData()
    form.add_field(name, content, filename=filename, content_type="text/csv")
    if run:
        form.add_field("PHASE", "RUN")
    return form


async def test_upload_runs_and_is_shown_by_reference(client):
    path = await create(client, "upload", data=_form(b"id,label\n1,a\n2,b\n"))
    doc = await wait_for_phase(client, path, "COMPLETED")
    assert doc.parameters == [("table", f"{client.make_url(path)}/parameters/table", True)]
    assert await (await client.get(f"{path}/results/result")).text() == "3\n"
    stored = await client.get(f"{path}/parameters/table")
    assert stored.status == 200
    assert await stored.read() == b"id,label\n1,a\n2,b\n"


async def test_client_file_name_is_never_used_as_a_path(client, data_dir, tmp_path):
    path = await create(client, "upload", data=_form(b"x\n", filename="../../../../escape.txt"))
    await wait_for_phase(client, path, "COMPLETED")
    job_dir = data_dir / "jobs" / path.rsplit("/", 1)[1]
    assert (job_dir / "uploads" / "table").read_bytes() == b"x\n"
    assert not list(tmp_path.rglob("escape.txt"))


async def test_oversize_upload_is_413_and_stores_nothing(make_client, data_dir):
    client = await make_client(max_upload=4096)
    response = await client.post("/jobs/upload", data=_form(b"x" * 20_000), allow_redirects=False)
    assert response.status == 413
    assert "larger than the limit" in dali_error_message(await response.read())
    assert parse_job_list(await (await client.get("/jobs/upload")).read()) == []
    incoming = data_dir / "uploads-incoming"
    assert not incoming.exists() or not list(incoming.iterdir())


async def test_upload_for_a_non_file_parameter_is_refused(client, data_dir):
    response = await client.post("/jobs/sleep", data=_form(b"1", name="seconds"), allow_redirects=False)
    assert response.status == 400
    assert "seconds" in dali_error_message(await response.read())
    assert not list((data_dir / "uploads-incoming").iterdir())


async def test_upload_for_an_undeclared_name_is_ignored_and_discarded(client, data_dir):
    form = _form(b"whatever", name="other", run=False)
    path = await create(client, "sleep", data=form)
    assert (await get_job(client, path)).parameters == []
    assert not list((data_dir / "uploads-incoming").iterdir())


async def test_missing_upload_is_named_when_running(client):
    response = await client.post("/jobs/upload", data={"PHASE": "RUN"}, allow_redirects=False)
    assert response.status == 400
    assert "table" in dali_error_message(await response.read())


async def test_parameter_that_was_not_uploaded_is_404(client):
    path = await create(client, "sleep", seconds=1)
    response = await client.get(f"{path}/parameters/seconds")
    assert response.status == 404


async def test_malformed_multipart_is_400(client):
    response = await client.post(
        "/jobs/upload",
        data=b"--XYZ\r\nnot a header block",
        headers={"Content-Type": "multipart/form-data; boundary=XYZ"},
        allow_redirects=False,
    )
    assert 400 <= response.status < 500
    dali_error_message(await response.read())


async def test_uploads_left_by_a_crash_are_removed_at_start(make_settings, aiohttp_client):
    from tests.support.kinds import ALL
    from vocloud.server.app import create_app

    settings = make_settings()
    settings.incoming_dir.mkdir(parents=True)
    stale = settings.incoming_dir / "upload-interrupted"
    stale.write_bytes(b"half an upload")
    client = await aiohttp_client(create_app(settings, kinds=ALL))
    assert (await client.get("/jobs/upload")).status == 200
    assert not stale.exists()


async def test_repeatable_file_parameter_keeps_every_upload_in_order(client):
    form = _form(b"a\n")
    for content in (b"1\n2\n", b"x\ny\nz\n"):
        form.add_field("more", content, filename="same-name.txt", content_type="text/plain")
    path = await create(client, "upload", data=form)
    doc = await wait_for_phase(client, path, "COMPLETED")
    base = f"{client.make_url(path)}/parameters"
    assert doc.parameters == [
        ("table", f"{base}/table", True),
        ("more", f"{base}/more-1", True),
        ("more", f"{base}/more-2", True),
    ]
    assert await (await client.get(f"{path}/results/result")).text() == "1\n2\n3\n"
    assert await (await client.get(f"{path}/parameters/more-2")).read() == b"x\ny\nz\n"
    assert (await client.get(f"{path}/parameters/more")).status == 404


async def test_single_file_parameter_uploaded_twice_is_refused(client, data_dir):
    form = _form(b"a\n")
    form.add_field("table", b"b\n", filename="b.csv", content_type="text/csv")
    response = await client.post("/jobs/upload", data=form, allow_redirects=False)
    assert response.status == 400
    assert "more than once" in dali_error_message(await response.read())
    assert not list((data_dir / "uploads-incoming").iterdir())
