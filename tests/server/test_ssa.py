"""SSAP 1.1 queryData at /ssa: filters, MAXREC/OVERFLOW, METADATA, errors, pyvo over HTTP, validators.

The archive of the in-process application is filled with a handful of
spectra placed so that every constraint separates them; pyvo runs in a worker
thread against the application on a real port (as in test_pyvo.py).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvo
import requests
from aiohttp.test_utils import TestClient, TestServer
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.votable import parse
from astropy.io.votable.tree import VOTableFile
from lxml import etree

from tests.support.kinds import ALL
from tests.support.threads import in_thread
from tests.support.uws import dali_error_message
from vocloud.server import ssa as ssa_module
from vocloud.server.app import create_app
from vocloud.server.archive.service import Archive
from vocloud.server.keys import ARCHIVE
from vocloud.server.links import data_url
from vocloud.server.settings import Settings
from vocloud.server.spectra.model import FluxCalibration, SpectrumMeta
from vocloud.server.votable import FieldSpec, ParamSpec, ResultDocument

AUTH = "ivo://test.vocloud/ssa"
A = f"{AUTH}?v509cas-1"
"""V509 Cas, red setup, 2009-06-18, FITS, collection ccd700."""
B = f"{AUTH}?v509cas-2"
"""V509 Cas 1.8 arcsec from A, blue setup, 2012-03-14, VOTable, collection ccd700."""
C = f"{AUTH}?lamost-1"
"""A LAMOST spectrum at (10, -5), broad band, 2014-12-09, collection lamost."""
D = f"{AUTH}?nopos"
"""No position, no time: a theory-like spectrum."""
E = f"{AUTH}?wrap"
"""Just west of RA 0, for the wrap-around of the cone."""
F = f"{AUTH}?odd"
"""A target name XML must escape, 0.04 degrees from C."""

SSA_XSD = Path("/usr/lib/python3/dist-packages/gavo/resources/schemata/SSA.xsd")
"""The SSA capability schema, shipped by Debian's python3-gavo (not inside STILTS)."""


def _add(archive: Archive, did: str, *, em: tuple[float, float], fmt: str = "application/fits", **meta: Any) -> None:
    archive.store.add(
        SpectrumMeta(publisher_did=did, **meta),
        em_min=em[0],
        em_max=em[1],
        n_points=1997,
        access_format=fmt,
        size=40_000,
        file=f"aa/{did.rsplit('?', 1)[1]}.dat",
        source=None,
    )


def populate(archive: Archive) -> None:
    """The six spectra of these tests."""
    ccd700: dict[str, Any] = {"facility_name": "Ondřejov 2m", "instrument_name": "CCD700", "obs_collection": "ccd700"}
    _add(archive, A, em=(6.25e-7, 6.77e-7), target_name="V509 Cas", ra=345.0, dec=56.5, t_min=55000.1,
         t_max=55000.2, exposure=600.0, em_res_power=13000.0, flux_unit="adu", **ccd700)  # fmt: skip
    _add(archive, B, em=(3.8e-7, 4.1e-7), fmt="application/x-votable+xml", target_name="V509 Cas", ra=345.0,
         dec=56.5005, t_min=56000.5, t_max=56000.51, **ccd700)  # fmt: skip
    _add(archive, C, em=(3.7e-7, 9.0e-7), target_name="LAMOST J004000-050000", ra=10.0, dec=-5.0, t_min=57000.0,
         t_max=57000.1, obs_collection="lamost", flux_calibration=FluxCalibration.RELATIVE)  # fmt: skip
    _add(archive, D, em=(4.0e-7, 5.0e-7))
    _add(archive, E, em=(5.0e-7, 6.0e-7), ra=359.99, dec=0.0, t_min=58000.0)
    _add(archive, F, em=(5.0e-7, 6.0e-7), target_name="A&B <x>", ra=10.04, dec=-5.0)


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    """The application with the six spectra archived."""
    test_client: TestClient[Any, Any] = await make_client()
    populate(test_client.server.app[ARCHIVE])
    return test_client


async def ssa(client: TestClient[Any, Any], **params: Any) -> tuple[int, bytes]:
    """GET /ssa with REQUEST=queryData and these parameters; the status and body."""
    response = await client.get("/ssa", params={"REQUEST": "queryData", **{k: str(v) for k, v in params.items()}})
    return response.status, await response.read()


