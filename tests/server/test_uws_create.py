"""Creating jobs, their parameters, and the job list (UWS 1.1 sections 2.2.2.1, 2.2.3.1)."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.uws import create, dali_error_message, get_job, parse_job_list


async def test_created_job_is_pending_with_normalised_parameters(client):
    path = await create(
        client, "sleep", data=[("SECONDS", "0.50"), ("Label", "hi"), ("band", "1e-7"), ("BAND", "2e-7"),
                               ("after", "2026-01-02T03:04:05"), ("nonsense", "ignored"), ("RUNID", "run-7")]
    )
    doc = await get_job(client, path)
    assert doc.phase == "PENDING"
    assert doc.run_id == "run-7"
    assert doc.owner_nil
    assert doc.parameters == [
        ("seconds", "0.5", False),
        ("label", "hi", False),
        ("band", "1e-07", False),
        ("band", "2e-07", False),
        ("after", "2026-01-02T03:04:05.000Z", False),
    ]
    assert doc.text("creationTime").endswith("Z")
    assert doc.text("executionDuration") == "3600"


async def test_run_id_is_omitted_when_not_given(client):
    path = await create(client, "sleep")
    doc = await get_job(client, path)
    assert doc.root.find("{http://www.ivoa.net/xml/UWS/v1.0}runId") is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("count", "abc", "count"),
        ("count", "11", "above the maximum"),
        ("seconds", "-1", "below the minimum"),
        ("seconds", "nan", "finite"),
        ("colour", "green", "not one of red, blue"),
        ("after", "yesterday", "ISO 8601"),
        ("partial", "maybe", "true or false"),
        ("EXECUTIONDURATION", "soon", "EXECUTIONDURATION"),
        ("DESTRUCTION", "2026-13-45", "DESTRUCTION"),
        ("PHASE", "ABORT", "only RUN"),
    ],
)
async def test_invalid_value_is_a_400_naming_the_parameter_and_creates_nothing(client, field, value, fragment):
    response = await client.post("/jobs/sleep", data={field: value}, allow_redirects=False)
    assert response.status == 400
    message = dali_error_message(await response.read())
    assert field.lower() in message.lower()
    assert fragment in message
    listing = await client.get("/jobs/sleep")
    assert parse_job_list(await listing.read()) == []


async def test_single_valued_parameter_given_twice_is_refused(client):
    response = await client.post("/jobs/sleep", data=[("count", "1"), ("count", "2")], allow_redirects=False)
    assert response.status == 400
    assert "count" in dali_error_message(await response.read())


async def test_text_for_a_file_parameter_is_refused(client):
    response = await client.post("/jobs/upload", data={"table": "not a file"}, allow_redirects=False)
    assert response.status == 400
    assert "multipart" in dali_error_message(await response.read())


async def test_unknown_kind_is_404(client):
    response = await client.post("/jobs/nosuchkind", data={}, allow_redirects=False)
    assert response.status == 404
    assert "nosuchkind" in dali_error_message(await response.read())
    response = await client.get("/jobs/nosuchkind")
    assert response.status == 404


async def test_missing_required_parameter_keeps_job_pending_until_given(client):
    path = await create(client, "fail")
    response = await client.post(f"{path}/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert response.status == 400
    assert "how" in dali_error_message(await response.read())
    assert (await get_job(client, path)).phase == "PENDING"

    response = await client.post(f"{path}/parameters", data={"HOW": "usage"}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].endswith(path)
    assert (await get_job(client, path)).parameters == [("how", "usage", False)]
    response = await client.post(f"{path}/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert response.status == 303


async def test_phase_run_at_creation_without_required_parameter_creates_nothing(client):
    response = await client.post("/jobs/fail", data={"PHASE": "RUN"}, allow_redirects=False)
    assert response.status == 400
    assert "how" in dali_error_message(await response.read())
    assert parse_job_list(await (await client.get("/jobs/fail")).read()) == []


async def test_parameters_cannot_change_after_pending(client):
    path = await create(client, "sleep", seconds=30, phase="RUN")
    response = await client.post(f"{path}/parameters", data={"label": "late"}, allow_redirects=False)
    assert response.status == 403
    assert "PENDING" in dali_error_message(await response.read())
    await client.post(f"{path}/phase", data={"PHASE": "ABORT"})
    doc = await get_job(client, path)
    assert ("label", "late", False) not in doc.parameters


async def test_parameters_document_lists_values(client):
    path = await create(client, "sleep", seconds=1, label="x")
    response = await client.get(f"{path}/parameters")
    assert response.status == 200
    body = await response.text()
    assert 'id="seconds"' in body and ">1.0<" in body and 'id="label"' in body


async def test_job_list_filters(client):
    first = await create(client, "sleep")
    middle = await create(client, "sleep", seconds=0, phase="RUN")
    last = await create(client, "sleep")
    await create(client, "fail", how="usage")
    ids = [p.rsplit("/", 1)[1] for p in (first, middle, last)]
    from tests.support.uws import wait_for_phase

    await wait_for_phase(client, middle, "COMPLETED")

    listing = parse_job_list(await (await client.get("/jobs/sleep")).read())
    assert [i for i, _ in listing] == ids
    pending = parse_job_list(await (await client.get("/jobs/sleep", params={"PHASE": "PENDING"})).read())
    assert [i for i, _ in pending] == [ids[0], ids[2]]
    both = parse_job_list(
        await (await client.get("/jobs/sleep", params=[("PHASE", "PENDING"), ("phase", "COMPLETED")])).read()
    )
    assert len(both) == 3
    newest = parse_job_list(await (await client.get("/jobs/sleep", params={"LAST": "2"})).read())
    assert [i for i, _ in newest] == [ids[2], ids[1]]
    first_created = (await get_job(client, first)).text("creationTime")
    after = parse_job_list(await (await client.get("/jobs/sleep", params={"AFTER": first_created})).read())
    assert [i for i, _ in after] == ids[1:]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert parse_job_list(await (await client.get("/jobs/sleep", params={"AFTER": future})).read()) == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [({"PHASE": "SLEEPING"}, "not a UWS phase"), ({"AFTER": "noon"}, "ISO 8601"),
     ({"LAST": "0"}, "greater than 0"), ({"LAST": "many"}, "not an integer")],
)
async def test_bad_job_list_filters_are_400(client, query, fragment):
    response = await client.get("/jobs/sleep", params=query)
    assert response.status == 400
    assert fragment in dali_error_message(await response.read())


async def test_execution_duration_and_destruction_can_be_set(client):
    path = await create(client, "sleep")
    response = await client.post(f"{path}/executionduration", data={"EXECUTIONDURATION": "60"},
                                 allow_redirects=False)
    assert response.status == 303
    assert await (await client.get(f"{path}/executionduration")).text() == "60"
    # 0 asks for "unlimited"; the operator's maximum is substituted.
    await client.post(f"{path}/executionduration", data={"EXECUTIONDURATION": "0"})
    assert await (await client.get(f"{path}/executionduration")).text() == "86400"
    for bad in ("-5", "ten"):
        response = await client.post(f"{path}/executionduration", data={"EXECUTIONDURATION": bad})
        assert response.status == 400

    when = datetime.now(UTC) + timedelta(days=2)
    response = await client.post(f"{path}/destruction", data={"DESTRUCTION": when.isoformat()},
                                 allow_redirects=False)
    assert response.status == 303
    text = await (await client.get(f"{path}/destruction")).text()
    assert abs(datetime.fromisoformat(text.replace("Z", "+00:00")) - when) < timedelta(milliseconds=2)
    # Beyond the operator's limit (30 days) the service substitutes the limit.
    await client.post(f"{path}/destruction", data={"DESTRUCTION": "2100-01-01T00:00:00Z"})
    text = await (await client.get(f"{path}/destruction")).text()
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) < datetime.now(UTC) + timedelta(days=31)
    response = await client.post(f"{path}/destruction", data={"DESTRUCTION": "tomorrow"})
    assert response.status == 400
    response = await client.post(f"{path}/destruction", data={})
    assert response.status == 400
    assert "DESTRUCTION" in dali_error_message(await response.read())


async def test_text_resources_of_an_anonymous_job(client):
    path = await create(client, "sleep")
    assert await (await client.get(f"{path}/phase")).text() == "PENDING"
    assert await (await client.get(f"{path}/owner")).text() == ""
    # Nothing has completed yet, so there is no basis for a quote: "don't know".
    assert await (await client.get(f"{path}/quote")).text() == ""
    doc = await get_job(client, path)
    quote = doc.root.find("{http://www.ivoa.net/xml/UWS/v1.0}quote")
    assert quote.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
