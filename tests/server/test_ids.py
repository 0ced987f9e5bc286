"""Job and session ids never start with "-" or "_": a command line would take such an id for an option."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.server.sessions.support import DEMO_COUNT, create_session
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from tests.support.uws import create
from vocloud.server.app import create_app
from vocloud.server.settings import Settings
from vocloud.server.uws import service
from vocloud.server.uws.service import ID_BYTES, new_id

COUNT = 2000
"""Ids drawn: about 62 of them would start with "-" or "_" if nothing prevented it."""


def test_2000_ids_start_with_a_letter_or_a_digit() -> None:
    ids = [new_id() for _ in range(COUNT)]
    assert all(i[0].isascii() and i[0].isalnum() for i in ids), [i for i in ids if not i[0].isalnum()]
    assert {len(i) for i in ids} == {len(secrets.token_urlsafe(ID_BYTES))}
    assert len(set(ids)) == COUNT


@pytest.fixture
def unlucky(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The id source's next draws start with "-" and "_" (then it is random again); yields what is left of them."""
    scripted = ["-starts-with-dash", "_starts_with_und"]
    real = secrets.token_urlsafe

    def draw(nbytes: int | None = None) -> str:
        return scripted.pop(0) if scripted else real(nbytes)

    monkeypatch.setattr(service.secrets, "token_urlsafe", draw)
    yield scripted


def test_an_unlucky_draw_is_drawn_again(unlucky: list[str]) -> None:
    made = new_id()
    assert unlucky == []  # both bad draws were made and thrown away
    assert made[0].isalnum()


async def test_jobs_and_sessions_get_such_ids(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], unlucky: list[str]
) -> None:
    server: TestClient[Any, Any] = await aiohttp_client(
        create_app(make_settings(demo_spectra=DEMO_COUNT), kinds=ALL, executor=FakeIterationExecutor(workers=1))
    )
    job = await create(server, "sleep", seconds="0")
    assert unlucky == []
    assert job.rsplit("/", 1)[-1][0].isalnum(), job
    unlucky += ["-another-dash-id"]
    session = await create_session(server)
    assert unlucky == []
    assert session.rsplit("/", 1)[-1][0].isalnum(), session
