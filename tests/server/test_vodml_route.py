"""The published VO-DML model: the URL MIVOT annotations name serves the model, to anyone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from lxml import etree

from vocloud.server.auth import UserFile
from vocloud.server.ml.mivot import MODEL_NAME, MODEL_PATH

REPO = Path(__file__).resolve().parents[2]
VODML_NS = "http://www.ivoa.net/xml/VODML/v1"


async def test_the_model_is_served_as_the_repository_holds_it(client: TestClient[Any, Any]) -> None:
    response = await client.get(MODEL_PATH)

    assert response.status == 200
    assert response.content_type == "text/xml"
    body = await response.read()
    assert body == (REPO / "vodml" / "vocloud-ml.vo-dml.xml").read_bytes()
    root = etree.fromstring(body)
    assert root.tag == f"{{{VODML_NS}}}model"
    assert root.findtext("name") == MODEL_NAME


async def test_the_model_needs_no_credentials(make_client: Any, make_settings: Any) -> None:
    UserFile(make_settings().users_file).add("alice", "a long enough password")
    client = await make_client(auth="basic")

    assert (await client.get(MODEL_PATH)).status == 200
    assert (await client.get("/jobs/active_learning")).status == 401
