"""Reading UWS documents in tests (lxml, namespace-aware) and driving jobs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from lxml import etree

UWS = "http://www.ivoa.net/xml/UWS/v1.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XLINK = "http://www.w3.org/1999/xlink"
VC = "http://vocloud.dev/xml/jobinfo/v1"
NS = {"uws": UWS, "xlink": XLINK, "vc": VC}
TERMINAL = frozenset({"COMPLETED", "ERROR", "ABORTED"})


@dataclass
class JobDoc:
    """The parts of a ``uws:job`` document the tests look at."""

    root: Any
    job_id: str
    phase: str
    owner_nil: bool
    owner: str | None
    run_id: str | None
    parameters: list[tuple[str, str, bool]] = field(default_factory=list)
    results: dict[str, dict[str, str]] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    progress: tuple[float, str] | None = None

    def text(self, tag: str) -> str | None:
        """Text of a direct child element, ``None`` if absent or nil."""
        element = self.root.find(f"uws:{tag}", NS)
        if element is None or element.get(f"{{{XSI}}}nil") == "true":
            return None
        return element.text or ""


def parse_job(body: bytes) -> JobDoc:
    """Parse a job document."""
    root = etree.fromstring(body)
    assert root.tag == f"{{{UWS}}}job", root.tag
    assert root.get("version") == "1.1"
    owner = root.find("uws:ownerId", NS)
    assert owner is not None, "ownerId is required by the UWS schema"
    run_id = root.find("uws:runId", NS)
    doc = JobDoc(
        root=root,
        job_id=root.findtext("uws:jobId", namespaces=NS) or "",
        phase=root.findtext("uws:phase", namespaces=NS) or "",
        owner_nil=owner.get(f"{{{XSI}}}nil") == "true",
        owner=owner.text,
        run_id=None if run_id is None else run_id.text,
    )
    for p in root.iterfind("uws:parameters/uws:parameter", NS):
        doc.parameters.append((p.get("id"), p.text or "", p.get("byReference") == "true"))
    for r in root.iterfind("uws:results/uws:result", NS):
        doc.results[r.get("id")] = {
            "href": r.get(f"{{{XLINK}}}href"),
            "size": r.get("size"),
            "mime-type": r.get("mime-type"),
        }
    summary = root.find("uws:errorSummary", NS)
    if summary is not None:
        doc.error_type = summary.get("type")
        doc.error_message = summary.findtext("uws:message", namespaces=NS)
    progress = root.find("uws:jobInfo/vc:progress", NS)
    if progress is not None:
        doc.progress = (float(progress.get("fraction")), progress.text or "")
    return doc


def parse_job_list(body: bytes) -> list[tuple[str, str]]:
    """(job id, phase) of each jobref in a job list."""
    root = etree.fromstring(body)
    assert root.tag == f"{{{UWS}}}jobs"
    assert root.get("version") == "1.1"
    return [(ref.get("id"), ref.findtext("uws:phase", namespaces=NS)) for ref in root.iterfind("uws:jobref", NS)]


def dali_error_message(body: bytes) -> str:
    """The message of a DALI error VOTable (asserting that it is one)."""
    root = etree.fromstring(body)
    info = root.find(".//{*}INFO[@name='QUERY_STATUS']")
    assert info is not None and info.get("value") == "ERROR", body[:300]
    return info.text or ""


async def create(client: TestClient[Any, Any], kind: str, data: Any = None, **form: Any) -> str:
    """Create a job and return its path (from the 303 Location)."""
    payload = data if data is not None else {k.upper() if k == "phase" else k: str(v) for k, v in form.items()}
    response = await client.post(f"/jobs/{kind}", data=payload, allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    return location[location.index("/jobs/"):]


async def get_job(client: TestClient[Any, Any], path: str, **query: Any) -> JobDoc:
    """Fetch and parse a job document."""
    response = await client.get(path, params={k.upper(): str(v) for k, v in query.items()})
    assert response.status == 200, await response.text()
    assert response.content_type == "text/xml"
    return parse_job(await response.read())


async def wait_for_phase(client: TestClient[Any, Any], path: str, *phases: str, timeout: float = 30) -> JobDoc:
    """Block with WAIT (and PHASE, so no change is missed) until the job is in one of ``phases``."""
    deadline = asyncio.get_running_loop().time() + timeout
    doc = await get_job(client, path)
    while doc.phase not in phases:
        assert doc.phase not in TERMINAL, f"job ended in {doc.phase}, not {phases}: {doc.error_message}"
        assert asyncio.get_running_loop().time() < deadline, f"job stuck in {doc.phase}"
        doc = await get_job(client, path, wait=5, phase=doc.phase)
    return doc