def votable(body: bytes) -> VOTableFile:
    """Parse strictly: any deviation astropy notices fails the test."""
    return parse(io.BytesIO(body), verify="exception")


def status(document: VOTableFile) -> tuple[str, str | None]:
    """QUERY_STATUS of the results resource: value and message."""
    results = next(r for r in document.resources if r.type == "results")
    info = next(i for i in results.infos if i.name == "QUERY_STATUS")
    return info.value, info.content


def dids(document: VOTableFile) -> set[str]:
    """The publisher DIDs of the rows."""
    return {str(did) for did in document.get_first_table().array["ssa_pubDID"]}


async def answer(client: TestClient[Any, Any], **params: Any) -> VOTableFile:
    """The parsed response to a query that must succeed (HTTP 200)."""
    code, body = await ssa(client, **params)
    assert code == 200, body[:500]
    return votable(body)


async def found(client: TestClient[Any, Any], **params: Any) -> set[str]:
    """DIDs found by a query that must succeed with QUERY_STATUS OK."""
    document = await answer(client, **params)
    assert status(document)[0] == "OK"
    return dids(document)


async def test_without_constraints_every_spectrum_is_found(client: TestClient[Any, Any]):
    assert await found(client) == {A, B, C, D, E, F}


async def test_cone_finds_spectra_within_the_diameter(client: TestClient[Any, Any]):
    assert await found(client, POS="345,56.5", SIZE=0.01) == {A, B}
    assert await found(client, POS="345,56.5;ICRS", SIZE=0.0005) == {A}
    assert await found(client, POS="10.0,-5.0", SIZE=0.1) == {C, F}
    assert await found(client, POS="10.0,-5.0", SIZE=0.07) == {C}


async def test_cone_wraps_around_ra_zero(client: TestClient[Any, Any]):
    assert await found(client, POS="0.005,0", SIZE=0.04) == {E}


async def test_pos_without_size_uses_the_default_diameter_of_a_tenth_of_a_degree(client: TestClient[Any, Any]):
    assert await found(client, POS="10.0,-5.0") == {C, F}
    assert await found(client, POS="10.0,-5.049") == {C}
    assert await found(client, POS="10.0,-5.051") == set()


async def test_size_without_pos_constrains_nothing(client: TestClient[Any, Any]):
    assert await found(client, SIZE=0.01) == {A, B, C, D, E, F}


async def test_band_single_value_must_be_covered(client: TestClient[Any, Any]):
    assert await found(client, BAND="6.5e-7") == {A, C}


async def test_band_range_must_overlap_and_may_be_open(client: TestClient[Any, Any]):
    assert await found(client, BAND="6.9e-7/7e-7") == {C}
    assert await found(client, BAND="/3.85e-7") == {B, C}
    assert await found(client, BAND="6.5e-7/") == {A, C}
    assert await found(client, BAND="6.5e-7/;source") == {A, C}


async def test_time_of_a_year_a_day_or_an_instant(client: TestClient[Any, Any]):
    assert await found(client, TIME="2009") == {A}
    assert await found(client, TIME="2012-03") == {B}
    assert await found(client, TIME="2014-12-09") == {C}
    assert await found(client, TIME="2009-06-18T03:00:00/2009-06-18T04:00:00") == {A}
    assert await found(client, TIME="2009-06-18T03:30:00Z") == {A}


async def test_time_ranges_may_be_open(client: TestClient[Any, Any]):
    assert await found(client, TIME="2012-01-01/") == {B, C, E}
    assert await found(client, TIME="/2010") == {A}
    assert await found(client, TIME="2012/2013") == {B}


async def test_target_collection_and_pubdid(client: TestClient[Any, Any]):
    assert await found(client, TARGETNAME="v509 cas") == {A, B}
    assert await found(client, COLLECTION="lamost") == {C}
    assert await found(client, PUBDID=B) == {B}
    assert await found(client, TARGETNAME="V509 Cas", BAND="4e-7") == {B}


