"""A job of the sleep kind goes from creation to its result."""

from tests.support.uws import create, wait_for_phase


async def test_job_runs_to_completion(client):
    path = await create(client, "sleep", seconds=0.1, label="hello", phase="RUN")
    doc = await wait_for_phase(client, path, "COMPLETED")
    assert "result" in doc.results
    response = await client.get(f"{path}/results/result")
    assert response.status == 200
    assert "hello" in await response.text()
