"""HTTP Basic authentication, the users file and its CLI, owner isolation, and refusing anonymous exposure."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support.auth import PASSWORDS, AsUser, basic
from tests.support.uws import create, dali_error_message, get_job, parse_job_list, wait_for_phase
from vocloud.server.auth import UserFile, verify_password
from vocloud.server.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
NO_SUCH_JOB = "There is no job"
"""Start of the message of a job that does not exist or belongs to someone else."""


def _vocloud_command() -> list[str]:
    script = Path(sys.executable).with_name("vocloud")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vocloud.client.cli"]


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*_vocloud_command(), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
async def basic_client(make_client, make_settings: Callable[..., Settings]) -> TestClient[Any, Any]:
    """The application with ``--auth basic`` and the users alice and bob."""
    users = UserFile(make_settings().users_file)
    for name, password in PASSWORDS.items():
        users.add(name, password)
    return await make_client(auth="basic")


@pytest.fixture
def alice(basic_client) -> AsUser:
    return AsUser(basic_client, "alice")


@pytest.fixture
def bob(basic_client) -> AsUser:
    return AsUser(basic_client, "bob")


# -- the users file and its command ------------------------------------------------------


def test_cli_user_add_stores_only_a_salted_hash_readable_by_owner(tmp_path, data_dir):
    """``vocloud user add`` writes a 0600 users file holding a scrypt hash, never the password."""
    password = "correct horse battery staple"
    password_file = tmp_path / "password.txt"
    password_file.write_text(password + "\n", encoding="utf-8")

    done = _run_cli("user", "add", "alice", "--password-file", str(password_file), "--data-dir", str(data_dir))

    assert done.returncode == 0, done.stderr
    users_file = data_dir / "users.json"
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    text = users_file.read_text(encoding="utf-8")
    assert password not in text
    assert "horse" not in text
    stored = json.loads(text)
    assert list(stored) == ["alice"]
    assert stored["alice"].startswith("scrypt$")
    assert verify_password(password, stored["alice"])
    assert not verify_password(password + "x", stored["alice"])


def test_cli_user_add_rejects_a_short_password(tmp_path, data_dir):
    """A too-short password is refused with a message, and no users file is written."""
    password_file = tmp_path / "password.txt"
    password_file.write_text("short\n", encoding="utf-8")

    done = _run_cli("user", "add", "alice", "--password-file", str(password_file), "--data-dir", str(data_dir))

    assert done.returncode != 0
    assert "at least 8 characters" in done.stderr
    assert not (data_dir / "users.json").exists()


async def test_user_added_by_cli_can_log_in(tmp_path, data_dir, make_client):
    """The server accepts the password given to ``vocloud user add``, and only that one."""
    password_file = tmp_path / "password.txt"
    password_file.write_text("from-the-command-line\n", encoding="utf-8")
    done = _run_cli("user", "add", "carol", "--password-file", str(password_file), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    client = await make_client(auth="basic")

    good = await client.get("/jobs/sleep", headers={"Authorization": basic("carol", "from-the-command-line")})
    bad = await client.get("/jobs/sleep", headers={"Authorization": basic("carol", "from-the-command-line\n")})

    assert good.status == 200
    assert bad.status == 401


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/jobs/sleep"), ("POST", "/jobs/sleep"), ("GET", "/jobs/sleep/some-job"), ("GET", "/jobs")],
)
async def test_no_credentials_is_401_with_challenge_and_dali_error(basic_client, method, path):
    """Without credentials, protected resources answer 401, a Basic challenge and a DALI error."""
    response = await basic_client.request(method, path, data={"seconds": "0"} if method == "POST" else None)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert 'realm="' in response.headers["WWW-Authenticate"]
    assert response.content_type == "application/x-votable+xml"
    assert "user name and password" in dali_error_message(await response.read())


async def test_unauthenticated_post_creates_no_job(basic_client, alice, bob):
    """A refused job creation leaves nothing behind for anyone."""
    response = await basic_client.post("/jobs/sleep", data={"seconds": "0"}, allow_redirects=False)
    assert response.status == 401
    for user in (alice, bob):
        listed = await user.get("/jobs/sleep")
        assert parse_job_list(await listed.read()) == []


@pytest.mark.parametrize(
    "authorization",
    [
        basic("alice", "wrong-password"),
        basic("alice", PASSWORDS["bob"]),
        basic("mallory", PASSWORDS["alice"]),
        basic("alice", ""),
        "Basic not-base64!!",
        "Basic " + "YWxpY2U=",  # "alice" without a colon
        "Bearer alice-secret-1",
    ],
    ids=["wrong-password", "other-users-password", "unknown-user", "empty-password", "garbage", "no-colon", "bearer"],
)
async def test_bad_credentials_are_401(basic_client, authorization):
    """Wrong, unknown or malformed credentials are refused like missing ones."""
    response = await basic_client.get("/jobs/sleep", headers={"Authorization": authorization})

    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "user name and password" in dali_error_message(await response.read())


async def test_wrong_password_after_right_one_is_still_refused(basic_client, alice):
    """The cache of verified credentials does not let a later wrong password through."""
    assert (await alice.get("/jobs/sleep")).status == 200
    wrong = await basic_client.get("/jobs/sleep", headers={"Authorization": basic("alice", "alice-secret-2")})
    assert wrong.status == 401


@pytest.mark.parametrize("path", ["/", "/jobs/availability", "/jobs/capabilities"])
async def test_landing_page_and_vosi_need_no_credentials(basic_client, path):
    """The landing page and VOSI answer anonymous callers (registries poll them)."""
    response = await basic_client.get(path)

    assert response.status == 200, await response.text()
    assert "WWW-Authenticate" not in response.headers


async def test_job_document_names_the_owner(alice):
    """ownerId and /owner of alice's job are "alice"."""
    path = await create(alice, "sleep", seconds=0, label="mine")

    doc = await get_job(alice, path)
    owner = await alice.get(f"{path}/owner")

    assert doc.owner == "alice"
    assert not doc.owner_nil
    assert owner.status == 200
    assert await owner.text() == "alice"