async def test_format_selects_dataset_formats(client: TestClient[Any, Any]):
    assert await found(client, FORMAT="application/fits") == {A, C, D, E, F}
    assert await found(client, FORMAT="votable") == {B}
    assert await found(client, FORMAT="fits,votable", POS="345,56.5", SIZE=0.01) == {A, B}
    assert await found(client, FORMAT="native") == {A, B, C, D, E, F}
    assert await found(client, FORMAT="ALL") == {A, B, C, D, E, F}
    assert await found(client, FORMAT="graphic") == set()
    assert await found(client, FORMAT="image/png") == set()


async def test_parameter_names_are_case_insensitive_and_unknown_ones_ignored(client: TestClient[Any, Any]):
    response = await client.get(
        "/ssa", params={"request": "querydata", "pos": "345,56.5", "Size": "0.01", "SPECRP": "5000", "whatever": "1"}
    )
    assert response.status == 200
    assert dids(votable(await response.read())) == {A, B}


async def test_post_form_is_answered_like_get(client: TestClient[Any, Any]):
    response = await client.post("/ssa", data={"REQUEST": "queryData", "POS": "345,56.5", "SIZE": "0.01"})
    assert response.status == 200
    assert dids(votable(await response.read())) == {A, B}


async def test_maxrec_truncates_with_overflow(client: TestClient[Any, Any]):
    code, body = await ssa(client, MAXREC=2)
    assert code == 200
    document = votable(body)
    value, message = status(document)
    assert value == "OVERFLOW"
    assert message is not None and "MAXREC=2" in message
    assert len(document.get_first_table().array) == 2


async def test_maxrec_equal_to_the_matches_is_no_overflow(client: TestClient[Any, Any]):
    document = await answer(client, MAXREC=6)
    assert status(document)[0] == "OK"
    assert len(document.get_first_table().array) == 6


async def test_maxrec_zero_gives_the_columns_and_an_overflow(client: TestClient[Any, Any]):
    code, body = await ssa(client, MAXREC=0)
    assert code == 200
    document = votable(body)
    assert status(document)[0] == "OVERFLOW"
    table = document.get_first_table()
    assert len(table.array) == 0
    assert "ssa:Access.Reference" in {f.utype for f in table.fields}


async def test_empty_result_is_ok_with_all_columns(client: TestClient[Any, Any]):
    code, body = await ssa(client, POS="100,20", SIZE=0.1)
    assert code == 200
    document = votable(body)
    assert status(document)[0] == "OK"
    table = document.get_first_table()
    assert len(table.array) == 0
    assert len(table.fields) > 20


async def test_rows_carry_the_ssa_data_model(client: TestClient[Any, Any]):
    document = await answer(client, PUBDID=A)
    table = document.get_first_table()
    by_utype = {f.utype: f for f in table.fields if f.utype}
    row = table.array[0]

    def value(utype: str) -> Any:
        return row[by_utype[utype].name]

    assert value("ssa:Access.Reference") == data_url(str(client.make_url("")).rstrip("/"), A)
    assert value("ssa:Access.Format") == "application/fits"
    assert value("ssa:Access.Size") == 40_000
    assert value("ssa:Dataset.Length") == 1997
    assert value("ssa:DataID.Title") == "V509 Cas CCD700 2009-06-18"
    assert value("ssa:DataID.Collection") == "ccd700"
    assert value("ssa:DataID.Instrument") == "CCD700"
    assert value("ssa:Curation.Publisher") == "ivo://test.vocloud"
    assert value("ssa:DataID.Date") == "2009-06-18 03:36:00.000"
    assert value("ssa:Target.Name") == "V509 Cas"
    assert list(value("ssa:Target.Pos")) == [345.0, 56.5]
    assert list(value("ssa:Char.SpatialAxis.Coverage.Location.Value")) == [345.0, 56.5]
    assert value("ssa:Char.TimeAxis.Coverage.Location.Value") == pytest.approx(55000.15)
    assert value("ssa:Char.TimeAxis.Coverage.Bounds.Extent") == pytest.approx(8640.0)
    assert value("ssa:Char.SpectralAxis.Coverage.Bounds.Start") == pytest.approx(6.25e-7)
    assert value("ssa:Char.SpectralAxis.Coverage.Bounds.Stop") == pytest.approx(6.77e-7)
    assert value("ssa:Char.SpectralAxis.Coverage.Location.Value") == pytest.approx(6.51e-7)
    assert value("ssa:Char.SpectralAxis.Coverage.Bounds.Extent") == pytest.approx(5.2e-8)
    assert value("ssa:Char.SpectralAxis.ResPower") == pytest.approx(13000.0)
    assert value("ssa:Char.FluxAxis.Calibration") == "UNCALIBRATED"
    assert by_utype["ssa:Char.SpectralAxis.Coverage.Bounds.Start"].unit == "m"
    assert by_utype["ssa:Char.TimeAxis.Coverage.Location.Value"].unit == "d"
    assert row["facility"] == "Ondřejov 2m"
    params = {p.utype: p.value for p in table.params}
    assert params["ssa:Dataset.DataModel"] == "Spectrum-1.0"
    assert params["ssa:Dataset.Type"] == "Spectrum"
    assert params["ssa:CoordSys.SpaceFrame.Name"] == "ICRS"
    results = document.resources[0]
    assert {(i.name, i.value) for i in results.infos} >= {("SERVICE_PROTOCOL", "1.1")}


