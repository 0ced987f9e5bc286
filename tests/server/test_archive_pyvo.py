"""The archive as an astronomer's pyvo sees it: SSA search → DataLink → preview and SODA cutout.

The application serves a small demo archive on a real port; pyvo (which uses
requests) runs in a worker thread, never on the event loop that serves it.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pyvo
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from tests.support.kinds import ALL
from vocloud.server.app import create_app
from vocloud.server.keys import ARCHIVE

H_ALPHA_BAND = (6.50e-7, 6.62e-7) * u.m


async def test_search_getdatalink_preview_and_cutout(make_settings, aiohttp_server) -> None:
    server = await aiohttp_server(create_app(make_settings(demo_spectra=30), kinds=ALL))
    archive = server.app[ARCHIVE]
    ssa_url = str(server.make_url("/ssa"))

    def scenario() -> dict[str, Any]:
        with requests.Session() as session:
            service = pyvo.dal.SSAService(ssa_url, session=session)
            results = service.search(pos=SkyCoord(0, 0, unit="deg"), diameter=360 * u.deg, band=H_ALPHA_BAND)
            record = results[0]
            links = record.getdatalink()
            preview = next(iter(links.bysemantics("#preview", include_narrower=False)))
            png = session.get(preview.access_url, timeout=30).content
            cutout = next(iter(links.bysemantics("#cutout", include_narrower=False)))
            with fits.open(io.BytesIO(cutout.processed(band=(6540, 6590) * u.AA).read())) as hdus:
                wavelength = hdus["SPECTRUM"].data["WAVELENGTH"]
            return {
                "count": len(results),
                "did": record.getbyutype("ssa:Curation.PublisherDID"),
                "acref": record.acref,
                "format": record.format,
                "png": png[:8],
                "wavelength": (float(wavelength.min()), float(wavelength.max()), len(wavelength)),
                "this": session.get(record.acref, timeout=30).content,
            }

    seen = await asyncio.get_running_loop().run_in_executor(None, scenario)
    assert seen["count"] == archive.store.count() == 30  # the whole sky; every spectrum covers H-alpha
    record = archive.store.get(seen["did"])
    assert record is not None
    assert seen["format"] == "application/fits"
    assert seen["this"] == archive.file_path(record).read_bytes()
    assert seen["png"] == b"\x89PNG\r\n\x1a\n"
    low, high, points = seen["wavelength"]
    assert 6540 - 1e-6 <= low < high <= 6590 + 1e-6
    assert points > 150
