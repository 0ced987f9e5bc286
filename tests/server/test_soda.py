"""SODA 1.0 cutouts: sync at /soda (GET and POST), async through /jobs/soda, errors, the pure operations, validators.

The archive of the in-process application holds synthetic CCD700 spectra
(6250-6750 Å in steps of 0.25 Å, H-alpha in absorption) ingested through the real
ingest path; async jobs run in the real worker pool.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from astropy.io import fits
from astropy.io.votable import parse

from tests.support.kinds import ALL
from tests.support.spectra_archive import (
    CCD700,
    LINE_CENTRE,
    LINE_DEPTH,
    START,
    STEP,
    archive_spectra,
    continuum,
    iraf_fits,
)
from tests.support.uws import create, wait_for_phase
from vocloud.server.app import create_app
from vocloud.server.continuum import ContinuumError, continuum_degree, fit_continuum
from vocloud.server.cutout import (
    CutoutUsageError,
    OutputFormat,
    parse_band,
    parse_response_format,
    select_pixels,
)
from vocloud.server.keys import ARCHIVE
from vocloud.server.settings import Settings
from vocloud.server.spectra.readers import read_spectrum

ONE = CCD700 + "tg000001"
FIRST, LAST = START, START + STEP * 2000
"""The archived spectra's wavelength range in Å."""
ANGSTROM = 1e-10
FITS_MIME = "application/fits"
VOTABLE_MIME = "application/x-votable+xml"


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    """The application with one archived spectrum."""
    test_client: TestClient[Any, Any] = await make_client()
    archive_spectra(test_client.server.app[ARCHIVE], ("tg000001", iraf_fits("tg000001")))
    return test_client


async def soda(client: TestClient[Any, Any], **params: str) -> tuple[int, str, bytes]:
    response = await client.get("/soda", params=params)
    return response.status, response.headers.get("Content-Type", ""), await response.read()


def fits_spectrum(body: bytes) -> tuple[np.ndarray, np.ndarray, Any]:
    """Wavelength, flux and table header of a FITS cutout."""
    with fits.open(io.BytesIO(body)) as hdus:
        table = hdus["SPECTRUM"]
        return np.array(table.data["WAVELENGTH"]), np.array(table.data["FLUX"]), table.header.copy()


# -- sync cutouts ----------------------------------------------------------------------


async def test_cutout_inside_the_spectrum_is_a_fits_table_within_band(client: TestClient[Any, Any]) -> None:
    status, content_type, body = await soda(client, ID=ONE, BAND="6.5e-7 6.6e-7")

    assert (status, content_type) == (200, FITS_MIME)
    wavelength, flux, header = fits_spectrum(body)
    with fits.open(io.BytesIO(body)) as hdus:
        columns = hdus["SPECTRUM"].columns
        assert columns.names == ["WAVELENGTH", "FLUX"]
        assert columns.units == ["Angstrom", "adu"]
    assert wavelength.min() >= 6500 - 1e-6 and wavelength.max() <= 6600 + 1e-6
    assert len(wavelength) in (400, 401)
    assert np.all(np.diff(wavelength) > 0)
    assert header["DS_IDPUB"] == ONE
    assert header["AIRORVAC"] == "air"
    assert header["FLUX_CAL"] == "UNCALIBRATED"
    assert np.isfinite(flux).all()


@pytest.mark.parametrize(
    ("band", "low", "high"),
    [
        ("-Inf 6.3e-7", FIRST, 6300.0),
        ("6.7e-7 +Inf", 6700.0, LAST),
        ("-Inf +Inf", FIRST, LAST),
        ("1e-7 1e-6", FIRST, LAST),
    ],
)
async def test_open_and_wider_bands_stop_at_the_spectrum(
    client: TestClient[Any, Any], band: str, low: float, high: float
) -> None:
    status, _, body = await soda(client, ID=ONE, BAND=band)

    assert status == 200
    wavelength, _, _ = fits_spectrum(body)
    assert wavelength[0] == pytest.approx(low, abs=STEP)
    assert wavelength[-1] == pytest.approx(high, abs=STEP)


async def test_no_band_is_the_whole_spectrum(client: TestClient[Any, Any]) -> None:
    status, _, body = await soda(client, ID=ONE)

    assert status == 200
    assert len(fits_spectrum(body)[0]) == 2001


async def test_band_narrower_than_a_pixel_gives_the_nearest_pixel(client: TestClient[Any, Any]) -> None:
    status, _, body = await soda(client, ID=ONE, BAND="6.50009e-7 6.50009e-7")

    assert status == 200
    wavelength, _, _ = fits_spectrum(body)
    assert wavelength.tolist() == [6500.0]