async def test_missing_values_are_nulls(client: TestClient[Any, Any]):
    table = (await answer(client, PUBDID=D)).get_first_table()
    row = table.array[0]
    assert np.ma.getmaskarray(row["ssa_targetpos"]).all()  # NaN NaN: astropy masks both
    assert row["ssa_ra"] is np.ma.masked
    assert row["ssa_dateObs"] is np.ma.masked
    assert row["ssa_dstitle"] == D


async def test_text_is_escaped(client: TestClient[Any, Any]):
    code, body = await ssa(client, PUBDID=F)
    assert code == 200
    assert b"A&amp;B &lt;x&gt;" in body
    assert votable(body).get_first_table().array[0]["ssa_targname"] == "A&B <x>"


async def test_large_results_are_written_off_the_event_loop_alike(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
):
    inline = await ssa(client)
    monkeypatch.setattr(ssa_module, "THREAD_ROWS", 1)
    threaded = await ssa(client)
    assert inline == threaded


def test_result_document_writes_what_astropy_reads_back():
    fields = [
        FieldSpec(name="text", datatype="unicodeChar", arraysize="*"),
        FieldSpec(name="d", datatype="double"),
        FieldSpec(name="f", datatype="float"),
        FieldSpec(name="n", datatype="long"),
        FieldSpec(name="flag", datatype="boolean"),
        FieldSpec(name="pair", datatype="double", arraysize="2"),
    ]
    document = ResultDocument(fields=fields, params=[ParamSpec(name="p", datatype="char", arraysize="*", value="v")])
    body = document.write(
        {
            "text": ["a&b<c>\x01", None, "Ondřejov"],
            "d": [1.5, None, math.inf],
            "f": np.array([0.1, np.nan, -2.0], dtype=np.float32),
            "n": np.ma.MaskedArray([1, 2, 3], mask=[False, True, False]),
            "flag": [True, False, None],
            "pair": [(1.0, 2.0), None, np.array([3.0, 4.0])],
        },
        rows=3,
        status="OVERFLOW",
        message="truncated",
    )
    parsed = votable(body)
    assert status(parsed) == ("OVERFLOW", "truncated")
    array = parsed.get_first_table().array
    assert list(array["text"].filled("")) == ["a&b<c>\ufffd", "", "Ondřejov"]
    assert array["d"][0] == 1.5
    assert array["d"][1] is np.ma.masked
    assert array["d"][2] == math.inf
    assert array["f"][0] == np.float32(0.1)
    assert math.isnan(array["f"].data[1])
    assert list(array["n"].filled(-1)) == [1, -1, 3]
    assert list(array["flag"].filled(False)) == [True, False, False]
    assert array["flag"][2] is np.ma.masked
    assert list(array["pair"][0]) == [1.0, 2.0]
    assert np.ma.getmaskarray(array["pair"][1]).all()
    assert list(array["pair"][2]) == [3.0, 4.0]
    assert document.write({}, rows=0).count(b"<TR>") == 0


