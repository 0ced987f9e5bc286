"""``vocloud ssa search`` and ``vocloud cutout`` against a real vocloud application and saved real SSA answers.

The commands run in a worker thread through their own parser (the lead wires
``register`` into ``vocloud``; one test runs the installed ``vocloud`` command
itself), with their output captured; the application counts the requests it
answers, so a cutout served from the cache is checked at the server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from astropy.io import fits
from astropy.io.votable import parse as parse_votable_file

from tests.support.kinds import ALL
from tests.support.live_server import REPO_ROOT, free_port, server_environment, vocloud_command
from tests.support.spectra_archive import CCD700, STEP, archive_spectra, iraf_fits
from tests.support.threads import in_thread
from vocloud.client.errors import EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE
from vocloud.client.vo_cli import register
from vocloud.server.app import create_app
from vocloud.server.auth import UserFile
from vocloud.server.keys import ARCHIVE

DIDS = [CCD700 + stem for stem in ("tg000001", "tg000002", "tg000003")]
H_ALPHA_AIR = 6562.8
H_ALPHA_FROM_VACUUM_IN_AIR = 6560.99
"""6562.80 Å taken as a vacuum wavelength, in air (IAU standard: air = vacuum / 1.000278 at H-alpha)."""


class Server:
    """The running application and the paths of the requests it answered."""

    def __init__(self, server: TestServer, paths: list[str]) -> None:
        self.base = str(server.make_url("")).rstrip("/")
        self.paths = paths


@pytest.fixture
async def vocloud(make_settings: Callable[..., Any], aiohttp_server: Any) -> Server:
    app = create_app(make_settings(), kinds=ALL)
    paths: list[str] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        paths.append(request.path)

    app.on_response_prepare.append(record)
    server = await aiohttp_server(app)
    stems = [did.rsplit("/", 1)[1] for did in DIDS]
    archive_spectra(server.app[ARCHIVE], *((stem, iraf_fits(stem, seed=i)) for i, stem in enumerate(stems)))
    return Server(server, paths)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test its own cache, never the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOCLOUD_CACHE", str(cache))
    return cache


def printed_rows(out: str) -> tuple[list[str], list[dict[str, str]]]:
    """The column names and rows of a printed table, cut where the dashes under the header say (names hold spaces)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-") and set(line) <= {"-", " "})
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rule])]
    names = [lines[0][a:b].strip() for a, b in spans]
    rows = [{name: line[a:b].strip() for name, (a, b) in zip(names, spans, strict=True)} for line in lines[rule + 1 :]]
    return names, rows


async def vocloud_cli(*argv: str) -> int:
    """Run a command of this module in a worker thread; returns its exit status."""
    parser = argparse.ArgumentParser(prog="vocloud")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = await in_thread(lambda: args.func(args))
    return code


# -- ssa search ------------------------------------------------------------------------------------------------------


