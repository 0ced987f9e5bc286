"""``Idempotency-Key`` on POST /sessions/{id}/labels: applied once, replayed to retries, refused when reused."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from astropy.io.votable import parse

from tests.server.sessions.support import (
    CLASSES,
    create_session,
    csv_body,
    default_form,
    error_of,
    get_session,
    path_of,
    truth,
    validate,
    wait_iteration,
)
from vocloud.server.sessions.labels_input import IdempotencyKeyReusedError
from vocloud.server.sessions.models import NewLabel
from vocloud.server.sessions.store import SessionStore

pytestmark = pytest.mark.timeout(120)

KEY = '"6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"'
"""A key as the draft writes it: an RFC 8941 string holding a UUID."""


async def _post(app, path, body: bytes, key: str | None, content_type: str = "text/csv"):
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await app.post(f"{path}/labels", data=io.BytesIO(body), headers=headers)


async def _history(app, path) -> list[tuple[str, str]]:
    response = await app.get(f"{path}/labels")
    assert response.status == 200
    table = parse(io.BytesIO(await response.read())).get_first_table().array
    return list(zip(table["id"].tolist(), table["label"].tolist(), strict=True))


async def _session_with_batch(app, **form) -> tuple[str, list[str]]:
    """A session whose first iteration completed; returns its path and its oracle batch."""
    path = await create_session(app, default_form(**form))
    document = await wait_iteration(app, path, 1)
    job = path_of(document["iterations"][0]["job_url"])
    outcome = json.loads(await (await app.get(f"{job}/results/iteration")).read())
    return path, list(outcome["oracle"])


async def test_a_repeated_post_is_replayed_and_stores_nothing(app, data_dir):
    """The first post is applied; the same labels under the same key get the same answer, marked replayed."""
    expert = truth(data_dir)
    path, _ = await _session_with_batch(app, auto_advance="false")
    labels = {did: expert[did] for did in sorted(expert)[:3]}

    first = await _post(app, path, csv_body(labels), KEY)
    assert first.status == 200, await first.text()
    assert "Idempotent-Replayed" not in first.headers
    answer = await first.json()
    validate(answer, "label_post")
    assert answer["accepted"] == 3
    history = await _history(app, path)
    assert history == list(labels.items())

    # The same labels again, and as JSON: the fingerprint is of the labels, not of the bytes.
    as_json = json.dumps([{"id": did, "label": label} for did, label in labels.items()]).encode()
    for body, content_type in [(csv_body(labels), "text/csv"), (as_json, "application/json")]:
        again = await _post(app, path, body, KEY, content_type)
        assert again.status == 200, await again.text()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == answer
    assert await _history(app, path) == history
    # Without a key, a post is applied every time, as before.
    for _ in range(2):
        assert (await _post(app, path, csv_body(labels), None)).status == 200
    assert len(await _history(app, path)) == 3 * len(history)


async def test_the_same_key_with_other_labels_is_refused_422(app, data_dir):
    """Reusing a key for a different post is the client's mistake: 422, naming the key, nothing stored."""
    expert = truth(data_dir)
    path, _ = await _session_with_batch(app, auto_advance="false")
    dids = sorted(expert)
    assert (await _post(app, path, csv_body({dids[0]: expert[dids[0]]}), KEY)).status == 200
    before = await _history(app, path)

    other_label = next(c for c in CLASSES if c != expert[dids[0]])
    for changed in ({dids[0]: other_label}, {dids[0]: expert[dids[0]], dids[1]: expert[dids[1]]}):
        message = await error_of(await _post(app, path, csv_body(changed), KEY), 422)
        assert "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b" in message and "different labels" in message
    assert await _history(app, path) == before


async def test_keys_are_per_session(app, data_dir):
    """A key used on one session is new on another: both posts are applied."""
    expert = truth(data_dir)
    first, _ = await _session_with_batch(app, auto_advance="false")
    second, _ = await _session_with_batch(app, auto_advance="false")
    did = sorted(expert)[0]
    for path in (first, second):
        response = await _post(app, path, csv_body({did: expert[did]}), KEY)
        assert response.status == 200 and "Idempotent-Replayed" not in response.headers
        assert await _history(app, path) == [(did, expert[did])]