async def test_every_response_has_a_datalink_service_descriptor(client: TestClient[Any, Any]):
    base = str(client.make_url("")).rstrip("/")
    for params in ({"PUBDID": A}, {"POS": "100,20"}, {"FORMAT": "METADATA"}, {"MAXREC": 0}):
        document = await answer(client, **params)
        (descriptor,) = [r for r in document.resources if r.type == "meta" and r.utype == "adhoc:service"]
        params_by_name = {p.name: p.value for p in descriptor.params}
        assert params_by_name["standardID"] == "ivo://ivoa.net/std/DataLink#links-1.1"
        assert params_by_name["accessURL"] == f"{base}/datalink"
        (group,) = descriptor.groups
        assert group.name == "inputParams"
        (id_param,) = group.entries
        assert (id_param.name, id_param.ref) == ("ID", "ssa_pubDID")


async def test_metadata_describes_the_parameters_and_columns(client: TestClient[Any, Any]):
    # SSA 1.1 section 6.1: with FORMAT=METADATA, the other queryData parameters are ignored.
    code, body = await ssa(client, FORMAT="METADATA", POS="1,91")
    assert code == 200
    document = votable(body)
    assert status(document)[0] == "OK"
    results = document.resources[0]
    inputs = {p.name: p for p in results.params}
    assert {"INPUT:POS", "INPUT:SIZE", "INPUT:BAND", "INPUT:TIME", "INPUT:FORMAT", "INPUT:MAXREC"} <= set(inputs)
    assert {"INPUT:TARGETNAME", "INPUT:COLLECTION", "INPUT:PUBDID", "INPUT:REQUEST"} <= set(inputs)
    assert inputs["INPUT:SIZE"].unit == "deg"
    assert inputs["INPUT:SIZE"].value == pytest.approx(0.1)
    assert inputs["INPUT:MAXREC"].value == 1000
    table = document.get_first_table()
    assert len(table.array) == 0
    assert {"ssa:Access.Reference", "ssa:Access.Format", "ssa:Target.Pos", "ssa:DataID.Title"} <= {
        f.utype for f in table.fields
    }


async def test_responseformat_votable_and_text_xml(client: TestClient[Any, Any]):
    response = await client.get("/ssa", params={"REQUEST": "queryData", "RESPONSEFORMAT": "votable"})
    assert response.content_type == "application/x-votable+xml"
    response = await client.get("/ssa", params={"REQUEST": "queryData", "RESPONSEFORMAT": "text/xml"})
    assert response.content_type == "text/xml"
    assert dids(votable(await response.read())) == {A, B, C, D, E, F}


BAD_REQUESTS = [
    ({"POS": "1,91"}, "POS=1,91: Dec must be within -90..90 degrees"),
    ({"POS": "1,-90.5"}, "POS=1,-90.5: Dec"),
    ({"POS": "361,0"}, "POS=361,0: RA must be within 0..360 degrees"),
    ({"POS": "-1,0"}, "POS=-1,0: RA"),
    ({"POS": "abc,10"}, "POS: 'abc' is not a number"),
    ({"POS": "10"}, "POS=10: expected RA,Dec"),
    ({"POS": "1,2,3"}, "POS=1,2,3: expected RA,Dec"),
    ({"POS": "nan,10"}, "POS: 'nan' is not a number"),
    ({"POS": "1,2;GALACTIC"}, "POS=1,2;GALACTIC: frame GALACTIC is not supported"),
    ({"POS": "1,2", "SIZE": "big"}, "SIZE: 'big' is not a number"),
    ({"POS": "1,2", "SIZE": "0"}, "SIZE=0: the cone diameter must be more than 0"),
    ({"POS": "1,2", "SIZE": "-1"}, "SIZE=-1: the cone diameter"),
    ({"BAND": "optical"}, "BAND=optical: 'optical' is not a wavelength in metres"),
    ({"BAND": "-1e-7/2e-7"}, "BAND=-1e-7/2e-7: wavelengths must be finite and not negative"),
    ({"BAND": "1e-7/2e-7/3e-7"}, "BAND=1e-7/2e-7/3e-7: expected a value or a range"),
    ({"BAND": "1e-7/2e-7,3e-7/4e-7"}, "BAND=1e-7/2e-7,3e-7/4e-7: give one value or range"),
    ({"BAND": "7e-7/4e-7"}, "BAND=7e-7/4e-7: the lower bound is above the upper bound"),
    ({"TIME": "2010-01-02/2009-01-01"}, "TIME=2010-01-02/2009-01-01: the start is after the end"),
    ({"TIME": "yesterday"}, "TIME=yesterday: expected ISO 8601"),
    ({"TIME": "2020-13-01"}, "TIME=2020-13-01: expected ISO 8601"),
    ({"TIME": "55000/56000"}, "TIME=55000/56000: expected ISO 8601"),
    ({"MAXREC": "-1"}, "MAXREC=-1: expected a whole number"),
    ({"MAXREC": "ten"}, "MAXREC=ten: expected a whole number"),
    ({"REQUEST": "getData"}, "REQUEST=getData is not supported"),
    ({"RESPONSEFORMAT": "text/csv"}, "RESPONSEFORMAT=text/csv is not supported"),
    ({"VERSION": "2.0"}, "VERSION=2.0 is not supported"),
]


