"""POST /sessions: parameters (names case-insensitive), the SSAP-style selection, initial labels, and refusals."""

from __future__ import annotations

import io

import pytest
from astropy.io.votable import parse

from tests.server.sessions.support import (
    CLASSES,
    DEMO_COUNT,
    create_session,
    csv_body,
    default_form,
    error_of,
    get_session,
    post_session,
    truth,
    wait_iteration,
)
from tests.support.uws import parse_job_list

pytestmark = pytest.mark.timeout(120)


async def _nothing_created(app) -> None:
    assert await (await app.get("/sessions")).json() == {"sessions": []}
    assert parse_job_list(await (await app.get("/jobs/active_learning")).read()) == []


async def _archive_rows(app):
    """(DID, RA, Dec, target, em_min, em_max) of every archived spectrum, through SSA."""
    body = await (await app.get("/ssa", params={"REQUEST": "queryData", "MAXREC": "1000"})).read()
    table = parse(io.BytesIO(body)).get_first_table()
    by_utype = {(f.utype or "").lower(): f.ID or f.name for f in table.fields}
    names = table.array.dtype.names
    field_ids = [f.ID or f.name for f in table.fields]

    def column(utype_end):
        key = next(k for k in by_utype if k.endswith(utype_end))
        return table.array[names[field_ids.index(by_utype[key])]]

    dids = column("curation.publisherdid")
    positions = column("char.spatialaxis.coverage.location.value")
    targets = column("target.name")
    return [(str(d), float(p[0]), float(p[1]), str(t)) for d, p, t in zip(dids, positions, targets, strict=True)]


async def test_parameters_are_case_insensitive_and_stored(app):
    """Every setting given is stored as typed; names may be in any case, classes repeated or comma-separated."""
    form = [
        ("CLASS", "absorption"), ("Class", "emission,double-peak"), ("Positive_Class", "emission"),
        ("STRATEGY", "bald"), ("batch_size", "7"), ("SEED_SIZE", "4"), ("precision_sample", "0"),
        ("mc_samples", "5"), ("max_candidates", "50"), ("seed", "3"), ("max_epochs", "2"),
        ("label_budget", "500"), ("uncertainty_threshold", "0.01"), ("precision_target", "0.9"),
        ("AUTO_ADVANCE", "no"), ("title", "All of it"), ("N_POINTS", "300"), ("grid", "log"),
        ("normalise", "false"), ("scaling", "zscore"), ("wl_min", "6500"), ("wl_max", "6600"),
        ("BAND", "6.4e-7/"),
    ]  # fmt: skip

    path = await create_session(app, form)

    document = await wait_iteration(app, path, 1)
    settings = document["settings"]
    assert settings["classes"] == ["absorption", "emission", "double-peak"]
    assert settings["positive_class"] == "emission"
    assert (settings["strategy"], settings["batch_size"], settings["seed_size"]) == ("bald", 7, 4)
    assert (settings["precision_sample"], settings["mc_samples"], settings["max_candidates"]) == (0, 5, 50)
    assert (settings["seed"], settings["max_epochs"]) == (3, 2)
    assert settings["preprocessing"] == {
        "n_points": 300, "grid": "log", "normalise": False, "scaling": "zscore", "wl_min": 6500.0, "wl_max": 6600.0,
    }  # fmt: skip
    assert settings["selection"] == {"band_min": 6.4e-7}
    assert document["criteria"] == {"label_budget": 500, "uncertainty_threshold": 0.01, "precision_target": 0.9}
    assert document["auto_advance"] is False and document["title"] == "All of it"
    # The seed batch has seed_size spectra.
    assert document["iterations"][0]["outcome"]["oracle_size"] == 4


async def test_the_ssap_selection_becomes_preprocess_parameters_and_limits_the_iteration(app):
    """POS + SIZE (a diameter), BAND and TARGETNAME select what the iteration scores."""
    rows = await _archive_rows(app)
    _, ra, dec, target = rows[0]
    same_target = [r for r in rows if r[3] == target]
    form = default_form(POS=f"{ra},{dec}", SIZE="2", BAND="6.0e-7/7.0e-7", TARGETNAME=target.upper())

    path = await create_session(app, form)

    document = await wait_iteration(app, path, 1)
    selection = document["settings"]["selection"]
    assert (selection["pos_ra"], selection["pos_dec"], selection["radius"]) == pytest.approx((ra, dec, 1.0))
    assert (selection["band_min"], selection["band_max"]) == (6.0e-7, 7.0e-7)
    assert selection["target"] == target.upper()
    assert "collection" not in selection
    # TARGETNAME matches case-insensitively, as at /ssa; the demo's repeated targets share a position.
    assert document["iterations"][0]["outcome"]["scored"] == len(same_target) < DEMO_COUNT


async def test_initial_labels_are_stored_and_given_to_the_first_iteration(app, data_dir):
    """A labels upload at creation is the session's first post; with two classes the first iteration trains."""
    expert = truth(data_dir)
    dids = sorted(expert)
    seed = {dids[0]: CLASSES[0], dids[1]: CLASSES[1], dids[2]: CLASSES[1]}

    path = await create_session(app, default_form(), labels=csv_body(seed))

    document = await wait_iteration(app, path, 1)
    assert document["labels"]["total"] == 3
    assert document["labels"]["by_class"] == {CLASSES[0]: 1, CLASSES[1]: 2, CLASSES[2]: 0}
    outcome = document["iterations"][0]["outcome"]
    assert outcome["cold_start"] is False and outcome["labels_used"] == 3
    history = parse(io.BytesIO(await (await app.get(f"{path}/labels")).read())).get_first_table().array
    assert list(history["id"]) == list(seed) and set(history["iteration"]) == {0}


