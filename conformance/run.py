"""Validate what vocloud serves with validators we did not write (STILTS).

The unit tests check documents against our own reading of the standards; this
runner asks independent tools: ``stilts xsdvalidate`` against the IVOA schemas
bundled in STILTS (UWS, VOSI, VOResource) and, for SSA capabilities, the SSA
schema Debian's python3-gavo ships; ``stilts votlint`` for VOTables (SSAP
responses, SODA cutouts, errors); ``stilts datalinklint`` for DataLink
documents, over HTTP so that their Content-Type is checked too. It starts the
real server (``vocloud serve``, not an in-process app) with the test job kinds
and a small demo archive, leaves one job in every UWS phase the server uses,
downloads each document and validates it.

Usage::

    .venv/bin/python conformance/run.py [--keep] [--base-url URL]

Exit status: 0 when no validator reports an error, 1 when one does, 2 when the
run could not be made (no STILTS, the server did not start, a job did not
behave as the scenario needs). Adding a check is one line in ``CHECKS``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

# Started as a script, this file's folder heads sys.path, not the repository root that holds
# ``tests.support`` (the server the scenario drives, and its test job kinds).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import ServerStartError, log_tail, running_server

__all__ = ["CHECKS", "Check", "Outcome", "Validator", "main"]

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"

HTTP_TIMEOUT_S = 30.0
JOB_TIMEOUT_S = 60.0
SESSION_TIMEOUT_S = 180.0
"""Time for one active-learning iteration (preprocessing, training, scoring) on a busy 2-core machine."""
"""Time for a scenario job to reach the phase it is driven to."""
LONG_JOB_S = "900"
"""A sleep longer than any run, so a job stays EXECUTING (and the next QUEUED) until the server stops."""
VALIDATOR_TIMEOUT_S = 300.0
PARALLEL_VALIDATORS = 4
"""STILTS calls at once: each is a JVM start of about a second, and a few hundred MB."""
SSA_SCHEMA = Path("/usr/lib/python3/dist-packages/gavo/resources/schemata/SSA.xsd")
"""The SSA 1.1 schema (not inside STILTS); installed by conformance/install-validators with python3-gavo."""
SSA_NAMESPACE = "http://www.ivoa.net/xml/SSA/v1.1"


class Validator(StrEnum):
    """The STILTS commands a document can be checked with."""

    XSD = "xsdvalidate"
    """XML Schema validation; exit status 1 when invalid."""
    XSD_SSA = "xsdvalidate+SSA"
    """XML Schema validation that also knows the SSA 1.1 schema (for SSA capabilities)."""
    VOTLINT = "votlint"
    """VOTable checks beyond the schema (datatypes, cell values); exits 0 even with errors."""
    DATALINK = "datalinklint"
    """DataLink checks, given the URL (Content-Type included); a JSON report, exit 0 even with errors."""

    @property
    def reads_url(self) -> bool:
        """Whether the validator is given the URL rather than a downloaded copy."""
        return self is Validator.DATALINK

    def command(self, stilts: str, document: str) -> list[str]:
        """The command validating ``document`` (a file, or a URL for :attr:`reads_url` validators).

        Parameters are named on purpose: a bare location containing ``?`` makes STILTS prompt.
        """
        match self:
            case Validator.XSD:
                # uselocals: STILTS' own copies of the IVOA schemas, so no network is needed.
                return [stilts, "xsdvalidate", "uselocals=true", f"doc={document}"]
            case Validator.XSD_SSA:
                return [
                    stilts, "xsdvalidate", "uselocals=true", f"schemaloc={SSA_NAMESPACE}={SSA_SCHEMA}",
                    f"doc={document}",
                ]  # fmt: skip
            case Validator.VOTLINT:
                return [stilts, "votlint", f"votable={document}"]
            case Validator.DATALINK:
                return [stilts, "datalinklint", "format=json", f"votable={document}"]
            case _:
                msg = f"Unknown validator {self!r}"
                raise ValueError(msg)


XSD = Validator.XSD
XSD_SSA = Validator.XSD_SSA
VOTLINT = Validator.VOTLINT
DATALINK = Validator.DATALINK

SSA_QUERY = "/ssa?REQUEST=queryData"


@dataclass(frozen=True)
class Check:
    """One document, fetched with GET, and the validator it must pass.

    ``target`` is a path under the base URL; its ``{name}`` fields are the
    paths of the jobs :func:`run_scenario` made. Checks whose fields are not
    known (with ``--base-url`` no scenario runs) are left out.
    """

    name: str
    validator: Validator
    target: str
    status: int = field(default=200, kw_only=True)
    """Expected HTTP status: without it, an error VOTable served in place of a UWS document would pass
    xsdvalidate, which knows the VOTable schema too."""
    post: tuple[str, bytes] | None = field(default=None, kw_only=True)
    """(Content-Type, body) to POST instead of a GET: the document is the answer to a refused request."""

    def fields(self) -> set[str]:
        """Names of the scenario's jobs the target refers to."""
        return {name for _, name, _, _ in string.Formatter().parse(self.target) if name}