@pytest.mark.parametrize(("params", "expected"), BAD_REQUESTS, ids=[str(p) for p, _ in BAD_REQUESTS])
async def test_invalid_values_are_errors_naming_the_parameter(
    client: TestClient[Any, Any], params: dict[str, str], expected: str
):
    code, body = await ssa(client, **params)
    assert code == 400
    assert dali_error_message(body).startswith(expected)


async def test_missing_request_is_an_error(client: TestClient[Any, Any]):
    response = await client.get("/ssa", params={"POS": "345,56.5"})
    assert response.status == 400
    assert dali_error_message(await response.read()) == "REQUEST is missing: SSA queries need REQUEST=queryData"


async def test_conflicting_repeated_parameter_is_an_error(client: TestClient[Any, Any]):
    response = await client.get("/ssa?REQUEST=queryData&POS=1,2&pos=3,4")
    assert response.status == 400
    assert dali_error_message(await response.read()) == "POS is given more than once with different values"


async def test_capabilities_include_ssa_and_vosi(client: TestClient[Any, Any]):
    response = await client.get("/ssa/capabilities")
    assert response.status == 200
    root = etree.fromstring(await response.read())
    xsi_type = "{http://www.w3.org/2001/XMLSchema-instance}type"
    capabilities = {c.get("standardID"): c for c in root.findall("capability")}
    assert set(capabilities) == {
        "ivo://ivoa.net/std/SSA",
        "ivo://ivoa.net/std/VOSI#availability",
        "ivo://ivoa.net/std/VOSI#capabilities",
    }
    ssa_capability = capabilities["ivo://ivoa.net/std/SSA"]
    assert ssa_capability.get(xsi_type) == "ssa:SimpleSpectralAccess"
    assert ssa_capability.nsmap["ssa"] == "http://www.ivoa.net/xml/SSA/v1.1"
    assert ssa_capability.findtext("complianceLevel") == "query"
    assert ssa_capability.findtext("dataSource") == "pointed"
    assert ssa_capability.findtext("creationType") == "archival"
    assert ssa_capability.findtext("supportedFrame") == "ICRS"
    assert ssa_capability.findtext("maxRecords") == "100000"
    assert ssa_capability.findtext("defaultMaxRecords") == "1000"
    assert ssa_capability.findtext("interface/accessURL") == str(client.make_url("/ssa"))
    query = ssa_capability.findtext("testQuery/queryDataCmd")
    document = await answer(client, **dict(p.split("=") for p in query.split("&")))
    assert len(document.get_first_table().array) == 1


# --- pyvo over HTTP -------------------------------------------------------------------------------------------------


