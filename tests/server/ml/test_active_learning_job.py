"""The active_learning job kind through the real app: results of a normal iteration, a cold start, bad inputs."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pyvo
import torch
from astropy.io.votable import parse
from PIL import Image
from pyvo.dal.adhoc import DATALINK_IVOID, DatalinkQuery

from tests.support.uws import create, wait_for_phase
from vocloud.server.links import DATALINK_PATH, data_url
from vocloud.server.ml import bcnn
from vocloud.server.ml.iteration import (
    CANDIDATE_COLUMNS,
    IterationInput,
    IterationOutcome,
    IterationRecord,
    SessionSettings,
    probability_column,
)

pytestmark = pytest.mark.timeout(240)

CLASSES = ("absorption", "emission", "double-peak")
SPECTRA = 90
PREPROCESSING = {"n_points": 200, "wl_min": 6500.0, "wl_max": 6620.0}


def _settings(**overrides: Any) -> SessionSettings:
    values: dict[str, Any] = {
        "classes": CLASSES,
        "positive_class": "emission",
        "strategy": "bald",
        "batch_size": 10,
        "seed_size": 12,
        "precision_sample": 5,
        "mc_samples": 5,
        "max_candidates": 20,
        "max_epochs": 3,
        "seed": 7,
        "preprocessing": PREPROCESSING,
    }
    values.update(overrides)
    return SessionSettings(**values)


def _true_labels(data_dir: Path) -> dict[str, str]:
    with (data_dir / "demo" / "labels.csv").open(encoding="utf-8") as handle:
        return {row["id"]: row["label"] for row in csv.DictReader(handle)}


def _form(content: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("session", content, filename="session.json", content_type="application/json")
    form.add_field("PHASE", "RUN")
    return form


async def _run(client: Any, content: bytes, phase: str = "COMPLETED") -> tuple[str, Any]:
    path = await create(client, "active_learning", data=_form(content))
    doc = await wait_for_phase(client, path, phase, timeout=200)
    return path, doc


async def _result(client: Any, path: str, name: str) -> bytes:
    response = await client.get(f"{path}/results/{name}")
    assert response.status == 200, name
    return await response.read()


def _table(body: bytes) -> Any:
    """Parse strictly: astropy warnings are errors here, and any deviation raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(io.BytesIO(body), verify="exception")


