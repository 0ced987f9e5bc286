"""Sessions through the real app: creation, iterations as UWS jobs, auto-advance, stopping, failures, deletion."""

from __future__ import annotations

import json

import pytest

from tests.server.sessions.support import (
    CLASSES,
    DEMO_COUNT,
    create_session,
    csv_body,
    default_form,
    error_of,
    get_session,
    path_of,
    post_labels_ok,
    truth,
    validate,
    wait_iteration,
    wait_session,
)
from tests.support.fake_iteration import FAIL_EPOCHS, FAIL_MESSAGE, HOLD_EPOCHS, HOLD_FILE, fake_mean_bald
from tests.support.uws import get_job, parse_job_list, wait_for_phase
from vocloud.server.keys import SERVICE, SESSIONS
from vocloud.server.ml.iteration import IterationInput

pytestmark = pytest.mark.timeout(120)


async def _iteration_input(app, document, number):
    """The IterationInput a session gave its iteration ``number`` (the job's ``session`` upload)."""
    job = path_of(document["iterations"][number - 1]["job_url"])
    response = await app.get(f"{job}/parameters/session")
    assert response.status == 200
    return IterationInput.from_json(await response.read())


async def test_create_answers_303_and_runs_the_first_iteration(app, data_dir):
    """POST /sessions is a 303 to the session, whose first iteration runs at once as the owner's UWS job."""
    response = await app.post("/sessions", data=default_form(title="H-alpha hunt"), allow_redirects=False)
    assert response.status == 303
    path = path_of(response.headers["Location"])
    assert path.startswith("/sessions/")

    document = await wait_iteration(app, path, 1)

    assert document["url"].endswith(path)
    assert document["title"] == "H-alpha hunt"
    assert document["owner"] is None
    assert document["settings"]["classes"] == list(CLASSES)
    assert document["settings"]["positive_class"] == CLASSES[0]
    assert document["settings"]["strategy"] == "diverse"
    assert document["settings"]["seed_size"] == document["settings"]["batch_size"] == 5
    [first] = document["iterations"]
    assert first["number"] == 1 and first["phase"] == "COMPLETED"
    outcome = first["outcome"]
    # No labels yet: a cold start, whose random seed batch waits for labels.
    assert outcome["cold_start"] is True
    assert outcome["scored"] == DEMO_COUNT
    assert outcome["oracle_size"] == 5 and outcome["oracle_labelled"] == 0
    assert document["state"] == "waiting_for_labels"
    assert document["labels"] == {"total": 0, "by_class": dict.fromkeys(CLASSES, 0), "url": document["url"] + "/labels"}
    given = await _iteration_input(app, document, 1)
    assert given.iteration == 1 and given.labels == {} and given.history == ()
    assert given.session_id == document["id"]
    # The iteration's results are reachable where the document says.
    assert set(first["results"]) == {"candidates", "oracle"}
    for url in first["results"].values():
        assert (await app.get(path_of(url))).status == 200
    jobs = parse_job_list(await (await app.get("/jobs/active_learning")).read())
    assert [job_id for job_id, _ in jobs] == [first["job_id"]]


async def test_labelling_the_oracle_batch_starts_the_next_iteration(app, data_dir):
    """Iteration 2 starts when, and only when, the last label of iteration 1's batch arrives; it gets all labels."""
    expert = truth(data_dir)
    path = await create_session(app)
    document = await wait_iteration(app, path, 1)
    oracle = await _oracle(app, document, 1)
    assert len(oracle) == 5

    partial = await post_labels_ok(app, path, {did: expert[did] for did in oracle[:4]})
    assert partial["accepted"] == 4 and partial["labels"] == 4
    assert partial["next_iteration"] is None
    document = await get_session(app, path)
    assert len(document["iterations"]) == 1
    assert document["state"] == "waiting_for_labels"
    assert document["iterations"][0]["outcome"]["oracle_labelled"] == 4

    # An extra label outside the batch does not complete it either.
    outside = next(did for did in sorted(expert) if did not in oracle)
    assert (await post_labels_ok(app, path, {outside: expert[outside]}))["next_iteration"] is None

    last = await post_labels_ok(app, path, {oracle[4]: expert[oracle[4]]})
    assert last["labels"] == 6
    assert last["next_iteration"] is not None
    document = await wait_iteration(app, path, 2)
    assert document["iterations"][1]["job_url"] == last["next_iteration"]
    given = await _iteration_input(app, document, 2)
    assert given.labels == {did: expert[did] for did in [*oracle, outside]}
    [record] = given.history
    assert record.iteration == 1 and record.labels_used == 0
    by_class = document["labels"]["by_class"]
    assert sum(by_class.values()) == 6
    assert by_class == {c: sum(1 for d in given.labels.values() if d == c) for c in CLASSES}


