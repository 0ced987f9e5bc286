"""Active learning end to end on the demo archive, with the real runner (a Bayesian CNN) and real clients.

The issue's acceptance scenario: create a session, run an iteration, fetch the
candidates with pyvo, follow DataLink to a SODA cutout, post the simulated
expert's labels for the oracle batch, see the next iteration start by itself
and its metrics change; bad label posts leave the session as it was.

The server runs in-process on a known port (so the links written into job
results, which outlive requests, point back at it); pyvo and requests run in a
worker thread, never on the event loop that serves them. The demo archive's
``labels.csv`` holds the true class of every spectrum: the simulated expert.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyvo
import requests
from aiohttp.test_utils import TestServer, unused_port
from astropy import units as u
from astropy.io import fits

from tests.support.kinds import ALL
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

CLASSES = ("absorption", "emission", "double-peak")
DEMO_SPECTRA = 150
TIMEOUT_S = 100.0


def true_labels(settings: Settings) -> dict[str, str]:
    """The simulated expert: the demo generator's true class of every spectrum, by publisher DID."""
    with (settings.demo_dir / "labels.csv").open(encoding="utf-8", newline="") as f:
        return {row["id"]: row["label"] for row in csv.DictReader(f)}


def labels_csv(ids: list[str], truth: dict[str, str]) -> bytes:
    out = io.StringIO()
    out.write("id,label,labeller,comment\n")
    for did in ids:
        out.write(f"{did},{truth[did]},simulated expert,from the demo truth\n")
    return out.getvalue().encode()


class Scenario:
    """Blocking HTTP against the in-process server (run it in a thread)."""

    def __init__(self, base: str, http: requests.Session) -> None:
        self.base = base
        self.http = http

    def session(self, url: str) -> dict[str, Any]:
        response = self.http.get(url, headers={"Accept": "application/json"}, timeout=30)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def wait_iteration(self, url: str, number: int) -> dict[str, Any]:
        """The session once iteration ``number`` has finished (UWS WAIT on its job, then the session)."""
        for _ in range(int(TIMEOUT_S)):
            document = self.session(url)
            iterations = {it["number"]: it for it in document["iterations"]}
            iteration = iterations.get(number)
            if iteration is not None and iteration["status"] not in ("queued", "running"):
                return document
            if iteration is not None:
                self.http.get(iteration["job_url"], params={"WAIT": "5", "PHASE": "EXECUTING"}, timeout=30)
                self.http.get(iteration["job_url"], params={"WAIT": "5", "PHASE": "QUEUED"}, timeout=30)
            else:
                self.http.get(url, timeout=30)
        msg = f"Iteration {number} did not finish in time: {self.session(url)}"
        raise AssertionError(msg)

    def oracle_ids(self, iteration: dict[str, Any]) -> list[str]:
        table = pyvo.dal.DALResults.from_result_url(iteration["results"]["oracle"], session=self.http)
        return [str(row["id"]) for row in table]


def _run(fn: Callable[[], Any]) -> Any:
    return asyncio.get_running_loop().run_in_executor(None, fn)