def _votlint(body: bytes, tmp_path: Path, name: str) -> None:
    stilts = shutil.which("stilts")
    if stilts is None:
        return
    path = tmp_path / f"{name}.vot"
    path.write_bytes(body)
    done = subprocess.run(
        [stilts, "votlint", f"votable={path}"],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
    assert not errors, errors


@pytest.fixture
async def demo(make_client: Any, data_dir: Path) -> tuple[Any, dict[str, str]]:
    client = await make_client(demo_spectra=SPECTRA, base_url="http://vo.example.org/vocloud")
    return client, _true_labels(data_dir)


async def test_an_iteration_publishes_candidates_that_link_to_their_spectra(demo, tmp_path):
    client, truth = demo
    dids = sorted(truth)
    # Every class labelled: about half of the archive, the rest is for the model to score.
    labels = {did: truth[did] for did in dids[::2]}
    assert set(labels.values()) == set(CLASSES)
    history = (IterationRecord(iteration=1, labels_used=12, val_accuracy=0.5, val_macro_f1=0.4),)
    # A label of a spectrum the archive does not hold (deleted since) is not used, and said so.
    stranger = {"ivo://elsewhere/gone": "emission"}
    given = IterationInput(
        session_id="s1", iteration=2, settings=_settings(), labels={**labels, **stranger}, history=history
    )
    path, doc = await _run(client, given.to_json().encode())
    assert set(doc.results) == {
        "result", "oracle", "precision_sample", "learning_curve", "learning_curve_png", "model", "iteration"
    }  # fmt: skip
    assert doc.progress is not None and doc.progress[0] == 1.0 and "trained on" in doc.progress[1]
    assert "1 label of spectra outside the feature store ignored" in doc.progress[1]

    outcome = IterationOutcome.from_json(await _result(client, path, "iteration"))
    _check_outcome(outcome, labels)
    body = await _result(client, path, "result")
    _votlint(body, tmp_path, "result")
    _check_candidates(_table(body), outcome, labels)
    assert b"http://www.ivoa.net/xml/mivot" in body and b"vcml:Classification" in body

    for name, expected_ids in (("oracle", outcome.oracle), ("precision_sample", outcome.precision_sample)):
        part = await _result(client, path, name)
        _votlint(part, tmp_path, name)
        part_rows = _table(part).get_first_table().array
        assert [str(v) for v in part_rows["id"]] == list(expected_ids)
        assert all(part_rows[name])

    curve_body = await _result(client, path, "learning_curve")
    _votlint(curve_body, tmp_path, "learning_curve")
    curve = _table(curve_body).get_first_table().array
    assert [int(i) for i in curve["iteration"]] == [1, 2]
    assert [int(n) for n in curve["labels_used"]] == [12, len(labels)]
    assert float(curve["val_accuracy"][0]) == 0.5
    assert outcome.val_accuracy is not None
    assert float(curve["val_accuracy"][1]) == pytest.approx(outcome.val_accuracy)
    png = Image.open(io.BytesIO(await _result(client, path, "learning_curve_png")))
    assert png.format == "PNG" and png.size[0] > 400

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(await _result(client, path, "model"))
    model = bcnn.load(checkpoint, device="cpu")
    assert model.config.n_inputs == 200 and model.config.n_classes == 3
    assert model.config.seed == 7 and model.config.max_epochs == 3
    with torch.no_grad():
        assert model.network(torch.zeros(2, 200)).shape == (2, 3)


def _check_outcome(outcome: IterationOutcome, labels: dict[str, str]) -> None:
    assert not outcome.cold_start and outcome.iteration == 2
    assert outcome.labels_used == len(labels) and outcome.scored == SPECTRA
    assert outcome.label_counts == {c: sum(v == c for v in labels.values()) for c in CLASSES}
    assert 1 <= outcome.epochs <= 3
    assert len(outcome.oracle) == 10 and not set(outcome.oracle) & set(labels)
    assert sum(outcome.predicted_counts.values()) == SPECTRA - len(labels)
    assert outcome.predicted_positive == outcome.predicted_counts["emission"]
    assert len(outcome.precision_sample) == min(5, outcome.predicted_positive)
    assert not set(outcome.precision_sample) & set(labels)
    assert outcome.mean_bald is not None and outcome.mean_entropy is not None
    assert 0.0 <= outcome.mean_bald <= outcome.mean_entropy
    assert outcome.val_accuracy is not None and outcome.val_macro_f1 is not None
    assert outcome.feature_key


def _check_candidates(votable: Any, outcome: IterationOutcome, labels: dict[str, str]) -> None:
    table = votable.get_first_table()
    probabilities = [probability_column(c) for c in CLASSES]
    at = CANDIDATE_COLUMNS.index("predicted_class") + 1
    assert [f.name for f in table.fields] == [*CANDIDATE_COLUMNS[:at], *probabilities, *CANDIDATE_COLUMNS[at:]]
    by_name = {f.name: f for f in table.fields}
    assert by_name["id"].ucd == "meta.id;meta.main"
    assert by_name["ra"].ucd == "pos.eq.ra;meta.main" and by_name["ra"].unit == "deg"
    assert by_name["dec"].ucd == "pos.eq.dec;meta.main"
    rows = table.array
    ids = [str(v) for v in rows["id"]]
    assert len(ids) == len(set(ids))
    # The 20 most uncertain unlabelled spectra, plus oracle and sample rows that are not among them.
    assert 20 <= len(ids) <= 20 + 10 + 5 and not set(ids) & set(labels)
    assert {i for i, flag in zip(ids, rows["oracle"], strict=True) if flag} == set(outcome.oracle)
    assert {i for i, flag in zip(ids, rows["precision_sample"], strict=True) if flag} == set(outcome.precision_sample)
    assert [int(r) for r in rows["rank"]] == list(range(1, len(ids) + 1))
    assert np.all(np.diff(np.asarray(rows["bald"], dtype=np.float64)) <= 0), "ranked by BALD, the strategy's score"
    # The bald strategy takes the top of that ranking.
    assert ids[:10] == list(outcome.oracle)
    probs = np.stack([np.asarray(rows[p], dtype=np.float64) for p in probabilities], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [str(c) for c in rows["predicted_class"]] == [CLASSES[k] for k in probs.argmax(axis=1)]
    assert np.all(np.isfinite(np.asarray(rows["x"], dtype=np.float64)))
    assert [str(u) for u in rows["access_url"]] == [data_url("http://vo.example.org/vocloud", i) for i in ids]
    assert not np.ma.getmaskarray(rows["ra"]).any() and str(rows["target"][0])
    constants = {p.name: p.value for p in table.params}
    assert constants["session_id"] == "s1" and int(constants["iteration"]) == 2 and constants["strategy"] == "bald"

    # DataLink 1.1 section 4: a service descriptor whose ID parameter takes the id column.
    descriptors = [r for r in votable.resources if r.type == "meta" and r.utype == "adhoc:service"]
    assert len(descriptors) == 1
    params = {p.name: p for p in descriptors[0].params}
    assert params["standardID"].value == "ivo://ivoa.net/std/DataLink#links-1.1"
    assert params["accessURL"].value == "http://vo.example.org/vocloud" + DATALINK_PATH
    (id_param,) = [p for g in descriptors[0].groups if g.name == "inputParams" for p in g.entries]
    assert id_param.name == "ID" and id_param.ref == by_name["id"].ID
    # What pyvo's getdatalink() would call for a row (calling it needs a live server).
    results = pyvo.dal.TAPResults(votable)
    query = DatalinkQuery.from_resource(results[3], results.get_adhocservice_by_ivoid(DATALINK_IVOID))
    assert query.baseurl == "http://vo.example.org/vocloud" + DATALINK_PATH and dict(query) == {"ID": ids[3]}


async def test_a_cold_start_draws_a_seed_batch_without_a_model(demo, tmp_path):
    client, truth = demo
    one_class = {did: label for did, label in sorted(truth.items()) if label == "absorption"}
    given = IterationInput(
        session_id="s2", iteration=1, settings=_settings(strategy="diverse"), labels=dict(list(one_class.items())[:3])
    )
    path, doc = await _run(client, given.to_json().encode())
    assert "model" not in doc.results and "cold start" in (doc.progress or (0, ""))[1]
    outcome = IterationOutcome.from_json(await _result(client, path, "iteration"))
    assert outcome.cold_start and outcome.epochs == 0 and outcome.labels_used == 3
    assert len(outcome.oracle) == 12 and len(set(outcome.oracle)) == 12
    assert not set(outcome.oracle) & set(given.labels) and outcome.precision_sample == ()
    assert outcome.mean_bald is None and outcome.predicted_counts == {}

    body = await _result(client, path, "result")
    _votlint(body, tmp_path, "cold")
    rows = _table(body).get_first_table().array
    assert [str(v) for v in rows["id"]] == list(outcome.oracle)
    assert all(str(c) == "" for c in rows["predicted_class"])  # an empty cell: TABLEDATA's null string
    for name in ("entropy", "bald", "x", probability_column("emission")):
        assert np.ma.getmaskarray(rows[name]).all(), name
    assert all(rows["oracle"]) and not any(rows["precision_sample"])

    # Same input, same seed batch.
    again, _ = await _run(client, given.to_json().encode())
    assert IterationOutcome.from_json(await _result(client, again, "iteration")).oracle == outcome.oracle


def _valid_input() -> dict[str, Any]:
    given = IterationInput(session_id="s3", iteration=1, settings=_settings(), labels={})
    document: dict[str, Any] = json.loads(given.to_json())
    return document


def _with(path: tuple[str, ...], value: Any) -> bytes:
    document = _valid_input()
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(document).encode()


BAD_INPUTS = (
    (b"not json at all", ("Bad session file", "Not an iteration input")),
    (json.dumps({"format": 99}).encode(), ("format 1",)),
    (_with(("settings", "strategy"), "guess"), ("strategy", "guess")),
    (_with(("settings", "batch_size"), 0), ("batch_size",)),
    (_with(("settings", "positive_class"), "comet"), ("positive_class", "comet")),
    (_with(("labels",), {"ivo://x/y": "comet"}), ("comet",)),
    (_with(("settings", "preprocessing"), {"n_points": "many"}), ("n_points", "many")),
    (_with(("settings", "preprocessing"), {"colour": "red"}), ("colour",)),
    (_with(("history",), [{"iteration": 1, "labels_used": "some"}]), ("history record 1", "labels_used", "some")),
)
"""(session file, words its job's error message must contain)."""


async def test_a_bad_session_file_fails_with_a_message_naming_the_problem(make_client, data_dir):
    client = await make_client()
    # All jobs at once: the workers import the runner once, not once per case.
    paths = [await create(client, "active_learning", data=_form(content)) for content, _ in BAD_INPUTS]
    for path, (_, words) in zip(paths, BAD_INPUTS, strict=True):
        doc = await wait_for_phase(client, path, "ERROR", timeout=100)
        assert doc.error_type == "fatal"
        message = doc.error_message or ""
        for word in words:
            assert word in message, message
        assert "Traceback" not in message
    # Nothing was preprocessed for a refused input.
    assert not (data_dir / "features").exists() or not list((data_dir / "features").iterdir())