async def test_completed_batch_does_not_advance_without_auto_advance(app, data_dir):
    """With auto_advance=false the session waits for POST /iterations, which answers 409 while one runs."""
    expert = truth(data_dir)
    path = await create_session(app, default_form(auto_advance="false", max_epochs=HOLD_EPOCHS))
    (data_dir / HOLD_FILE).touch()
    document = await wait_iteration(app, path, 1)
    oracle = await _oracle(app, document, 1)

    answer = await post_labels_ok(app, path, {did: expert[did] for did in oracle})

    assert answer["next_iteration"] is None
    document = await get_session(app, path)
    assert document["state"] == "idle" and len(document["iterations"]) == 1

    (data_dir / HOLD_FILE).unlink()
    response = await app.post(f"{path}/iterations", allow_redirects=False)
    assert response.status == 303 and path_of(response.headers["Location"]) == path
    document = await get_session(app, path)
    assert len(document["iterations"]) == 2 and document["state"] == "running"
    assert document["iterations"][1]["status"] in ("queued", "running")
    assert document["iterations"][1]["outcome"] is None and document["iterations"][1]["finished"] is None
    message = await error_of(await app.post(f"{path}/iterations"), 409)
    assert "still queued or running" in message
    (data_dir / HOLD_FILE).touch()
    document = await wait_iteration(app, path, 2)
    assert document["state"] == "waiting_for_labels"


async def test_label_budget_stops_auto_advance(app, data_dir):
    """Once the label budget is used, completing the batch starts nothing and the session says why."""
    expert = truth(data_dir)
    path = await create_session(app, default_form(label_budget=5))
    oracle = await _oracle(app, await wait_iteration(app, path, 1), 1)

    answer = await post_labels_ok(app, path, {did: expert[did] for did in oracle})

    assert answer["next_iteration"] is None
    document = await get_session(app, path)
    assert document["state"] == "stopped"
    assert len(document["iterations"]) == 1
    assert any("label budget" in reason for reason in document["stopping"])
    # The expert may still go on by hand.
    assert (await app.post(f"{path}/iterations", allow_redirects=False)).status == 303
    await wait_iteration(app, path, 2)


async def test_low_uncertainty_stops_auto_advance(app, data_dir):
    """A trained iteration whose mean BALD is under the threshold stops the session once its batch is labelled."""
    expert = truth(data_dir)
    seed = _two_classes(expert, 4)
    # The fake's mean BALD after training on 4 labels; the threshold lies just above it.
    threshold = fake_mean_bald(len(seed)) * 1.01
    path = await create_session(app, default_form(uncertainty_threshold=threshold), labels=csv_body(seed))
    document = await wait_iteration(app, path, 1)
    assert document["iterations"][0]["outcome"]["cold_start"] is False
    assert document["iterations"][0]["outcome"]["mean_bald"] == pytest.approx(fake_mean_bald(len(seed)))
    assert document["state"] == "stopped"
    assert any("mean uncertainty below" in reason for reason in document["stopping"])
    oracle = await _oracle(app, document, 1)

    answer = await post_labels_ok(app, path, {did: expert[did] for did in oracle})

    assert answer["next_iteration"] is None
    assert len((await get_session(app, path))["iterations"]) == 1


async def test_a_failed_iteration_is_shown_and_can_be_started_again(app, data_dir):
    """An iteration whose job fails marks the session failed with the job's message; labels do not advance it."""
    expert = truth(data_dir)
    path = await create_session(app, default_form(max_epochs=FAIL_EPOCHS))

    document = await wait_iteration(app, path, 1, status="failed")

    assert document["state"] == "failed"
    [first] = document["iterations"]
    assert first["phase"] == "ERROR" and FAIL_MESSAGE in first["error"]
    assert first["outcome"] is None
    some = sorted(expert)[:2]
    assert (await post_labels_ok(app, path, {did: expert[did] for did in some}))["next_iteration"] is None
    assert (await app.post(f"{path}/iterations", allow_redirects=False)).status == 303
    document = await wait_iteration(app, path, 2, status="failed")
    assert [i["number"] for i in document["iterations"]] == [1, 2]