BAD_FORMS = [  # name, form changes, words of the message
    ("one-class", {"class": "emission"}, ["class", "at least two"]),
    ("no-class", {"class": None}, ["class", "at least two"]),
    ("bad-class-name", {"class": "emission,ab sorption"}, ["class", "'ab sorption'"]),
    ("repeated-class", {"class": "emission,absorption,emission"}, ["class", "'emission'", "more than once"]),
    ("too-many-classes", {"class": ",".join(f"c{i}" for i in range(51))}, ["class", "at most 50"]),
    ("clashing-classes", {"class": "a.b,a+b"}, ["class", "clash"]),
    ("unknown-positive", {"positive_class": "nova"}, ["positive_class", "'nova'"]),
    ("unknown-strategy", {"strategy": "greedy"}, ["strategy", "'greedy'"]),
    ("bad-batch", {"batch_size": "0"}, ["batch_size", "below the minimum"]),
    ("not-a-number", {"mc_samples": "many"}, ["mc_samples", "not an integer"]),
    ("bad-target", {"precision_target": "0"}, ["precision_target"]),
    ("bad-boolean", {"auto_advance": "perhaps"}, ["auto_advance"]),
    ("unknown-parameter", {"batchsize": "5"}, ["Unknown parameter", "batchsize"]),
    ("preprocess-names", {"pos_ra": "10"}, ["Unknown parameter", "pos_ra"]),
    ("bad-grid", {"grid": "cubic"}, ["grid", "'cubic'"]),
    ("reversed-range", {"wl_min": "6600", "wl_max": "6500"}, ["wl_min", "wl_max"]),
    ("bad-pos", {"POS": "10"}, ["POS"]),
    ("bad-size", {"POS": "10,20", "SIZE": "-1"}, ["SIZE"]),
    ("reversed-band", {"BAND": "7e-7/6e-7"}, ["BAND", "lower bound"]),
    ("repeated-band", [("BAND", "6e-7/"), ("band", "/7e-7")], ["BAND", "more than once"]),
    ("empty-cone", {"POS": "10,-80", "SIZE": "0.5"}, ["selection is empty"]),
    ("unknown-target", {"TARGETNAME": "No Such Star"}, ["selection is empty"]),
    ("empty-band", {"BAND": "1e-9/2e-9"}, ["selection is empty"]),
    ("long-title", {"title": "x" * 201}, ["title", "200"]),
]


async def test_bad_creations_are_400_naming_the_problem_and_create_nothing(app):
    """Each invalid form is refused before anything is made: no session, no job."""
    for name, change, words in BAD_FORMS:
        form = default_form(**change) if isinstance(change, dict) else default_form() + change
        message = await error_of(await post_session(app, form), 400)
        for word in words:
            assert word in message, (name, message)
        await _nothing_created(app)


async def test_bad_initial_labels_are_refused_and_create_nothing(app, data_dir):
    """Initial labels are checked like a label post: bad ones refuse the whole creation."""
    dids = sorted(truth(data_dir))
    cases = [
        (csv_body({dids[0]: "nova"}), ["labels", "'nova'"]),
        (csv_body({"ivo://nowhere/1": "emission"}), ["'ivo://nowhere/1'"]),
        (b"id;label\nx;y\n", ["labels:", "no id and no label column"]),
        (b'[{"id": "x"}]', ["labels:", "label is missing"]),
    ]
    for body, words in cases:
        message = await error_of(await post_session(app, default_form(), labels=body), 400)
        for word in words:
            assert word in message, message
        await _nothing_created(app)
    # An upload other than labels is refused too.
    from aiohttp import FormData

    form = FormData()
    for name, value in default_form():
        form.add_field(name, value)
    form.add_field("model", b"x", filename="model.pt")
    message = await error_of(await app.post("/sessions", data=form), 400)
    assert "'model'" in message
    await _nothing_created(app)


async def test_the_session_document_shows_defaults(app):
    """Without optional parameters the defaults of the issue apply."""
    path = await create_session(app, [("class", "a"), ("class", "b")])

    document = await get_session(app, path)

    settings = document["settings"]
    assert settings["classes"] == ["a", "b"] and settings["positive_class"] == "a"
    assert settings["strategy"] == "diverse"
    assert (settings["batch_size"], settings["seed_size"], settings["precision_sample"]) == (100, 100, 30)
    assert (settings["mc_samples"], settings["max_candidates"], settings["seed"], settings["max_epochs"]) == (
        20, 1000, 0, 60,
    )  # fmt: skip
    assert settings["selection"] == {} and settings["preprocessing"] == {}
    assert document["criteria"] == dict.fromkeys(("label_budget", "uncertainty_threshold", "precision_target"))
    assert document["auto_advance"] is True and document["title"] is None
    assert document["stopping"] == []
    await wait_iteration(app, path, 1)
