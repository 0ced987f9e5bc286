"""A server started on an empty archive fills it with the demo archive, once."""

from tests.support.kinds import ALL
from vocloud.server.app import create_app
from vocloud.server.keys import ARCHIVE


async def test_empty_archive_is_filled_once(make_settings, aiohttp_client):
    settings = make_settings(demo_spectra=25)
    client = await aiohttp_client(create_app(settings, kinds=ALL))
    archive = client.server.app[ARCHIVE]
    assert archive.store.count() == 25
    labels = (settings.demo_dir / "labels.csv").read_text().splitlines()
    assert labels[0] == "id,label" and len(labels) == 26
    assert archive.store.get(labels[1].split(",")[0]) is not None
    await client.close()

    # A second start finds spectra and generates nothing more.
    again = await aiohttp_client(create_app(make_settings(demo_spectra=50), kinds=ALL))
    assert again.server.app[ARCHIVE].store.count() == 25