@pytest.mark.parametrize("band", ["7e-7 8e-7", "1e-7 2e-7", "-Inf 6e-7"])
async def test_band_outside_the_spectrum_is_204_without_body(client: TestClient[Any, Any], band: str) -> None:
    response = await client.get("/soda", params={"ID": ONE, "BAND": band})

    assert response.status == 204
    assert await response.read() == b""


async def test_votable_cutout(client: TestClient[Any, Any]) -> None:
    status, content_type, body = await soda(client, ID=ONE, BAND="6.5e-7 6.6e-7", RESPONSEFORMAT=VOTABLE_MIME)

    assert (status, content_type) == (200, VOTABLE_MIME)
    table = parse(io.BytesIO(body)).get_first_table()
    assert [f.name for f in table.fields] == ["wavelength", "flux"]
    assert [f.utype for f in table.fields] == [
        "spec:Spectrum.Data.SpectralAxis.Value",
        "spec:Spectrum.Data.FluxAxis.Value",
    ]
    data = table.to_table()
    metres = data["wavelength"].quantity.to_value("m")
    assert metres.min() >= 6.5e-7 * (1 - 1e-12) and metres.max() <= 6.6e-7 * (1 + 1e-12)
    assert str(data["flux"].unit) == "adu"
    assert {p.name: p.value for p in table.params}["publisher_did"] == ONE


async def test_votable_asked_as_text_xml_is_sent_as_text_xml(client: TestClient[Any, Any]) -> None:
    status, content_type, body = await soda(client, ID=ONE, BAND="6.5e-7 6.6e-7", RESPONSEFORMAT="text/xml")

    assert (status, content_type) == (200, "text/xml")
    assert len(parse(io.BytesIO(body)).get_first_table().array) in (400, 401)


async def test_post_is_served_like_get(client: TestClient[Any, Any]) -> None:
    response = await client.post("/soda", data={"ID": ONE, "BAND": "6.5e-7 6.6e-7", "responseformat": "votable"})

    assert response.status == 200
    assert response.headers["Content-Type"] == VOTABLE_MIME


async def test_normalized_cutout_divides_by_the_continuum(client: TestClient[Any, Any]) -> None:
    status, _, body = await soda(client, ID=ONE, BAND="6.54e-7 6.58e-7", NORMALIZE="true")

    assert status == 200
    wavelength, flux, header = fits_spectrum(body)
    assert header["FLUX_CAL"] == "NORMALIZED"
    assert (header["CONTNORM"], header["CONTDEG"], header["CONTLOW"], header["CONTHIGH"]) == (True, 3, 2.0, 3.0)
    assert "TUNIT2" not in header
    far = np.abs(wavelength - LINE_CENTRE) > 15
    assert np.median(flux[far]) == pytest.approx(1.0, abs=0.005)
    assert flux[np.argmin(np.abs(wavelength - LINE_CENTRE))] == pytest.approx(1 - LINE_DEPTH, abs=0.02)


@pytest.mark.parametrize(
    ("params", "status", "start"),
    [
        ({"ID": CCD700 + "unknown"}, 404, "UsageError: no spectrum with ID"),
        ({"ID": "../../etc/passwd"}, 404, "UsageError: no spectrum with ID '../../etc/passwd'"),
        ({"ID": "/etc/passwd", "BAND": "6e-7 7e-7"}, 404, "UsageError: no spectrum with ID"),
        ({}, 400, "UsageError: ID is required"),
        ({"ID": ""}, 400, "UsageError: ID is required"),
        ({"ID": ONE, "BAND": "6.6e-7 6.5e-7"}, 400, "UsageError: BAND lower bound"),
        ({"ID": ONE, "BAND": "red blue"}, 400, "UsageError: BAND must be two numbers"),
        ({"ID": ONE, "BAND": "6.5e-7"}, 400, "UsageError: BAND must be two wavelengths"),
        ({"ID": ONE, "BAND": "NaN 6.5e-7"}, 400, "UsageError: BAND bounds must be numbers"),
        ({"ID": ONE, "RESPONSEFORMAT": "image/png"}, 400, "UsageError: RESPONSEFORMAT 'image/png' is not offered"),
        ({"ID": ONE, "NORMALIZE": "perhaps"}, 400, "UsageError: NORMALIZE must be true or false"),
    ],
)
async def test_bad_requests_are_soda_errors(
    client: TestClient[Any, Any], params: dict[str, str], status: int, start: str
) -> None:
    response = await client.get("/soda", params=params)

    assert response.status == status
    assert response.content_type == "text/plain"
    text = await response.text()
    assert text.startswith(start), text
    assert response.reason == text.strip()[:200]