def test_keys_are_per_owner_and_survive_a_reopened_store(tmp_path: Path):
    """At the store: one key of two owners is two posts; a reopened database still knows both answers."""
    path = tmp_path / "sessions.sqlite"
    store = SessionStore(path)
    try:
        # A bare session row is all add_labels needs.
        store._bulk.execute("INSERT INTO sessions VALUES ('s', 'alice', NULL, 0, '{}', NULL, NULL, NULL, 0)")
        now = datetime.now(UTC)
        labels = [NewLabel(id="ivo://x?1", label="emission")]
        for owner in ("alice", "bob", None):
            answer = store.add_labels("s", labels, owner=owner, posted=now, key="k", fingerprint="f")
            assert answer is not None and not answer.replayed and answer.accepted == 1
        store.set_next_job("s", "bob", "k", "job-7")
    finally:
        store.close()
    store = SessionStore(path)
    try:
        assert len(store.label_history("s")) == 3
        for owner, job in (("alice", None), ("bob", "job-7"), (None, None)):
            replay = store.add_labels("s", labels, owner=owner, posted=datetime.now(UTC), key="k", fingerprint="f")
            assert replay is not None and replay.replayed and replay.next_job_id == job
        with pytest.raises(IdempotencyKeyReusedError):
            store.idempotent_answer("s", "alice", "k", "another fingerprint")
        assert len(store.label_history("s")) == 3
        store.delete_session("s")
        assert store.idempotent_answer("s", "alice", "k", "f") is None
    finally:
        store.close()


async def test_a_replayed_post_that_completed_the_batch_names_the_iteration_it_started(app, data_dir):
    """The answer stored with the key includes the next iteration; the replay starts none of its own."""
    expert = truth(data_dir)
    path, oracle = await _session_with_batch(app)
    body = csv_body({did: expert[did] for did in oracle})

    first = await _post(app, path, body, KEY)
    assert first.status == 200, await first.text()
    answer = await first.json()
    assert answer["next_iteration"] is not None
    await wait_iteration(app, path, 2)

    again = await _post(app, path, body, KEY)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == answer
    document = await get_session(app, path)
    assert len(document["iterations"]) == 2
    assert document["labels"]["total"] == len(oracle)
    assert len(await _history(app, path)) == len(oracle)


async def test_concurrent_posts_with_one_key_store_the_labels_once(app, data_dir):
    """Posts racing with one key: one is applied, the others are 409 (still being handled) or replays."""
    expert = truth(data_dir)
    path, _ = await _session_with_batch(app, auto_advance="false")
    labels = {did: expert[did] for did in sorted(expert)[:5]}

    responses = await asyncio.gather(*(_post(app, path, csv_body(labels), KEY) for _ in range(4)))

    applied = [r for r in responses if r.status == 200 and "Idempotent-Replayed" not in r.headers]
    assert len(applied) == 1
    for response in responses:
        if response is applied[0]:
            continue
        if response.status == 409:
            assert "still being handled" in await error_of(response, 409)
        else:
            assert response.status == 200 and response.headers["Idempotent-Replayed"] == "true"
    assert await _history(app, path) == list(labels.items())


async def test_a_refused_post_is_not_remembered_under_its_key(app, data_dir):
    """A post refused for its content stores nothing, key included: the corrected retry with that key is applied."""
    expert = truth(data_dir)
    path, _ = await _session_with_batch(app, auto_advance="false")
    did = sorted(expert)[0]

    message = await error_of(await _post(app, path, csv_body({did: "nova"}), KEY), 400)
    assert "nova" in message
    corrected = await _post(app, path, csv_body({did: expert[did]}), KEY)
    assert corrected.status == 200 and "Idempotent-Replayed" not in corrected.headers
    assert await _history(app, path) == [(did, expert[did])]


async def test_the_header_is_an_rfc8941_string(app, data_dir):
    """Keys are sf-strings (bare tokens tolerated); a malformed one is a 400 saying what the header must be."""
    expert = truth(data_dir)
    path, _ = await _session_with_batch(app, auto_advance="false")
    did = sorted(expert)[0]
    body = csv_body({did: expert[did]})
    good = ['"with \\"escaped\\" quotes"', "bare-token-key", '"key";param=1']
    for header in good:
        response = await _post(app, path, body, header)
        assert response.status == 200 and "Idempotent-Replayed" not in response.headers, header
        assert (await _post(app, path, body, header)).headers["Idempotent-Replayed"] == "true"
    # Escapes are undone: the quoted form of a bare key is the same key.
    assert (await _post(app, path, body, '"bare-token-key"')).headers["Idempotent-Replayed"] == "true"
    stored = await _history(app, path)
    assert len(stored) == len(good)
    for header in ['""', "two words", '"' + "k" * 256 + '"', '"unterminated', '"caf\u00e9"']:
        assert "Idempotency-Key" in await error_of(await _post(app, path, body, header), 400), header
    assert await _history(app, path) == stored
