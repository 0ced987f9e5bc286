"""POST and GET /sessions/{id}/labels: formats, all-or-nothing refusals, history VOTable, precision from labels."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from aiohttp import FormData
from astropy.io.votable import parse
from lxml import etree

from tests.server.sessions.support import (
    CLASSES,
    create_session,
    csv_body,
    default_form,
    error_of,
    get_session,
    path_of,
    post_labels,
    post_labels_ok,
    truth,
    wait_iteration,
)
from vocloud.server.ml.iteration import LABEL_COLUMNS
from vocloud.server.ml.precision import precision_estimate
from vocloud.server.sessions.labels_input import MAX_LABELS
from vocloud.server.votable import FieldSpec, ResultDocument

pytestmark = pytest.mark.timeout(120)


def _votable(rows: dict[str, str], *, id_name: str = "id") -> bytes:
    document = ResultDocument(
        fields=(
            FieldSpec(name=id_name, datatype="char", arraysize="*"),
            FieldSpec(name="label", datatype="char", arraysize="*"),
            FieldSpec(name="comment", datatype="unicodeChar", arraysize="*"),
        )
    )
    return document.write(
        {id_name: list(rows), "label": list(rows.values()), "comment": ["from a VOTable"] * len(rows)}, rows=len(rows)
    )


async def _snapshot(app, path):
    """The session document and label history, as bytes, to prove a refused post changed nothing."""
    document = await (await app.get(path)).read()
    history = await (await app.get(f"{path}/labels")).read()
    return document, history


async def _history(app, path):
    response = await app.get(f"{path}/labels")
    assert response.status == 200
    assert response.content_type == "application/x-votable+xml"
    body = await response.read()
    table = parse(io.BytesIO(body)).get_first_table()
    return body, table


async def test_labels_in_every_format_are_stored_with_who_and_when(app, data_dir):
    """CSV, JSON, VOTable and a multipart upload all work; the history keeps every post, latest label counts."""
    expert = truth(data_dir)
    path = await create_session(app, default_form(auto_advance="false"))
    await wait_iteration(app, path, 1)
    dids = sorted(expert)
    before = datetime.now(UTC)

    first = await post_labels_ok(app, path, {dids[0]: "emission", dids[1]: "absorption"})
    as_json = json.dumps({"labels": [{"id": dids[2], "label": "emission", "labeller": "Ann", "comment": "sure"}]})
    second = await post_labels(app, path, as_json.encode(), "application/json; charset=utf-8")
    third = await post_labels(app, path, _votable({dids[3]: "double-peak"}), "application/x-votable+xml")
    form = FormData()
    form.add_field("labels", csv_body({dids[0]: "double-peak"}), filename="x.csv", content_type="text/plain")
    fourth = await app.post(f"{path}/labels", data=form)

    assert first["accepted"] == 2 and first["labels"] == 2
    for response, total in [(second, 3), (third, 4), (fourth, 4)]:
        assert response.status == 200, await response.text()
        assert (await response.json())["labels"] == total
    body, table = await _history(app, path)
    assert tuple(f.name for f in table.fields) == LABEL_COLUMNS
    rows = table.array
    assert list(rows["seq"]) == [1, 2, 3, 4, 5]
    assert list(rows["id"]) == [dids[0], dids[1], dids[2], dids[3], dids[0]]
    assert list(rows["label"]) == ["emission", "absorption", "emission", "double-peak", "double-peak"]
    assert rows["labeller"][2] == "Ann" and rows["comment"][2] == "sure"
    assert rows["comment"][3] == "from a VOTable"
    assert not rows["labeller"][0] and not rows["owner"][0]  # null cells: anonymous, no labeller given
    posted = [datetime.fromisoformat(str(v).replace("Z", "+00:00")) for v in rows["posted"]]
    assert all(before.replace(microsecond=0) <= t <= datetime.now(UTC) for t in posted)
    assert posted == sorted(posted)
    assert set(rows["iteration"]) == {1}
    # The relabelled spectrum counts once, under its latest label.
    document = await get_session(app, path)
    assert document["labels"]["total"] == 4
    assert document["labels"]["by_class"] == {"absorption": 1, "emission": 1, "double-peak": 2}
    # MIVOT maps the history to vcml:OracleLabel.
    root = etree.fromstring(body)
    vodml = root.find(".//{http://www.ivoa.net/xml/mivot}VODML")
    assert vodml is not None
    assert b"vcml:OracleLabel" in etree.tostring(vodml)


async def test_the_precision_estimate_comes_from_the_labelled_precision_sample(app, data_dir):
    """Labelling the precision sample gives the Wilson estimate of the share labelled as the positive class."""
    expert = truth(data_dir)
    dids = sorted(expert)
    seed = {dids[0]: "absorption", dids[1]: "emission"}
    path = await create_session(app, default_form(auto_advance="false", precision_sample=4), labels=csv_body(seed))
    document = await wait_iteration(app, path, 1)
    job = path_of(document["iterations"][0]["job_url"])
    outcome = json.loads(await (await app.get(f"{job}/results/iteration")).read())
    sample = outcome["precision_sample"]
    assert len(sample) == 4
    untouched = document["iterations"][0]["outcome"]["precision"]
    assert untouched["value"] is None and untouched["n"] == 0 and (untouched["low"], untouched["high"]) == (0, 1)

    # Three of the sample labelled: two as the positive class (absorption), one not.
    await post_labels_ok(app, path, {sample[0]: "absorption", sample[1]: "emission", sample[2]: "absorption"})

    estimate = (await get_session(app, path))["iterations"][0]["outcome"]["precision"]
    expected = precision_estimate(2, 3)
    assert estimate["n"] == 3
    assert estimate["value"] == pytest.approx(2 / 3)
    assert (estimate["low"], estimate["high"]) == pytest.approx((expected.low, expected.high))
    assert estimate["low"] < 2 / 3 < estimate["high"]
    assert estimate["confidence"] == pytest.approx(0.95)
    # Relabelling a sampled spectrum changes the estimate: the latest label counts.
    await post_labels_ok(app, path, {sample[1]: "absorption"})
    estimate = (await get_session(app, path))["iterations"][0]["outcome"]["precision"]
    assert estimate["value"] == pytest.approx(1.0) and estimate["high"] == 1.0
    # The next iteration is told the figures.
    assert (await app.post(f"{path}/iterations", allow_redirects=False)).status == 303
    document = await wait_iteration(app, path, 2)
    job = path_of(document["iterations"][1]["job_url"])
    given = json.loads(await (await app.get(f"{job}/parameters/session")).read())
    [record] = given["history"]
    assert record["precision"] == pytest.approx(1.0) and record["precision_n"] == 3


async def test_a_precision_target_stops_the_session(app, data_dir):
    """Once the lower bound of the precision estimate reaches the target, the session is stopped."""
    expert = truth(data_dir)
    dids = sorted(expert)
    seed = {dids[0]: "absorption", dids[1]: "emission"}
    path = await create_session(app, default_form(precision_sample=4, precision_target=0.3), labels=csv_body(seed))
    document = await wait_iteration(app, path, 1)
    job = path_of(document["iterations"][0]["job_url"])
    sample = json.loads(await (await app.get(f"{job}/results/iteration")).read())["precision_sample"]
    assert document["state"] == "waiting_for_labels"

    await post_labels_ok(app, path, dict.fromkeys(sample, "absorption"))

    document = await get_session(app, path)
    assert precision_estimate(4, 4).low >= 0.3
    assert document["state"] == "stopped"
    assert any("precision lower bound" in reason for reason in document["stopping"])


BAD_POSTS = [  # name, body from the sorted demo DIDs, Content-Type, status, words of the message ($0: first DID)
    ("unknown-id", lambda d: csv_body({d[0]: "emission", "ivo://nowhere/x": "emission"}), "text/csv", 400,
     ["'ivo://nowhere/x'", "1 id "]),
    ("unknown-class", lambda d: csv_body({d[0]: "emission", d[1]: "nova"}), "text/csv", 400,
     ["1 label ('nova')", "classes"]),
    ("conflicting-duplicate", lambda d: csv_body([(d[0], "emission"), (d[1], "emission"), (d[0], "absorption")]),
     "text/csv", 400, ["given twice with different labels", "1 id ($0)"]),
    ("malformed-csv", lambda d: f"id,label\n{d[0]},emission,extra\n".encode(), "text/csv", 400, ["CSV line 2"]),
    ("unterminated-quote", lambda d: f'id,label\n"{d[0]},emission\n'.encode(), "text/csv", 400, ["CSV line"]),
    ("csv-without-columns", lambda d: b"name,class\nx,y\n", "text/csv", 400, ["no id and no label column"]),
    ("not-utf8", lambda d: b"id,label\n\xff,emission\n", "text/csv", 400, ["UTF-8"]),
    ("malformed-json", lambda d: b'[{"id": "x", "label": ', "application/json", 400, ["not JSON"]),
    ("json-not-a-list", lambda d: b'{"id": "x"}', "application/json", 400, ["list"]),
    ("json-number-id", lambda d: b'[{"id": 3, "label": "emission"}]', "application/json", 400,
     ["JSON item 0", "string"]),
    ("malformed-votable", lambda d: b"<VOTABLE><RESOURCE>", "application/x-votable+xml", 400, ["not a VOTable"]),
    ("votable-without-id", lambda d: _votable({d[0]: "emission"}, id_name="did"), "application/x-votable+xml", 400,
     ["no id column"]),
    ("wrong-content-type", lambda d: csv_body({d[0]: "emission"}), "application/pdf", 415,
     ["application/pdf", "text/csv"]),
    ("too-many-labels", lambda d: b"id,label\n" + b"x,emission\n" * (MAX_LABELS + 1), "text/csv", 413,
     [f"More than {MAX_LABELS} labels"]),
    ("empty-body", lambda d: b"", "text/csv", 400, ["empty"]),
    ("long-id", lambda d: csv_body({"x" * 401: "emission"}), "text/csv", 400, ["longer than 400"]),
]  # fmt: skip


async def test_a_bad_label_post_is_refused_and_changes_nothing(app, data_dir):
    """Every refused post names the problem and leaves the session document and history byte-for-byte as they were."""
    expert = truth(data_dir)
    dids = sorted(expert)
    path = await create_session(app)
    await wait_iteration(app, path, 1)
    await post_labels_ok(app, path, {dids[5]: "emission"})
    before = await _snapshot(app, path)

    for name, body, content_type, status, words in BAD_POSTS:
        response = await post_labels(app, path, body(dids), content_type)
        assert response.status == status, (name, await response.text())
        message = await error_of(response, status)
        for word in words:
            assert word.replace("$0", repr(dids[0])) in message, (name, message)
        assert await _snapshot(app, path) == before, name


async def test_ids_outside_the_selection_are_refused_even_if_archived(app, data_dir):
    """A spectrum of the archive that the session's cone excludes cannot be labelled in it."""
    listed = await (await app.get("/ssa", params={"REQUEST": "queryData", "MAXREC": "100"})).read()
    table = parse(io.BytesIO(listed)).get_first_table().array
    did_field = next(name for name in table.dtype.names if "did" in name.lower() or name.lower().endswith("pubdid"))
    rows = sorted((str(r[did_field]), float(r["ssa_location"][0]), float(r["ssa_location"][1])) for r in table)
    did, ra, dec = rows[0]
    path = await create_session(app, default_form(POS=f"{ra},{dec}", SIZE="0.01", auto_advance="false"))
    document = await wait_iteration(app, path, 1)
    inside = document["iterations"][0]["outcome"]["scored"]
    outside = [r[0] for r in rows if abs(r[1] - ra) > 1 or abs(r[2] - dec) > 1]
    assert inside >= 1 and outside
    before = await _snapshot(app, path)

    message = await error_of(await post_labels(app, path, csv_body({did: "emission", outside[0]: "emission"})), 400)

    assert repr(outside[0]) in message and repr(did) not in message
    assert await _snapshot(app, path) == before
    assert (await post_labels_ok(app, path, {did: "emission"}))["labels"] == 1


async def test_a_body_over_the_upload_limit_is_413_and_changes_nothing(make_app):
    """The server's max_upload bounds a label post, whatever its format."""
    app = await make_app(max_upload=2048)
    path = await create_session(app)
    await wait_iteration(app, path, 1)
    before = await _snapshot(app, path)

    message = await error_of(await post_labels(app, path, b"id,label\n" + b"x,emission\n" * 400), 413)

    assert "2048" in message
    assert await _snapshot(app, path) == before


async def test_classes_are_exact_and_repeats_of_a_label_are_merged(app, data_dir):
    """Class names are case-sensitive; the same id twice with the same label is one label."""
    dids = sorted(truth(data_dir))
    path = await create_session(app, default_form(auto_advance="false"))
    await wait_iteration(app, path, 1)

    wrong_case = await error_of(await post_labels(app, path, csv_body({dids[0]: "Emission"})), 400)
    answer = await post_labels_ok(app, path, dict([(dids[0], "emission")]) | {})
    repeated = await post_labels(app, path, csv_body([(dids[1], CLASSES[0]), (dids[1], CLASSES[0])]))

    assert "'Emission'" in wrong_case
    assert answer["accepted"] == 1
    assert repeated.status == 200 and (await repeated.json())["accepted"] == 1