async def test_search_prints_one_line_per_spectrum_with_wavelengths_in_angstrom(
    vocloud: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await vocloud_cli("ssa", "search", "--server", vocloud.base, "--pos", "15.5,45.1", "--size", "1") == EXIT_OK
    out, err = capsys.readouterr()
    names, rows = printed_rows(out)
    assert names == ["id", "target", "ra", "dec", "date_obs", "lambda_min", "lambda_max", "format"]
    assert sorted(row["id"] for row in rows) == DIDS
    assert {row["target"] for row in rows} == {"HD 1"}
    assert {row["date_obs"] for row in rows} == {"2013-04-09T20:05:00"}  # DATE-OBS + UT + half the exposure
    # The synthetic spectra cover 6250-6750 Å; SSA sends metres, the table shows Å.
    assert all(6249 < float(row["lambda_min"]) < float(row["lambda_max"]) < 6751 for row in rows)
    assert err.strip() == "3 spectra"


async def test_search_as_csv_and_as_the_services_votable(vocloud: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert await vocloud_cli("ssa", "search", "--server", vocloud.base, "--format", "csv") == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(row["ssa_pubDID"] for row in rows) == DIDS
    # Array columns are split for CSV: the target position becomes two numbers.
    assert all(float(row["ssa_targetpos_1"]) == pytest.approx(15.514, abs=1e-3) for row in rows)
    assert all(float(row["ssa_targetpos_2"]) == pytest.approx(45.102, abs=1e-3) for row in rows)

    assert await vocloud_cli("ssa", "search", "--server", vocloud.base, "--format", "votable", "--maxrec", "2") == 0
    out, err = capsys.readouterr()
    document = out.encode()
    table = parse_votable_file(io.BytesIO(document)).get_first_table().to_table()
    assert len(table) == 2
    assert b"adhoc:service" in document  # the DataLink descriptor reaches TOPCAT
    assert "more exist" in err


async def test_saved_answers_of_other_services_show_the_same_columns(
    shared_data: Path, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ondrejov = shared_data / "vo-responses/ondrejov-ccd700-ssa/ssa-v509cas-with-datalink.xml"
    sdss = shared_data / "vo-responses/jhu-sdss-ssa/sdss-dr6-ssa-queryData.xml"

    async def answer(request: web.Request) -> web.Response:
        source = ondrejov if request.path == "/ondrejov" else sdss
        return web.Response(body=source.read_bytes(), content_type="text/xml")

    app = web.Application()
    app.router.add_get("/ondrejov", answer)
    app.router.add_get("/sdss", answer)
    server = await aiohttp_server(app)

    assert await vocloud_cli("ssa", "search", "--service", str(server.make_url("/ondrejov"))) == EXIT_OK
    out, err = capsys.readouterr()
    names, rows = printed_rows(out)
    assert names == ["id", "target", "ra", "dec", "date_obs", "lambda_min", "lambda_max", "format"]
    assert len(rows) == ondrejov.read_bytes().count(b"<TR>")
    assert {row["target"] for row in rows} == {"HD217476"}
    assert all(3800 < float(row["lambda_min"]) < float(row["lambda_max"]) < 9000 for row in rows)

    assert await vocloud_cli("ssa", "search", "--service", str(server.make_url("/sdss"))) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:2] == ["id", "target"]
    assert err.strip() == f"{sdss.read_bytes().count(b'<TR>')} spectra"


async def test_refusals_unreachable_and_slow_services_have_their_exit_codes(
    vocloud: Server, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not an SSA service: the vocloud SODA endpoint refuses with its own text.
    code = await vocloud_cli("ssa", "search", "--server", vocloud.base, "--service", f"{vocloud.base}/soda")
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("vocloud ssa search: UsageError:") and "ID" in err

    code = await vocloud_cli("ssa", "search", "--server", f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREACHABLE
    assert capsys.readouterr().err.startswith("vocloud ssa search: Cannot reach")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ssa", slow)
    server = await aiohttp_server(app)
    code = await vocloud_cli("ssa", "search", "--service", str(server.make_url("/ssa")), "--timeout", "0.3")
    assert code == EXIT_TIMEOUT
    assert "did not answer within 0.3 s" in capsys.readouterr().err


async def test_a_server_asking_for_credentials_gets_them_from_user_and_environment(
    make_settings: Callable[..., Any],
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    UserFile(make_settings().users_file).add("alice", "alice-secret-1")
    server = await aiohttp_server(create_app(make_settings(auth="basic"), kinds=ALL))
    archive_spectra(server.app[ARCHIVE], ("tg000001", iraf_fits("tg000001")))
    base = str(server.make_url("")).rstrip("/")

    assert await vocloud_cli("ssa", "search", "--server", base) == EXIT_USAGE
    assert "user name and password" in capsys.readouterr().err
    monkeypatch.setenv("VOCLOUD_PASSWORD", "alice-secret-1")
    assert await vocloud_cli("ssa", "search", "--server", base, "--user", "alice") == EXIT_OK
    assert capsys.readouterr().err.strip() == "1 spectrum"
    out = tmp_path / "cut.fits"
    assert await vocloud_cli("cutout", DIDS[0], "-o", str(out), "--server", base, "--user", "alice") == EXIT_OK
    assert out.stat().st_size > 0


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vocloud")
    register(parser.add_subparsers(dest="command", required=True))
    for argv in (
        ["ssa", "search", "--pos", "10,100"],
        ["ssa", "search", "--band", "6600,6500"],
        ["ssa", "search", "--maxrec", "-1"],
        ["cutout", "ivo://x/y"],
        ["cutout", "ivo://x/y", "-o", "f", "--half-width", "-5"],
    ):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        assert stopped.value.code == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_the_installed_command_answers_help_and_exits_3_without_a_server(tmp_path: Path) -> None:
    def vocloud_process(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*vocloud_command(), *argv], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
            env={**server_environment(), "VOCLOUD_CACHE": str(tmp_path)}, check=False,
        )  # fmt: skip

    helped = vocloud_process("cutout", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "H-alpha" in helped.stdout and "--half-width" in helped.stdout
    down = vocloud_process("cutout", CCD700 + "x", "-o", str(tmp_path / "x.fits"), "--server",
                           f"http://127.0.0.1:{free_port()}")  # fmt: skip
    assert down.returncode == EXIT_UNREACHABLE
    assert down.stderr.startswith("vocloud cutout: Cannot reach") and "Traceback" not in down.stderr
    assert not (tmp_path / "x.fits").exists()


# -- cutout ----------------------------------------------------------------------------------------------------------


def _wavelengths(path: Path) -> np.ndarray[Any, Any]:
    with fits.open(path) as hdus:
        return np.asarray(hdus["SPECTRUM"].data["WAVELENGTH"], dtype=float)


async def test_cutout_writes_h_alpha_and_the_second_time_asks_nothing(
    vocloud: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], _private_cache: Path
) -> None:
    first, second = tmp_path / "first.fits", tmp_path / "again" / "second.fits"
    assert await vocloud_cli("cutout", DIDS[0], "-o", str(first), "--server", vocloud.base) == EXIT_OK
    err = capsys.readouterr().err
    assert f"{DIDS[0]}: 6512.80-6612.80 Å (air wavelengths) -> {first}" in err
    wavelength = _wavelengths(first)
    assert H_ALPHA_AIR - 50 <= wavelength.min() < H_ALPHA_AIR - 50 + STEP
    assert H_ALPHA_AIR + 50 - STEP < wavelength.max() <= H_ALPHA_AIR + 50
    asked = len(vocloud.paths)

    assert await vocloud_cli("cutout", DIDS[0], "-o", str(second), "--server", vocloud.base) == EXIT_OK
    assert "from the cache" in capsys.readouterr().err
    assert len(vocloud.paths) == asked
    assert second.read_bytes() == first.read_bytes()
    assert any(_private_cache.rglob("*.json"))


async def test_cutout_of_a_vacuum_line_a_band_and_through_datalink_only(
    vocloud: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], _private_cache: Path
) -> None:
    vacuum = tmp_path / "vacuum.fits"
    assert await vocloud_cli("cutout", DIDS[1], "--vacuum", "-o", str(vacuum), "--server", vocloud.base) == 0
    wavelength = _wavelengths(vacuum)
    assert (wavelength.min() + wavelength.max()) / 2 == pytest.approx(H_ALPHA_FROM_VACUUM_IN_AIR, abs=STEP)

    band = tmp_path / "band.xml"
    code = await vocloud_cli("cutout", DIDS[1], "--band", "6300,6320", "--format", "votable", "-o", str(band),
                             "--server", vocloud.base)  # fmt: skip
    assert code == EXIT_OK
    table = parse_votable_file(str(band)).get_first_table().to_table()
    wavelength_column = next(name for name in table.colnames if name.upper().startswith("WAVE"))
    assert 6300 <= float(table[wavelength_column].min()) < float(table[wavelength_column].max()) <= 6320

    asked, entries = len(vocloud.paths), sorted(_private_cache.rglob("*"))
    direct = tmp_path / "direct.fits"
    code = await vocloud_cli("cutout", DIDS[2], "--datalink", f"{vocloud.base}/datalink", "--no-cache",
                             "-o", str(direct), "--server", vocloud.base)  # fmt: skip
    assert code == EXIT_OK
    assert vocloud.paths[asked:] == ["/datalink", "/soda"]  # no SSA lookup when DataLink is named
    assert sorted(_private_cache.rglob("*")) == entries  # and nothing kept
    assert _wavelengths(direct).min() >= H_ALPHA_AIR - 50
    capsys.readouterr()


async def test_cutout_failures_are_one_line_with_exit_status_2(
    vocloud: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.fits"
    code = await vocloud_cli("cutout", DIDS[0], "--band", "4000,4100", "-o", str(out), "--server", vocloud.base)
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("vocloud cutout: no pixel of") and err.count("\n") == 1
    code = await vocloud_cli("cutout", CCD700 + "unknown", "-o", str(out), "--server", vocloud.base)
    assert code == EXIT_USAGE
    assert "no spectrum with publisher DID" in capsys.readouterr().err
    assert not out.exists()
    assert await vocloud_cli("cutout", DIDS[0], "-o", str(tmp_path), "--server", vocloud.base) == EXIT_USAGE
    assert "is a directory" in capsys.readouterr().err