async def test_session_iterations_labels_and_links(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(demo_spectra=DEMO_SPECTRA, base_url=base, workers=1)
    server = TestServer(create_app(settings, kinds=ALL), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        seen = await _run(lambda: _scenario(base, settings))
    finally:
        await server.close()

    first, second, third = seen["documents"]
    # Iteration 1: no labels yet, so a random seed batch of seed_size and no model.
    it1 = first["iterations"][0]
    assert it1["status"] == "completed", it1
    assert it1["outcome"]["cold_start"] is True
    assert it1["outcome"]["oracle_size"] == 30
    assert it1["outcome"]["labels_used"] == 0
    # Bad posts were refused with a 4xx naming the problem, and changed nothing.
    for status, message, what in seen["refused"]:
        assert 400 <= status < 500, (status, message)
        assert what in message, (what, message)
    assert seen["before_bad_posts"] == seen["after_bad_posts"]
    # The labels of the oracle batch started iteration 2 by themselves; it trained a model.
    assert seen["post_1"]["accepted"] == 30
    assert seen["post_1"]["next_iteration"], seen["post_1"]
    it2 = second["iterations"][1]
    assert it2["status"] == "completed", it2
    assert it2["outcome"]["cold_start"] is False
    assert it2["outcome"]["labels_used"] == 30
    assert it2["outcome"]["val_accuracy"] is not None
    assert it2["outcome"]["mean_bald"] is not None
    assert it2["outcome"]["oracle_size"] == 20
    # Candidates reach spectra through DataLink: the cutout is a FITS spectrum inside the band asked for.
    assert seen["candidate_rows"] > 0
    assert set(seen["candidate_ids"]) <= set(seen["truth"])
    assert not set(seen["candidate_ids"]) & set(seen["labelled_1"]), "a labelled spectrum is offered again"
    low, high = seen["cutout_range"]
    assert 6540 - 1e-6 <= low < high <= 6590 + 1e-6
    assert seen["probability_error"] < 1e-3  # class probabilities of a row sum to 1
    # Labelling iteration 2's oracle batch (and its precision sample) started iteration 3; the metrics moved on.
    assert seen["post_2"]["next_iteration"], seen["post_2"]
    it3 = third["iterations"][2]
    assert it3["status"] == "completed", it3
    assert it3["outcome"]["labels_used"] > it2["outcome"]["labels_used"]
    precision = third["iterations"][1]["outcome"]["precision"]
    if seen["precision_sample_2"]:
        assert precision is not None
        assert precision["n"] == len(seen["precision_sample_2"])
        assert 0.0 <= precision["low"] <= precision["value"] <= precision["high"] <= 1.0
    assert third["labels"]["total"] == seen["post_2"]["labels"]
    # The history holds every post, with who and when.
    assert seen["history_rows"] == 30 + len(seen["labelled_2"])


def _scenario(base: str, settings: Settings) -> dict[str, Any]:
    truth = true_labels(settings)
    seen: dict[str, Any] = {"truth": truth, "refused": []}
    with requests.Session() as http:
        run = Scenario(base, http)
        created = http.post(
            f"{base}/sessions",
            data=[("class", ",".join(CLASSES)), ("positive_class", "emission"), ("strategy", "diverse"),
                  ("batch_size", "20"), ("seed_size", "30"), ("precision_sample", "10"), ("mc_samples", "8"),
                  ("max_epochs", "15"), ("n_points", "200"), ("title", "end to end")],
            allow_redirects=False,
            timeout=30,
        )  # fmt: skip
        assert created.status_code == 303, created.text
        url = created.headers["Location"]
        first = run.wait_iteration(url, 1)
        it1 = first["iterations"][0]
        oracle_1 = run.oracle_ids(it1)
        labels_url = first["labels"]["url"]

        # Bad posts first: each must be refused whole.
        seen["before_bad_posts"] = (run.session(url), http.get(labels_url, timeout=30).content)
        good = labels_csv(oracle_1[:2], truth)
        bad_posts = [
            (good + b"ivo://nowhere/nothing,emission,,\n", "text/csv", "ivo://nowhere/nothing"),
            (good + f"{oracle_1[2]},quasar,,\n".encode(), "text/csv", "quasar"),
            (b"id;label\nx;y\n", "text/csv", "label"),
            (b'[{"id": 1}]', "application/json", "id must be a string"),
            (b"<VOTABLE", "application/x-votable+xml", "VOTable"),
            (good, "image/png", "image/png"),
        ]
        for body, content_type, what in bad_posts:
            response = http.post(labels_url, data=body, headers={"Content-Type": content_type}, timeout=30)
            seen["refused"].append((response.status_code, response.text, what))
        seen["after_bad_posts"] = (run.session(url), http.get(labels_url, timeout=30).content)

        # The expert labels the seed batch: iteration 2 starts by itself.
        post_1 = http.post(labels_url, data=labels_csv(oracle_1, truth), headers={"Content-Type": "text/csv"},
                           timeout=30)  # fmt: skip
        assert post_1.status_code == 200, post_1.text
        seen["post_1"] = post_1.json()
        seen["labelled_1"] = oracle_1
        second = run.wait_iteration(url, 2)
        it2 = second["iterations"][1]

        # pyvo reads the candidates (as any table result with a DataLink descriptor); DataLink leads from a row
        # to a SODA cutout around H-alpha.
        candidates = pyvo.dal.TAPResults.from_result_url(it2["results"]["candidates"], session=http)
        seen["candidate_rows"] = len(candidates)
        seen["candidate_ids"] = [str(row["id"]) for row in candidates]
        table = candidates.to_table()
        sums = sum(np.asarray(table[f"p_{c.replace('-', '_')}"], dtype=float) for c in CLASSES)
        seen["probability_error"] = float(np.max(np.abs(sums - 1.0)))
        links = candidates[0].getdatalink()
        cutout = next(iter(links.bysemantics("#cutout", include_narrower=False)))
        with fits.open(io.BytesIO(cutout.processed(band=(6540, 6590) * u.AA).read())) as hdus:
            wavelength = hdus["SPECTRUM"].data["WAVELENGTH"]
        seen["cutout_range"] = (float(wavelength.min()), float(wavelength.max()))

        # The expert labels the oracle batch and the precision sample.
        oracle_2 = run.oracle_ids(it2)
        sample = pyvo.dal.DALResults.from_result_url(it2["results"]["precision_sample"], session=http)
        seen["precision_sample_2"] = [str(row["id"]) for row in sample]
        labelled_2 = list(dict.fromkeys(oracle_2 + seen["precision_sample_2"]))
        seen["labelled_2"] = labelled_2
        post_2 = http.post(labels_url, data=labels_csv(labelled_2, truth), headers={"Content-Type": "text/csv"},
                           timeout=30)  # fmt: skip
        assert post_2.status_code == 200, post_2.text
        seen["post_2"] = post_2.json()
        third = run.wait_iteration(url, 3)
        history = pyvo.dal.DALResults.from_result_url(labels_url, session=http)
        seen["history_rows"] = len(history)
        seen["documents"] = (first, second, third)
    return seen