async def test_repeated_parameters_are_multi_valued_errors(client: TestClient[Any, Any]) -> None:
    for params in ([("ID", ONE), ("ID", ONE)], [("ID", ONE), ("BAND", "6e-7 7e-7"), ("band", "6e-7 6.5e-7")]):
        response = await client.get("/soda", params=params)

        assert response.status == 400
        assert (await response.text()).startswith("MultiValuedParamNotSupported: ")


async def test_normalizing_what_has_no_continuum_is_refused(client: TestClient[Any, Any]) -> None:
    flat = iraf_fits("tg000009")
    with fits.open(io.BytesIO(flat)) as hdus:
        hdus[0].data = np.zeros_like(hdus[0].data)
        buffer = io.BytesIO()
        hdus.writeto(buffer)
    archive_spectra(client.server.app[ARCHIVE], ("tg000009", buffer.getvalue()))

    status, content_type, body = await soda(client, ID=CCD700 + "tg000009", NORMALIZE="true")

    assert (status, content_type) == (400, "text/plain; charset=utf-8")
    assert body.decode().startswith("UsageError: NORMALIZE: this spectrum cannot be continuum-normalised")


async def test_other_methods_get_soda_errors(client: TestClient[Any, Any]) -> None:
    response = await client.put("/soda", data={"ID": ONE})

    assert response.status == 405
    assert response.content_type == "application/x-votable+xml"  # routing errors stay DALI's, before any handler


# -- async ------------------------------------------------------------------------------


async def run_job(client: TestClient[Any, Any], **params: str) -> tuple[str, Any]:
    path = await create(client, "soda", data={**params, "PHASE": "RUN"})
    return path, await wait_for_phase(client, path, "COMPLETED", "ERROR", timeout=60)


@pytest.mark.timeout(120)
async def test_async_cutout_through_uws(client: TestClient[Any, Any]) -> None:
    path, job = await run_job(client, ID=ONE, BAND="6.5e-7 6.6e-7")

    assert job.phase == "COMPLETED", job.error_message
    assert job.results["result"]["mime-type"] == FITS_MIME
    response = await client.get(f"{path}/results/result")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(FITS_MIME)
    wavelength, _, header = fits_spectrum(await response.read())
    assert wavelength.min() >= 6500 - 1e-6 and wavelength.max() <= 6600 + 1e-6
    assert header["DS_IDPUB"] == ONE


@pytest.mark.timeout(120)
async def test_async_votable_normalized_and_no_overlap(client: TestClient[Any, Any]) -> None:
    path, job = await run_job(client, ID=ONE, BAND="6.5e-7 6.6e-7", RESPONSEFORMAT="votable", NORMALIZE="true")
    assert job.phase == "COMPLETED", job.error_message
    assert job.results["result"]["mime-type"] == VOTABLE_MIME
    table = parse(io.BytesIO(await (await client.get(f"{path}/results/result")).read())).get_first_table()
    assert {p.name: p.value for p in table.params}["flux_calibration"] == "NORMALIZED"

    # SODA 1.0 section 6: a combination that gives no data is a text/plain result with a SODA error label.
    path, job = await run_job(client, ID=ONE, BAND="7e-7 8e-7")
    assert job.phase == "COMPLETED", job.error_message
    assert job.results["result"]["mime-type"] == "text/plain"
    text = await (await client.get(f"{path}/results/result")).text()
    assert text.startswith(f"UsageError: BAND 7e-7 8e-7 includes no pixel of {ONE}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ID": CCD700 + "unknown"}, "UsageError: no spectrum with ID"),
        ({"ID": ONE, "BAND": "6.6e-7 6.5e-7"}, "UsageError: BAND lower bound"),
        ({"ID": ONE, "RESPONSEFORMAT": "text/csv"}, "UsageError: RESPONSEFORMAT 'text/csv' is not offered"),
    ],
)
async def test_async_usage_errors(client: TestClient[Any, Any], params: dict[str, str], message: str) -> None:
    _, job = await run_job(client, **params)

    assert job.phase == "ERROR"
    assert job.error_type == "fatal"
    assert job.error_message.startswith(message)


# -- the pure operations ---------------------------------------------------------------


def test_parse_band() -> None:
    assert parse_band(" 6.5e-7   6.6e-7 ") == (6.5e-7, 6.6e-7)
    assert parse_band("-Inf +Inf") == (float("-inf"), float("inf"))
    assert parse_band("5e-7 5e-7") == (5e-7, 5e-7)
    for bad in ("", "1", "1 2 3", "x 1", "nan 1", "2 1"):
        with pytest.raises(CutoutUsageError):
            parse_band(bad)