# -- isolation between users ---------------------------------------------------------------


async def _snapshot(user: AsUser, path: str) -> dict[str, Any]:
    """What must not change: the job document's fields and the bytes behind it."""
    doc = await get_job(user, path)
    snapshot: dict[str, Any] = {
        "phase": doc.phase,
        "owner": doc.owner,
        "run_id": doc.run_id,
        "parameters": doc.parameters,
        "results": doc.results,
        "error": (doc.error_type, doc.error_message),
        "execution_duration": doc.text("executionDuration"),
        "destruction": doc.text("destruction"),
    }
    for name in doc.results:
        response = await user.get(f"{path}/results/{name}")
        assert response.status == 200
        snapshot[f"result {name}"] = await response.read()
    for name, _, by_reference in doc.parameters:
        if by_reference:
            response = await user.get(f"{path}/parameters/{name}")
            assert response.status == 200
            snapshot[f"upload {name}"] = await response.read()
    return snapshot


def _upload_form(**fields: str | bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.txt", content_type="text/plain")
        else:
            form.add_field(name, value)
    return form


# Every job endpoint, as (method, suffix after the job path, body factory).
JOB_ENDPOINTS: list[tuple[str, str, Callable[[], Any]]] = [
    ("GET", "", lambda: None),
    ("GET", "?WAIT=1", lambda: None),
    ("GET", "?WAIT=1&PHASE=PENDING", lambda: None),
    ("GET", "/phase", lambda: None),
    ("POST", "/phase", lambda: {"PHASE": "RUN"}),
    ("POST", "/phase", lambda: {"PHASE": "ABORT"}),
    ("GET", "/executionduration", lambda: None),
    ("POST", "/executionduration", lambda: {"EXECUTIONDURATION": "1"}),
    ("GET", "/destruction", lambda: None),
    ("POST", "/destruction", lambda: {"DESTRUCTION": "2000-01-01T00:00:00Z"}),
    ("GET", "/quote", lambda: None),
    ("GET", "/owner", lambda: None),
    ("GET", "/error", lambda: None),
    ("GET", "/parameters", lambda: None),
    ("POST", "/parameters", lambda: {"label": "changed by bob", "seconds": "7"}),
    ("POST", "/parameters", lambda: _upload_form(table=b"bob's\nlines\n")),
    ("GET", "/parameters/table", lambda: None),
    ("GET", "/results", lambda: None),
    ("GET", "/results/result", lambda: None),
    ("POST", "", lambda: {"ACTION": "DELETE"}),
    ("DELETE", "", lambda: None),
]


async def _alice_jobs(alice: AsUser) -> dict[str, str]:
    """Alice's jobs in the states every endpoint can act on: pending with an upload, completed, failed."""
    pending = await create(alice, "upload", data=_upload_form(table=b"one\ntwo\nthree\n"))
    completed = await create(alice, "sleep", seconds=0, label="alice's result", phase="RUN")
    failed = await create(alice, "fail", how="usage", phase="RUN")
    await wait_for_phase(alice, completed, "COMPLETED")
    await wait_for_phase(alice, failed, "ERROR")
    return {"pending": pending, "completed": completed, "failed": failed}


async def test_other_users_job_is_404_on_every_endpoint(alice, bob):
    """Bob gets "no such job" from every endpoint of alice's jobs, which stay exactly as they were."""
    jobs = await _alice_jobs(alice)
    before = {state: await _snapshot(alice, path) for state, path in jobs.items()}

    for state, path in jobs.items():
        for method, suffix, body in JOB_ENDPOINTS:
            response = await bob.request(method, path + suffix, data=body(), allow_redirects=False)
            where = f"bob: {method} {state} job{suffix}"
            assert response.status == 404, f"{where} -> {response.status}: {await response.text()}"
            assert dali_error_message(await response.read()).startswith(NO_SUCH_JOB), where

    after = {state: await _snapshot(alice, path) for state, path in jobs.items()}
    assert after == before


async def test_endpoints_used_for_isolation_exist_for_the_owner(alice):
    """Control for the isolation test: alice reaches each GET endpoint of her jobs (no route typos)."""
    jobs = await _alice_jobs(alice)
    reachable = {
        "pending": ["", "?WAIT=1", "/phase", "/executionduration", "/destruction", "/quote", "/owner",
                    "/parameters", "/parameters/table", "/results"],
        "completed": ["", "/results", "/results/result", "/parameters"],
        "failed": ["", "/error"],
    }  # fmt: skip
    for state, suffixes in reachable.items():
        for suffix in suffixes:
            response = await alice.get(jobs[state] + suffix)
            assert response.status == 200, f"alice: GET {state} job{suffix}: {await response.text()}"


async def test_other_users_job_is_404_under_another_kind_too(alice, bob):
    """Moving alice's job id under another kind's list does not expose it to bob."""
    path = await create(alice, "sleep", seconds=0, label="hidden")
    job_id = path.rsplit("/", 1)[1]
    for kind in ("sleep", "fail", "upload"):
        response = await bob.get(f"/jobs/{kind}/{job_id}")
        assert response.status == 404


async def test_job_lists_show_only_the_callers_jobs(alice, bob):
    """Each user's job list holds their own jobs and none of the other's, whatever the filter."""
    alice_paths = [
        await create(alice, "sleep", seconds=0, label="a1"),
        await create(alice, "sleep", seconds=0, label="a2", phase="RUN"),
    ]
    bob_paths = [await create(bob, "sleep", seconds=0, label="b1")]
    await wait_for_phase(alice, alice_paths[1], "COMPLETED")

    def ids(paths: list[str]) -> set[str]:
        return {p.rsplit("/", 1)[1] for p in paths}

    for query in ("", "?PHASE=PENDING", "?PHASE=COMPLETED", "?LAST=10", "?AFTER=2000-01-01T00:00:00Z"):
        alice_listed = {job_id for job_id, _ in parse_job_list(await (await alice.get(f"/jobs/sleep{query}")).read())}
        bob_listed = {job_id for job_id, _ in parse_job_list(await (await bob.get(f"/jobs/sleep{query}")).read())}
        assert alice_listed <= ids(alice_paths), query
        assert bob_listed <= ids(bob_paths), query
    full_alice = parse_job_list(await (await alice.get("/jobs/sleep")).read())
    full_bob = parse_job_list(await (await bob.get("/jobs/sleep")).read())
    assert {job_id for job_id, _ in full_alice} == ids(alice_paths)
    assert {job_id for job_id, _ in full_bob} == ids(bob_paths)


async def test_bob_deleting_his_own_job_leaves_alices_alone(alice, bob):
    """A DELETE by bob removes his job only."""
    alice_path = await create(alice, "sleep", seconds=0, label="alice")
    bob_path = await create(bob, "sleep", seconds=0, label="bob")

    response = await bob.delete(bob_path, allow_redirects=False)

    assert response.status == 303
    assert (await bob.get(bob_path)).status == 404
    assert (await get_job(alice, alice_path)).phase == "PENDING"


# -- refusing anonymous access on public interfaces ------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_anonymous_access_on_a_public_interface_is_refused(host):
    """check_exposure refuses auth=none anywhere but loopback, naming the way out."""
    with pytest.raises(SettingsError, match="--auth basic"):
        Settings(host=host, auth="none").check_exposure()


@pytest.mark.parametrize(("host", "auth"), [("127.0.0.1", "none"), ("::1", "none"), ("localhost", "none"),
                                            ("0.0.0.0", "basic")])  # fmt: skip
def test_loopback_or_authenticated_exposure_is_allowed(host, auth):
    """Loopback without authentication, or any interface with it, passes check_exposure."""
    Settings(host=host, auth=auth).check_exposure()


def test_serve_on_public_interface_without_auth_exits_before_listening(tmp_path):
    """``vocloud serve --host 0.0.0.0`` without --auth fails at once with a clear message."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    done = _run_cli("serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                    timeout=60)  # fmt: skip

    assert done.returncode != 0
    assert "Refusing anonymous access on 0.0.0.0" in done.stderr
    assert "--auth basic" in done.stderr
    assert "serving" not in done.stdout
    assert not (tmp_path / "data").exists(), "the refused server should not have touched its data directory"
