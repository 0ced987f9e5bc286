"""DataLink 1.1 ``{links}`` at /datalink, the original files at /data and previews at /preview.

The archive of the in-process application is filled with synthetic CCD700
spectra through the real ingest path (tests.support.spectra_archive); pyvo
and STILTS run against the application on a real port, in worker threads.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import pyvo
import requests
from aiohttp.test_utils import TestClient, TestServer
from astropy import units as u
from astropy.io import fits
from astropy.io.votable import parse
from lxml import etree
from PIL import Image
from yarl import URL

from tests.support.kinds import ALL
from tests.support.spectra_archive import CCD700, LINE_CENTRE, archive_spectra, iraf_fits
from tests.support.threads import in_thread
from tests.support.uws import dali_error_message
from vocloud.server.app import create_app
from vocloud.server.keys import ARCHIVE
from vocloud.server.settings import Settings

DATALINK_MIME = "application/x-votable+xml;content=datalink"
ONE, TWO, NORMED = CCD700 + "tg000001", CCD700 + "tg000002", CCD700 + "tg000003"
UNKNOWN = "ivo://asu.cas.cz/stel/ccd700/nothing-here"
VO = "{http://www.ivoa.net/xml/VOTable/v1.3}"


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    """The application with two uncalibrated spectra and one already normalised."""
    test_client: TestClient[Any, Any] = await make_client()
    archive_spectra(
        test_client.server.app[ARCHIVE],
        ("tg000001", iraf_fits("tg000001", target="HD 1")),
        ("tg000002", iraf_fits("tg000002", target="HD 2", seed=2)),
        ("tg000003", iraf_fits("tg000003", target="HD 3", seed=3, flux_cal="NORMALIZED")),
    )
    return test_client


def links_table(body: bytes) -> list[dict[str, Any]]:
    """The rows of a ``{links}`` document, nulls (and empty strings) as ``None``."""
    table = parse(io.BytesIO(body)).get_first_table().to_table()
    return [
        {name: None if np.ma.is_masked(row[name]) or row[name] == "" else row[name] for name in table.colnames}
        for row in table
    ]


def local(url: str) -> URL:
    """A URL of the application as the test client takes it: path and query."""
    return URL(url, encoded=True).relative()


def infos(body: bytes) -> dict[str, str]:
    """name -> value of the INFOs of the results resource."""
    root = etree.fromstring(body)
    resource = root.find(f"{VO}RESOURCE[@type='results']")
    return {info.get("name"): info.get("value") for info in resource.iterfind(f"{VO}INFO")}


def descriptor(body: bytes) -> Any:
    """The SODA service descriptor RESOURCE."""
    root = etree.fromstring(body)
    found = root.findall(f"{VO}RESOURCE[@utype='adhoc:service']")
    assert len(found) == 1
    return found[0]


async def get_links(client: TestClient[Any, Any], *ids: str, **query: str) -> bytes:
    response = await client.get("/datalink", params=[*(("ID", i) for i in ids), *query.items()])
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == DATALINK_MIME
    return await response.read()


async def test_links_of_one_spectrum(client: TestClient[Any, Any]) -> None:
    body = await get_links(client, ONE)

    rows = links_table(body)
    assert [r["semantics"] for r in rows] == ["#this", "#preview", "#cutout", "#derivation"]
    assert {r["ID"] for r in rows} == {ONE}
    this, preview, cutout, derivation = rows
    record = client.server.app[ARCHIVE].store.get(ONE)
    assert record is not None
    assert this["content_type"] == "application/fits"
    assert this["content_length"] == record.access_estsize
    assert this["content_qualifier"] == "#spectrum"
    assert this["access_url"].endswith("/data?ID=ivo%3A%2F%2Fasu.cas.cz%2Fstel%2Fccd700%2Ftg000001")
    assert preview["content_type"] == "image/png"
    assert preview["content_length"] is None
    assert cutout["service_def"] == "soda-sync"
    assert cutout["access_url"] is None and cutout["error_message"] is None
    assert "NORMALIZE=true" in derivation["access_url"]
    assert infos(body) == {"QUERY_STATUS": "OK", "standardID": "ivo://ivoa.net/std/DataLink#links-1.1"}

    service = descriptor(body)
    params = {p.get("name"): p for p in service.iter(f"{VO}PARAM")}
    assert params["standardID"].get("value") == "ivo://ivoa.net/std/SODA#sync-1.0"
    assert params["accessURL"].get("value").endswith("/soda")
    assert params["ID"].get("ref") == "ID" and params["ID"].get("value") == ""
    band = params["BAND"]
    assert (band.get("unit"), band.get("xtype"), band.get("arraysize"), band.get("value")) == ("m", "interval", "2", "")
    assert float(band.find(f"{VO}VALUES/{VO}MIN").get("value")) == pytest.approx(record.em_min)
    assert float(band.find(f"{VO}VALUES/{VO}MAX").get("value")) == pytest.approx(record.em_max)
    formats = [o.get("value") for o in params["RESPONSEFORMAT"].iter(f"{VO}OPTION")]
    assert formats == ["application/fits", "application/x-votable+xml"]


async def test_links_of_many_ids_with_an_unknown_one(client: TestClient[Any, Any]) -> None:
    body = await get_links(client, TWO, UNKNOWN, ONE, NORMED)

    rows = links_table(body)
    assert [r["ID"] for r in rows] == [TWO] * 4 + [UNKNOWN] + [ONE] * 4 + [NORMED] * 3
    error = rows[4]
    assert error["semantics"] == "#this"
    assert error["error_message"] == f"NotFoundFault: {UNKNOWN} is not in this archive"
    assert error["access_url"] is None and error["service_def"] is None
    # Already normalised in the archive: no normalised derivation is offered.
    assert [r["semantics"] for r in rows[9:]] == ["#this", "#preview", "#cutout"]
    # Several spectra share the descriptor, so BAND declares no range.
    band = next(p for p in descriptor(body).iter(f"{VO}PARAM") if p.get("name") == "BAND")
    assert band.find(f"{VO}VALUES") is None


async def test_post_gives_the_same_links_as_get(client: TestClient[Any, Any]) -> None:
    response = await client.post("/datalink", data=[("ID", ONE), ("id", UNKNOWN)])

    assert response.status == 200
    assert response.headers["Content-Type"] == DATALINK_MIME
    assert [r["ID"] for r in links_table(await response.read())] == [ONE] * 4 + [UNKNOWN]


async def test_no_id_is_an_empty_table(client: TestClient[Any, Any]) -> None:
    body = await get_links(client)

    assert links_table(body) == []
    assert infos(body)["QUERY_STATUS"] == "OK"
    assert not etree.fromstring(body).findall(f"{VO}RESOURCE[@type='meta']")


async def test_maxrec_never_splits_the_links_of_an_id(client: TestClient[Any, Any]) -> None:
    body = await get_links(client, ONE, TWO, MAXREC="7")

    assert [r["ID"] for r in links_table(body)] == [ONE] * 4
    assert infos(body)["QUERY_STATUS"] == "OVERFLOW"

    body = await get_links(client, ONE, TWO, MAXREC="8")
    assert len(links_table(body)) == 8
    assert infos(body)["QUERY_STATUS"] == "OK"

    for ids in ([ONE], []):
        body = await get_links(client, *ids, MAXREC="0")
        assert links_table(body) == []
        assert infos(body)["QUERY_STATUS"] == "OVERFLOW"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"MAXREC": "many"}, "UsageFault: MAXREC must be a non-negative integer"),
        ({"MAXREC": "-1"}, "UsageFault: MAXREC must be a non-negative integer"),
        ({"RESPONSEFORMAT": "text/csv"}, "UsageFault: RESPONSEFORMAT 'text/csv' is not offered"),
        ({"RESPONSEFORMAT": "application/x-votable+xml;serialization=binary2"}, "UsageFault: RESPONSEFORMAT"),
        ({"RESPONSEFORMAT": "application/x-votable+xml;content=spectrum"}, "UsageFault: RESPONSEFORMAT"),
        ({"RESPONSEFORMAT": ["votable", "votable"]}, "UsageFault: RESPONSEFORMAT may be given once"),
        ({"MAXREC": ["1", "2"]}, "UsageFault: MAXREC may be given once"),
    ],
)
async def test_bad_service_parameters_are_dali_errors(
    client: TestClient[Any, Any], query: dict[str, str | list[str]], message: str
) -> None:
    params = [
        ("ID", ONE),
        *((k, v) for k, values in query.items() for v in ([values] if isinstance(values, str) else values)),
    ]
    response = await client.get("/datalink", params=params)

    assert response.status == 400
    assert response.content_type == "application/x-votable+xml"
    assert dali_error_message(await response.read()).startswith(message)


@pytest.mark.parametrize(
    ("responseformat", "content_type"),
    [
        ("votable", DATALINK_MIME),
        ("application/x-votable+xml", DATALINK_MIME),
        ("application/x-votable+xml;content=datalink", DATALINK_MIME),
        ("application/x-votable+xml;serialization=TABLEDATA", "application/x-votable+xml;serialization=tabledata"),
        ("text/xml", "text/xml"),
    ],
)
async def test_votable_response_formats(client: TestClient[Any, Any], responseformat: str, content_type: str) -> None:
    response = await client.get("/datalink", params={"ID": ONE, "RESPONSEFORMAT": responseformat})

    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert len(links_table(await response.read())) == 4


async def test_this_link_serves_the_stored_file_unchanged(client: TestClient[Any, Any]) -> None:
    this = links_table(await get_links(client, ONE))[0]
    archive = client.server.app[ARCHIVE]
    record = archive.store.get(ONE)
    assert record is not None

    response = await client.get(local(this["access_url"]))

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/fits"
    assert response.headers["Content-Disposition"] == 'inline; filename="tg000001.fits"'
    assert await response.read() == archive.file_path(record).read_bytes()


async def test_preview_link_is_a_cached_png(client: TestClient[Any, Any]) -> None:
    preview = links_table(await get_links(client, ONE))[1]

    response = await client.get(local(preview["access_url"]))

    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    png = await response.read()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (800, 300)
    cached = list((client.server.app[ARCHIVE].root / "previews").iterdir())
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns

    again = await client.get(local(preview["access_url"]))

    assert await again.read() == png
    assert cached[0].stat().st_mtime_ns == before


async def test_derivation_link_is_the_continuum_normalised_spectrum(client: TestClient[Any, Any]) -> None:
    derivation = links_table(await get_links(client, ONE))[3]

    response = await client.get(local(derivation["access_url"]))

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/fits"
    with fits.open(io.BytesIO(await response.read())) as hdus:
        table = hdus["SPECTRUM"]
        assert table.header["FLUX_CAL"] == "NORMALIZED"
        assert table.header["CONTNORM"] is True
        wavelength, flux = table.data["WAVELENGTH"], table.data["FLUX"]
    far = np.abs(wavelength - LINE_CENTRE) > 20
    assert np.median(flux[far]) == pytest.approx(1.0, abs=0.005)
    assert flux[np.argmin(np.abs(wavelength - LINE_CENTRE))] == pytest.approx(0.4, abs=0.02)


@pytest.mark.parametrize("path", ["/data", "/preview"])
async def test_file_endpoints_refuse_unknown_or_missing_ids(client: TestClient[Any, Any], path: str) -> None:
    unknown = await client.get(path, params={"ID": UNKNOWN})
    assert unknown.status == 404
    assert dali_error_message(await unknown.read()) == f"No spectrum with ID {UNKNOWN!r} in this archive"

    traversal = await client.get(path, params={"ID": "../../etc/passwd"})
    assert traversal.status == 404

    missing = await client.get(path)
    assert missing.status == 400
    assert "Give exactly one ID" in dali_error_message(await missing.read())


# -- over HTTP: pyvo and STILTS ---------------------------------------------------------


@pytest.fixture
async def server(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    """The application with two spectra, listening on 127.0.0.1 on a free port."""
    test_server: TestServer = await aiohttp_server(create_app(make_settings(), kinds=ALL))
    archive_spectra(
        test_server.app[ARCHIVE],
        ("tg000001", iraf_fits("tg000001", target="HD 1")),
        ("tg000002", iraf_fits("tg000002", target="HD 2", seed=2)),
    )
    yield test_server




async def test_pyvo_finds_this_and_cuts_through_the_descriptor(server: TestServer, session: requests.Session) -> None:
    url = str(server.make_url("/datalink").with_query({"ID": ONE}))
    stored = server.app[ARCHIVE].file_path(server.app[ARCHIVE].store.get(ONE)).read_bytes()

    def scenario() -> None:
        links = pyvo.dal.adhoc.DatalinkResults.from_result_url(url, session=session)
        this = list(links.bysemantics("#this", include_narrower=False))
        assert len(this) == 1
        assert session.get(this[0].access_url, timeout=10).content == stored

        cutout = next(iter(links.bysemantics("#cutout", include_narrower=False)))
        stream = cutout.processed(band=(6500, 6600) * u.AA)
        with fits.open(io.BytesIO(stream.read())) as hdus:
            wavelength = hdus["SPECTRUM"].data["WAVELENGTH"]
        assert wavelength.min() >= 6500 - 1e-6 and wavelength.max() <= 6600 + 1e-6
        assert len(wavelength) >= 400

    await in_thread(scenario)


def stilts(*args: str) -> subprocess.CompletedProcess[str]:
    """Run STILTS (stdin closed: with a URL argument it would otherwise prompt)."""
    return subprocess.run(
        ["stilts", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )


def datalinklint(url: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(stilts("datalinklint", "format=json", f"votable={url}").stdout)
    return report


@pytest.mark.conformance
@pytest.mark.parametrize("ids", [[ONE], [ONE, TWO], [ONE, UNKNOWN, TWO]], ids=["one", "many", "unknown"])
async def test_datalinklint_finds_no_error(server: TestServer, ids: list[str]) -> None:
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    url = str(server.make_url("/datalink").with_query([("ID", i) for i in ids]))

    report = await in_thread(lambda: datalinklint(url))

    problems = [s for s in report["sections"] if s["level"] in {"ERROR", "FAILURE"}]
    assert report["totals"]["ERROR"] == 0, problems
    assert report["totals"]["FAILURE"] == 0, problems


@pytest.mark.conformance
async def test_datalink_capabilities_are_schema_valid(server: TestServer) -> None:
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    url = str(server.make_url("/datalink/capabilities"))

    run = await in_thread(lambda: stilts("xsdvalidate", "uselocals=true", f"doc={url}"))

    assert run.returncode == 0, run.stdout + run.stderr
    document = await in_thread(lambda: requests.get(url, timeout=10).text)
    assert "ivo://ivoa.net/std/DataLink#links-1.1" in document


def test_cached_metadata_with_substituted_band_limits_equals_a_direct_build() -> None:
    from vocloud.server import datalink

    row = datalink._row(ONE, "#this", access_url="http://x/data?ID=1", content_type="application/fits")
    coverage = (6.253e-07, 6.777123456789e-07)
    fast = datalink._write("http://x", coverage, [row], described=True, overflow=False)
    direct_document = datalink._document("http://x", coverage, True)
    direct = direct_document.write({s.name: [row[s.name]] for s in datalink._FIELDS}, rows=1, status="OK")
    assert fast == direct
    assert repr(coverage[1]).encode() in fast