@pytest.fixture
async def server(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    """The application with the six spectra, listening on 127.0.0.1 on a free port."""
    test_server: TestServer = await aiohttp_server(create_app(make_settings(), kinds=ALL))
    populate(test_server.app[ARCHIVE])
    yield test_server




async def test_pyvo_search_by_position_diameter_and_band(server: TestServer, session: requests.Session):
    url = str(server.make_url("/ssa"))
    base = str(server.make_url("")).rstrip("/")

    def scenario() -> None:
        service = pyvo.dal.SSAService(url, session=session)
        results = service.search(pos=SkyCoord(345.0 * u.deg, 56.5 * u.deg), diameter=36 * u.arcsec)
        assert {str(did) for did in results["ssa_pubDID"]} == {A, B}
        results = service.search(
            pos=SkyCoord(345.0 * u.deg, 56.5 * u.deg), diameter=36 * u.arcsec, band=(6.0e-7, 7.0e-7) * u.m
        )
        (record,) = list(results)
        assert record.acref == data_url(base, A)
        assert record.getdataurl() == data_url(base, A)
        assert record.format == "application/fits"
        assert (record.ra, record.dec) == (345.0, 56.5)
        assert record.title == "V509 Cas CCD700 2009-06-18"
        assert record.instr == "CCD700"
        assert record.filesize == 40_000
        assert abs(record.dateobs.mjd - 55000.15) < 1e-5

    await in_thread(scenario)


async def test_pyvo_finds_the_datalink_descriptor_and_builds_the_links_request(
    server: TestServer, session: requests.Session
):
    url = str(server.make_url("/ssa"))
    base = str(server.make_url("")).rstrip("/")

    def scenario() -> None:
        results = pyvo.dal.SSAService(url, session=session).search(PUBDID=C)
        descriptor = results.get_adhocservice_by_ivoid(pyvo.dal.adhoc.DATALINK_IVOID)
        query = pyvo.dal.adhoc.DatalinkQuery.from_resource(results[0], descriptor, session=session)
        assert query.queryurl == f"{base}/datalink"
        assert query["ID"] == C

    await in_thread(scenario)


async def test_pyvo_reads_the_metadata_query(server: TestServer, session: requests.Session):
    url = str(server.make_url("/ssa"))

    def scenario() -> None:
        service = pyvo.dal.SSAService(url, session=session)
        utypes = {column.utype for column in service.columns}
        assert {"ssa:Access.Reference", "ssa:Target.Pos", "ssa:Curation.PublisherDID"} <= utypes

    await in_thread(scenario)


async def test_pyvo_sees_overflow(server: TestServer, session: requests.Session):
    url = str(server.make_url("/ssa"))

    def scenario() -> None:
        with pytest.warns(pyvo.dal.exceptions.DALOverflowWarning):
            results = pyvo.dal.SSAService(url, session=session).search(maxrec=2)
        assert len(results) == 2

    await in_thread(scenario)


async def test_pyvo_raises_our_error_message(server: TestServer, session: requests.Session):
    url = str(server.make_url("/ssa"))

    def scenario() -> None:
        service = pyvo.dal.SSAService(url, session=session)
        with pytest.raises(pyvo.dal.DALQueryError, match="TIME=yesterday: expected ISO 8601"):
            service.search(pos=SkyCoord(345.0 * u.deg, 56.5 * u.deg), diameter=0.1, TIME="yesterday")

    await in_thread(scenario)


# --- validators -----------------------------------------------------------------------------------------------------

RESPONSES = {
    "regular": {"POS": "345,56.5", "SIZE": "0.01"},
    "everything": {},
    "metadata": {"FORMAT": "METADATA"},
    "empty": {"POS": "100,20"},
    "overflow": {"MAXREC": "1"},
    "maxrec0": {"MAXREC": "0"},
    "error": {"POS": "1,91"},
}


def votlint(path: Path) -> list[str]:
    """votlint's complaints (it exits 0 even when it finds errors)."""
    run = subprocess.run(
        ["stilts", "votlint", "validate=true", f"votable={path}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("ERROR", "WARNING"))]


@pytest.mark.conformance
@pytest.mark.parametrize("name", list(RESPONSES))
async def test_votlint_finds_no_errors_or_warnings(client: TestClient[Any, Any], tmp_path: Path, name: str):
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    code, body = await ssa(client, **RESPONSES[name])
    assert code == (400 if name == "error" else 200)
    path = tmp_path / f"{name}.xml"
    path.write_bytes(body)
    assert await in_thread(lambda: votlint(path)) == []


@pytest.mark.conformance
async def test_capabilities_validate_against_the_schemas(client: TestClient[Any, Any], tmp_path: Path):
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    if not SSA_XSD.is_file():
        pytest.skip(f"{SSA_XSD} is not installed (apt-get install python3-gavo)")
    response = await client.get("/ssa/capabilities")
    path = tmp_path / "capabilities.xml"
    path.write_bytes(await response.read())
    run = await in_thread(
        lambda: subprocess.run(
            ["stilts", "xsdvalidate", "uselocals=true", f"schemaloc=http://www.ivoa.net/xml/SSA/v1.1={SSA_XSD}",
             f"doc={path}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