async def test_an_aborted_or_deleted_iteration_job_fails_the_iteration(app, data_dir):
    """Aborting an iteration's job through UWS, or deleting it, is seen by the session."""
    path = await create_session(app, default_form(max_epochs=HOLD_EPOCHS))
    document = await wait_session(app, path, lambda d: len(d["iterations"]) == 1)
    job = path_of(document["iterations"][0]["job_url"])
    await wait_for_phase(app, job, "EXECUTING")
    assert (await get_session(app, path))["iterations"][0]["status"] == "running"

    assert (await app.post(f"{job}/phase", data={"PHASE": "ABORT"}, allow_redirects=False)).status == 303

    document = await get_session(app, path)
    assert document["state"] == "failed" and "aborted" in document["iterations"][0]["error"]
    assert (await app.post(f"{path}/iterations", allow_redirects=False)).status == 303
    document = await get_session(app, path)
    second = path_of(document["iterations"][1]["job_url"])
    assert (await app.delete(second, allow_redirects=False)).status == 303
    document = await get_session(app, path)
    assert document["iterations"][1]["status"] == "failed"
    assert "deleted" in document["iterations"][1]["error"]
    assert document["iterations"][1]["phase"] is None and document["iterations"][1]["results"] == {}
    (data_dir / HOLD_FILE).touch()


async def test_delete_forgets_the_session_and_keeps_its_jobs(app):
    """DELETE is a 303 to the list; the session is gone everywhere, its iteration jobs stay the owner's."""
    path = await create_session(app)
    document = await wait_iteration(app, path, 1)

    response = await app.delete(path, allow_redirects=False)

    assert response.status == 303 and path_of(response.headers["Location"]) == "/sessions"
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/labels"), ("POST", "/iterations")]:
        message = await error_of(await app.request(method, path + suffix), 404)
        assert "There is no session" in message
    listed = await (await app.get("/sessions")).json()
    assert listed == {"sessions": []}
    job = await get_job(app, path_of(document["iterations"][0]["job_url"]))
    assert job.phase == "COMPLETED"


async def test_listing_summarises_the_callers_sessions(app):
    """GET /sessions lists each session with its state and counts, oldest first."""
    first = await create_session(app, default_form(title="first"))
    second = await create_session(app, default_form(title="second", auto_advance="no"))
    await wait_iteration(app, first, 1)
    await wait_iteration(app, second, 1)

    response = await app.get("/sessions")

    assert response.status == 200
    listed = await response.json()
    validate(listed, "session_list")
    assert [s["title"] for s in listed["sessions"]] == ["first", "second"]
    assert [path_of(s["url"]) for s in listed["sessions"]] == [first, second]
    assert all(s["iterations"] == 1 and s["labels"] == 0 for s in listed["sessions"])
    assert {s["state"] for s in listed["sessions"]} == {"waiting_for_labels"}


def _two_classes(expert, count):
    """``count`` labels from the demo archive covering two classes (so the first iteration trains)."""
    by_class = {}
    for did in sorted(expert):
        by_class.setdefault(expert[did], []).append(did)
    picked = by_class[CLASSES[0]][: count // 2] + by_class[CLASSES[1]][: count - count // 2]
    return {did: expert[did] for did in picked}


async def _oracle(app, document, number):
    """The oracle batch of an iteration, read from its ``iteration`` result."""
    job = path_of(document["iterations"][number - 1]["job_url"])
    outcome = json.loads(await (await app.get(f"{job}/results/iteration")).read())
    return list(outcome["oracle"])


async def test_an_iteration_that_ends_unheard_is_recorded_when_the_session_is_read(app):
    """If the job's end is not announced (no listener, as while the server is down), reading the session records it."""
    sessions = app.server.app[SESSIONS]
    app.server.app[SERVICE].remove_listener(sessions._on_job_finished)
    path = await create_session(app)
    document = await wait_session(app, path, lambda d: len(d["iterations"]) == 1)
    await wait_for_phase(app, path_of(document["iterations"][0]["job_url"]), "COMPLETED")

    document = await get_session(app, path)

    assert document["iterations"][0]["status"] == "completed"
    assert document["iterations"][0]["outcome"]["oracle_size"] == 5
    assert document["state"] == "waiting_for_labels"