CHECKS: tuple[Check, ...] = (
    # VOSI 1.1 endpoints of the job service.
    Check("VOSI availability", XSD, "/jobs/availability"),
    Check("VOSI capabilities", XSD, "/jobs/capabilities"),
    # DALI 1.1 sections 5.2 and 5.4.2: a failed request is answered with an error VOTable.
    Check("error: no such job (404)", VOTLINT, "/jobs/no-such-kind/no-such-job", status=404),
    Check("error: WAIT=abc (400)", VOTLINT, "{completed}?WAIT=abc", status=400),
    # UWS 1.1 section 2.2.2.1: job lists and their filters.
    Check("job list", XSD, "{sleep}"),
    Check("job list PHASE=COMPLETED", XSD, "{sleep}?PHASE=COMPLETED"),
    Check("job list PHASE=EXECUTING&QUEUED", XSD, "{sleep}?PHASE=EXECUTING&PHASE=QUEUED"),
    Check("job list LAST=2", XSD, "{sleep}?LAST=2"),
    Check("job list AFTER", XSD, "{sleep}?AFTER=2000-01-01T00:00:00Z"),
    Check("job list, empty", XSD, "{fail}?PHASE=PENDING"),
    Check("job list of failed jobs", XSD, "{fail}"),
    # UWS 1.1 section 2.2.2.2: one job document per phase, and the features that change a job's shape.
    Check("job PENDING", XSD, "{pending}"),
    Check("job QUEUED", XSD, "{queued}"),
    Check("job EXECUTING, jobInfo", XSD, "{executing}"),
    Check("job COMPLETED, runId, repeated", XSD, "{completed}"),
    Check("job ERROR (usage)", XSD, "{usage_error}"),
    Check("job ERROR (worker crash)", XSD, "{crashed}"),
    Check("job ABORTED", XSD, "{aborted}"),
    Check("job with an upload", XSD, "{uploaded}"),
    Check("parameters", XSD, "{completed}/parameters"),
    Check("parameters with an upload", XSD, "{uploaded}/parameters"),
    Check("results", XSD, "{completed}/results"),
    # UWS 1.1 section 2.2.2.5 leaves the error's form open; a VOTable is what TAP clients and taplint expect.
    Check("error VOTable (usage)", VOTLINT, "{usage_error}/error"),
    Check("error VOTable (worker crash)", VOTLINT, "{crashed}/error"),
    Check("result VOTable", VOTLINT, "{completed}/results/result"),
    Check("ingest report VOTable", VOTLINT, "{ingested}/results/result"),
    # The archive: SSAP 1.1, DataLink 1.1 and SODA 1.0, each with its VOSI endpoints.
    Check("SSA availability", XSD, "/ssa/availability"),
    Check("SSA capabilities", XSD_SSA, "/ssa/capabilities"),
    Check("SSA cone", VOTLINT, SSA_QUERY + "&POS=180,45&SIZE=180"),
    Check("SSA band and time", VOTLINT, SSA_QUERY + "&BAND=6.5e-7/6.6e-7&TIME=1990-01-01/2100-01-01"),
    Check("SSA FORMAT=METADATA", VOTLINT, SSA_QUERY + "&FORMAT=METADATA"),
    Check("SSA empty result", VOTLINT, SSA_QUERY + "&POS=0,-89.9&SIZE=0.001"),
    Check("SSA OVERFLOW", VOTLINT, SSA_QUERY + "&MAXREC=1"),
    Check("SSA error (POS)", VOTLINT, SSA_QUERY + "&POS=1,91", status=400),
    Check("DataLink availability", XSD, "/datalink/availability"),
    Check("DataLink capabilities", XSD, "/datalink/capabilities"),
    Check("DataLink, one ID", DATALINK, "/datalink?ID={id1}"),
    Check("DataLink, two IDs", DATALINK, "/datalink?ID={id1}&ID={id2}"),
    Check("DataLink, with an unknown ID", DATALINK, "/datalink?ID={id1}&ID=ivo%3A%2F%2Fnowhere%2Fnothing"),
    Check("SODA availability", XSD, "/soda/availability"),
    Check("SODA capabilities", XSD, "/soda/capabilities"),
    Check("SODA cutout VOTable", VOTLINT, "/soda?ID={id1}&BAND=6.5e-7%206.6e-7&RESPONSEFORMAT=votable"),
    Check(
        "SODA normalised VOTable", VOTLINT, "/soda?ID={id1}&BAND=6.5e-7%206.6e-7&RESPONSEFORMAT=votable&NORMALIZE=true"
    ),
    # Active learning: an iteration that trained a model, its VOTable results, the label history, and
    # DataLink reached from the candidates' rows (the MIVOT block is a votlint WARNING: STILTS knows
    # VOTable 1.4, which allows elements of other namespaces but cannot check them).
    Check("active_learning job", XSD, "{iteration}"),
    Check("candidates VOTable", VOTLINT, "{iteration}/results/result"),
    Check("oracle batch VOTable", VOTLINT, "{iteration}/results/oracle"),
    Check("precision sample VOTable", VOTLINT, "{iteration}/results/precision_sample"),
    Check("learning curve VOTable", VOTLINT, "{iteration}/results/learning_curve"),
    Check("cold-start candidates VOTable", VOTLINT, "{cold_start}/results/result"),
    Check("label history VOTable", VOTLINT, "{session}/labels"),
    Check("label post error (400)", VOTLINT, "{session}/labels", status=400,
          post=("text/csv", b"id,label\nivo://nowhere/nothing,quasar\n")),
    Check("DataLink of a candidate", DATALINK, "/datalink?ID={candidate1}"),
    Check("DataLink of two candidates", DATALINK, "/datalink?ID={candidate1}&ID={candidate2}"),
)


