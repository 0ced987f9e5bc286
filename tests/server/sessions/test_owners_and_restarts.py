"""Owner isolation under HTTP Basic, and sessions that survive a restart of the server."""

from __future__ import annotations

import pytest

from tests.server.sessions.support import (
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
    wait_session,
)
from tests.support.auth import PASSWORDS, AsUser
from tests.support.fake_iteration import HOLD_EPOCHS
from tests.support.uws import get_job
from vocloud.server.auth import UserFile
from vocloud.server.uws.service import RESTART_MESSAGE

pytestmark = pytest.mark.timeout(120)


async def test_another_users_session_is_404_everywhere(make_app, make_settings, data_dir):
    """Bob neither sees nor touches Alice's session; her labels record her as the owner."""
    users = UserFile(make_settings().users_file)
    for name, password in PASSWORDS.items():
        users.add(name, password)
    client = await make_app(auth="basic")
    alice, bob = AsUser(client, "alice"), AsUser(client, "bob")
    expert = truth(data_dir)
    did = sorted(expert)[0]
    path = await create_session(alice)
    document = await wait_iteration(alice, path, 1)
    assert document["owner"] == "alice"
    await post_labels_ok(alice, path, {did: expert[did]})
    before = await (await alice.get(path)).read()

    attempts = [
        ("GET", "", None), ("DELETE", "", None), ("GET", "/labels", None), ("POST", "/iterations", None),
        ("POST", "/labels", csv_body({did: "emission"})),
    ]  # fmt: skip
    for method, suffix, body in attempts:
        response = await bob.request(method, path + suffix, data=body, headers={"Content-Type": "text/csv"})
        assert "There is no session" in await error_of(response, 404), (method, suffix)
    assert await (await bob.get("/sessions")).json() == {"sessions": []}
    assert (await client.get("/sessions")).status == 401
    assert (await client.post("/sessions", data=default_form())).status == 401
    # Bob cannot reach the iteration's job either.
    job = path_of(document["iterations"][0]["job_url"])
    assert (await bob.get(job)).status == 404
    assert (await get_job(alice, job)).owner == "alice"
    assert await (await alice.get(path)).read() == before
    listed = await (await alice.get("/sessions")).json()
    assert [path_of(s["url"]) for s in listed["sessions"]] == [path]
    history = await (await alice.get(f"{path}/labels")).read()
    assert b"<TD>alice</TD>" in history


async def test_sessions_labels_and_iterations_survive_a_restart(make_app, data_dir):
    """A new server on the same data directory has the session, its labels and iterations; an iteration the
    stopped server was running is reported failed with the job's message, and can be started again."""
    first = await make_app()
    expert = truth(data_dir)
    dids = sorted(expert)
    path = await create_session(first, default_form(auto_advance="false"), labels=csv_body({dids[0]: "emission"}))
    await wait_iteration(first, path, 1)
    await post_labels_ok(first, path, {dids[1]: "absorption", dids[0]: "double-peak"})
    held = await create_session(first, default_form(max_epochs=HOLD_EPOCHS))
    await wait_session(first, held, lambda d: d["iterations"] and d["iterations"][0]["phase"] == "EXECUTING")
    document = await get_session(first, path)
    history = await (await first.get(f"{path}/labels")).read()
    base = document["url"][: -len(path)]
    await first.close()

    second = await make_app()

    again = await get_session(second, path)
    new_base = again["url"][: -len(path)]
    assert _rebased(again, new_base, base) == document
    assert await (await second.get(f"{path}/labels")).read() == history.replace(base.encode(), new_base.encode())
    interrupted = await get_session(second, held)
    assert interrupted["state"] == "failed"
    assert interrupted["iterations"][0]["error"] == RESTART_MESSAGE
    # Labels go on where they stopped; the relabelled spectrum still counts once.
    answer = await post_labels_ok(second, path, {dids[2]: "emission"})
    assert answer["labels"] == 3
    history_rows = await (await second.get(f"{path}/labels")).read()
    assert history_rows.count(b"<TR>") == 4
    response = await post_labels(second, path, csv_body({dids[3]: "nova"}))
    assert response.status == 400


def _rebased(document, new_base, old_base):
    """The document with its URLs written for another server address."""
    if isinstance(document, dict):
        return {k: _rebased(v, new_base, old_base) for k, v in document.items()}
    if isinstance(document, list):
        return [_rebased(v, new_base, old_base) for v in document]
    if isinstance(document, str) and document.startswith(new_base):
        return old_base + document[len(new_base) :]
    return document