def test_response_formats() -> None:
    assert parse_response_format(None) == (OutputFormat.FITS, FITS_MIME)
    assert parse_response_format("FITS") == (OutputFormat.FITS, FITS_MIME)
    assert parse_response_format("votable") == (OutputFormat.VOTABLE, VOTABLE_MIME)
    assert parse_response_format("text/xml") == (OutputFormat.VOTABLE, "text/xml")
    tabledata = "application/x-votable+xml;serialization=tabledata"
    assert parse_response_format(tabledata) == (OutputFormat.VOTABLE, VOTABLE_MIME)
    for bad in ("application/json", "application/x-votable+xml;serialization=binary2"):
        with pytest.raises(CutoutUsageError):
            parse_response_format(bad)


def test_select_pixels() -> None:
    wavelength = np.array([1.0, 2.0, 3.0, 4.0])
    assert select_pixels(wavelength, (2 * ANGSTROM, 3 * ANGSTROM)) == slice(1, 3)
    assert select_pixels(wavelength, (2.4 * ANGSTROM, 2.45 * ANGSTROM)) == slice(1, 2)
    assert select_pixels(wavelength, (2.6 * ANGSTROM, 2.7 * ANGSTROM)) == slice(2, 3)
    assert select_pixels(wavelength, (5 * ANGSTROM, 6 * ANGSTROM)) is None
    assert select_pixels(wavelength, (0.1 * ANGSTROM, 0.5 * ANGSTROM)) is None


def test_continuum_fit_recovers_a_known_continuum() -> None:
    wavelength = START + STEP * np.arange(2001)
    truth = continuum(wavelength)
    line = 1.0 - LINE_DEPTH * np.exp(-0.5 * ((wavelength - LINE_CENTRE) / 3.0) ** 2)
    flux = truth * line + np.random.default_rng(7).normal(0.0, 3.0, wavelength.size)

    fit = fit_continuum(wavelength, flux)

    assert fit.degree == 3
    assert np.max(np.abs(fit.continuum / truth - 1)) < 0.005
    assert fit.kept < wavelength.size  # the line was clipped away


def test_continuum_agrees_with_the_ondrejov_archives_own_normalisation(shared_data: Path) -> None:
    """tg160037 (V509 Cas, H-alpha in emission): our normalisation against the CCD700 service's FLUXCALIB=normalized."""
    folder = shared_data / "ondrejov-ccd700"
    spectrum = read_spectrum(folder / "fits-original" / "tg160037.fit")
    theirs = np.loadtxt(folder / "serializations-tg160037" / "tg160037_normalized.csv", delimiter=",")

    ours = spectrum.flux / fit_continuum(spectrum.wavelength, spectrum.flux).continuum

    ratio = ours / np.interp(spectrum.wavelength, theirs[:, 0], theirs[:, 1])
    assert np.median(ratio) == pytest.approx(1.0, abs=0.005)
    low, high = np.percentile(ratio, [5, 95])
    assert low > 0.99 and high < 1.01


def test_continuum_degree_grows_with_the_span() -> None:
    assert [continuum_degree(s) for s in (500, 1000, 1500, 5000, 50_000)] == [3, 3, 4, 7, 9]


def test_continuum_fit_refuses_too_few_points() -> None:
    with pytest.raises(ContinuumError, match="finite flux values"):
        fit_continuum(np.arange(10.0) + 1, np.ones(10))


# -- validators ------------------------------------------------------------------------


@pytest.fixture
async def server(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    """The application with one spectrum, listening on 127.0.0.1 on a free port."""
    test_server: TestServer = await aiohttp_server(create_app(make_settings(), kinds=ALL))
    archive_spectra(test_server.app[ARCHIVE], ("tg000001", iraf_fits("tg000001")))
    yield test_server


def stilts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["stilts", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.conformance
@pytest.mark.parametrize("normalize", ["false", "true"])
async def test_votlint_finds_no_error_in_votable_cutouts(server: TestServer, normalize: str) -> None:
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    query = {"ID": ONE, "BAND": "6.5e-7 6.6e-7", "RESPONSEFORMAT": VOTABLE_MIME, "NORMALIZE": normalize}
    url = str(server.make_url("/soda").with_query(query))

    run = await asyncio.to_thread(stilts, "votlint", "validate=true", f"votable={url}")

    errors = [line for line in run.stdout.splitlines() if line.startswith("ERROR")]
    assert errors == [], run.stdout + run.stderr


@pytest.mark.conformance
async def test_soda_capabilities_are_schema_valid(server: TestServer) -> None:
    if shutil.which("stilts") is None:
        pytest.skip("STILTS is not installed (conformance/install-validators)")
    url = str(server.make_url("/soda/capabilities"))

    run = await asyncio.to_thread(stilts, "xsdvalidate", "uselocals=true", f"doc={url}")

    assert run.returncode == 0, run.stdout + run.stderr
