"""Every error leaves as a valid DALI error VOTable with a 4xx status, never a traceback."""

from pathlib import Path

import astropy.io.votable
import pytest
from lxml import etree

from tests.support.uws import dali_error_message
from vocloud.server.votable import error_document

VOTABLE_XSD = Path(astropy.io.votable.__file__).parent / "data" / "VOTable.v1.4.xsd"


def test_error_document_is_schema_valid_and_escapes_the_message():
    body = error_document("bad <input> & 'quotes'")
    schema = etree.XMLSchema(etree.parse(str(VOTABLE_XSD)))
    document = etree.fromstring(body)
    assert schema.validate(document), schema.error_log
    assert dali_error_message(body) == "bad <input> & 'quotes'"
    assert document.get("version") == "1.4"


async def test_unknown_path_is_404_votable(client):
    response = await client.get("/no/such/thing")
    assert response.status == 404
    assert response.content_type == "application/x-votable+xml"
    assert "/no/such/thing" in dali_error_message(await response.read())


async def test_wrong_method_is_405_votable(client):
    response = await client.put("/jobs/sleep", data=b"x")
    assert response.status == 405
    assert "PUT" in dali_error_message(await response.read())


async def test_garbage_form_body_is_a_clear_error(client):
    response = await client.post(
        "/jobs/sleep",
        data=b"\xff\xfe%%%=&&&",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert response.status in (303, 400)
    if response.status == 400:
        dali_error_message(await response.read())


async def test_oversize_form_body_is_413(make_client):
    client = await make_client(max_upload=4096)
    response = await client.post("/jobs/sleep", data={"label": "x" * 50_000}, allow_redirects=False)
    assert response.status == 413
    assert "limit" in dali_error_message(await response.read())


@pytest.mark.parametrize("path", ["/ssa", "/datalink", "/jobs/sleep"])
async def test_malformed_multipart_body_is_a_dali_error_on_every_service(client, path):
    response = await client.post(
        path,
        data=b"--XYZ\r\nnot a header block",
        headers={"Content-Type": "multipart/form-data; boundary=XYZ"},
        allow_redirects=False,
    )
    assert response.status == 400
    assert "body" in dali_error_message(await response.read())


async def test_malformed_multipart_body_is_a_soda_usage_error(client):
    response = await client.post(
        "/soda", data=b"--XYZ\r\nnot a header block", headers={"Content-Type": "multipart/form-data; boundary=XYZ"}
    )
    assert response.status == 400
    assert (await response.text()).startswith("UsageError: ")
