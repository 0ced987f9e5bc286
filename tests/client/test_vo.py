"""VO data access (`vocloud.client.vo`, `vocloud.client.cache`) against a real vocloud and saved real answers.

The vocloud application runs in-process on a real port with a few synthetic
CCD700 spectra (tests/support/spectra_archive.py: 6250-6750 Å in 0.25 Å steps),
one of them with vacuum wavelengths; every request it answers is counted, so
that "served from the cache" is checked at the server. Saved answers of real
services (../shared/data/vo-responses) are served byte for byte by a tiny
aiohttp app. The client is blocking (requests), so it runs in a worker thread,
never on the event loop serving it.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestServer
from astropy.io import fits
from astropy.io.votable import parse as parse_votable_file
from astropy.table import Table

from tests.support.kinds import ALL
from tests.support.live_server import free_port
from tests.support.spectra_archive import CCD700, START, STEP, archive_spectra, iraf_fits
from tests.support.threads import in_thread
from vocloud.client import vo
from vocloud.client.cache import Cache, default_cache_dir, download
from vocloud.client.errors import ClientTimeoutError, ServerUnreachableError, VocloudError
from vocloud.server.app import create_app
from vocloud.server.keys import ARCHIVE

AIR = [CCD700 + stem for stem in ("tg000001", "tg000002")]
VACUUM = CCD700 + "tv000001"
H_ALPHA_VACUUM = 6564.61
"""H-alpha in vacuum, Å (IAU: 6562.80 Å in air), as line lists give it."""
END = START + STEP * 2000
ONDREJOV = "vo-responses/ondrejov-ccd700-ssa"


def _vacuum_fits(stem: str) -> bytes:
    """An archived-style spectrum whose header says its wavelengths are vacuum wavelengths."""
    with fits.open(io.BytesIO(iraf_fits(stem, seed=3))) as hdus:
        hdus[0].header["AIRORVAC"] = "vac"
        buffer = io.BytesIO()
        hdus.writeto(buffer)
    return buffer.getvalue()


class Vocloud:
    """The running application, its base URL, and the (method, path) of every request it answered."""

    def __init__(self, server: TestServer, requests: list[tuple[str, str]]) -> None:
        self.server = server
        self.base = str(server.make_url("")).rstrip("/")
        self.requests = requests
        self.archive = server.app[ARCHIVE]

    def count(self, path: str) -> int:
        """Requests to ``path`` so far."""
        return sum(1 for _, seen in self.requests if seen == path)


@pytest.fixture
async def vocloud(make_settings: Callable[..., Any], aiohttp_server: Any) -> Vocloud:
    app = create_app(make_settings(), kinds=ALL)
    seen: list[tuple[str, str]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.method, request.path))

    app.on_response_prepare.append(record)
    server = await aiohttp_server(app)
    running = Vocloud(server, seen)
    files = [(did.rsplit("/", 1)[1], iraf_fits(did.rsplit("/", 1)[1], seed=i)) for i, did in enumerate(AIR)]
    archive_spectra(running.archive, *files, ("tv000001", _vacuum_fits("tv000001")))
    return running


class SavedAnswers:
    """Serves saved files at given paths and keeps the query of every request."""

    def __init__(self, server: TestServer, queries: list[dict[str, str]]) -> None:
        self.server = server
        self.queries = queries

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def saved(shared_data: Path, aiohttp_server: Any) -> SavedAnswers:
    files = {
        "/ondrejov/ssa": shared_data / ONDREJOV / "ssa-v509cas-with-datalink.xml",
        "/ondrejov/error": shared_data / ONDREJOV / "ssa-error-missing-request.xml",
        "/flashheros/ssa": shared_data / "vo-responses/gavo-dachs/flashheros-ssa-with-datalink-soda.xml",
        "/sdss/ssa": shared_data / "vo-responses/jhu-sdss-ssa/sdss-dr6-ssa-queryData.xml",
    }
    queries: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        return web.Response(body=files[request.path].read_bytes(), content_type="application/x-votable+xml")

    app = web.Application()
    for path in files:
        app.router.add_get(path, answer)
    return SavedAnswers(await aiohttp_server(app), queries)


# -- saved answers of real services ---------------------------------------------------------------------------------


async def test_ondrejov_ssa_answer_with_arraysize_m_reads_into_a_usable_table(
    saved: SavedAnswers, shared_data: Path
) -> None:
    raw = (shared_data / ONDREJOV / "ssa-v509cas-with-datalink.xml").read_bytes()
    with pytest.raises(ValueError, match="arraysize"):  # what the repair is for: astropy alone refuses it
        parse_votable_file(io.BytesIO(raw), verify="ignore")

    def search() -> Table:
        with requests.Session() as http:
            return vo.ssa_search(saved.url("/ondrejov/ssa"), pos=(345.02, 56.95), size=0.1, maxrec=50, session=http)

    table = await in_thread(search)
    assert saved.queries == [{"REQUEST": "queryData", "POS": "345.02,56.95", "SIZE": "0.1", "MAXREC": "50"}]
    assert len(table) == raw.count(b"<TR>")
    assert len(table.colnames) == raw.split(b"</TABLE>")[0].count(b"<FIELD ")
    assert all(str(did).startswith("ivo://asu.cas.cz/stel/ccd700/") for did in table["ssa_pubDID"])
    assert all(str(url).startswith("http://voarchive.asu.cas.cz/") for url in table["accref"])
    start, stop = (np.asarray(table[name].to(u.AA)) for name in ("ssa_specstart", "ssa_specend"))
    assert np.all((start > 3000) & (start < stop) & (stop < 10000))
    assert set(table["mime"]) == {"image/fits", "application/x-votable+xml"}
    assert table.meta["overflow"] is False


async def test_an_error_document_on_http_200_is_raised_with_the_services_message(
    saved: SavedAnswers, shared_data: Path
) -> None:
    document = (shared_data / ONDREJOV / "ssa-error-missing-request.xml").read_text()
    message = re.search(r'QUERY_STATUS" value="ERROR">([^<]+)<', document)
    assert message is not None

    def search() -> None:
        with requests.Session() as http:
            vo.ssa_search(saved.url("/ondrejov/error"), session=http)

    with pytest.raises(VocloudError) as raised:
        await in_thread(search)
    assert raised.value.message == message.group(1)


async def test_a_getdata_descriptor_makes_the_cutout_request_of_an_archive_older_than_soda(
    saved: SavedAnswers,
) -> None:
    def plan() -> tuple[Any, vo.CutoutRequest]:
        with requests.Session() as http:
            record = vo.ssa_query(saved.url("/ondrejov/ssa"), session=http).results[0]
            return record, vo.cutout_request(record, session=http)

    record, request = await in_thread(plan)
    assert request.standard_id == vo.SSDP_SYNC_IVOID
    assert request.url == "http://voarchive.asu.cas.cz/ccd700/q/sdl/dlget"  # the descriptor's accessURL
    assert request.params["ID"] == record["ssa_pubDID"]
    assert float(request.params["LAMBDA_MIN"]) == pytest.approx(6512.8e-10)
    assert float(request.params["LAMBDA_MAX"]) == pytest.approx(6612.8e-10)
    assert request.medium is None  # the service does not say; the line is taken as given (air)
    assert len(saved.queries) == 1  # planned from the table alone


async def test_a_soda_descriptor_in_the_ssa_table_is_used_without_datalink(saved: SavedAnswers) -> None:
    def plan() -> tuple[Any, vo.CutoutRequest]:
        with requests.Session() as http:
            record = vo.ssa_query(saved.url("/flashheros/ssa"), session=http).results[0]
            return record, vo.cutout_request(record, around=4861.3 * u.AA, half_width=20 * u.AA, session=http)

    record, request = await in_thread(plan)
    assert request.standard_id.startswith("ivo://ivoa.net/std/SODA#sync")
    assert request.params["ID"] == record.getbyutype("ssa:Curation.PublisherDID")
    low, high = (float(value) for value in request.params["BAND"].split())
    assert (low, high) == (pytest.approx(4841.3e-10), pytest.approx(4881.3e-10))
    assert len(saved.queries) == 1


async def test_the_utype_only_dialect_of_an_ssa_1_0_service_reads(saved: SavedAnswers, shared_data: Path) -> None:
    raw = (shared_data / "vo-responses/jhu-sdss-ssa/sdss-dr6-ssa-queryData.xml").read_bytes()

    def search() -> vo.SSAResponse:
        with requests.Session() as http:
            return vo.ssa_query(saved.url("/sdss/ssa"), session=http)

    response = await in_thread(search)
    assert response.raw == raw
    assert len(response.results) == raw.count(b"<TR>") > 0
    assert all(str(record.acref).startswith("http") for record in response.results)


# -- a vocloud server -----------------------------------------------------------------------------------------------


async def test_ssa_search_filters_and_reports_overflow(vocloud: Vocloud) -> None:
    def searches() -> tuple[Table, Table, Table]:
        with requests.Session() as http:
            url = f"{vocloud.base}/ssa"
            everything = vo.ssa_search(url, pos=(15.5, 45.1), size=2.0, session=http)
            first = vo.ssa_search(url, maxrec=1, session=http)
            blue = vo.ssa_search(url, band=(4000, 4100) * u.AA, session=http)
            return everything, first, blue

    everything, first, blue = await in_thread(searches)
    assert sorted(everything["ssa_pubDID"]) == sorted([*AIR, VACUUM])
    assert everything.meta["overflow"] is False
    assert len(first) == 1
    assert first.meta["overflow"] is True
    assert len(blue) == 0


async def test_datalink_of_an_id_a_record_and_a_table_row_give_the_same_links(vocloud: Vocloud) -> None:
    def resolve() -> tuple[list[vo.Links], bytes, bytes]:
        with requests.Session() as http:
            by_id = vo.datalink(AIR[0], service_url=f"{vocloud.base}/datalink", session=http)
            response = vo.ssa_query(f"{vocloud.base}/ssa", PUBDID=AIR[0], session=http)
            by_record = vo.datalink(response.results[0], session=http)
            by_row = vo.datalink(response.table()[0], service_url=f"{vocloud.base}/datalink", session=http)
            assert by_id.this is not None and by_id.preview is not None
            data = http.get(by_id.this.access_url, timeout=30).content
            png = http.get(by_id.preview.access_url, timeout=30).content
            return [by_id, by_record, by_row], data, png

    links, data, png = await in_thread(resolve)
    record = vocloud.archive.store.get(AIR[0])
    assert record is not None
    assert data == vocloud.archive.file_path(record).read_bytes()
    assert png.startswith(b"\x89PNG")
    for found in links:
        assert found.id == AIR[0]
        assert found.this is not None and found.this.access_url == links[0].this.access_url  # type: ignore[union-attr]
        assert found.cutout is not None and found.cutout.service_def
        assert [row.semantics for row in found.by_semantics("#derivation")] == ["#derivation"]


async def test_an_unknown_id_is_a_404_error_in_the_services_words(vocloud: Vocloud) -> None:
    missing = CCD700 + "nothing"

    def attempts() -> list[VocloudError]:
        errors = []
        with requests.Session() as http:
            for call in (
                lambda: vo.datalink(missing, service_url=f"{vocloud.base}/datalink", session=http),
                lambda: vo.cutout_request(missing, ssa_url=f"{vocloud.base}/ssa", session=http),
            ):
                try:
                    call()
                except VocloudError as e:
                    errors.append(e)
        return errors

    by_datalink, by_ssa = await in_thread(attempts)
    assert by_datalink.status == by_ssa.status == 404
    assert by_datalink.message.startswith("NotFoundFault")
    assert missing in by_datalink.message and missing in by_ssa.message


async def test_cutout_around_h_alpha_is_fetched_once_then_served_from_the_cache(
    vocloud: Vocloud, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    bar = io.StringIO()

    def twice() -> tuple[Path, Path, Path]:
        with requests.Session() as http:
            options: dict[str, Any] = {"ssa_url": f"{vocloud.base}/ssa", "session": http, "cache": cache}
            first = vo.cutout(AIR[0], progress=True, progress_stream=bar, **options)
            before = len(vocloud.requests)
            second = vo.cutout(AIR[0], **options)
            copy = vo.cutout(AIR[0], output=tmp_path / "out" / "halpha.fits", **options)
            assert len(vocloud.requests) == before, vocloud.requests[before:]
            return first, second, copy

    first, second, copy = await in_thread(twice)
    assert (vocloud.count("/ssa"), vocloud.count("/datalink"), vocloud.count("/soda")) == (1, 1, 1)
    assert first == second and first.is_relative_to(cache.directory)
    assert copy.read_bytes() == first.read_bytes()
    assert "100%" in bar.getvalue()
    with fits.open(copy) as hdus:
        wavelength = np.asarray(hdus["SPECTRUM"].data["WAVELENGTH"], dtype=float)
    # Air line, air spectrum: exactly 6562.8 ± 50 Å, to the archived pixels.
    assert 6512.8 <= wavelength.min() < 6512.8 + STEP
    assert 6612.8 - STEP < wavelength.max() <= 6612.8
    assert not list(cache.directory.rglob(".part-*"))


async def test_a_line_in_air_is_moved_into_a_vacuum_spectrum(vocloud: Vocloud, tmp_path: Path) -> None:
    def cut() -> tuple[vo.CutoutRequest, Path]:
        with requests.Session() as http:
            options: dict[str, Any] = {"ssa_url": f"{vocloud.base}/ssa", "session": http}
            request = vo.cutout_request(VACUUM, **options)
            path = vo.cutout(VACUUM, cache=False, output=tmp_path / "vacuum.fits", **options)
            # A row that does not say its medium (as a candidates table): the SSA record is asked.
            table = vo.ssa_search(f"{vocloud.base}/ssa", session=http)
            table.remove_column("ssa_medium")
            row = table[list(table["ssa_pubDID"]).index(VACUUM)]
            assert vo.cutout_request(row, datalink_url=f"{vocloud.base}/datalink", session=http).medium is None
            assert vo.cutout_request(row, **options).params == request.params
            return request, path

    request, path = await in_thread(cut)
    assert request.medium == "vacuum"
    with fits.open(path) as hdus:
        wavelength = np.asarray(hdus["SPECTRUM"].data["WAVELENGTH"], dtype=float)
    centre = (wavelength.min() + wavelength.max()) / 2
    assert centre == pytest.approx(H_ALPHA_VACUUM, abs=STEP)
    assert wavelength.max() - wavelength.min() == pytest.approx(100, abs=2 * STEP)


async def test_a_band_without_pixels_and_a_refused_format_are_clear_errors(vocloud: Vocloud, tmp_path: Path) -> None:
    def attempts() -> list[VocloudError]:
        errors = []
        with requests.Session() as http:
            options: dict[str, Any] = {"ssa_url": f"{vocloud.base}/ssa", "session": http, "cache": Cache(tmp_path)}
            for extra in ({"band": (4000, 4100) * u.AA}, {"responseformat": "text/x-nonsense"}):
                try:
                    vo.cutout(AIR[1], **options, **extra)
                except VocloudError as e:
                    errors.append(e)
        return errors

    empty, refused = await in_thread(attempts)
    assert empty.status == 204
    assert "no pixel" in empty.message and "4000.0 and 4100.0 Å" in empty.message
    assert refused.status == 400
    assert refused.message.startswith("UsageError:") and "RESPONSEFORMAT" in refused.message
    # Only the SSA and DataLink answers were kept: an error is never cached.
    assert len(list(tmp_path.rglob("*.json"))) == 2


# -- downloads and the cache ------------------------------------------------------------------------------------------


def test_air_and_vacuum_wavelengths_follow_the_iau_standard() -> None:
    assert vo.air_to_vacuum(6562.80 * u.AA).to_value(u.AA) == pytest.approx(H_ALPHA_VACUUM, abs=0.01)
    grid = np.linspace(3000, 10000, 50) * u.AA
    assert np.allclose(vo.vacuum_to_air(vo.air_to_vacuum(grid)).to_value(u.AA), grid.value, atol=1e-4)
    band = vo.line_band(6562.8, 50, line_medium="air", spectrum_medium="vacuum")
    assert band.unit == u.m
    assert band.to_value(u.AA).mean() == pytest.approx(H_ALPHA_VACUUM, abs=0.01)


def test_a_broken_transfer_leaves_no_entry_and_no_temporary_file(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def chunks() -> Any:
        yield b"half of it"
        raise requests.ConnectionError("reset by peer")

    with pytest.raises(requests.ConnectionError):
        cache.put("http://example.org/x", {"ID": "1"}, chunks())
    assert cache.get("http://example.org/x", {"ID": "1"}) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

    entry = cache.put("http://example.org/x", {"ID": "1"}, iter([b"a", b"b"]), content_type="text/plain")
    assert entry.path.read_bytes() == b"ab"
    found = cache.get("http://example.org/x", [("ID", "1")])
    assert found is not None and found.from_cache and found.content_type == "text/plain"


def test_the_cache_key_is_the_full_request(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = cache.key("http://h/soda", {"ID": "a", "BAND": "1 2"})
    assert key == cache.key("http://h/soda", [("BAND", "1 2"), ("ID", "a")])
    assert key == cache.key("http://h/soda?ID=a", {"BAND": "1 2"})
    assert key != cache.key("http://h/soda", {"ID": "a", "BAND": "1 3"})
    assert key != cache.key("http://other/soda", {"ID": "a", "BAND": "1 2"})
    assert cache.clear() == 0


def test_the_cache_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOCLOUD_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert Cache().directory == tmp_path / "mine"
    monkeypatch.delenv("VOCLOUD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vocloud"


async def test_unreachable_and_slow_services_raise_their_own_errors(aiohttp_server: Any, tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)

    def attempts() -> list[BaseException]:
        errors: list[BaseException] = []
        with requests.Session() as http:
            for url, timeout in ((f"http://127.0.0.1:{free_port()}/ssa", 5.0), (str(server.make_url("/slow")), 0.3)):
                try:
                    download(http, url, cache=Cache(tmp_path), timeout=timeout)
                except VocloudError as e:
                    errors.append(e)
        return errors

    unreachable, slow_error = await in_thread(attempts)
    assert isinstance(unreachable, ServerUnreachableError)
    assert isinstance(slow_error, ClientTimeoutError)
    assert not list(tmp_path.rglob("*.json"))
