"""GET /jobs describes every job kind, in JSON and XML, valid against schemas/."""

import json
from pathlib import Path

import jsonschema
from lxml import etree

from tests.support.kinds import ALL

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


async def test_json_description_is_valid_and_complete(client):
    response = await client.get("/jobs")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    schema = json.loads((SCHEMAS / "job-kinds.schema.json").read_text())
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    names = [k["name"] for k in body["kinds"]]
    # Built-in kinds (entry points) come first, then those the application was given.
    assert "ingest" in names
    assert names[-len(ALL):] == [k.name for k in ALL]
    by_name = {k["name"]: k for k in body["kinds"]}
    sleep = by_name["sleep"]
    assert sleep["url"].endswith("/jobs/sleep")
    seconds = next(p for p in sleep["parameters"] if p["name"] == "seconds")
    assert seconds == {
        "name": "seconds", "type": "real", "description": "How long to sleep", "required": False,
        "multiple": False, "unit": "s", "default": "0.0", "minimum": 0.0, "maximum": 3600.0,
    }
    colour = next(p for p in sleep["parameters"] if p["name"] == "colour")
    assert colour["choices"] == ["red", "blue"]
    assert by_name["fail"]["parameters"][0]["required"] is True
    assert by_name["upload"]["parameters"][0]["type"] == "file"


async def test_xml_description_validates_against_xsd(client):
    for kwargs in ({"params": {"FORMAT": "xml"}}, {"headers": {"Accept": "application/xml"}}):
        response = await client.get("/jobs", **kwargs)
        assert response.status == 200
        assert response.content_type == "text/xml"
        document = etree.fromstring(await response.read())
        schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "job-kinds.xsd")))
        assert schema.validate(document), schema.error_log
        ns = {"k": "http://vocloud.dev/xml/job-kinds/v1"}
        names = document.xpath("k:kind/@name", namespaces=ns)
        assert names[-len(ALL):] == [k.name for k in ALL]
        choices = document.xpath("k:kind[@name='sleep']/k:parameter[@name='colour']/k:choice/text()", namespaces=ns)
        assert choices == ["red", "blue"]


async def test_landing_page_lists_the_job_kinds(client):
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    for kind in ALL:
        assert f"/jobs/{kind.name}" in page
    assert "pyvo" in page and "TOPCAT" in page
    for service in ("/ssa", "/datalink", "/soda"):
        assert f"{service}/capabilities" in page
    assert "(0 spectra)" in page
