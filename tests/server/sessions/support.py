"""Driving sessions in tests: creating them, reading their documents (validated by the schema), waiting on them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from aiohttp import FormData

from tests.support.uws import dali_error_message, wait_for_phase

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "session.schema.json").read_text())
CLASSES = ("absorption", "emission", "double-peak")
"""The demo archive's classes (its labels.csv)."""
DEMO_COUNT = 30
"""Spectra in the demo archive of these tests."""

Form = Mapping[str, Any] | Sequence[tuple[str, Any]]


def validate(document: Any, definition: str = "session") -> None:
    """Check a document against ``schemas/session.schema.json`` (one of its ``$defs``)."""
    schema = {**SCHEMA, "$ref": f"#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)


def path_of(url: str) -> str:
    """The path (and query) of an absolute URL, for the in-process client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def default_form(**overrides: Any) -> list[tuple[str, str]]:
    """A small session over the whole demo archive: 5 spectra a batch, 3 in the precision sample."""
    values: dict[str, Any] = {"class": ",".join(CLASSES), "batch_size": 5, "precision_sample": 3}
    values.update(overrides)
    return [(k, str(v)) for k, v in values.items() if v is not None]


async def post_session(client: Any, form: Form, *, labels: bytes | None = None) -> Any:
    """POST /sessions (multipart when ``labels`` are uploaded); returns the response, redirects not followed."""
    pairs = list(form.items()) if isinstance(form, Mapping) else list(form)
    data: Any = pairs
    if labels is not None:
        data = FormData()
        for name, value in pairs:
            data.add_field(name, str(value))
        data.add_field("labels", labels, filename="labels.csv", content_type="text/csv")
    return await client.post("/sessions", data=data, allow_redirects=False)


async def create_session(client: Any, form: Form | None = None, *, labels: bytes | None = None) -> str:
    """Create a session; returns its path (from the 303 Location)."""
    response = await post_session(client, default_form() if form is None else form, labels=labels)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith("http")
    return path_of(location)


async def get_session(client: Any, path: str) -> dict[str, Any]:
    """GET a session document, checked against the schema."""
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    document = await response.json()
    validate(document)
    return dict(document)


async def wait_session(
    client: Any, path: str, condition: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0, what: str = ""
) -> dict[str, Any]:
    """Poll the session document until ``condition`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        document = await get_session(client, path)
        if condition(document):
            return document
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what or condition}: {document}"
        await asyncio.sleep(0.02)


async def wait_iteration(client: Any, path: str, number: int, *, status: str = "completed") -> dict[str, Any]:
    """Wait until iteration ``number`` exists and its job ended; returns the session document."""
    document = await wait_session(
        client, path, lambda d: len(d["iterations"]) >= number, what=f"iteration {number} to start"
    )
    job = path_of(document["iterations"][number - 1]["job_url"])
    await wait_for_phase(client, job, "COMPLETED" if status == "completed" else "ERROR", timeout=60)
    document = await get_session(client, path)
    assert document["iterations"][number - 1]["status"] == status, document["iterations"][number - 1]
    return document


def csv_body(labels: Mapping[str, str] | Sequence[tuple[str, str]], *, extra: Sequence[str] = ()) -> bytes:
    """A labels CSV with the header id,label (plus ``extra`` empty columns)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label", *extra])
    items = labels.items() if isinstance(labels, Mapping) else labels
    for did, label in items:
        writer.writerow([did, label, *([""] * len(extra))])
    return buffer.getvalue().encode()


async def post_labels(client: Any, path: str, body: bytes, content_type: str = "text/csv") -> Any:
    """POST labels to a session; returns the response."""
    # A stream: aiohttp warns about large raw bodies.
    return await client.post(f"{path}/labels", data=io.BytesIO(body), headers={"Content-Type": content_type})


async def post_labels_ok(client: Any, path: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """POST labels as CSV, expecting success; returns the JSON answer (checked against the schema)."""
    response = await post_labels(client, path, csv_body(labels))
    assert response.status == 200, await response.text()
    answer = await response.json()
    validate(answer, "label_post")
    return dict(answer)


async def error_of(response: Any, status: int) -> str:
    """The DALI error message of a response that must have ``status``."""
    body = await response.read()
    assert response.status == status, body[:500]
    return dali_error_message(body)


def truth(data_dir: Path) -> dict[str, str]:
    """The demo archive's true classes, by DID (the simulated expert's answers)."""
    with (data_dir / "demo" / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return {row["id"]: row["label"] for row in csv.DictReader(handle)}