@dataclass(frozen=True)
class Outcome:
    """What one check found."""

    check: Check
    url: str
    errors: int
    warnings: int
    messages: tuple[str, ...] = ()
    """The validator's ERROR and WARNING lines, or why it could not run."""


@dataclass(frozen=True)
class Fetched:
    """A document saved for validation."""

    check: Check
    url: str
    path: Path
    problem: str | None = None
    """Why the document is not the one to validate (an unexpected HTTP status)."""


class ScenarioError(RuntimeError):
    """The server did not behave as the scenario needs, so its documents cannot be produced."""


# -- the scenario -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobClient:
    """Just the UWS calls the scenario needs: create, abort, wait for a phase."""

    session: requests.Session
    base: str

    def create(
        self,
        kind: str,
        params: Sequence[tuple[str, str]],
        *,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> str:
        """Create a job; returns its path (the 303's ``Location`` without the origin)."""
        response = self.session.post(
            f"{self.base}/jobs/{kind}",
            data=list(params),
            files=files,
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_S,
        )
        if response.status_code != 303:
            msg = f"Creating a {kind} job answered HTTP {response.status_code}: {response.text[:500]}"
            raise ScenarioError(msg)
        return urlsplit(response.headers["Location"]).path

    def abort(self, path: str) -> None:
        """POST ``PHASE=ABORT`` (UWS 1.1 section 2.2.3.6)."""
        response = self.session.post(
            f"{self.base}{path}/phase", data={"PHASE": "ABORT"}, allow_redirects=False, timeout=HTTP_TIMEOUT_S
        )
        if response.status_code != 303:
            msg = f"Aborting {path} answered HTTP {response.status_code}: {response.text[:500]}"
            raise ScenarioError(msg)

    def wait_for(self, path: str, phase: str, *, progress: bool = False) -> None:
        """Poll the job until it is in ``phase`` (and, if asked, shows a ``uws:jobInfo``).

        Polling rather than ``WAIT``: progress appears without a phase change.

        Raises
        ------
        ScenarioError
            Raised if the job ends in another phase or takes longer than ``JOB_TIMEOUT_S``.
        """
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            response = self.session.get(f"{self.base}{path}", timeout=HTTP_TIMEOUT_S)
            if response.status_code != 200:
                msg = f"Job {path} answered HTTP {response.status_code}: {response.text[:500]}"
                raise ScenarioError(msg)
            body = response.content
            root = ET.fromstring(body)
            current = root.findtext(f"{UWS}phase")
            if current == phase and (not progress or root.find(f"{UWS}jobInfo") is not None):
                return
            if current in {"COMPLETED", "ERROR", "ABORTED"} or time.monotonic() > deadline:
                msg = f"Job {path} is {current}, not {phase}{' with progress' if progress else ''}:\n{body!r}"
                raise ScenarioError(msg)
            time.sleep(0.1)


def run_scenario(client: JobClient, demo_dir: Path) -> dict[str, str]:
    """Leave one job in each phase the server uses; return their paths by name.

    The order matters: the server runs one job at a time, so the short jobs
    finish first; then a long job holds the worker (EXECUTING) and the last
    one waits behind it (QUEUED) until the server is stopped.
    """
    jobs = {"sleep": "/jobs/sleep", "fail": "/jobs/fail"}
    jobs.update(archive_ids(client.session, client.base))
    run = ("PHASE", "RUN")
    # An ingest of a spectrum the demo archive already has: its report says "duplicate".
    jobs["ingested"] = client.create("ingest", [("url", f"{client.base}/data?ID={jobs['id1']}"), run])
    client.wait_for(jobs["ingested"], "COMPLETED")
    jobs["completed"] = client.create("sleep", [
        ("RUNID", "conformance"), ("seconds", "0.2"), ("label", "escaped <&> text"), ("band", "5.5e-7"),
        ("band", "6.5e-7"), ("partial", "true"), ("after", "2024-01-01T00:00:00Z"), ("colour", "red"),
        ("count", "3"), run,
    ])  # fmt: skip
    client.wait_for(jobs["completed"], "COMPLETED")
    jobs["usage_error"] = client.create("fail", [("how", "usage"), run])
    client.wait_for(jobs["usage_error"], "ERROR")
    jobs["crashed"] = client.create("fail", [("how", "crash"), run])
    client.wait_for(jobs["crashed"], "ERROR")
    table = ("table.csv", b"a,b\n1,2\n3,4\n", "text/csv")
    jobs["uploaded"] = client.create("upload", [run], files={"table": table})
    client.wait_for(jobs["uploaded"], "COMPLETED")
    jobs.update(run_session(client, demo_dir))
    jobs["pending"] = client.create("sleep", [("seconds", "1")])
    # Aborted while executing, so the document has a start time and the worker is really killed.
    jobs["aborted"] = client.create("sleep", [("seconds", LONG_JOB_S), run])
    client.wait_for(jobs["aborted"], "EXECUTING")
    client.abort(jobs["aborted"])
    client.wait_for(jobs["aborted"], "ABORTED")
    jobs["executing"] = client.create("sleep", [("seconds", LONG_JOB_S), run])
    client.wait_for(jobs["executing"], "EXECUTING", progress=True)
    jobs["queued"] = client.create("sleep", [("seconds", "1"), run])
    client.wait_for(jobs["queued"], "QUEUED")
    return jobs


def run_session(client: JobClient, demo_dir: Path) -> dict[str, str]:
    """An active-learning session taken to an iteration that trained a model; returns its paths and two candidates.

    Iteration 1 is a cold start (a random seed batch); the demo archive's true
    labels (``labels.csv``, the simulated expert) answer it, topped up with a
    spectrum of another class if the seed batch held only one, so that the
    iteration the labels start trains a network.
    """
    with (demo_dir / "labels.csv").open(encoding="utf-8", newline="") as f:
        truth = {row["id"]: row["label"] for row in csv.DictReader(f)}
    response = client.session.post(
        f"{client.base}/sessions",
        data=[("class", "absorption,emission,double-peak"), ("positive_class", "emission"), ("batch_size", "8"),
              ("seed_size", "15"), ("precision_sample", "5"), ("mc_samples", "5"), ("max_epochs", "10"),
              ("n_points", "200"), ("title", "conformance")],
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
    )  # fmt: skip
    if response.status_code != 303:
        msg = f"Creating a session answered HTTP {response.status_code}: {response.text[:500]}"
        raise ScenarioError(msg)
    session = urlsplit(response.headers["Location"]).path
    cold = _finished_iteration(client, session, 1)
    labelled = _column(client, cold["results"]["oracle"], "id")
    if len({truth[i] for i in labelled}) < 2:
        labelled.append(next(i for i, label in truth.items() if label != truth[labelled[0]] and i not in labelled))
    body = "id,label\n" + "".join(f"{i},{truth[i]}\n" for i in labelled)
    response = client.session.post(
        f"{client.base}{session}/labels", data=body.encode(), headers={"Content-Type": "text/csv"},
        timeout=HTTP_TIMEOUT_S,
    )  # fmt: skip
    if response.status_code != 200:
        msg = f"Posting labels answered HTTP {response.status_code}: {response.text[:500]}"
        raise ScenarioError(msg)
    trained = _finished_iteration(client, session, 2)
    candidates = _column(client, trained["results"]["candidates"], "id")
    if len(candidates) < 2:
        msg = f"Iteration 2 offers {len(candidates)} candidates; the scenario needs two"
        raise ScenarioError(msg)
    return {
        "session": session,
        "cold_start": urlsplit(cold["job_url"]).path,
        "iteration": urlsplit(trained["job_url"]).path,
        "candidate1": quote(candidates[0], safe=""),
        "candidate2": quote(candidates[1], safe=""),
    }


def _finished_iteration(client: JobClient, session: str, number: int) -> dict[str, Any]:
    """The session's iteration ``number`` once it has completed (sessions report it in JSON)."""
    deadline = time.monotonic() + SESSION_TIMEOUT_S
    while True:
        response = client.session.get(f"{client.base}{session}", timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        found = [it for it in response.json()["iterations"] if it["number"] == number]
        status = found[0]["status"] if found else None
        if status == "completed":
            iteration: dict[str, Any] = found[0]
            return iteration
        if status == "failed" or time.monotonic() > deadline:
            msg = f"Iteration {number} of {session} is {status}: {found[0]['error'] if found else 'not started'}"
            raise ScenarioError(msg)
        time.sleep(0.2)


def _column(client: JobClient, url: str, name: str) -> list[str]:
    """The values of one column of a TABLEDATA VOTable."""
    root = ET.fromstring(client.session.get(url, timeout=HTTP_TIMEOUT_S).content)
    names = [f.get("name") for f in root.iter() if f.tag.endswith("FIELD")]
    index = names.index(name)
    return [[td.text or "" for td in tr if td.tag.endswith("TD")][index] for tr in root.iter() if tr.tag.endswith("TR")]


def archive_ids(session: requests.Session, base: str) -> dict[str, str]:
    """Two publisher DIDs of the archive (URL-quoted), read from an SSAP response.

    Raises
    ------
    ScenarioError
        Raised if the archive has fewer than two spectra.
    """
    response = session.get(f"{base}{SSA_QUERY}&MAXREC=2", timeout=HTTP_TIMEOUT_S)
    root = ET.fromstring(response.content)
    fields = [f.get("utype", "").lower() for f in root.iter() if f.tag.endswith("FIELD")]
    if "ssa:curation.publisherdid" not in fields:
        msg = f"The SSA response has no ssa:Curation.PublisherDID column: {response.text[:300]}"
        raise ScenarioError(msg)
    column = fields.index("ssa:curation.publisherdid")
    rows = [[td.text or "" for td in tr if td.tag.endswith("TD")] for tr in root.iter() if tr.tag.endswith("TR")]
    if len(rows) < 2:
        msg = "The archive needs at least two spectra (the server's demo archive)"
        raise ScenarioError(msg)
    return {"id1": quote(rows[0][column], safe=""), "id2": quote(rows[1][column], safe="")}


# -- fetching and validating ------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def fetch_all(
    session: requests.Session, base: str, checks: Sequence[Check], jobs: Mapping[str, str], folder: Path
) -> list[Fetched]:
    """Download every check's document into ``folder``, while the server is in the scenario's state."""
    folder.mkdir(parents=True, exist_ok=True)
    fetched = []
    for index, check in enumerate(checks, start=1):
        url = base + check.target.format_map(jobs)
        if check.post is None:
            response = session.get(url, timeout=HTTP_TIMEOUT_S)
        else:
            content_type, body = check.post
            response = session.post(url, data=body, headers={"Content-Type": content_type}, timeout=HTTP_TIMEOUT_S)
        suffix = "vot" if check.validator is VOTLINT else "xml"
        path = folder / f"{index:02d}-{_slug(check.name)}.{suffix}"
        path.write_bytes(response.content)
        problem = None
        if response.status_code != check.status:
            problem = f"HTTP {response.status_code}, expected {check.status}: {response.text[:300]}"
        fetched.append(Fetched(check=check, url=url, path=path, problem=problem))
    return fetched


def validate(stilts: str, document: Fetched) -> Outcome:
    """Run the check's validator on the saved document and count what it reports."""
    check = document.check
    if document.problem is not None:
        return Outcome(check=check, url=document.url, errors=1, warnings=0, messages=(document.problem,))
    target = document.url if check.validator.reads_url else str(document.path)
    result = subprocess.run(
        check.validator.command(stilts, target),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=VALIDATOR_TIMEOUT_S, check=False,
    )  # fmt: skip
    if check.validator is DATALINK:
        return _datalink_outcome(document, result)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    warnings = [line for line in lines if line.startswith("WARNING")]
    if result.returncode != 0 and not errors:
        # xsdvalidate's verdict is its exit status; count it even when no ERROR line explains it.
        errors = [f"stilts exited with status {result.returncode}: {' | '.join(lines[-5:])}"]
    return Outcome(
        check=check, url=document.url, errors=len(errors), warnings=len(warnings),
        messages=tuple(errors + warnings),
    )  # fmt: skip


def _datalink_outcome(document: Fetched, result: subprocess.CompletedProcess[str]) -> Outcome:
    """Count datalinklint's JSON report: ERROR and FAILURE sections are errors."""
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        message = f"datalinklint gave no JSON report (status {result.returncode}): {result.stderr[-300:]}"
        return Outcome(check=document.check, url=document.url, errors=1, warnings=0, messages=(message,))
    sections = report.get("sections", [])
    errors = [f"{s['level']} {s.get('code', '')} {s.get('message', '')}" for s in sections
              if s.get("level") in {"ERROR", "FAILURE"}]  # fmt: skip
    warnings = [f"WARNING {s.get('code', '')} {s.get('message', '')}" for s in sections if s.get("level") == "WARNING"]
    return Outcome(
        check=document.check, url=document.url, errors=len(errors), warnings=len(warnings),
        messages=tuple(errors + warnings),
    )  # fmt: skip


def validate_all(stilts: str, documents: Sequence[Fetched]) -> list[Outcome]:
    """Validate the documents a few at a time, keeping their order."""
    with ThreadPoolExecutor(max_workers=PARALLEL_VALIDATORS) as pool:
        return list(pool.map(lambda d: validate(stilts, d), documents))


def report(outcomes: Sequence[Outcome]) -> str:
    """The validators' messages, a table of one row per check, and the totals line last."""
    out: list[str] = []
    for o in outcomes:
        if o.messages:
            out.append(f"{o.check.name} ({o.check.validator} {o.url}):")
            out.extend(f"    {m}" for m in o.messages[:20])
            if len(o.messages) > 20:
                out.append(f"    ... and {len(o.messages) - 20} more")
    if out:
        out.append("")
    width = max([len("document"), *(len(o.check.name) for o in outcomes)])
    out.append(f"{'validator':<12} {'document':<{width}} {'errors':>6} {'warnings':>8}  verdict")
    for o in outcomes:
        verdict = "FAIL" if o.errors else "warn" if o.warnings else "ok"
        out.append(f"{o.check.validator:<12} {o.check.name:<{width}} {o.errors:>6} {o.warnings:>8}  {verdict}")
    errors = sum(o.errors for o in outcomes)
    warnings = sum(o.warnings for o in outcomes)
    out.append(f"TOTAL: {len(outcomes)} checks, {errors} errors, {warnings} warnings")
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------------------


def _checks_for_running_server(session: requests.Session, base: str) -> list[Check]:
    # No scenario on someone else's server: it needs the test kinds and one worker, and leaves jobs
    # behind. What remains are the service-level checks and the (read-only) job list of each kind.
    response = session.get(f"{base}/jobs", headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    kinds = [kind["name"] for kind in response.json()["kinds"]]
    try:
        known = archive_ids(session, base)
    except (ScenarioError, ET.ParseError):
        known = {}
    return [c for c in CHECKS if c.fields() <= known.keys()] + [
        Check(f"job list /jobs/{kind}", XSD, f"/jobs/{kind}") for kind in kinds
    ]


def _run(args: argparse.Namespace, stilts: str, workdir: Path) -> list[Outcome]:
    with requests.Session() as session:
        if args.base_url:
            base = args.base_url.rstrip("/")
            checks = _checks_for_running_server(session, base)
            known = archive_ids(session, base) if any("id1" in c.fields() for c in checks) else {}
            documents = fetch_all(session, base, checks, known, workdir / "documents")
            return validate_all(stilts, documents)
        # One worker is what makes a QUEUED job possible. Validation happens while the server
        # runs: datalinklint reads its documents over HTTP.
        with running_server(data_dir=workdir / "data", log_path=workdir / "server.log", workers=1) as server:
            jobs = run_scenario(JobClient(session=session, base=server.base_url), demo_dir=workdir / "data" / "demo")
            documents = fetch_all(session, server.base_url, CHECKS, jobs, workdir / "documents")
            return validate_all(stilts, documents)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks and print the report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (documents, server log)")
    parser.add_argument("--base-url", help="validate this running server instead of starting one")
    args = parser.parse_args(argv)

    stilts = shutil.which("stilts")
    if stilts is None:
        print("conformance: stilts is not on PATH; run conformance/install-validators", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="vocloud-conformance-"))
    try:
        outcomes = _run(args, stilts, workdir)
        print(report(outcomes), flush=True)
    except (ServerStartError, ScenarioError, requests.RequestException) as e:
        print(f"conformance: {e}", file=sys.stderr)
        # A ServerStartError's message ends with the log already.
        if not isinstance(e, ServerStartError) and (workdir / "server.log").exists():
            print(f"Server log (end):\n{log_tail(workdir / 'server.log')}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"Kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(o.errors for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
